//! What the workflows a worker ran are waiting on, read from their activations and
//! completions: the settled idle exit (`LambdaWorkerConfig::idle_shutdown_settled`) leaves
//! early only when none of them expects a task soon and no stream of tasks the worker did
//! not ask for (new workflows, other workers' workflows' activities) is arriving. The rule is explained once, in `docs/operations.md` ("Idle exit").
//!
//! A task is expected soon after a workflow asked for one: an activity (local or not), a
//! child workflow, a Nexus operation, a signal or cancellation of another workflow, and a
//! timer due within the idle window (until a second after it is due). A workflow waiting on anything else (a signal,
//! a long timer) expects nothing this worker can foresee. Getting this wrong one way only
//! costs billed time: an expectation never resolved keeps the worker for the whole idle
//! window, as without the settled exit.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use temporalio_common::protos::coresdk::{
    workflow_activation::{
        WorkflowActivation, resolve_child_workflow_execution_start, resolve_nexus_operation_start,
        workflow_activation_job::Variant as Job,
    },
    workflow_commands::workflow_command::Variant as Command,
    workflow_completion::{WorkflowActivationCompletion, workflow_activation_completion::Status},
};
use tokio::time::Instant;

/// How late a server may fire a timer: the dev server fired a 0.5 s timer 1.0 s after it
/// started (`benches/idle_exit`, `timers`). A worker that left at the due time plus the
/// settled wait met the timer's task as it shut down, and that task waited 10 s for its
/// timeout.
const TIMER_LATE: Duration = Duration::from_secs(1);

/// What a workflow asked for that resolves with a new task, by its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ask {
    /// An activity or local activity (they share one sequence).
    Activity(u32),
    Child(u32),
    Nexus(u32),
    SignalExternal(u32),
    CancelExternal(u32),
}

/// One workflow run's expectations.
#[derive(Debug, Default)]
struct Run {
    asks: HashSet<Ask>,
    /// Timers by sequence number, with when they fire.
    timers: HashMap<u32, Instant>,
}

/// What the workflows of one worker are waiting on, and when new ones arrived.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    runs: HashMap<String, Run>,
    /// The workflow ids of the runs above, so a child of one of them is not counted as a
    /// new arrival.
    workflow_ids: HashSet<String>,
    /// When tasks this worker did not ask for reached it, newest last: new workflows (not
    /// children of ours) and activities of workflows it did not run.
    arrivals: VecDeque<Instant>,
}

impl Waits {
    /// Reads an activation: a new workflow's arrival, what resolved, an eviction.
    pub(crate) fn activation(&mut self, activation: &WorkflowActivation, now: Instant) {
        for job in activation.jobs.iter().filter_map(|j| j.variant.as_ref()) {
            match job {
                Job::InitializeWorkflow(init) => {
                    let ours = init
                        .parent_workflow_info
                        .as_ref()
                        .is_some_and(|p| self.workflow_ids.contains(&p.workflow_id));
                    if !ours {
                        self.arrived(now);
                    }
                    self.workflow_ids.insert(init.workflow_id.clone());
                    self.runs.entry(activation.run_id.clone()).or_default();
                }
                Job::RemoveFromCache(_) => {
                    self.runs.remove(&activation.run_id);
                }
                job => {
                    if let Some(run) = self.runs.get_mut(&activation.run_id) {
                        run.resolve(job);
                    }
                }
            }
        }
    }

    /// An activity starts: an arrival unless it is one of ours (a local activity, or one
    /// a workflow this worker ran asked for).
    pub(crate) fn activity(&mut self, workflow_run_id: Option<&str>, is_local: bool, now: Instant) {
        let ours = is_local || workflow_run_id.is_some_and(|run| self.runs.contains_key(run));
        if !ours {
            self.arrived(now);
        }
    }

    /// A task this worker did not ask for reached it.
    fn arrived(&mut self, now: Instant) {
        self.arrivals.push_back(now);
        // Two are enough to tell a stream from a single workflow.
        if self.arrivals.len() > 2 {
            self.arrivals.pop_front();
        }
    }

    /// Reads a completion: what the workflow asked for, or that it ended.
    pub(crate) fn completion(&mut self, completion: &WorkflowActivationCompletion, now: Instant) {
        let Some(Status::Successful(success)) = &completion.status else {
            return;
        };
        // A run is known from its first activation (an eviction's completion is not).
        let Some(run) = self.runs.get_mut(&completion.run_id) else {
            return;
        };
        for command in success.commands.iter().filter_map(|c| c.variant.as_ref()) {
            let ask = match command {
                Command::ScheduleActivity(c) => Ask::Activity(c.seq),
                Command::ScheduleLocalActivity(c) => Ask::Activity(c.seq),
                Command::StartChildWorkflowExecution(c) => Ask::Child(c.seq),
                Command::ScheduleNexusOperation(c) => Ask::Nexus(c.seq),
                Command::SignalExternalWorkflowExecution(c) => Ask::SignalExternal(c.seq),
                Command::RequestCancelExternalWorkflowExecution(c) => Ask::CancelExternal(c.seq),
                Command::StartTimer(t) => {
                    let after = t
                        .start_to_fire_timeout
                        .as_ref()
                        .map_or(Duration::ZERO, |d| {
                            Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
                        });
                    run.timers.insert(t.seq, now + after);
                    continue;
                }
                Command::CancelTimer(t) => {
                    run.timers.remove(&t.seq);
                    continue;
                }
                Command::CompleteWorkflowExecution(_)
                | Command::FailWorkflowExecution(_)
                | Command::CancelWorkflowExecution(_)
                | Command::ContinueAsNewWorkflowExecution(_) => {
                    self.runs.remove(&completion.run_id);
                    return;
                }
                _ => continue,
            };
            run.asks.insert(ask);
        }
    }

    /// Until when a task is expected, seen at `now` with an idle window of `window`: `None`
    /// when nothing is. A timer counts when it is due by `now + window`, until
    /// [`TIMER_LATE`] after it is due; a stream of
    /// arrivals (new workflows and other workers' activities) counts for a window.
    pub(crate) fn expected_until(&self, now: Instant, window: Duration) -> Option<Instant> {
        let horizon = now + window;
        if self.runs.values().any(|r| !r.asks.is_empty()) {
            return Some(horizon);
        }
        let timer = self
            .runs
            .values()
            .flat_map(|r| r.timers.values().copied())
            .filter(|&at| at <= horizon)
            .max()
            .map(|at| at + TIMER_LATE);
        timer.max(self.stream_until(now, window))
    }

    /// A stream: two tasks this worker did not ask for within the window. While it lasts
    /// (until a window after the older of the two), the worker waits the whole window, as
    /// without the settled exit: measured on a steady stream (`benches/idle_exit`,
    /// `even300`), a worker that leaves between arrivals costs the stream's latency more
    /// than it saves, as the next arrival finds one poller fewer.
    fn stream_until(&self, now: Instant, window: Duration) -> Option<Instant> {
        let older = (self.arrivals.len() == 2).then(|| self.arrivals[0])?;
        let until = older + window;
        (until > now).then_some(until)
    }
}

impl Run {
    /// A job that resolves what the workflow asked for.
    fn resolve(&mut self, job: &Job) {
        use resolve_child_workflow_execution_start::Status as ChildStart;
        use resolve_nexus_operation_start::Status as NexusStart;
        let done = match job {
            Job::ResolveActivity(r) => Ask::Activity(r.seq),
            Job::ResolveChildWorkflowExecution(r) => Ask::Child(r.seq),
            Job::ResolveChildWorkflowExecutionStart(r)
                if !matches!(r.status, Some(ChildStart::Succeeded(_))) =>
            {
                Ask::Child(r.seq)
            }
            Job::ResolveNexusOperation(r) => Ask::Nexus(r.seq),
            Job::ResolveNexusOperationStart(r)
                if matches!(r.status, Some(NexusStart::Failed(_))) =>
            {
                Ask::Nexus(r.seq)
            }
            Job::ResolveSignalExternalWorkflow(r) => Ask::SignalExternal(r.seq),
            Job::ResolveRequestCancelExternalWorkflow(r) => Ask::CancelExternal(r.seq),
            Job::FireTimer(t) => {
                self.timers.remove(&t.seq);
                return;
            }
            _ => return,
        };
        self.asks.remove(&done);
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Activations and completions as the SDK hands them to the interceptors.
    use temporalio_common::protos::coresdk::{
        common::NamespacedWorkflowExecution,
        workflow_activation::{InitializeWorkflow, ResolveActivity, WorkflowActivationJob},
        workflow_commands::{
            CompleteWorkflowExecution, ScheduleActivity, StartTimer, WorkflowCommand,
        },
        workflow_completion::Success,
    };

    use super::*;

    pub(crate) fn activation(run: &str, jobs: Vec<Job>) -> WorkflowActivation {
        WorkflowActivation {
            run_id: run.into(),
            jobs: jobs
                .into_iter()
                .map(|j| WorkflowActivationJob { variant: Some(j) })
                .collect(),
            ..Default::default()
        }
    }

    pub(crate) fn start(workflow_id: &str, parent: Option<&str>) -> Job {
        Job::InitializeWorkflow(InitializeWorkflow {
            workflow_id: workflow_id.into(),
            parent_workflow_info: parent.map(|p| NamespacedWorkflowExecution {
                workflow_id: p.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    pub(crate) fn completion(run: &str, commands: Vec<Command>) -> WorkflowActivationCompletion {
        WorkflowActivationCompletion {
            run_id: run.into(),
            status: Some(Status::Successful(Success {
                commands: commands
                    .into_iter()
                    .map(|c| WorkflowCommand {
                        variant: Some(c),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    pub(crate) fn timer(seq: u32, after: Duration) -> Command {
        Command::StartTimer(StartTimer {
            seq,
            start_to_fire_timeout: Some(after.try_into().unwrap()),
        })
    }

    pub(crate) fn complete() -> Command {
        Command::CompleteWorkflowExecution(CompleteWorkflowExecution::default())
    }

    pub(crate) fn schedule(seq: u32) -> Command {
        Command::ScheduleActivity(ScheduleActivity {
            seq,
            ..Default::default()
        })
    }

    pub(crate) fn resolved(seq: u32) -> Job {
        Job::ResolveActivity(ResolveActivity {
            seq,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use temporalio_common::protos::coresdk::{
        workflow_activation::{
            FireTimer, RemoveFromCache, ResolveChildWorkflowExecution,
            ResolveChildWorkflowExecutionStart, ResolveChildWorkflowExecutionStartFailure,
            ResolveChildWorkflowExecutionStartSuccess,
        },
        workflow_commands::{ScheduleLocalActivity, StartChildWorkflowExecution},
    };

    use super::{fixtures::*, *};

    const WINDOW: Duration = Duration::from_secs(2);

    #[tokio::test(start_paused = true)]
    async fn an_activity_is_expected_from_its_scheduling_until_its_result() {
        let (mut w, now) = (Waits::default(), Instant::now());
        w.activation(&activation("r1", vec![start("wf-1", None)]), now);
        assert_eq!(w.expected_until(now, WINDOW), None, "a new workflow alone");
        w.completion(&completion("r1", vec![schedule(1)]), now);
        assert_eq!(w.expected_until(now, WINDOW), Some(now + WINDOW));
        w.activation(&activation("r1", vec![resolved(1)]), now);
        assert_eq!(w.expected_until(now, WINDOW), None);
        w.completion(&completion("r1", vec![complete()]), now);
        assert!(w.runs.is_empty(), "a completed workflow is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn two_activities_at_once_are_expected_until_both_resolve() {
        let (mut w, now) = (Waits::default(), Instant::now());
        w.activation(&activation("r1", vec![start("wf-1", None)]), now);
        let local = Command::ScheduleLocalActivity(ScheduleLocalActivity {
            seq: 2,
            ..Default::default()
        });
        w.completion(&completion("r1", vec![schedule(1), local]), now);
        w.activation(&activation("r1", vec![resolved(1)]), now);
        w.completion(&completion("r1", vec![]), now);
        assert_eq!(w.expected_until(now, WINDOW), Some(now + WINDOW));
        w.activation(&activation("r1", vec![resolved(2)]), now);
        assert_eq!(w.expected_until(now, WINDOW), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_is_waited_for_only_when_it_fires_within_the_window() {
        let (mut w, first) = (Waits::default(), Instant::now());
        w.activation(&activation("r1", vec![start("wf-1", None)]), first);
        w.completion(
            &completion("r1", vec![timer(1, Duration::from_secs(10))]),
            first,
        );
        assert_eq!(
            w.expected_until(first, WINDOW),
            None,
            "fires after the window"
        );
        // A second workflow, more than a window later: no stream.
        let now = first + Duration::from_secs(3);
        w.activation(&activation("r2", vec![start("wf-2", None)]), now);
        w.completion(
            &completion("r2", vec![timer(1, Duration::from_millis(500))]),
            now,
        );
        let fires = now + Duration::from_millis(500);
        assert_eq!(w.expected_until(now, WINDOW), Some(fires + TIMER_LATE));
        w.activation(
            &activation("r2", vec![Job::FireTimer(FireTimer { seq: 1 })]),
            fires,
        );
        assert_eq!(w.expected_until(fires, WINDOW), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_workflow_is_expected_until_its_result_and_is_no_arrival() {
        let (mut w, now) = (Waits::default(), Instant::now());
        w.activation(&activation("p", vec![start("parent", None)]), now);
        let child = |seq| {
            Command::StartChildWorkflowExecution(StartChildWorkflowExecution {
                seq,
                ..Default::default()
            })
        };
        w.completion(&completion("p", vec![child(1), child(2)]), now);
        // The child's own first task on this worker: not a new workflow arriving.
        w.activation(
            &activation("c1", vec![start("child-1", Some("parent"))]),
            now,
        );
        assert_eq!(w.arrivals.len(), 1);
        w.completion(&completion("c1", vec![complete()]), now);
        let started = Job::ResolveChildWorkflowExecutionStart(ResolveChildWorkflowExecutionStart {
            seq: 1,
            status: Some(resolve_child_workflow_execution_start::Status::Succeeded(
                ResolveChildWorkflowExecutionStartSuccess::default(),
            )),
        });
        let failed = Job::ResolveChildWorkflowExecutionStart(ResolveChildWorkflowExecutionStart {
            seq: 2,
            status: Some(resolve_child_workflow_execution_start::Status::Failed(
                ResolveChildWorkflowExecutionStartFailure::default(),
            )),
        });
        w.activation(&activation("p", vec![started, failed]), now);
        assert_eq!(
            w.expected_until(now, WINDOW),
            Some(now + WINDOW),
            "child 1 runs"
        );
        let result = Job::ResolveChildWorkflowExecution(ResolveChildWorkflowExecution {
            seq: 1,
            ..Default::default()
        });
        w.activation(&activation("p", vec![result]), now);
        assert_eq!(w.expected_until(now, WINDOW), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_of_arrivals_is_expected_to_go_on_for_a_window() {
        let (mut w, first) = (Waits::default(), Instant::now());
        let ms = |n| first + Duration::from_millis(n);
        // A new workflow, then activities of workflows other workers ran.
        w.activation(&activation("r0", vec![start("wf-0", None)]), ms(0));
        assert_eq!(
            w.expected_until(ms(0), WINDOW),
            None,
            "one arrival is no stream"
        );
        w.activity(Some("elsewhere-1"), false, ms(500));
        w.activity(None, false, ms(900));
        // The last two within the window: a window after the older one, 500 ms.
        assert_eq!(w.expected_until(ms(900), WINDOW), Some(ms(2500)));
        assert_eq!(w.expected_until(ms(2500), WINDOW), None);
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_workflow_of_ours_asked_for_is_no_arrival() {
        let (mut w, now) = (Waits::default(), Instant::now());
        w.activation(&activation("r1", vec![start("wf-1", None)]), now);
        w.completion(&completion("r1", vec![schedule(1)]), now);
        let later = now + Duration::from_millis(30);
        w.activity(Some("r1"), false, later);
        w.activity(Some("a-run-elsewhere"), true, later);
        assert_eq!(w.arrivals.len(), 1, "only the workflow's own arrival");
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_workflow_expects_nothing_from_this_worker() {
        let (mut w, now) = (Waits::default(), Instant::now());
        w.activation(&activation("r1", vec![start("wf-1", None)]), now);
        w.completion(&completion("r1", vec![schedule(1)]), now);
        let evict = Job::RemoveFromCache(RemoveFromCache::default());
        w.activation(&activation("r1", vec![evict]), now);
        w.completion(&completion("r1", vec![]), now);
        assert_eq!(w.expected_until(now, WINDOW), None);
        assert!(
            w.runs.is_empty(),
            "the eviction's completion does not bring it back"
        );
    }
}
