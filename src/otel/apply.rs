//! Metrics and tracing for a worker config from a [`Telemetry`], for a configure callback
//! in a stack without [`OtelLayer`](super::OtelLayer).

use temporalio_sdk::plugins::WorkerPlugin;
use tokio::time::Instant;

use super::Telemetry;
use crate::{BoxError, LambdaWorkerConfig};

/// Records the SDK's worker metrics with `telemetry`'s meter.
pub fn apply_metrics(config: &mut LambdaWorkerConfig, telemetry: &Telemetry) {
    config.metrics = Some(telemetry.meter());
}

/// Adds the SDK's OpenTelemetry interceptors to the worker: `RunWorkflow:*` and
/// `RunActivity:*` spans (and the spans of what workflows call), exported by `telemetry`.
/// Apply it once per invocation config.
pub fn apply_tracing(
    config: &mut LambdaWorkerConfig,
    telemetry: &Telemetry,
) -> Result<(), BoxError> {
    telemetry
        .plugin()
        .configure_worker_options(&mut config.worker)
        .map_err(|e| format!("the Temporal OpenTelemetry plugin failed: {e}").into())
}

/// Metrics, tracing and a flush after every invocation (as a shutdown hook) with
/// `telemetry`. For a configure callback in a stack without
/// [`OtelLayer`](super::OtelLayer), which does the same plus the invocation span; under
/// one with the same telemetry this adds nothing (so nothing is recorded twice).
pub fn apply_defaults(
    config: &mut LambdaWorkerConfig,
    telemetry: &Telemetry,
) -> Result<(), BoxError> {
    if telemetry.applied_to(config) {
        // An OtelLayer with this telemetry did it all (and flushes): nothing to add.
        return Ok(());
    }
    apply_metrics(config, telemetry);
    apply_tracing(config, telemetry)?;
    let flushing = telemetry.clone();
    config.add_async_shutdown_hook(move || async move {
        let until = Instant::now() + flushing.options().flush_timeout;
        flushing.flush(until).await
    });
    Ok(())
}
