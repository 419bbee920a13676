//! A Lambda bootstrap mirroring the Python reference example: a Worker Deployment
//! Version, and a configure callback that sets the task queue and registers a PINNED
//! workflow and an activity (`hello_workflows::register`).
//!
//! Task queue: `TEMPORAL_TASK_QUEUE`, else `hello-task-queue`. Deployment version:
//! `HELLO_DEPLOYMENT_NAME` / `HELLO_BUILD_ID`, else `hello-app` / `build-1`. With
//! `HELLO_HOST=agentcore` it serves AgentCore Runtime's HTTP contract instead of the Lambda
//! Runtime API (docs/agentcore.md).

use temporal_lambda_worker::{BoxError, LambdaWorkerConfig, VersioningBehavior, run_worker};

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "hello-task-queue".into();
    }
    config.versioning_behavior = VersioningBehavior::Pinned;
    hello_workflows::register(&mut config.worker)?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    temporal_lambda_worker::logging::init();
    let version = hello_workflows::version_from_env();
    // The same bootstrap on AgentCore Runtime (docs/agentcore.md): one line.
    if std::env::var("HELLO_HOST").as_deref() == Ok("agentcore") {
        return temporal_lambda_worker::agentcore::run_worker(version, configure).await;
    }
    run_worker(version, configure).await
}
