//! The `hello` bootstrap with OpenTelemetry, for the ADOT Lambda layer: traces and the
//! Temporal SDK's worker metrics go over OTLP/gRPC to the collector the layer runs on
//! `localhost:4317`, flushed before every invocation answers.
//!
//! Build: `cargo lambda build --release --arm64 --features otel --example otel`, then add
//! the ADOT collector layer to the function (see the README's OpenTelemetry section).
//!
//! Environment:
//! - `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector (default `http://localhost:4317`).
//! - `OTEL_SERVICE_NAME`: the `service.name` (default: the function's name).
//! - `TEMPORAL_TASK_QUEUE`, `HELLO_DEPLOYMENT_NAME`, `HELLO_BUILD_ID`: as in `hello`.
//!
//! Turn on the function's active tracing: Lambda passes `Sampled=0` in the trace header
//! otherwise, and the invocation span (with everything in it) follows that decision.

use hello_workflows::{GreetingActivities, HelloWorkflow, SlowHelloWorkflow};
use temporal_lambda_worker::{
    BoxError, LambdaWorkerConfig, VersioningBehavior, WorkerDeploymentVersion, otel,
};

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    // Under `otel::run_worker` (below) the OtelLayer has applied everything already and
    // this does nothing; with a stack of your own without the layer, it adds the SDK's
    // metrics and spans and a flush after each invocation (but no invocation span).
    otel::apply_defaults(config, otel::OtelOptions::new())?;
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
                // The exporters' own messages repeat the one warning the flush logs.
                .unwrap_or_else(|_| "info,temporalio_sdk_core=warn,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off".into()),
        )
        .with_target(false)
        .without_time()
        .init();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let version = WorkerDeploymentVersion::builder()
        .deployment_name(env("HELLO_DEPLOYMENT_NAME", "hello-app"))
        .build_id(env("HELLO_BUILD_ID", "build-1"))
        .build();
    otel::run_worker(version, configure, otel::OtelOptions::new()).await
}
