//! What the workflows a worker ran are waiting on, read from their activations and
//! completions: the settled idle exit (`LambdaWorkerConfig::idle_shutdown_settled`) leaves
//! early only when none of them expects a task soon and no stream of new workflows is
//! arriving. The rule is explained once, in `docs/operations.md` ("Idle exit").
//!
//! A task is expected soon after a workflow asked for one: an activity (local or not), a
//! child workflow, a Nexus operation, a signal or cancellation of another workflow, and a
//! timer that fires within the idle window. A workflow waiting on anything else (a signal,
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

/// How many of the newest arrivals the stream's mean gap is taken over.
const ARRIVALS_KEPT: usize = 8;
/// How many mean gaps after the newest arrival a stream is expected to bring another.
const STREAM_GAPS: u32 = 3;

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
    /// When new workflows (not children of ours) reached this worker, newest last.
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
                        self.arrivals.push_back(now);
                        if self.arrivals.len() > ARRIVALS_KEPT {
                            self.arrivals.pop_front();
                        }
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
    /// when nothing is. A timer counts only when it fires by `now + window`; a stream of
    /// new workflows (two or more, spread over time) counts for a few of its gaps.
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
            .max();
        timer.max(self.stream_until(now, window))
    }

    /// While new workflows keep arriving: the next is expected within the mean gap between
    /// the last few, so the stream is taken to go on for [`STREAM_GAPS`] of those gaps
    /// after the newest. A backlog drained at once has gaps of milliseconds: it ends at once;
    /// arrivals further apart than `window` are no stream worth waiting for.
    fn stream_until(&self, now: Instant, window: Duration) -> Option<Instant> {
        let (first, last) = (self.arrivals.front()?, self.arrivals.back()?);
        let gaps = u32::try_from(self.arrivals.len() - 1)
            .ok()
            .filter(|&n| n > 0)?;
        let gap = (*last - *first) / gaps;
        let until = *last + gap * STREAM_GAPS;
        (gap <= window && until > now).then_some(until)
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
        assert_eq!(w.expected_until(now, WINDOW), Some(fires));
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
    async fn a_stream_of_new_workflows_is_expected_to_go_on_for_three_of_its_gaps() {
        let (mut w, first) = (Waits::default(), Instant::now());
        let ms = |n| first + Duration::from_millis(n);
        for (i, at) in [0, 200, 400].into_iter().enumerate() {
            w.activation(
                &activation(&format!("r{i}"), vec![start(&format!("wf-{i}"), None)]),
                ms(at),
            );
        }
        // A gap of 200 ms: the next is expected by 400 + 3 × 200 ms.
        assert_eq!(w.expected_until(ms(400), WINDOW), Some(ms(1000)));
        assert_eq!(w.expected_until(ms(1000), WINDOW), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_taken_at_once_is_no_stream() {
        let (mut w, first) = (Waits::default(), Instant::now());
        for i in 0..5 {
            let at = first + Duration::from_millis(i);
            w.activation(
                &activation(&format!("r{i}"), vec![start(&format!("wf-{i}"), None)]),
                at,
            );
        }
        assert_eq!(
            w.expected_until(first + Duration::from_millis(20), WINDOW),
            None
        );
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
