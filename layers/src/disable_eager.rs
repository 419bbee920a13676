//! Turns eager activity execution off, whatever the configure callback set.
//!
//! Eager activities need a worker that stays around after its workflow task completes;
//! a Lambda invocation does not. This layer goes *after* [`ConfigureLayer`](crate::ConfigureLayer)
//! so the setting cannot be overridden.

use crate::{Invocation, InvocationStep, LambdaWorkerError, StepLayer};

/// Sets the eager activity reservations per workflow task to zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisableEagerActivities;

impl InvocationStep for DisableEagerActivities {
    fn stage(&self) -> Option<(crate::invocation::StagePublic, &'static str)> {
        Some((
            crate::invocation::StagePublic(crate::invocation::Stage::Enforce),
            "DisableEagerActivitiesLayer",
        ))
    }

    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        inv.config
            .worker
            .max_eager_activity_reservations_per_workflow_task = 0;
        Ok(())
    }
}

/// Layer that disables eager activity execution. Place it after the configure layer.
pub type DisableEagerActivitiesLayer = StepLayer<DisableEagerActivities>;

impl StepLayer<DisableEagerActivities> {
    /// The layer.
    pub fn new() -> Self {
        StepLayer::from_step(DisableEagerActivities)
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
