//! The core service: one invocation's poll session, through an injected backend.
//!
//! `WorkerService::call` runs one poll session: start a worker through
//! its [`WorkerBackend`] (connect or reuse, create, run), poll until the stop decision
//! (the timeline's shutdown moment, the idle exit, a hand-back, SIGTERM), drain until the
//! timeline's `drain_by`, and log the summary line. The backend is injected:
//! [`TemporalBackend`] talks to a real server; unit tests give
//! [`FakeBackend`](crate::testing::FakeBackend) and need no network.
//!
//! [`TemporalBackend`]: crate::backend::TemporalBackend

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use serde::Serialize;
use tower::Service;

use crate::{BoxError, Invocation, backend::WorkerBackend};

/// What a successful invocation answers with.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WorkerReport {
    /// The worker's identity.
    pub identity: Option<String>,
    /// The task queue polled.
    pub task_queue: String,
    /// The Worker Deployment name.
    pub deployment_name: String,
    /// The build id.
    pub build_id: String,
    /// Milliseconds between the worker starting and it having stopped.
    pub ran_for_ms: u64,
    /// Whether the Temporal connection of an earlier invocation was reused.
    pub connection_reused: bool,
    /// Microseconds spent connecting (0 when the connection was reused).
    pub connect_us: u64,
    /// Microseconds spent creating the client and the worker.
    pub create_worker_us: u64,
    /// Microseconds from the invocation entering the stack to the worker polling: the
    /// layers, the worker's start (`connect_us` and `create_worker_us` are part of it), and
    /// the hand-over to the worker's thread. The summary line's `first_poll_ms`.
    pub first_poll_us: u64,
    /// When the worker started polling, in microseconds since the Unix epoch.
    pub polling_since_epoch_us: u64,
}

/// The future of [`WorkerService`]: boxed, as its work is async and its type is not worth naming.
pub type ResponseFuture<R> = BoxFuture<'static, Result<R, BoxError>>;

/// The core service at the bottom of the stack.
pub struct WorkerService<B> {
    backend: Arc<B>,
}

impl<B> std::fmt::Debug for WorkerService<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerService")
            .field("backend", &std::any::type_name::<B>())
            .finish()
    }
}

impl<B> Clone for WorkerService<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
        }
    }
}

impl<B: WorkerBackend> WorkerService<B> {
    /// A service that starts workers through `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }
}

impl<B: WorkerBackend> Service<Invocation> for WorkerService<B> {
    type Response = WorkerReport;
    type Error = BoxError;
    type Future = ResponseFuture<WorkerReport>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, inv: Invocation) -> Self::Future {
        let backend = self.backend.clone();
        Box::pin(async move {
            crate::session::run(backend.as_ref(), inv)
                .await
                .map_err(Into::into)
        })
    }
}
