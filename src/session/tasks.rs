//! What one poll session's worker is doing, as the SDK's own interceptors report it
//! ([`interceptors`](super::interceptors)): every workflow activation and every activity
//! execution begins and ends here. It feeds the invocation's summary line (tasks completed
//! and failed, idle time) and the idle exit (no task in flight for a while, or the
//! shorter settled wait); with `LambdaWorkerConfig::longest_activity` set, it also says
//! which activity tasks must be handed back ([`admission`](super::admission)).

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use temporalio_sdk::WorkerOptions;
use tokio::{sync::Notify, time::Instant};

use super::{
    admission::{RETRY_MARGIN, Retry},
    interceptors::{ActivityWatch, WorkflowWatch},
    waits::Waits,
};

/// Task counts of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Workflow tasks (activations) completed.
    pub workflow_completed: u64,
    /// Workflow tasks that failed.
    pub workflow_failed: u64,
    /// Activities that finished successfully.
    pub activity_completed: u64,
    /// Activities that failed (or were cancelled).
    pub activity_failed: u64,
    /// Activity tasks handed back unstarted because they could not finish before the
    /// drain ends (`LambdaWorkerConfig::longest_activity`).
    pub activity_deferred: u64,
}

/// When an activity may still start: one that could not finish by `finish_by` is handed
/// back, to be retried once this worker no longer polls for it.
#[derive(Clone, Copy, Debug)]
struct Admission {
    longest: Duration,
    finish_by: Instant,
    polls_end: PollsEnd,
}

/// When a worker that handed an activity back stops polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollsEnd {
    /// At this moment (the shutdown moment): the retry comes after it.
    At(Instant),
    /// At once: the session stops polling when it hands an activity back (it waits for
    /// [`TaskActivity::handed_back`]), so the retry comes after [`RETRY_MARGIN`].
    OnHandBack,
}

/// The idle exit: leave after `window` with no task in flight, or after the shorter
/// `settled` once nothing this worker ran expects a task soon ([`Waits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdleExit {
    pub(crate) window: Duration,
    pub(crate) settled: Option<Duration>,
}

/// Why the idle exit left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleReason {
    /// The whole window passed with no task in flight.
    Window,
    /// The settled wait passed and nothing expected a task.
    Settled,
}

#[derive(Debug)]
pub(super) struct State {
    in_flight: usize,
    /// Whether any task began: a worker that has had none waits the whole window.
    any_task: bool,
    pub(super) waits: Waits,
    pub(super) workflows: HashSet<String>,
    /// Since when nothing has been in flight (`None` while something is).
    idle_since: Option<Instant>,
    /// Idle time before `idle_since`.
    idle_before: Duration,
    counts: TaskCounts,
    admission: Option<Admission>,
    /// The idle exit waits while the version is being rolled out (`rollout.rs`).
    held: bool,
    /// When the last hold ended: idle time counts for the idle exit from then at the
    /// earliest, so a task routed to the worker as the hold ends still finds it.
    released_at: Option<Instant>,
    /// The workflow types the worker registers (`None`: not known, nothing is checked).
    registered: Option<Vec<String>>,
    /// Workflow types of tasks this worker got and does not register.
    unregistered: BTreeSet<String>,
}

/// The activity of one session's worker. Cheap to clone; the backend registers its
/// interceptors and the worker service reads it (its counts and idle time).
#[derive(Clone, Debug)]
pub struct TaskActivity {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Default for TaskActivity {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                in_flight: 0,
                any_task: false,
                waits: Waits::default(),
                workflows: HashSet::new(),
                idle_since: Some(Instant::now()),
                idle_before: Duration::ZERO,
                counts: TaskCounts::default(),
                admission: None,
                held: false,
                released_at: None,
                registered: None,
                unregistered: BTreeSet::new(),
            })),
            changed: Arc::new(Notify::new()),
        }
    }
}

/// Which kind of task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// A workflow task (an activation of one workflow run).
    Workflow,
    /// An activity execution.
    Activity,
}

impl TaskActivity {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Idle time counts from now (the worker started polling).
    pub(crate) fn polling_started(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 {
            s.idle_since = Some(Instant::now());
            s.idle_before = Duration::ZERO;
        }
    }

    /// A task began.
    pub(crate) fn begin(&self) {
        let mut s = self.lock();
        if let Some(since) = s.idle_since.take() {
            s.idle_before += since.elapsed();
        }
        s.in_flight += 1;
        s.any_task = true;
        drop(s);
        self.changed.notify_waiters();
    }

    /// A task ended.
    pub(crate) fn end(&self, kind: TaskKind, ok: bool) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        let c = &mut s.counts;
        match (kind, ok) {
            (TaskKind::Workflow, true) => c.workflow_completed += 1,
            (TaskKind::Workflow, false) => c.workflow_failed += 1,
            (TaskKind::Activity, true) => c.activity_completed += 1,
            (TaskKind::Activity, false) => c.activity_failed += 1,
        }
        if s.in_flight == 0 {
            s.idle_since = Some(Instant::now());
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// From now on, hand back every activity task that could not run for `longest`
    /// before `finish_by` (the end of the drain), to be retried once this worker stops
    /// polling (`polls_end`). Returns `false`, and hands nothing back, when even an
    /// activity starting now could not finish by then: a later invocation of the same
    /// length could not run it either, so handing it back would only repeat.
    pub(crate) fn admit_activities(
        &self,
        longest: Duration,
        finish_by: Instant,
        polls_end: PollsEnd,
    ) -> bool {
        if Instant::now() + longest > finish_by {
            return false;
        }
        self.lock().admission = Some(Admission {
            longest,
            finish_by,
            polls_end,
        });
        true
    }

    /// `Some(retry delay)` when an activity starting now must be handed back (counted).
    /// `retry` says whether the server would retry this one (see [`retried`]): one it would
    /// not retry runs, as without the setting, since handing it back would fail it.
    pub(super) fn defer_now(&self, retry: Retry) -> Option<Duration> {
        let mut s = self.lock();
        let a = s.admission?;
        let now = Instant::now();
        if now + a.longest <= a.finish_by {
            return None;
        }
        if let Retry::No(why) = retry {
            drop(s);
            tracing::warn!(
                "an activity that may not finish before this invocation's drain ends runs anyway: \
                 {why}, so handing it back would fail it"
            );
            return None;
        }
        s.counts.activity_deferred += 1;
        drop(s);
        self.changed.notify_waiters();
        Some(match a.polls_end {
            PollsEnd::At(t) => t.saturating_duration_since(now) + RETRY_MARGIN,
            PollsEnd::OnHandBack => RETRY_MARGIN,
        })
    }

    /// Resolves once an activity task has been handed back.
    pub(crate) async fn handed_back(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock().counts.activity_deferred > 0 {
                return;
            }
            changed.await;
        }
    }

    /// A task for workflow type `workflow_type` began: one this worker does not register
    /// is said once per type (the SDK fails its task, and the server retries it on and on).
    pub(super) fn workflow_type_seen(&self, workflow_type: &str) {
        let mut s = self.lock();
        let Some(registered) = &s.registered else {
            return;
        };
        if registered.iter().any(|t| t == workflow_type) {
            return;
        }
        let registered = match registered.as_slice() {
            [] => "none".to_owned(),
            names => names.join(", "),
        };
        if s.unregistered.insert(workflow_type.to_owned()) {
            drop(s);
            tracing::error!(
                workflow_type,
                "a workflow task of type {workflow_type}, which this worker does not register \
                 (it registers: {registered}): the SDK fails the task and the server retries it \
                 until the workflow times out. Register {workflow_type} in the configure \
                 callback, or start it on a task queue whose worker does"
            );
        }
    }

    /// The workflow types of tasks this worker got and does not register.
    pub(crate) fn unregistered_types(&self) -> Vec<String> {
        self.lock().unregistered.iter().cloned().collect()
    }

    /// The counts so far.
    pub fn counts(&self) -> TaskCounts {
        self.lock().counts
    }

    /// Time with no task in flight since polling started.
    pub fn idle(&self) -> Duration {
        let s = self.lock();
        s.idle_before + s.idle_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Holds the idle exit: the worker's version may be being rolled out, and a task
    /// routed to it may come with no invocation for it (`rollout.rs`).
    pub(crate) fn hold_idle_exit(&self) {
        self.lock().held = true;
        self.changed.notify_waiters();
    }

    /// Lets the idle exit go on; with `restart`, its idle time counts from now (a task
    /// routed to the worker as the hold ends still finds it).
    pub(crate) fn release_idle_exit(&self, restart: bool) {
        let mut s = self.lock();
        if !s.held {
            return;
        }
        s.held = false;
        if restart {
            s.released_at = Some(Instant::now());
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// When the idle exit leaves as things stand, and why; `None` while a task is in
    /// flight or the exit is held. Never later than `window` after the last task ended
    /// (or the hold ended).
    fn exit_at(&self, exit: IdleExit) -> Option<(Instant, IdleReason)> {
        let s = self.lock();
        if s.held {
            return None;
        }
        let idle_since = s.idle_since?;
        let since = s.released_at.map_or(idle_since, |r| r.max(idle_since));
        let by_window = since + exit.window;
        // The settled wait needs a task first. The Worker Controller invokes for a task
        // that found no poller waiting: an invocation that has not had it (a warmer worker
        // took it, or it waits on another worker's sticky queue) is a poller more while
        // tasks keep coming, and leaving at once would only bring the next invocation.
        let Some(settled) = exit.settled.filter(|_| s.any_task) else {
            return Some((by_window, IdleReason::Window));
        };
        let now = Instant::now();
        let at = match s.waits.expected_until(now, exit.window) {
            None => since + settled,
            Some(until) => (since + settled).max((until + settled).min(by_window)),
        };
        Some(if at < by_window {
            (at, IdleReason::Settled)
        } else {
            (by_window, IdleReason::Window)
        })
    }

    /// Resolves when the idle exit leaves: no task in flight for `exit.window`, or for
    /// `exit.settled` with nothing expected.
    pub(crate) async fn idle_exit(&self, exit: IdleExit) -> IdleReason {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.exit_at(exit) {
                Some((at, why)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => return why,
                    () = &mut changed => {}
                },
                None => changed.await,
            }
        }
    }

    /// Registers the interceptors that report to this on `worker`.
    pub(crate) fn watch(&self, worker: &mut WorkerOptions) {
        let workflows = worker.workflows();
        let mut names: Vec<String> = workflows
            .workflow_definitions()
            .map(|d| d.workflow_type.clone())
            .collect();
        names.sort();
        self.lock().registered = Some(names);
        worker.worker_interceptor(WorkflowWatch(self.clone()));
        worker.activity_inbound_interceptor(ActivityWatch(self.clone()));
    }
}

#[cfg(test)]
mod tests {
    use temporalio_common::{ActivityError, error::ApplicationErrorCategory};
    use temporalio_sdk::interceptors::WorkerInterceptor;

    use super::*;
    use crate::session::admission::{DEFERRED_ERROR_TYPE, deferred};

    #[tokio::test(start_paused = true)]
    async fn idle_time_and_counts_follow_the_tasks() {
        let a = TaskActivity::default();
        a.polling_started();
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.begin();
        a.begin();
        tokio::time::sleep(Duration::from_secs(3)).await;
        a.end(TaskKind::Workflow, true);
        a.end(TaskKind::Activity, false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(a.idle(), Duration::from_secs(3));
        assert_eq!(
            a.counts(),
            TaskCounts {
                workflow_completed: 1,
                workflow_failed: 0,
                activity_completed: 0,
                activity_failed: 1,
                activity_deferred: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_window_waits_for_a_quiet_stretch_after_the_last_task() {
        let a = TaskActivity::default();
        a.polling_started();
        let start = Instant::now();
        let b = a.clone();
        let work = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            b.begin();
            tokio::time::sleep(Duration::from_secs(5)).await;
            b.end(TaskKind::Activity, true);
        });
        let exit = IdleExit {
            window: Duration::from_secs(2),
            settled: None,
        };
        assert_eq!(a.idle_exit(exit).await, IdleReason::Window);
        // Busy from 1 s to 6 s, then 2 s quiet.
        assert_eq!(start.elapsed(), Duration::from_secs(8));
        work.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_settled_exit_leaves_early_only_once_nothing_is_expected() {
        use crate::session::waits::fixtures::{
            activation, complete, completion, resolved, schedule, start, timer,
        };
        use temporalio_common::protos::coresdk::{
            workflow_activation::workflow_activation_job::Variant as Job,
            workflow_commands::workflow_command::Variant as Command,
        };
        const MS: fn(u64) -> Duration = Duration::from_millis;
        let exit = IdleExit {
            window: Duration::from_secs(2),
            settled: Some(MS(200)),
        };
        // One workflow task through the SDK's interceptors: its jobs, then its commands.
        async fn task(watch: &WorkflowWatch, run: &str, jobs: Vec<Job>, commands: Vec<Command>) {
            watch
                .on_workflow_activation(&activation(run, jobs))
                .await
                .unwrap();
            watch
                .on_workflow_activation_completion(&completion(run, commands))
                .await;
        }

        // A worker that has had no task waits the whole window.
        let idle = TaskActivity::default();
        idle.polling_started();
        assert_eq!(idle.idle_exit(exit).await, IdleReason::Window);

        let tasks = TaskActivity::default();
        let watch = WorkflowWatch(tasks.clone());
        tasks.polling_started();
        // A workflow's first task schedules an activity, whose result comes 1 s later and
        // completes the workflow: settled 200 ms after that, not a window after.
        let t0 = Instant::now();
        task(&watch, "r1", vec![start("wf-1", None)], vec![schedule(1)]).await;
        let result = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            task(&watch, "r1", vec![resolved(1)], vec![complete()]).await;
        };
        let (why, ()) = tokio::join!(tasks.idle_exit(exit), result);
        assert_eq!((why, t0.elapsed()), (IdleReason::Settled, MS(1200)));

        // An activity whose result never comes: the whole window.
        let t1 = Instant::now();
        task(&watch, "r2", vec![start("wf-2", None)], vec![schedule(1)]).await;
        assert_eq!(tasks.idle_exit(exit).await, IdleReason::Window);
        assert_eq!(t1.elapsed(), Duration::from_secs(2));

        // A timer due in 500 ms on a fresh worker: waited for (with a second's grace for a
        // late timer), then settled.
        let tasks = TaskActivity::default();
        let watch = WorkflowWatch(tasks.clone());
        tasks.polling_started();
        let t2 = Instant::now();
        task(
            &watch,
            "r3",
            vec![start("wf-3", None)],
            vec![timer(1, MS(500))],
        )
        .await;
        assert_eq!(tasks.idle_exit(exit).await, IdleReason::Settled);
        assert_eq!(t2.elapsed(), MS(1700));
    }

    #[tokio::test(start_paused = true)]
    async fn an_activity_is_handed_back_only_when_it_could_not_finish_in_time() {
        let tasks = TaskActivity::default();
        // No admission set (the default): every activity runs.
        assert_eq!(tasks.defer_now(Retry::Yes), None);
        let now = Instant::now();
        assert!(tasks.admit_activities(
            Duration::from_secs(5),
            now + Duration::from_secs(10),
            PollsEnd::At(now + Duration::from_secs(8)),
        ));
        // 5 s still fit before the drain ends at 10 s.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(tasks.defer_now(Retry::Yes), None);
        assert_eq!(tasks.counts().activity_deferred, 0);
        // At 6 s they no longer do: retried once this worker stopped polling (at 8 s),
        // plus the margin.
        tokio::time::advance(Duration::from_secs(2)).await;
        let retry_in = tasks.defer_now(Retry::Yes).unwrap();
        assert_eq!(retry_in, Duration::from_secs(3));
        assert_eq!(tasks.counts().activity_deferred, 1);
        let ActivityError::Application(failure) = deferred(retry_in) else {
            panic!("not an application failure")
        };
        assert_eq!(failure.next_retry_delay(), Some(retry_in));
        assert!(!failure.is_non_retryable());
        assert_eq!(failure.type_name(), Some(DEFERRED_ERROR_TYPE));
        assert_eq!(failure.category(), ApplicationErrorCategory::Benign);
    }

    #[tokio::test(start_paused = true)]
    async fn an_activity_longer_than_a_whole_invocation_is_never_handed_back() {
        let tasks = TaskActivity::default();
        let now = Instant::now();
        // Not even a fresh invocation of this length could run it: handing it back would
        // repeat in every invocation, so it runs as without the setting.
        assert!(!tasks.admit_activities(
            Duration::from_secs(20),
            now + Duration::from_secs(10),
            PollsEnd::At(now + Duration::from_secs(3)),
        ));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(tasks.defer_now(Retry::Yes), None);
        assert_eq!(tasks.counts().activity_deferred, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_activity_the_server_would_not_retry_runs_instead_of_being_handed_back() {
        let tasks = TaskActivity::default();
        let now = Instant::now();
        assert!(tasks.admit_activities(
            Duration::from_secs(5),
            now + Duration::from_secs(10),
            PollsEnd::At(now + Duration::from_secs(8)),
        ));
        tokio::time::advance(Duration::from_secs(6)).await;
        // Too late to fit, but a hand-back would fail it: it runs, uncounted.
        assert_eq!(tasks.defer_now(Retry::No("test")), None);
        assert_eq!(tasks.counts().activity_deferred, 0);
        assert!(tasks.defer_now(Retry::Yes).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn when_polling_stops_at_the_hand_back_the_retry_comes_at_once() {
        let tasks = TaskActivity::default();
        let now = Instant::now();
        assert!(tasks.admit_activities(
            Duration::from_secs(5),
            now + Duration::from_secs(10),
            PollsEnd::OnHandBack,
        ));
        let waiting = tokio::spawn({
            let tasks = tasks.clone();
            async move { tasks.handed_back().await }
        });
        tokio::time::advance(Duration::from_secs(6)).await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing handed back yet");
        assert_eq!(tasks.defer_now(Retry::Yes), Some(RETRY_MARGIN));
        tokio::time::timeout(Duration::from_millis(1), waiting)
            .await
            .expect("the session learns of the hand-back")
            .unwrap();
    }
}
