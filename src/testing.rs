//! Testing kit for your own layers and stacks: no network, no real worker.
//!
//! Everything of `temporal_lambda_worker_layers::testing` ([`run_through`],
//! [`invocation_in`], [`context_in`], …) plus [`FakeBackend`], a [`WorkerBackend`] that
//! "polls" until the stack tells it to shut down, so a whole stack — yours or
//! [`default_stack_with`](crate::default_stack_with) — runs in a unit test; [`invoke`]
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
//! let stack = default_stack_with(
//!     testing::version("shop", "build-7"),
//!     configure,
//!     backend.clone(),
//!     StaticEnvironment::new().with_var("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
//! );
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

use std::sync::{Arc, Mutex};

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
    crate::lambda::diagnostic(error).error_type
}

/// What [`FakeBackend`] was asked to start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeSession {
    /// The connection target (after the TLS rule).
    pub target: String,
    /// Whether TLS was on.
    pub tls: bool,
    /// Whether an API key was set (never its value).
    pub api_key_set: bool,
    /// The task queue.
    pub task_queue: String,
    /// The worker's identity override.
    pub identity: Option<String>,
    /// Deployment name and build id.
    pub deployment: (String, String),
    /// Whether the stack asked the worker to shut down.
    pub shut_down: bool,
}

/// A [`WorkerBackend`] with no server: every session "polls" until the stack asks it to
/// shut down, then drains at once. Cheap to clone; clones share what they saw.
#[derive(Clone, Debug, Default)]
pub struct FakeBackend {
    sessions: Arc<Mutex<Vec<FakeSession>>>,
}

impl FakeBackend {
    /// A backend that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sessions started so far, in order.
    pub fn sessions(&self) -> Vec<FakeSession> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl WorkerBackend for FakeBackend {
    fn start(&self, s: SessionConfig) -> BoxFuture<'static, Result<RunningWorker, BoxError>> {
        let version = &s.worker.deployment_options.version;
        let session = FakeSession {
            target: s.connection.target.to_string(),
            tls: s.connection.tls_options.is_some(),
            api_key_set: s.connection.api_key.is_some(),
            task_queue: s.worker.task_queue.clone(),
            identity: s.worker.client_identity_override.clone(),
            deployment: (version.deployment_name.clone(), version.build_id.clone()),
            shut_down: false,
        };
        let sessions = self.sessions.clone();
        let index = {
            let mut all = sessions.lock().unwrap_or_else(|p| p.into_inner());
            all.push(session);
            all.len() - 1
        };
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            Ok(RunningWorker {
                shutdown: Box::new(move || {
                    sessions.lock().unwrap_or_else(|p| p.into_inner())[index].shut_down = true;
                    let _ = tx.send(());
                }),
                finished: Box::pin(async move {
                    let _ = rx.await;
                    Ok(())
                }),
                connection_reused: false,
                timings: StartTimings::default(),
            })
        })
    }
}
