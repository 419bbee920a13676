//! The activity admission policy (`longest_activity`): an activity that could not end
//! before the timeline's `cancel_at` is handed back to a fresh invocation instead of
//! started and cancelled.

use std::time::Duration;

use temporalio_common::{
    ActivityError, RetryPolicy,
    error::{ApplicationErrorCategory, ApplicationFailure},
};

use super::tasks::PollsEnd;
use crate::{Timeline, backend::TaskActivity, rules::LONGEST_ACTIVITY_VAR};

/// The type of the failure an activity handed back is failed with.
pub(crate) const DEFERRED_ERROR_TYPE: &str = crate::error_type::ACTIVITY_DEFERRED;
/// How long after this worker stopped polling a handed-back activity becomes available
/// again.
pub(super) const RETRY_MARGIN: Duration = Duration::from_secs(1);

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

/// Whether a failed attempt of an activity is retried through the task queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retry {
    Yes,
    /// Not retried, and why.
    No(&'static str),
}

/// Whether the server would retry attempt `attempt` of an activity with `policy` (none: the
/// server's default, unlimited attempts) if it were handed back. A hand-back uses one
/// attempt, so an activity on the last attempt its policy allows would fail; a local
/// activity is retried inside its workflow task, not through the queue.
pub(super) fn retried(attempt: u32, policy: Option<&RetryPolicy>, is_local: bool) -> Retry {
    if is_local {
        return Retry::No("it is a local activity");
    }
    let Some(policy) = policy else {
        return Retry::Yes;
    };
    let max = policy.maximum_attempts();
    if max != 0 && attempt >= max {
        return Retry::No("it is on the last attempt its retry policy allows");
    }
    if policy
        .non_retryable_error_types()
        .iter()
        .any(|t| t == DEFERRED_ERROR_TYPE)
    {
        return Retry::No(
            "its retry policy lists TemporalLambdaWorker.ActivityDeferred as non-retryable",
        );
    }
    Retry::Yes
}

/// The benign, retryable failure that hands an activity task back, retried after
/// `retry_in`.
pub(super) fn deferred(retry_in: Duration) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(format!(
            "not started: it could run longer than the time left before this Lambda \
             invocation's drain ends (LambdaWorkerConfig::longest_activity / \
             TEMPORAL_LONGEST_ACTIVITY_SECS); handed back to run in the next invocation, in \
             {:.1}s",
            retry_in.as_secs_f64()
        ))
        .type_name(DEFERRED_ERROR_TYPE.to_owned())
        .next_retry_delay(retry_in)
        .category(ApplicationErrorCategory::Benign)
        .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_activity_with_an_attempt_left_is_retried() {
        let policy = |max: u32, non_retryable: &[&str]| {
            let mut p = RetryPolicy::default();
            p.set_maximum_attempts(max);
            p.set_non_retryable_error_types(non_retryable.iter().copied());
            p
        };
        // No policy: the server's default, unlimited attempts.
        assert_eq!(retried(1, None, false), Retry::Yes);
        assert_eq!(retried(7, Some(&policy(0, &[])), false), Retry::Yes);
        assert_eq!(retried(2, Some(&policy(3, &[])), false), Retry::Yes);
        for (attempt, max) in [(1, 1), (3, 3), (4, 3)] {
            assert!(
                matches!(retried(attempt, Some(&policy(max, &[])), false), Retry::No(why) if why.contains("last attempt")),
                "attempt {attempt} of {max}"
            );
        }
        assert!(matches!(
            retried(1, Some(&policy(0, &["Other", DEFERRED_ERROR_TYPE])), false),
            Retry::No(why) if why.contains("non-retryable")
        ));
        assert!(matches!(
            retried(1, None, true),
            Retry::No(why) if why.contains("local")
        ));
    }
}
