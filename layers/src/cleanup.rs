//! What runs after the worker stopped: the shutdown hooks, in the order added, then the
//! configure teardown. One runner for both, run by [`ConfigureLayer`](crate::ConfigureLayer)
//! (configure opened what they close) whether a worker started or not.
//!
//! Each step runs guarded: an error or a panic is logged and the next step still runs.
//! Each has a moment on the [`Timeline`](crate::Timeline) it must end by — the hooks
//! `cleanup_by`, the teardown `answer_by` — and a step still running then is abandoned
//! with a log line, as are the hooks after it, so the answer still beats the deadline.

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, future::BoxFuture};

use crate::{BoxError, Moment, ShutdownHook, error::panic_message};

/// The steps to run after the worker stopped, each with the moment it must end by.
#[derive(Default)]
pub(crate) struct Cleanup {
    steps: Vec<CleanupStep>,
}

struct CleanupStep {
    /// What the step is, for the log: `shutdown hook 1`, `configure teardown`.
    what: String,
    by: Moment,
    run: ShutdownHook,
}

impl Cleanup {
    /// The shutdown hooks, in order, each ending by `by`.
    pub(crate) fn hooks(mut self, hooks: Vec<ShutdownHook>, by: Moment) -> Self {
        for (index, run) in hooks.into_iter().enumerate() {
            let what = format!("shutdown hook {index}");
            self.steps.push(CleanupStep { what, by, run });
        }
        self
    }

    /// Then the configure teardown, ending by `by`.
    pub(crate) fn then(mut self, teardown: Option<BoxFuture<'static, ()>>, by: Moment) -> Self {
        if let Some(teardown) = teardown {
            self.steps.push(CleanupStep {
                what: "configure teardown".into(),
                by,
                run: Box::new(move || Box::pin(teardown.map(Ok::<(), BoxError>))),
            });
        }
        self
    }

    /// Runs every step in order. A step that overruns its moment is abandoned, and so is
    /// every step after it that shares the moment (they would have no time either).
    pub(crate) async fn run(self) {
        let mut overran: Option<Moment> = None;
        let total = self.steps.len();
        for (index, step) in self.steps.into_iter().enumerate() {
            if overran == Some(step.by) {
                continue;
            }
            let guarded = AssertUnwindSafe(async move { (step.run)().await }).catch_unwind();
            match step.by.cut(guarded).await {
                None => {
                    tracing::error!(
                        step = %step.what,
                        left = total - index - 1,
                        "{} overran the time left before the answer is due; abandoned it",
                        step.what
                    );
                    overran = Some(step.by);
                }
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::error!(step = %step.what, error = %e, "{} failed", step.what)
                }
                Some(Err(p)) => tracing::error!(
                    step = %step.what,
                    panic = %panic_message(p.as_ref()),
                    "{} panicked",
                    step.what
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use tokio::time::Instant;

    use super::*;

    type Log = Arc<Mutex<Vec<String>>>;

    fn hook(log: &Log, name: &'static str, behaviour: &'static str) -> ShutdownHook {
        let log = log.clone();
        Box::new(move || {
            Box::pin(async move {
                log.lock().unwrap().push(name.to_owned());
                match behaviour {
                    "fails" => Err(BoxError::from("no")),
                    "panics" => panic!("hook panicked"),
                    "hangs" => std::future::pending().await,
                    _ => Ok(()),
                }
            })
        })
    }

    #[tokio::test]
    async fn every_step_runs_in_order_after_an_error_or_a_panic() {
        let log = Log::default();
        let teardown_log = log.clone();
        Cleanup::default()
            .hooks(
                vec![
                    hook(&log, "a", "fails"),
                    hook(&log, "b", "panics"),
                    hook(&log, "c", "ok"),
                ],
                Moment::NEVER,
            )
            .then(
                Some(Box::pin(async move {
                    teardown_log.lock().unwrap().push("teardown".into())
                })),
                Moment::NEVER,
            )
            .run()
            .await;
        assert_eq!(*log.lock().unwrap(), ["a", "b", "c", "teardown"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrunning_hook_skips_the_later_hooks_but_not_the_teardown() {
        let log = Log::default();
        let teardown_log = log.clone();
        let start = Instant::now();
        let hooks_by = Moment::at(start + Duration::from_secs(2));
        let answer_by = Moment::at(start + Duration::from_secs(3));
        Cleanup::default()
            .hooks(
                vec![hook(&log, "a", "hangs"), hook(&log, "b", "ok")],
                hooks_by,
            )
            .then(
                Some(Box::pin(async move {
                    teardown_log.lock().unwrap().push("teardown".into())
                })),
                answer_by,
            )
            .run()
            .await;
        assert_eq!(*log.lock().unwrap(), ["a", "teardown"]);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
