//! A complete bootstrap of a crate of your own: one workflow, one activity, the Lambda
//! defaults, Lambda-correct logs. Build it with `cargo lambda build --release --arm64`.

use std::time::Duration;

use temporal_lambda_worker::{
    BoxError, LambdaWorkerConfig, WorkerDeploymentVersion, logging, run_worker,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[workflow]
#[derive(Default)]
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

pub struct Orders;

#[activities]
impl Orders {
    #[activity]
    pub async fn confirm(_ctx: ActivityContext, order: String) -> Result<String, ActivityError> {
        Ok(format!("order {order} confirmed"))
    }
}

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "orders".into(); // TEMPORAL_TASK_QUEUE wins when set
    }
    config.worker.register_workflow::<OrderWorkflow>()?;
    config.worker.register_activities(Orders);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let version = WorkerDeploymentVersion::builder()
        .deployment_name("shop")
        .build_id("build-1")
        .build();
    run_worker(version, configure).await
}
