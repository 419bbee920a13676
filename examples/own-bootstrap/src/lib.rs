//! A crate of your own: one workflow, one activity and the configure callback that
//! registers them (the bootstrap's `main` is `src/main.rs`, built as this package's example
//! so the workspace keeps a single binary for `cargo lambda watch`'s default route).

use std::time::Duration;

use temporal_lambda_worker::{BoxError, LambdaWorkerConfig};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[workflow]
#[derive(Default)]
/// Confirms an order through one activity.
pub struct OrderWorkflow;

#[workflow_methods]
impl OrderWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, order: String) -> WorkflowResult<String> {
        Ok(ctx
            .execute_activity(
                Orders::confirm,
                order,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?)
    }
}

/// The order activities.
pub struct Orders;

#[activities]
impl Orders {
    #[activity]
    pub async fn confirm(_ctx: ActivityContext, order: String) -> Result<String, ActivityError> {
        Ok(format!("order {order} confirmed"))
    }
}

/// Registers the workflow and the activity; the task queue defaults to `orders`.
pub fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "orders".into(); // TEMPORAL_TASK_QUEUE wins when set
    }
    config.worker.register_workflow::<OrderWorkflow>()?;
    config.worker.register_activities(Orders);
    Ok(())
}
