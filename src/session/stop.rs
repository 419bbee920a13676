//! The stop decision: one future that resolves with the reason polling must stop — the
//! timeline's shutdown moment, SIGTERM, the idle exit, or an activity handed back.

use std::time::Duration;

use super::tasks::{IdleExit, IdleReason};
use crate::{
    StopSignal, Timeline,
    backend::TaskActivity,
    rules::{IDLE_SHUTDOWN_SETTLED_VAR, IDLE_SHUTDOWN_VAR},
};

/// Why polling stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The worker stopped by itself (an error, or no deadline and it ended).
    WorkerStopped,
    /// `deadline − buffer` was reached.
    Deadline,
    /// No task for the idle exit's window.
    Idle,
    /// No task for the settled idle exit's wait, with nothing expected.
    Settled,
    /// The process is stopping (SIGTERM).
    Signal,
    /// An activity task was handed back (the idle exit is on): a fresh invocation runs it.
    HandedBack,
}

impl StopReason {
    /// The summary line's `stop_reason`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::WorkerStopped => "worker_stopped",
            Self::Deadline => "deadline",
            Self::Idle => "idle",
            Self::Settled => "settled",
            Self::Signal => "sigterm",
            Self::HandedBack => "activity_handed_back",
        }
    }
}

/// Resolves when polling must stop, and logs why. The idle exit (`idle`, `None`: off)
/// also stops at the first hand-back, so its retry comes at once to a fresh invocation.
pub(crate) async fn stop_decision(
    timeline: &Timeline,
    idle: Option<IdleExit>,
    tasks: &TaskActivity,
    signal: &StopSignal,
) -> StopReason {
    let idle_exit = async {
        let Some(exit) = idle else {
            return std::future::pending().await;
        };
        tokio::select! {
            why = tasks.idle_exit(exit) => match why {
                IdleReason::Window => StopReason::Idle,
                IdleReason::Settled => StopReason::Settled,
            },
            () = tasks.handed_back() => StopReason::HandedBack,
        }
    };
    let reason = tokio::select! {
        () = timeline.shutdown_at().reached() => StopReason::Deadline,
        () = signal.stopped() => StopReason::Signal,
        why = idle_exit => why,
    };
    let why = match reason {
        StopReason::Idle => format!(
            "no task for {:.1}s ({IDLE_SHUTDOWN_VAR})",
            idle.map_or(Duration::ZERO, |e| e.window).as_secs_f64()
        ),
        StopReason::Settled => format!(
            "no task for {:.1}s and none expected ({IDLE_SHUTDOWN_SETTLED_VAR})",
            idle.and_then(|e| e.settled)
                .unwrap_or_default()
                .as_secs_f64()
        ),
        StopReason::Deadline => "shutdown deadline buffer reached".into(),
        StopReason::Signal => "the process is stopping (SIGTERM)".into(),
        StopReason::HandedBack => {
            "an activity task was handed back to run in a fresh invocation".into()
        }
        StopReason::WorkerStopped => "the worker stopped".into(),
    };
    tracing::info!("{why}: graceful shutdown");
    reason
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn window(secs: u64) -> IdleExit {
        IdleExit {
            window: S(secs),
            settled: None,
        }
    }

    fn planned(deadline_in: Duration) -> Timeline {
        Timeline::until(Instant::now() + deadline_in).planned(S(7), S(5))
    }

    #[tokio::test(start_paused = true)]
    async fn the_shutdown_moment_stops_polling_when_the_idle_exit_is_off() {
        let (tasks, start) = (TaskActivity::default(), Instant::now());
        tasks.polling_started();
        let why = stop_decision(&planned(S(60)), None, &tasks, &StopSignal::default()).await;
        assert_eq!((why, start.elapsed()), (StopReason::Deadline, S(53)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_exit_stops_a_worker_with_no_task_and_never_after_the_shutdown_moment() {
        let (tasks, start) = (TaskActivity::default(), Instant::now());
        tasks.polling_started();
        let (timeline, signal) = (planned(S(60)), StopSignal::default());
        let why = stop_decision(&timeline, Some(window(2)), &tasks, &signal).await;
        assert_eq!((why, start.elapsed()), (StopReason::Idle, S(2)));
        // A task in flight keeps it polling, until the shutdown moment.
        let (tasks, start) = (TaskActivity::default(), Instant::now());
        tasks.polling_started();
        tasks.begin();
        let timeline = planned(S(20));
        let why = stop_decision(&timeline, Some(window(2)), &tasks, &signal).await;
        assert_eq!((why, start.elapsed()), (StopReason::Deadline, S(13)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_settled_worker_stops_after_the_settled_wait() {
        let (tasks, start) = (TaskActivity::default(), Instant::now());
        tasks.polling_started();
        // One task, done at once: nothing is expected after it.
        tasks.begin();
        tasks.end(crate::backend::TaskKind::Workflow, true);
        let exit = IdleExit {
            window: S(2),
            settled: Some(Duration::from_millis(300)),
        };
        let why = stop_decision(&planned(S(60)), Some(exit), &tasks, &StopSignal::default()).await;
        assert_eq!(
            (why, why.name(), start.elapsed()),
            (StopReason::Settled, "settled", Duration::from_millis(300))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sigterm_stops_at_once_even_without_a_deadline() {
        let (tasks, start) = (TaskActivity::default(), Instant::now());
        tasks.polling_started();
        let (trigger, signal) = StopSignal::new();
        let stopping = async {
            tokio::time::sleep(S(4)).await;
            trigger.stop();
        };
        let timeline = Timeline::unbounded();
        let (why, ()) = tokio::join!(stop_decision(&timeline, None, &tasks, &signal), stopping);
        assert_eq!((why, start.elapsed()), (StopReason::Signal, S(4)));
    }
}
