//! The `hello` bootstrap with OpenTelemetry, for the ADOT Lambda layer: traces and the
//! Temporal SDK's worker metrics go over OTLP/gRPC to the collector the layer runs on
//! `localhost:4317`, flushed before every invocation answers.
//!
//! Build: `cargo lambda build --release --arm64 --features otel --example otel`, then add
//! the ADOT collector layer to the function (see docs/operations.md, "OpenTelemetry").
//!
//! Environment:
//! - `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector (default `http://localhost:4317`).
//! - `OTEL_SERVICE_NAME`: the `service.name` (default: the function's name).
//! - `TEMPORAL_TASK_QUEUE`, `HELLO_DEPLOYMENT_NAME`, `HELLO_BUILD_ID`: as in `hello`.
//!
//! Turn on the function's active tracing: Lambda passes `Sampled=0` in the trace header
//! otherwise, and the invocation span (with everything in it) follows that decision.

use temporal_lambda_worker::{BoxError, LambdaWorkerConfig, VersioningBehavior, otel};
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    // Metrics, spans and the flush come from the OtelLayer `otel::run_worker` puts around
    // the stack: nothing to do for them here.
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "hello-task-queue".into();
    }
    config.versioning_behavior = VersioningBehavior::Pinned;
    hello_workflows::register(&mut config.worker)?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // The process's exporters, made once, from the only options given anywhere.
    let telemetry = otel::Telemetry::init(otel::OtelOptions::new())?;
    tracing_subscriber::registry()
        // Lambda-correct logs (AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL, no colour in
        // CloudWatch).
        .with(temporal_lambda_worker::logging::layer())
        // Our own `tracing` spans (the activity's `compose_greeting`), exported too.
        .with(telemetry.tracing_layer())
        .init();
    let version = hello_workflows::version_from_env();
    otel::run_worker(version, configure, telemetry).await
}
