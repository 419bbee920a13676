//! Testing kit for your own layers and stacks: no network, no real worker.
//!
//! Everything of `temporal_lambda_worker_layers::testing` ([`run_through`],
//! [`invocation_in`], [`context_in`], …) plus [`FakeBackend`], a [`WorkerBackend`] that
//! "polls" until the stack tells it to shut down, so a whole stack — yours or
//! [`WorkerStack`](crate::WorkerStack) with `.backend(FakeBackend::new())` — runs in a unit
//! test; [`invoke`]
//! runs one invocation through it and [`error_type`] says what a failure would answer.
//!
//! Your crate needs only `tokio` as a dev-dependency, with the features its tests use:
//!
//! ```toml
//! [dev-dependencies]
//! # `test-util` for Tokio's paused clock (`start_paused = true`): the stack's deadlines
//! # then pass in no time.
//! tokio = { version = "1", features = ["macros", "rt", "test-util"] }
//! ```
//!
//! ```
//! use std::time::Duration;
//! use temporal_lambda_worker::{testing, *};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! fn configure(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
//!     c.worker.task_queue = "orders".into();
//!     Ok(())
//! }
//! let backend = testing::FakeBackend::new();
//! let stack = WorkerStack::new(testing::version("shop", "build-7"), configure)
//!     .backend(backend.clone())
//!     .environment(StaticEnvironment::new().with_var("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
//!     .build();
//! let report = testing::invoke(stack.clone(), testing::invocation_in(Duration::from_secs(60)))
//!     .await
//!     .unwrap();
//! assert_eq!(report.task_queue, "orders");
//! let session = &backend.sessions()[0];
//! assert_eq!(session.target, "http://127.0.0.1:7233/");
//! assert!(session.shut_down, "polled until deadline − buffer, then shut down");
//!
//! // 5 s is too short for the shutdown buffer: answered with this errorType.
//! let error = testing::invoke(stack, testing::invocation_in(Duration::from_secs(5)))
//!     .await
//!     .unwrap_err();
//! assert_eq!(testing::error_type(&error), "TemporalLambdaWorker.TimeoutTooShort");
//! # }
//! ```

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::BoxFuture;
use tower::{Service, ServiceExt};

pub use crate::rules::testing::*;
use crate::{
    BoxError, Invocation,
    backend::{RunningWorker, SessionConfig, StartTimings, WorkerBackend},
};

/// Runs `invocation` through `stack` once, as `serve` would (`tower::ServiceExt::oneshot`,
/// without importing tower).
pub async fn invoke<S>(stack: S, invocation: Invocation) -> Result<S::Response, BoxError>
where
    S: Service<Invocation>,
    S::Error: Into<BoxError>,
{
    stack.oneshot(invocation).await.map_err(Into::into)
}

/// The `errorType` `serve` answers `error` with: a [`LambdaWorkerError`]'s
/// (`TemporalLambdaWorker.*`, or yours from [`LambdaWorkerError::custom`]), else
/// `TemporalLambdaWorker.Error`.
///
/// [`LambdaWorkerError`]: crate::LambdaWorkerError
/// [`LambdaWorkerError::custom`]: crate::LambdaWorkerError::custom
pub fn error_type(error: &BoxError) -> String {
    crate::lambda::stack_diagnostic(error).error_type
}

/// What [`FakeBackend`] was asked to start. Its `Debug` shows whether an API key was set,
/// never the key; [`api_key_is`](Self::api_key_is) checks which one it was.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakeSession {
    /// The connection target (after the TLS rule).
    pub target: String,
    /// Whether TLS was on.
    pub tls: bool,
    /// Whether an API key was set (never its value).
    pub api_key_set: bool,
    api_key: Option<String>,
    /// The task queue.
    pub task_queue: String,
    /// The worker's identity override.
    pub identity: Option<String>,
    /// Deployment name and build id.
    pub deployment: (String, String),
    /// Whether the worker polls with Worker Deployment Versioning on.
    pub versioning: bool,
    /// The eager activity reservations per workflow task (0: eager activities off).
    pub eager_activity_reservations: usize,
    /// The worker's graceful shutdown period.
    pub graceful_shutdown: Option<Duration>,
    /// Whether the stack asked the worker to shut down.
    pub shut_down: bool,
}

impl FakeSession {
    /// Whether the connection carried this API key.
    pub fn api_key_is(&self, key: &str) -> bool {
        self.api_key.as_deref() == Some(key)
    }
}

impl std::fmt::Debug for FakeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSession")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .field("api_key_set", &self.api_key_set)
            .field("task_queue", &self.task_queue)
            .field("identity", &self.identity)
            .field("deployment", &self.deployment)
            .field("versioning", &self.versioning)
            .field(
                "eager_activity_reservations",
                &self.eager_activity_reservations,
            )
            .field("graceful_shutdown", &self.graceful_shutdown)
            .field("shut_down", &self.shut_down)
            .finish()
    }
}

/// How the workers of a [`FakeBackend`] behave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeBehaviour {
    /// Polls until the stack asks it to shut down, then drains at once.
    #[default]
    DrainsOnShutdown,
    /// Never finishes draining: the watchdog's `DrainTimeout` (the process is recycled).
    NeverDrains,
    /// Cannot connect: the start fails with "connection refused".
    FailsToConnect,
    /// Starts, then stops polling at once with the error "poll failed".
    StopsWithError,
}

/// A [`WorkerBackend`] with no server: each session behaves as its [`FakeBehaviour`] says
/// (by default it "polls" until the stack asks it to shut down, then drains at once).
/// Cheap to clone; clones share what they saw.
#[derive(Clone, Debug, Default)]
pub struct FakeBackend {
    behaviour: FakeBehaviour,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    sessions: Vec<FakeSession>,
    events: Vec<&'static str>,
}

impl FakeBackend {
    /// A backend that has seen nothing yet, whose workers drain when asked to shut down.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose workers behave as `behaviour` says.
    pub fn with_behaviour(behaviour: FakeBehaviour) -> Self {
        Self {
            behaviour,
            ..Self::default()
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sessions started so far, in order (a failed connect counts: it was asked for).
    pub fn sessions(&self) -> Vec<FakeSession> {
        self.seen().sessions.clone()
    }

    /// What the workers did, in order, across sessions: `started`, `shutdown` (the stack
    /// asked it to stop polling), `drained`.
    pub fn events(&self) -> Vec<&'static str> {
        self.seen().events.clone()
    }
}

impl FakeSession {
    /// What a backend was asked to start.
    fn of(s: &SessionConfig) -> Self {
        let (c, w) = (&s.connection, &s.worker);
        let version = &w.deployment_options.version;
        Self {
            target: c.target.to_string(),
            tls: c.tls_options.is_some(),
            api_key_set: c.api_key.is_some(),
            api_key: c.api_key.clone(),
            task_queue: w.task_queue.clone(),
            identity: w.client_identity_override.clone(),
            deployment: (version.deployment_name.clone(), version.build_id.clone()),
            versioning: w.deployment_options.use_worker_versioning,
            eager_activity_reservations: w.max_eager_activity_reservations_per_workflow_task,
            graceful_shutdown: w.graceful_shutdown_period,
            shut_down: false,
        }
    }
}

impl WorkerBackend for FakeBackend {
    fn start(
        &self,
        s: SessionConfig,
    ) -> BoxFuture<'static, Result<RunningWorker, crate::LambdaWorkerError>> {
        let session = FakeSession::of(&s);
        let index = {
            let mut seen = self.seen();
            seen.sessions.push(session);
            seen.sessions.len() - 1
        };
        let (this, behaviour) = (self.clone(), self.behaviour);
        Box::pin(async move {
            if behaviour == FakeBehaviour::FailsToConnect {
                return Err(crate::LambdaWorkerError::Connect {
                    target: this.seen().sessions[index].target.clone(),
                    source: "connection refused".into(),
                    problem: crate::ConnectProblem::Refused,
                });
            }
            this.seen().events.push("started");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let drained = this.clone();
            let finished: BoxFuture<'static, Result<(), crate::LambdaWorkerError>> = match behaviour
            {
                FakeBehaviour::StopsWithError => {
                    Box::pin(async { Err(crate::LambdaWorkerError::Worker("poll failed".into())) })
                }
                FakeBehaviour::NeverDrains => Box::pin(std::future::pending()),
                _ => Box::pin(async move {
                    let _ = rx.await;
                    drained.seen().events.push("drained");
                    Ok(())
                }),
            };
            Ok(RunningWorker {
                shutdown: Box::new(move || {
                    let mut seen = this.seen();
                    seen.sessions[index].shut_down = true;
                    seen.events.push("shutdown");
                    let _ = tx.send(());
                }),
                finished,
                connection_reused: false,
                timings: StartTimings::default(),
            })
        })
    }
}
