//! The session's last words: the `invocation summary` log line.

use std::time::Duration;

use tokio::time::Instant;

use super::stop::StopReason;
use crate::{LambdaWorkerError, Timeline, backend::TaskActivity};

/// When the session's phases began and ended, for the summary line.
#[derive(Clone, Copy)]
pub(crate) struct Phases {
    /// The worker started polling.
    pub(crate) polling: Instant,
    /// The graceful shutdown began (`None`: the worker stopped by itself).
    pub(crate) shutdown_began: Option<Instant>,
    /// The worker stopped, or was abandoned.
    pub(crate) ended: Instant,
}

/// Logs one line with what the session did and how it ended.
pub(crate) fn log(
    request_id: &str,
    result: &Result<(), LambdaWorkerError>,
    reason: StopReason,
    tasks: &TaskActivity,
    timeline: &Timeline,
    phases: &Phases,
    connection_reused: bool,
) {
    let counts = tasks.counts();
    let unregistered = tasks.unregistered_types();
    let ms = |d: Duration| d.as_millis() as u64;
    let Phases {
        polling,
        shutdown_began,
        ended,
    } = *phases;
    tracing::info!(
        request_id = %request_id,
        outcome = match result {
            Ok(()) if !unregistered.is_empty() => "failed_work",
            Ok(()) => "ok",
            Err(e) => e.error_type(),
        },
        unregistered_workflow_types = unregistered.join(","),
        stop_reason = reason.name(),
        workflow_tasks_completed = counts.workflow_completed,
        workflow_tasks_failed = counts.workflow_failed,
        activity_tasks_completed = counts.activity_completed,
        activity_tasks_failed = counts.activity_failed,
        activity_tasks_deferred = counts.activity_deferred,
        first_poll_ms = ms(polling.saturating_duration_since(timeline.received_at())),
        polled_ms = ms(shutdown_began.unwrap_or(ended) - polling),
        idle_ms = ms(tasks.idle().min(ended - polling)),
        drain_ms = shutdown_began.map_or(0, |b| ms(ended - b)),
        slack_ms = timeline.remaining().map_or(0, ms),
        connection_reused,
        "invocation summary"
    );
}
