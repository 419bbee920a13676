//! What one poll session's worker is doing, seen through the SDK's own interceptors:
//! every workflow activation and every activity execution begins and ends here. It feeds
//! the invocation's summary line (tasks completed and failed, idle time) and the idle
//! exit (no task in flight for a while).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::BoxFuture;
use temporalio_common::protos::coresdk::{
    workflow_activation::WorkflowActivation, workflow_completion::WorkflowActivationCompletion,
};
use temporalio_sdk::{
    WorkerOptions,
    interceptors::{
        ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityResult, Next,
        WorkerInterceptor,
    },
};
use tokio::{sync::Notify, time::Instant};

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
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    workflows: HashSet<String>,
    /// Since when nothing has been in flight (`None` while something is).
    idle_since: Option<Instant>,
    /// Idle time before `idle_since`.
    idle_before: Duration,
    counts: TaskCounts,
}

/// The activity of one session's worker. Cheap to clone; the backend registers its
/// interceptors ([`TaskActivity::watch`]) and the worker service reads it.
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
                workflows: HashSet::new(),
                idle_since: Some(Instant::now()),
                idle_before: Duration::ZERO,
                counts: TaskCounts::default(),
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
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Idle time counts from now (the worker started polling).
    pub fn polling_started(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 {
            s.idle_since = Some(Instant::now());
            s.idle_before = Duration::ZERO;
        }
    }

    /// A task began.
    pub fn begin(&self) {
        let mut s = self.lock();
        if let Some(since) = s.idle_since.take() {
            s.idle_before += since.elapsed();
        }
        s.in_flight += 1;
        drop(s);
        self.changed.notify_waiters();
    }

    /// A task ended.
    pub fn end(&self, kind: TaskKind, ok: bool) {
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

    /// The counts so far.
    pub fn counts(&self) -> TaskCounts {
        self.lock().counts
    }

    /// Time with no task in flight since polling started.
    pub fn idle(&self) -> Duration {
        let s = self.lock();
        s.idle_before + s.idle_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Resolves once no task has been in flight for `quiet`.
    pub async fn quiet_for(&self, quiet: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let idle_since = self.lock().idle_since;
            match idle_since {
                Some(since) => tokio::select! {
                    () = tokio::time::sleep_until(since + quiet) => return,
                    () = &mut changed => {}
                },
                None => changed.await,
            }
        }
    }

    /// Registers the interceptors that report to this on `worker`.
    pub fn watch(&self, worker: &mut WorkerOptions) {
        worker.worker_interceptor(WorkflowWatch(self.clone()));
        worker.activity_inbound_interceptor(ActivityWatch(self.clone()));
    }
}

struct WorkflowWatch(TaskActivity);

#[async_trait::async_trait(?Send)]
impl WorkerInterceptor for WorkflowWatch {
    async fn on_workflow_activation(
        &self,
        activation: &WorkflowActivation,
    ) -> Result<(), anyhow::Error> {
        if !activation.is_only_eviction()
            && self.0.lock().workflows.insert(activation.run_id.clone())
        {
            self.0.begin();
        }
        Ok(())
    }

    async fn on_workflow_activation_completion(&self, completion: &WorkflowActivationCompletion) {
        if self.0.lock().workflows.remove(&completion.run_id) {
            let ok = completion.status.as_ref().is_some_and(|s| s.is_success());
            self.0.end(TaskKind::Workflow, ok);
        }
    }
}

struct ActivityWatch(TaskActivity);

impl ActivityInboundInterceptor for ActivityWatch {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, BoxFuture<'a, ExecuteActivityResult>>,
    ) -> BoxFuture<'a, ExecuteActivityResult> {
        self.0.begin();
        let run = next.run(input);
        Box::pin(async move {
            // Ends the task even when the future is dropped (a cancelled activity).
            struct Ending<'b>(&'b TaskActivity, bool);
            impl Drop for Ending<'_> {
                fn drop(&mut self) {
                    self.0.end(TaskKind::Activity, self.1);
                }
            }
            let mut ending = Ending(&self.0, false);
            let result = run.await;
            ending.1 = result.is_ok();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                activity_failed: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_for_waits_for_a_quiet_stretch_after_the_last_task() {
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
        a.quiet_for(Duration::from_secs(2)).await;
        // Busy from 1 s to 6 s, then 2 s quiet.
        assert_eq!(start.elapsed(), Duration::from_secs(8));
        work.await.unwrap();
    }
}
