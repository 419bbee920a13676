//! The activity admission policy (`longest_activity`): an activity that could not end
//! before the timeline's `cancel_at` is handed back to a fresh invocation instead of
//! started and cancelled.

use std::time::Duration;

use crate::{Timeline, backend::TaskActivity, rules::LONGEST_ACTIVITY_VAR, tasks::PollsEnd};

/// Tells `tasks` which activities to hand back. With the idle exit on, the session stops
/// polling at the first hand-back, so the retry comes at once and a fresh invocation (with
/// a whole window) runs it; with it off, polling goes on until the shutdown moment and the
/// retry comes after it. Nothing to do without `longest` or without a deadline.
pub(crate) fn admit(
    tasks: &TaskActivity,
    longest: Option<Duration>,
    timeline: &Timeline,
    idle_exit_on: bool,
) {
    let (Some(longest), Some(cancel_at), Some(shutdown_at)) = (
        longest,
        timeline.cancel_at().instant(),
        timeline.shutdown_at().instant(),
    ) else {
        return;
    };
    let polls_end = if idle_exit_on {
        PollsEnd::OnHandBack
    } else {
        PollsEnd::At(shutdown_at)
    };
    if !tasks.admit_activities(longest, cancel_at, polls_end) {
        tracing::warn!(
            longest_activity_ms = longest.as_millis() as u64,
            "the longest activity ({:.1}s, {LONGEST_ACTIVITY_VAR}) cannot finish within this \
             invocation's polling and graceful shutdown time: no activity is handed back, they \
             all run as without the setting; raise the function's timeout",
            longest.as_secs_f64()
        );
    }
}
