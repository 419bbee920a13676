//! Pre-fills the worker options with the Lambda defaults.
//!
//! Runs *before* the configure callback, so whatever the callback sets wins and the
//! defaults apply only where the user set nothing.
//!
//! | setting | Lambda default |
//! | --- | --- |
//! | max concurrent activities | 2 |
//! | max concurrent workflow tasks | 10 |
//! | max concurrent local activities | 2 |
//! | max concurrent nexus tasks | 5 |
//! | workflow task poller behaviour | `SimpleMaximum(2)` |
//! | activity task poller behaviour | `SimpleMaximum(1)` |
//! | nexus task poller behaviour | `SimpleMaximum(1)` |
//! | graceful shutdown timeout | 5 s |
//! | max cached workflows | 30 |
//! | sticky queue schedule-to-start timeout | 5 s |
//! | shutdown deadline buffer | graceful shutdown timeout + 2 s |
//!
//! The sticky timeout (the SDK's default is 10 s) is how long a workflow's next task may
//! wait to be started once it was scheduled for the worker that ran its last one. Each
//! invocation's worker stops, and the wire unloads its sticky queue as it does, so the next
//! task of its workflows goes to the workflow's own task queue at once; but the server keeps
//! the sticky timeout as that task's deadline there, and a workflow resumed by a later
//! invocation (a timer, a signal, an activity run elsewhere) gets a workflow task timeout in
//! its history, and a second task, whenever that invocation polls more than this after the
//! task was scheduled: the Worker Controller's signal, Lambda's queue and a cold start. 5 s
//! covers them with room, and still bounds the wait of a task queued on the sticky queue of
//! a worker that stopped without unloading it (a process killed). `cargo bench --bench
//! boundary_load` measures the boundary ([the measurements](https://github.com/temporal-lambda-worker/temporal-lambda-worker/blob/main/benches/RESULTS.md)).
//!
//! ```
//! use temporal_lambda_worker_layers::{Invocation, LambdaDefaultsLayer, BoxError};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let mut svc = ServiceBuilder::new()
//!     .layer(LambdaDefaultsLayer::new())
//!     .service(service_fn(|inv: Invocation| async move {
//!         Ok::<_, BoxError>(inv.config.worker.max_cached_workflows)
//!     }));
//! let inv = Invocation::new(serde_json::Value::Null, Default::default());
//! assert_eq!(svc.ready().await?.call(inv).await?, 30);
//! # Ok(()) }
//! ```

use std::time::Duration;

use temporalio_sdk::runtime::{
    PollerBehavior,
    worker_tuner::{FixedSizeSlotSupplier, TunerHolder},
};

use crate::{
    Invocation, InvocationStep, LambdaWorkerError, Step, StepLayer, invocation::Lifecycle,
};

/// The Lambda default numbers (the table in the module docs).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LambdaDefaultsStep {
    /// Max concurrent activities.
    pub max_concurrent_activities: usize,
    /// Max concurrent workflow tasks.
    pub max_concurrent_workflow_tasks: usize,
    /// Max concurrent local activities.
    pub max_concurrent_local_activities: usize,
    /// Max concurrent nexus tasks.
    pub max_concurrent_nexus_tasks: usize,
    /// Workflow task poller behaviour.
    pub workflow_task_poller_behavior: PollerBehavior,
    /// Activity task poller behaviour.
    pub activity_task_poller_behavior: PollerBehavior,
    /// Nexus task poller behaviour.
    pub nexus_task_poller_behavior: PollerBehavior,
    /// Graceful shutdown timeout.
    pub graceful_shutdown_timeout: Duration,
    /// Max cached workflows.
    pub max_cached_workflows: usize,
    /// How long a workflow task may wait on this worker's sticky queue before the server
    /// hands it to the normal task queue.
    pub sticky_queue_schedule_to_start_timeout: Duration,
}

impl Default for LambdaDefaultsStep {
    fn default() -> Self {
        Self {
            max_concurrent_activities: 2,
            max_concurrent_workflow_tasks: 10,
            max_concurrent_local_activities: 2,
            max_concurrent_nexus_tasks: 5,
            workflow_task_poller_behavior: PollerBehavior::SimpleMaximum(2),
            activity_task_poller_behavior: PollerBehavior::SimpleMaximum(1),
            nexus_task_poller_behavior: PollerBehavior::SimpleMaximum(1),
            graceful_shutdown_timeout: Duration::from_secs(5),
            max_cached_workflows: 30,
            sticky_queue_schedule_to_start_timeout: Duration::from_secs(5),
        }
    }
}

impl InvocationStep for LambdaDefaultsStep {
    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        inv.enter(Lifecycle::LambdaDefaults)?;
        let w = &mut inv.config.worker;
        w.tuner = TunerHolder::builder()
            .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(
                self.max_concurrent_workflow_tasks,
            ))
            .activity_task_slot_supplier(FixedSizeSlotSupplier::new(self.max_concurrent_activities))
            .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(
                self.max_concurrent_local_activities,
            ))
            .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(self.max_concurrent_nexus_tasks))
            .build()
            .into();
        w.workflow_task_poller_behavior = Some(self.workflow_task_poller_behavior);
        w.activity_task_poller_behavior = Some(self.activity_task_poller_behavior);
        w.nexus_task_poller_behavior = Some(self.nexus_task_poller_behavior);
        w.graceful_shutdown_period = Some(self.graceful_shutdown_timeout);
        w.max_cached_workflows = self.max_cached_workflows;
        w.sticky_queue_schedule_to_start_timeout = self.sticky_queue_schedule_to_start_timeout;
        Ok(())
    }
}

/// Layer that pre-fills the Lambda defaults. Place it before [`ConfigureLayer`](crate::ConfigureLayer).
pub type LambdaDefaultsLayer = StepLayer<LambdaDefaultsStep>;

/// The service [`LambdaDefaultsLayer`] makes: [`LambdaDefaultsStep`] applied, then the inner service.
pub type LambdaDefaults<S> = Step<S, LambdaDefaultsStep>;

impl StepLayer<LambdaDefaultsStep> {
    /// The layer with the standard Lambda defaults.
    pub fn new() -> Self {
        StepLayer::from_step(LambdaDefaultsStep::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_through;
    use temporalio_sdk::runtime::worker_tuner::{SlotSupplier, WorkerTuner};

    fn slots(s: &SlotSupplier) -> usize {
        match s {
            SlotSupplier::FixedSize(f) => f.num_slots,
            other => panic!("expected fixed-size slots, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_default_of_the_table_is_applied() {
        let inv = run_through(
            LambdaDefaultsLayer::new(),
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap();
        let w = &inv.config.worker;
        let WorkerTuner::TunerHolder(t) = &w.tuner else {
            panic!("expected a TunerHolder")
        };
        assert_eq!(slots(&t.activity_task_slot_supplier), 2);
        assert_eq!(slots(&t.workflow_task_slot_supplier), 10);
        assert_eq!(slots(&t.local_activity_task_slot_supplier), 2);
        assert_eq!(slots(&t.nexus_task_slot_supplier), 5);
        assert_eq!(
            w.workflow_task_poller_behavior,
            Some(PollerBehavior::SimpleMaximum(2))
        );
        assert_eq!(
            w.activity_task_poller_behavior,
            Some(PollerBehavior::SimpleMaximum(1))
        );
        assert_eq!(
            w.nexus_task_poller_behavior,
            Some(PollerBehavior::SimpleMaximum(1))
        );
        assert_eq!(w.graceful_shutdown_period, Some(Duration::from_secs(5)));
        assert_eq!(w.max_cached_workflows, 30);
        assert_eq!(
            w.sticky_queue_schedule_to_start_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            inv.config.effective_shutdown_deadline_buffer(),
            Duration::from_secs(7)
        );
    }

    #[tokio::test]
    async fn buffer_follows_a_changed_graceful_timeout() {
        let mut inv = run_through(
            LambdaDefaultsLayer::new(),
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap();
        inv.config.worker.graceful_shutdown_period = Some(Duration::from_secs(30));
        assert_eq!(
            inv.config.effective_shutdown_deadline_buffer(),
            Duration::from_secs(32)
        );
        inv.config.shutdown_deadline_buffer = Some(Duration::from_secs(40));
        assert_eq!(
            inv.config.effective_shutdown_deadline_buffer(),
            Duration::from_secs(40)
        );
    }
}
