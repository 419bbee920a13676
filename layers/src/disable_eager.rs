//! Turns eager activity execution off, whatever the configure callback set.
//!
//! Eager activities need a worker that stays around after its workflow task completes;
//! a Lambda invocation does not. This layer goes *after* [`ConfigureLayer`](crate::ConfigureLayer)
//! so the setting cannot be overridden.

use crate::{
    Invocation, InvocationStep, LambdaWorkerError, Step, StepLayer, invocation::Lifecycle,
};

/// Sets the eager activity reservations per workflow task to zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisableEagerActivitiesStep;

impl InvocationStep for DisableEagerActivitiesStep {
    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        inv.enter(Lifecycle::DisableEagerActivities)?;
        inv.config
            .worker
            .max_eager_activity_reservations_per_workflow_task = 0;
        Ok(())
    }
}

/// Layer that disables eager activity execution. Place it after the configure layer.
pub type DisableEagerActivitiesLayer = StepLayer<DisableEagerActivitiesStep>;

/// The service [`DisableEagerActivitiesLayer`] makes: [`DisableEagerActivitiesStep`] applied, then the inner service.
pub type DisableEagerActivities<S> = Step<S, DisableEagerActivitiesStep>;

impl StepLayer<DisableEagerActivitiesStep> {
    /// The layer.
    pub fn new() -> Self {
        StepLayer::from_step(DisableEagerActivitiesStep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_through;

    #[tokio::test]
    async fn a_user_setting_is_overridden() {
        let mut inv = Invocation::new(Default::default(), Default::default());
        inv.config
            .worker
            .max_eager_activity_reservations_per_workflow_task = 7;
        let inv = run_through(DisableEagerActivitiesLayer::new(), inv)
            .await
            .unwrap();
        assert_eq!(
            inv.config
                .worker
                .max_eager_activity_reservations_per_workflow_task,
            0
        );
    }
}
