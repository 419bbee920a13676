//! The seam between the stack and Temporal: the [`WorkerBackend`] trait the
//! [`WorkerService`](crate::WorkerService) starts workers through, what it is given and
//! gives back, the real [`TemporalBackend`], and the session's task watch (which feeds the
//! summary line and the idle exit). Implement the trait to run a stack without Temporal;
//! [`testing::FakeBackend`](crate::testing::FakeBackend) does.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use temporalio_client::{ClientOptions, ConnectionOptions};
use temporalio_sdk::WorkerOptions;

pub use crate::session::tasks::{TaskActivity, TaskCounts, TaskKind};
pub use crate::temporal::TemporalBackend;
use crate::{CoreMeter, LambdaWorkerError};

/// What the backend needs to start one worker.
pub struct SessionConfig {
    /// Connection options (the backend reuses a connection made from equal ones).
    pub connection: ConnectionOptions,
    /// Client options.
    pub client: ClientOptions,
    /// Worker options, registrations included.
    pub worker: WorkerOptions,
    /// Where the SDK records worker metrics (see [`LambdaWorkerConfig::metrics`]).
    ///
    /// [`LambdaWorkerConfig::metrics`]: crate::LambdaWorkerConfig::metrics
    pub metrics: Option<Arc<dyn CoreMeter>>,
    /// The session's task activity (read it for the counts and the idle time); its
    /// interceptors are already registered on `worker`, so a real worker reports to it.
    pub tasks: TaskActivity,
}

/// Shows what the session runs, never a secret (the connection's target and whether an
/// API key is set, not the key).
impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("target", &self.connection.target.as_str())
            .field("api_key_set", &self.connection.api_key.is_some())
            .field("namespace", &self.client.namespace)
            .field("task_queue", &self.worker.task_queue)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

/// A worker that is polling.
pub struct RunningWorker {
    /// Begins graceful shutdown.
    pub shutdown: Box<dyn FnOnce() + Send>,
    /// Resolves when the worker has stopped: with
    /// [`LambdaWorkerError::Worker`] for the worker's own error, or the backend's diagnosis
    /// (say [`LambdaWorkerError::ServerUnreachable`]).
    pub finished: BoxFuture<'static, Result<(), LambdaWorkerError>>,
    /// Whether an existing connection was reused.
    pub connection_reused: bool,
    /// How long connecting and creating the worker took.
    pub timings: StartTimings,
}

impl std::fmt::Debug for RunningWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorker")
            .field("connection_reused", &self.connection_reused)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

/// Where a worker's start-up time went; reported in [`WorkerReport`](crate::WorkerReport).
#[derive(Clone, Copy, Debug, Default)]
pub struct StartTimings {
    /// Connecting to Temporal (zero when the cached connection was reused).
    pub connect: Duration,
    /// Creating the client and the worker.
    pub create_worker: Duration,
    /// The worker polling → the start's future resolving: the reply's way back from a
    /// backend that runs its workers on a thread of their own (zero when it does not).
    /// The session dates the worker's polling this much earlier.
    pub handover: Duration,
}

/// Starts workers. The seam between the stack's rules and Temporal.
pub trait WorkerBackend: Send + Sync + 'static {
    /// Connects (or reuses a connection), creates the worker and starts it polling.
    ///
    /// A failure to start is a [`LambdaWorkerError::Connect`] (with the
    /// [`ConnectProblem`](crate::ConnectProblem) that says what to change).
    fn start(
        &self,
        session: SessionConfig,
    ) -> BoxFuture<'static, Result<RunningWorker, LambdaWorkerError>>;
}
