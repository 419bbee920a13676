//! A Lambda bootstrap mirroring the Python reference example: a Worker Deployment
//! Version, and a configure callback that sets the task queue and registers a PINNED
//! workflow and an activity.
//!
//! Task queue: `TEMPORAL_TASK_QUEUE`, else `hello-task-queue`. Deployment version:
//! `HELLO_DEPLOYMENT_NAME` / `HELLO_BUILD_ID`, else `hello-app` / `build-1`.
use hello_workflows::{GreetingActivities, HelloWorkflow, SlowHelloWorkflow};
use temporal_lambda_worker::{
    BoxError, LambdaWorkerConfig, VersioningBehavior, WorkerDeploymentVersion, run_worker,
};

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "hello-task-queue".into();
    }
    config.versioning_behavior = VersioningBehavior::Pinned;
    config.worker.register_workflow::<HelloWorkflow>()?;
    config.worker.register_workflow::<SlowHelloWorkflow>()?;
    config.worker.register_activities(GreetingActivities);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,temporalio_sdk_core=warn".into()),
        )
        .with_target(false)
        .without_time()
        .init();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let version = WorkerDeploymentVersion::builder()
        .deployment_name(env("HELLO_DEPLOYMENT_NAME", "hello-app"))
        .build_id(env("HELLO_BUILD_ID", "build-1"))
        .build();
    run_worker(version, configure).await
}
