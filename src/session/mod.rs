//! One invocation's poll session: start → poll → drain, on the invocation's
//! [`Timeline`](crate::Timeline).
//!
//! - [`run`] (here): check the config, start the worker through the backend before the
//!   shutdown moment, poll until the stop decision, drain until `drain_by`;
//! - [`stop`]: the stop decision — shutdown moment, SIGTERM, idle exit, hand-back;
//! - [`admission`]: which activities are handed back (`longest_activity`);
//! - [`summary`]: the `invocation summary` line.
//!
//! The shutdown hooks and the configure teardown are not the session's: `ConfigureLayer`
//! runs them after it, whether a worker started or not.

mod admission;
mod interceptors;
mod stop;
mod summary;
pub(crate) mod tasks;
#[cfg(test)]
mod tests;
mod waits;

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::rules::{IDLE_SHUTDOWN_SETTLED_VAR, IDLE_SHUTDOWN_VAR};
use crate::{
    Invocation, LambdaWorkerConfig, LambdaWorkerError, Timeline, WorkerReport,
    backend::{RunningWorker, SessionConfig, TaskActivity, WorkerBackend},
};
use stop::{StopReason, stop_decision};
use tasks::IdleExit;

/// Runs one invocation's poll session through `backend`.
pub(crate) async fn run<B: WorkerBackend>(
    backend: &B,
    inv: Invocation,
) -> Result<WorkerReport, LambdaWorkerError> {
    let timeline = *inv.timeline();
    let Invocation {
        config,
        context,
        stop: signal,
        ..
    } = inv;
    let Plan {
        session,
        tasks,
        idle,
        target,
        graceful_shutdown_timeout,
        mut report,
    } = Plan::new(*config, &timeline)?;
    let (running, polling) = start(backend, session, &timeline, target, &mut report).await?;
    tasks.polling_started();

    // Poll until the worker stops by itself or the stop decision; then drain.
    let RunningWorker {
        shutdown,
        mut finished,
        ..
    } = running;
    let mut reason = StopReason::WorkerStopped;
    let mut shutdown_began = None;
    let outcome = tokio::select! {
        result = &mut finished => Some(result),
        why = stop_decision(&timeline, idle, &tasks, &signal) => {
            (reason, shutdown_began) = (why, Some(Instant::now()));
            shutdown();
            timeline.drain_by().cut(&mut finished).await
        }
    };
    let ended = Instant::now();
    report.ran_for_ms = (ended - polling).as_millis() as u64;
    let result = outcome.unwrap_or(Err(LambdaWorkerError::DrainTimeout {
        graceful_shutdown_timeout,
    }));
    let phases = summary::Phases {
        polling,
        shutdown_began,
        ended,
    };
    let reused = report.connection_reused;
    let id = &context.request_id;
    summary::log(id, &result, reason, &tasks, &timeline, &phases, reused);
    result.map(|()| report)
}

/// Connects (or reuses a connection) and creates the worker through `backend`, before the
/// shutdown moment. Returns it and the instant it began polling (its hand-over).
async fn start<B: WorkerBackend>(
    backend: &B,
    session: SessionConfig,
    timeline: &Timeline,
    target: String,
    report: &mut WorkerReport,
) -> Result<(RunningWorker, Instant), LambdaWorkerError> {
    let started = timeline.shutdown_at().cut(backend.start(session)).await;
    let running = started.unwrap_or_else(|| {
        Err(LambdaWorkerError::Connect {
            target,
            source: "no connection before the shutdown moment".into(),
            problem: crate::ConnectProblem::Other,
        })
    })?;
    // The worker has been polling since its backend handed it over.
    let polling = Instant::now()
        .checked_sub(running.timings.handover)
        .unwrap_or_else(Instant::now);
    report.started(&running, timeline.received_at(), polling);
    tracing::info!(
        task_queue = %report.task_queue,
        deployment = %report.deployment_name,
        build_id = %report.build_id,
        identity = report.identity.as_deref().unwrap_or(""),
        reused_connection = running.connection_reused,
        "worker polling"
    );
    Ok((running, polling))
}

/// The Worker Controller tells itself of waiting tasks at most once per
/// `workercontroller.hook.min_signal_interval_no_sync_match` (500 ms by default) per
/// version: a task added within that time of the add it signalled is only signalled by a
/// later add (temporal-auto-scaled-workers `wci/client/hook.go`, `batchMatchSignals`). A
/// worker that left sooner than that after its last task (whose add brought it, or
/// signalled) would strand a task added in between: no invocation comes for it.
pub(crate) const SIGNAL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// An idle-exit wait (`what`: its variable), raised to [`SIGNAL_INTERVAL`] (said once per
/// process when it is). Both waits, the window and the settled one: either could end a
/// worker sooner than the controller signals a task added meanwhile.
fn at_least_the_signal_interval(what: &str, wait: std::time::Duration) -> std::time::Duration {
    static SAID: std::sync::Once = std::sync::Once::new();
    if wait < SIGNAL_INTERVAL {
        SAID.call_once(|| {
            tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "{what} is raised to 500 ms: the Worker Controller signals a waiting task at \
                 most once per 500 ms per version, so a worker that leaves sooner after its \
                 last task strands a task added in between (no invocation comes for it)"
            );
        });
    }
    wait.max(SIGNAL_INTERVAL)
}

/// What a session starts from: the worker's final options, checked, with the task
/// activity that the stop decision and the summary read.
struct Plan {
    session: SessionConfig,
    tasks: TaskActivity,
    idle: Option<IdleExit>,
    /// The server, as the connect error names it.
    target: String,
    graceful_shutdown_timeout: std::time::Duration,
    report: WorkerReport,
}

impl Plan {
    fn new(mut config: LambdaWorkerConfig, timeline: &Timeline) -> Result<Self, LambdaWorkerError> {
        if config.worker.task_queue.trim().is_empty() {
            return Err(LambdaWorkerError::MissingTaskQueue);
        }
        // Every layer and the configure callback ran: the connection options are final.
        config.secure_connection();
        let tasks = TaskActivity::default();
        let idle = config.idle_shutdown.map(|window| {
            let window = at_least_the_signal_interval(IDLE_SHUTDOWN_VAR, window);
            IdleExit {
                window,
                settled: config
                    .idle_shutdown_settled
                    .map(|s| at_least_the_signal_interval(IDLE_SHUTDOWN_SETTLED_VAR, s))
                    .filter(|s| *s < window),
            }
        });
        admission::admit(&tasks, config.longest_activity, timeline, idle.is_some());
        tasks.watch(&mut config.worker);
        Ok(Self {
            target: config.connection.target.to_string(),
            graceful_shutdown_timeout: config.graceful_shutdown_timeout(),
            report: WorkerReport::for_worker(&config.worker),
            idle,
            session: SessionConfig {
                connection: config.connection,
                client: config.client,
                worker: config.worker,
                metrics: config.metrics,
                tasks: tasks.clone(),
            },
            tasks,
        })
    }
}

impl WorkerReport {
    /// The report of a worker about to start with `worker`'s options.
    fn for_worker(worker: &temporalio_sdk::WorkerOptions) -> Self {
        let version = &worker.deployment_options.version;
        Self {
            identity: worker.client_identity_override.clone(),
            task_queue: worker.task_queue.clone(),
            deployment_name: version.deployment_name.clone(),
            build_id: version.build_id.clone(),
            ran_for_ms: 0,
            connection_reused: false,
            connect_us: 0,
            create_worker_us: 0,
            first_poll_us: 0,
            polling_since_epoch_us: 0,
        }
    }

    /// Records how the worker started, for an invocation that entered the stack at
    /// `received_at`; it has polled since `polling`.
    fn started(&mut self, running: &RunningWorker, received_at: Instant, polling: Instant) {
        self.connection_reused = running.connection_reused;
        self.connect_us = running.timings.connect.as_micros() as u64;
        self.create_worker_us = running.timings.create_worker.as_micros() as u64;
        self.first_poll_us = polling.saturating_duration_since(received_at).as_micros() as u64;
        self.polling_since_epoch_us = SystemTime::now()
            .checked_sub(polling.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as u64);
    }
}
