//! Testing kit for your own layers and stacks: no network, no real worker.
//!
//! Everything of `temporal_lambda_worker_layers::testing` ([`run_through`],
//! [`invocation_in`], [`context_in`], …) plus [`FakeBackend`], a [`WorkerBackend`] that
//! "polls" until the stack tells it to shut down, so a whole stack — yours or
//! [`default_stack_with`](crate::default_stack_with) — runs in a unit test, with Tokio's
//! paused clock if you like.
//!
//! ```
//! use std::time::Duration;
//! use temporal_lambda_worker::{layers::*, testing, *};
//! use tower::ServiceExt;
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
//! let report = stack.oneshot(testing::invocation_in(Duration::from_secs(60))).await.unwrap();
//! assert_eq!(report.task_queue, "orders");
//! let session = &backend.sessions()[0];
//! assert_eq!(session.target, "http://127.0.0.1:7233/");
//! assert!(session.shut_down, "polled until deadline − buffer, then shut down");
//! # }
//! ```

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

pub use crate::rules::testing::*;
use crate::{
    BoxError,
    backend::{RunningWorker, SessionConfig, StartTimings, WorkerBackend},
};

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
