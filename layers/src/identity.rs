//! Worker identity: `<aws_request_id>@<invoked_function_arn>`, unless the user set one.
//!
//! The identity goes on the worker (`client_identity_override`), not on the connection,
//! so one connection can be reused across warm invocations while each invocation's
//! worker still shows up under its own request id.

use crate::{
    Invocation, InvocationStep, LambdaWorkerError, Step, StepLayer, invocation::Lifecycle,
};

/// Sets the per-invocation worker identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerIdentityStep;

impl InvocationStep for WorkerIdentityStep {
    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        inv.enter(Lifecycle::WorkerIdentity)?;
        let config = &mut inv.config;
        if config.worker.client_identity_override.is_none() && config.connection.identity.is_empty()
        {
            config.worker.client_identity_override = Some(format!(
                "{}@{}",
                inv.context.request_id, inv.context.invoked_function_arn
            ));
        }
        Ok(())
    }
}

/// Layer that sets the worker identity. Place it after the configure layer.
pub type WorkerIdentityLayer = StepLayer<WorkerIdentityStep>;

/// The service [`WorkerIdentityLayer`] makes: [`WorkerIdentityStep`] applied, then the inner service.
pub type WorkerIdentity<S> = Step<S, WorkerIdentityStep>;

impl StepLayer<WorkerIdentityStep> {
    /// The layer.
    pub fn new() -> Self {
        StepLayer::from_step(WorkerIdentityStep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context, run_through};

    #[tokio::test]
    async fn identity_is_request_id_at_function_arn() {
        let inv = Invocation::new(Default::default(), context("req-1", 0));
        let inv = run_through(WorkerIdentityLayer::new(), inv).await.unwrap();
        assert_eq!(
            inv.config.worker.client_identity_override.as_deref(),
            Some("req-1@arn:aws:lambda:us-east-1:000000000000:function:test")
        );
        assert_eq!(
            inv.config.connection.identity, "",
            "the shared connection is untouched"
        );
    }

    #[tokio::test]
    async fn a_user_identity_is_kept() {
        let mut inv = Invocation::new(Default::default(), context("req-1", 0));
        inv.config.worker.client_identity_override = Some("mine".into());
        let inv = run_through(WorkerIdentityLayer::new(), inv).await.unwrap();
        assert_eq!(
            inv.config.worker.client_identity_override.as_deref(),
            Some("mine")
        );

        let mut inv = Invocation::new(Default::default(), context("req-1", 0));
        inv.config.connection.identity = "conn-id".into();
        let inv = run_through(WorkerIdentityLayer::new(), inv).await.unwrap();
        assert_eq!(inv.config.worker.client_identity_override, None);
    }
}
