//! The core service: one invocation's poll session.
//!
//! `WorkerService::call` validates the config, starts a worker through its
//! [`WorkerBackend`] (connect or reuse, create, run), stops polling at the schedule's
//! `shutdown_at`, waits for the graceful drain until `drain_by`, then runs the shutdown
//! hooks in order within the time left. The backend is injected: [`TemporalBackend`]
//! talks to a real server; unit tests give a fake one and need no network.
//!
//! [`TemporalBackend`]: crate::TemporalBackend

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{FutureExt, future::BoxFuture};
use serde::Serialize;
use temporalio_client::{ClientOptions, ConnectionOptions};
use temporalio_sdk::WorkerOptions;
use tokio::time::Instant;
use tower::Service;

use crate::{
    BoxError, CoreMeter, Invocation, LambdaWorkerError, ShutdownHook, layers::error::panic_message,
};

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
}

/// A worker that is polling.
pub struct RunningWorker {
    /// Begins graceful shutdown.
    pub shutdown: Box<dyn FnOnce() + Send>,
    /// Resolves when the worker has stopped.
    pub finished: BoxFuture<'static, Result<(), BoxError>>,
    /// Whether an existing connection was reused.
    pub connection_reused: bool,
    /// How long connecting and creating the worker took.
    pub timings: StartTimings,
}

/// Where a worker's start-up time went; reported in [`WorkerReport`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StartTimings {
    /// Connecting to Temporal (zero when the cached connection was reused).
    pub connect: Duration,
    /// Creating the client and the worker.
    pub create_worker: Duration,
}

/// Starts workers. The seam between the stack's rules and Temporal.
pub trait WorkerBackend: Send + Sync + 'static {
    /// Connects (or reuses a connection), creates the worker and starts it polling.
    fn start(&self, session: SessionConfig) -> BoxFuture<'static, Result<RunningWorker, BoxError>>;
}

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
    /// When the worker started polling, in microseconds since the Unix epoch.
    pub polling_since_epoch_us: u64,
}

/// The core service at the bottom of the stack.
pub struct WorkerService<B> {
    backend: Arc<B>,
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
    type Future = BoxFuture<'static, Result<WorkerReport, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, inv: Invocation) -> Self::Future {
        let backend = self.backend.clone();
        Box::pin(async move { run_session(backend.as_ref(), inv).await.map_err(Into::into) })
    }
}

async fn run_session<B: WorkerBackend>(
    backend: &B,
    mut inv: Invocation,
) -> Result<WorkerReport, LambdaWorkerError> {
    let config = &mut inv.config;
    if config.worker.task_queue.trim().is_empty() {
        return Err(LambdaWorkerError::MissingTaskQueue);
    }
    let hooks = config.take_shutdown_hooks();
    let graceful_shutdown_timeout = config.graceful_shutdown_timeout();
    let target = config.connection.target.to_string();
    let deployment = config.worker.deployment_options.version.clone();
    let mut report = WorkerReport {
        identity: config.worker.client_identity_override.clone(),
        task_queue: config.worker.task_queue.clone(),
        deployment_name: deployment.deployment_name,
        build_id: deployment.build_id,
        ran_for_ms: 0,
        connection_reused: false,
        connect_us: 0,
        create_worker_us: 0,
        polling_since_epoch_us: 0,
    };
    let config = std::mem::take(&mut inv.config);
    let session = SessionConfig {
        connection: config.connection,
        client: config.client,
        worker: config.worker,
        metrics: config.metrics,
    };
    let schedule = inv.schedule;
    let connect_error = |source: BoxError| LambdaWorkerError::Connect {
        target: target.clone(),
        source,
    };
    let start = backend.start(session);
    let running = match schedule {
        Some(s) => tokio::time::timeout_at(s.shutdown_at, start)
            .await
            .map_err(|_| connect_error("no connection before the shutdown moment".into()))?,
        None => start.await,
    }
    .map_err(connect_error)?;
    report.connection_reused = running.connection_reused;
    report.connect_us = running.timings.connect.as_micros() as u64;
    report.create_worker_us = running.timings.create_worker.as_micros() as u64;
    report.polling_since_epoch_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    tracing::info!(
        task_queue = %report.task_queue,
        deployment = %report.deployment_name,
        build_id = %report.build_id,
        identity = report.identity.as_deref().unwrap_or(""),
        reused_connection = running.connection_reused,
        "worker polling"
    );
    let started = Instant::now();
    let RunningWorker {
        shutdown,
        mut finished,
        ..
    } = running;
    let outcome = match schedule {
        None => Some(finished.await),
        Some(s) => {
            tokio::select! {
                result = &mut finished => Some(result),
                () = tokio::time::sleep_until(s.shutdown_at) => {
                    tracing::info!("shutdown deadline buffer reached: graceful shutdown");
                    shutdown();
                    tokio::time::timeout_at(s.drain_by, &mut finished).await.ok()
                }
            }
        }
    };
    report.ran_for_ms = started.elapsed().as_millis() as u64;
    run_hooks(hooks, schedule.map(|s| s.answer_by)).await;
    match outcome {
        None => Err(LambdaWorkerError::DrainTimeout {
            graceful_shutdown_timeout,
        }),
        Some(Err(e)) => Err(LambdaWorkerError::Worker(e)),
        Some(Ok(())) => Ok(report),
    }
}

/// Runs the hooks in order. An error or panic is logged and the next still runs; once
/// `answer_by` passes, the running hook is abandoned and the rest are skipped, with a log line.
pub async fn run_hooks(hooks: Vec<ShutdownHook>, answer_by: Option<Instant>) {
    let total = hooks.len();
    for (index, hook) in hooks.into_iter().enumerate() {
        let guarded = AssertUnwindSafe(async move { hook().await }).catch_unwind();
        let result = match answer_by {
            Some(by) => match tokio::time::timeout_at(by, guarded).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(
                        hook = index,
                        skipped = total - index - 1,
                        "shutdown hook overran the time left before the answer is due; abandoned it"
                    );
                    return;
                }
            },
            None => guarded.await,
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(hook = index, error = %e, "shutdown hook failed"),
            Err(p) => {
                tracing::error!(hook = index, panic = %panic_message(p.as_ref()), "shutdown hook panicked")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxError, LambdaWorkerConfig, StaticEnvironment, WorkerDeploymentVersion};
    use std::{
        sync::Mutex,
        time::{Duration, SystemTime, UNIX_EPOCH},
    };
    use tower::ServiceExt;

    #[derive(Clone, Copy, PartialEq)]
    enum Behaviour {
        DrainsOnShutdown,
        NeverDrains,
        FailsToConnect,
        StopsWithError,
    }

    /// What the backend saw: task queue, identity, eager reservations, versioning, graceful secs.
    type SeenSession = (String, Option<String>, usize, bool, u64);

    #[derive(Clone)]
    struct Fake {
        behaviour: Behaviour,
        events: Arc<Mutex<Vec<String>>>,
        sessions: Arc<Mutex<Vec<SeenSession>>>,
    }

    impl Fake {
        fn new(behaviour: Behaviour) -> Self {
            Self {
                behaviour,
                events: Default::default(),
                sessions: Default::default(),
            }
        }
        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }
    }

    impl WorkerBackend for Fake {
        fn start(&self, s: SessionConfig) -> BoxFuture<'static, Result<RunningWorker, BoxError>> {
            let w = &s.worker;
            self.sessions.lock().unwrap().push((
                w.task_queue.clone(),
                w.client_identity_override.clone(),
                w.max_eager_activity_reservations_per_workflow_task,
                w.deployment_options.use_worker_versioning,
                w.graceful_shutdown_period.unwrap_or_default().as_secs(),
            ));
            let behaviour = self.behaviour;
            let events = self.events.clone();
            Box::pin(async move {
                if behaviour == Behaviour::FailsToConnect {
                    return Err("connection refused".into());
                }
                events.lock().unwrap().push("started".into());
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let ev = events.clone();
                let finished: BoxFuture<'static, Result<(), BoxError>> = match behaviour {
                    Behaviour::StopsWithError => Box::pin(async { Err("poll failed".into()) }),
                    Behaviour::NeverDrains => Box::pin(std::future::pending()),
                    _ => Box::pin(async move {
                        let _ = rx.await;
                        ev.lock().unwrap().push("drained".into());
                        Ok(())
                    }),
                };
                let ev = events.clone();
                Ok(RunningWorker {
                    shutdown: Box::new(move || {
                        ev.lock().unwrap().push("shutdown".into());
                        let _ = tx.send(());
                    }),
                    finished,
                    connection_reused: false,
                    timings: StartTimings::default(),
                })
            })
        }
    }

    fn version() -> WorkerDeploymentVersion {
        WorkerDeploymentVersion::builder()
            .deployment_name("my-app")
            .build_id("build-1")
            .build()
    }

    fn invocation(remaining: Duration) -> Invocation {
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = "req-7".into();
        ctx.invoked_function_arn = "arn:aws:lambda:us-east-1:1:function:f".into();
        ctx.deadline = (SystemTime::now() + remaining)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        Invocation::new(serde_json::Value::Null, ctx)
    }

    /// The default stack, with an empty environment and the fake backend.
    fn stack<C: crate::Configure>(
        configure: C,
        backend: Fake,
    ) -> impl Service<Invocation, Response = WorkerReport, Error = BoxError> {
        crate::default_stack_with(version(), configure, backend, StaticEnvironment::new())
    }

    fn with_queue(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
        c.worker.task_queue = "tq".into();
        c.worker.max_eager_activity_reservations_per_workflow_task = 9;
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn polls_until_deadline_minus_buffer_then_drains_and_reports() {
        let fake = Fake::new(Behaviour::DrainsOnShutdown);
        let start = Instant::now();
        let report = stack(with_queue, fake.clone())
            .oneshot(invocation(Duration::from_secs(60)))
            .await
            .unwrap();
        let elapsed = start.elapsed();
        // Shutdown at deadline − 7 s: about 53 s after the start.
        assert!(
            elapsed >= Duration::from_millis(52_900) && elapsed <= Duration::from_secs(53),
            "{elapsed:?}"
        );
        assert_eq!(fake.events(), ["started", "shutdown", "drained"]);
        assert_eq!(report.task_queue, "tq");
        assert_eq!(
            report.identity.as_deref(),
            Some("req-7@arn:aws:lambda:us-east-1:1:function:f")
        );
        assert_eq!(
            (report.deployment_name.as_str(), report.build_id.as_str()),
            ("my-app", "build-1")
        );
        let sessions = fake.sessions.lock().unwrap();
        let (tq, identity, eager, versioning, graceful) = sessions[0].clone();
        assert_eq!(tq, "tq");
        assert!(identity.unwrap().starts_with("req-7@"));
        assert_eq!(
            eager, 0,
            "eager activities stay off even when configure sets them"
        );
        assert!(versioning);
        assert_eq!(graceful, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_task_queue_fails_before_connecting() {
        let fake = Fake::new(Behaviour::DrainsOnShutdown);
        let err = stack(
            |_: &mut LambdaWorkerConfig| Ok::<_, BoxError>(()),
            fake.clone(),
        )
        .oneshot(invocation(Duration::from_secs(60)))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("TEMPORAL_TASK_QUEUE"), "{err}");
        assert!(
            err.to_string().contains("config.worker.task_queue"),
            "{err}"
        );
        assert!(fake.sessions.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_server_is_a_connect_error_naming_the_address() {
        let err = stack(with_queue, Fake::new(Behaviour::FailsToConnect))
            .oneshot(invocation(Duration::from_secs(60)))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("http://localhost:7233/"), "{msg}");
        assert!(msg.contains("connection refused"), "{msg}");
        assert!(msg.contains("TEMPORAL_ADDRESS"), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_never_drains_is_abandoned_at_the_drain_cap_and_recycles() {
        let fake = Fake::new(Behaviour::NeverDrains);
        let start = Instant::now();
        let hook_ran = Arc::new(Mutex::new(false));
        let h = hook_ran.clone();
        let err = stack(
            move |c: &mut LambdaWorkerConfig| {
                with_queue(c)?;
                let h = h.clone();
                c.add_shutdown_hook(move || {
                    *h.lock().unwrap() = true;
                    Ok::<_, BoxError>(())
                });
                Ok::<_, BoxError>(())
            },
            fake.clone(),
        )
        .oneshot(invocation(Duration::from_secs(60)))
        .await
        .unwrap_err();
        let elapsed = start.elapsed();
        // drain_by = shutdown_at (53 s) + graceful 5 s + 1 s = 59 s, before the 60 s deadline.
        assert!(
            elapsed >= Duration::from_millis(58_900) && elapsed < Duration::from_millis(59_600),
            "{elapsed:?}"
        );
        let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
        assert!(e.recycles_process(), "{e}");
        assert!(
            *hook_ran.lock().unwrap(),
            "hooks still run after a failed drain"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_error_fails_the_invocation() {
        let err = stack(with_queue, Fake::new(Behaviour::StopsWithError))
            .oneshot(invocation(Duration::from_secs(60)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("poll failed"), "{err}");
        assert!(
            !err.downcast_ref::<LambdaWorkerError>()
                .unwrap()
                .recycles_process()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hooks_run_in_order_survive_errors_and_panics_and_then_teardown() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let l = log.clone();
        let configure = crate::async_configure(move |mut c: LambdaWorkerConfig| {
            let l = l.clone();
            async move {
                with_queue(&mut c)?;
                let (a, b, d) = (l.clone(), l.clone(), l.clone());
                c.add_shutdown_hook(move || {
                    a.lock().unwrap().push("hook1".into());
                    Err::<(), _>("hook1 failed")
                });
                c.add_shutdown_hook(|| -> Result<(), BoxError> { panic!("hook2 panicked") });
                c.add_async_shutdown_hook(move || async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    b.lock().unwrap().push("hook3".into());
                    Ok::<_, BoxError>(())
                });
                Ok::<_, BoxError>(crate::Configured::new(c).with_teardown(async move {
                    d.lock().unwrap().push("teardown".into());
                }))
            }
        });
        stack(configure, Fake::new(Behaviour::DrainsOnShutdown))
            .oneshot(invocation(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(*log.lock().unwrap(), ["hook1", "hook3", "teardown"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_that_overruns_is_abandoned_and_the_answer_still_beats_the_deadline() {
        let start = Instant::now();
        let configure = |c: &mut LambdaWorkerConfig| {
            with_queue(c)?;
            c.add_async_shutdown_hook(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, BoxError>(())
            });
            Ok::<_, BoxError>(())
        };
        stack(configure, Fake::new(Behaviour::DrainsOnShutdown))
            .oneshot(invocation(Duration::from_secs(30)))
            .await
            .unwrap();
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_secs(30) && elapsed >= Duration::from_millis(29_400),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_leaks_between_invocations() {
        let calls = Arc::new(Mutex::new(0));
        let c2 = calls.clone();
        let configure = move |c: &mut LambdaWorkerConfig| {
            let mut n = c2.lock().unwrap();
            *n += 1;
            assert_eq!(
                c.shutdown_hook_count(),
                0,
                "a fresh config every invocation"
            );
            assert_eq!(c.worker.task_queue, "", "a fresh config every invocation");
            c.worker.task_queue = "tq".into();
            c.add_shutdown_hook(|| Ok::<_, BoxError>(()));
            Ok::<_, BoxError>(())
        };
        let mut svc = stack(configure, Fake::new(Behaviour::DrainsOnShutdown));
        for _ in 0..3 {
            svc.ready()
                .await
                .unwrap()
                .call(invocation(Duration::from_secs(20)))
                .await
                .unwrap();
        }
        assert_eq!(*calls.lock().unwrap(), 3);
    }
}
