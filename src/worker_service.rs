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
    BoxError, CoreMeter, Invocation, LambdaWorkerError,
    rules::ShutdownHook,
    rules::error::panic_message,
    rules::{IDLE_SHUTDOWN_VAR, LONGEST_ACTIVITY_VAR},
    tasks::{PollsEnd, TaskActivity},
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
    /// The session's task activity; its interceptors are already registered on `worker`.
    /// A backend that runs no real worker (a test's) reports tasks to it directly.
    pub tasks: TaskActivity,
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
    // One rule for hooks and teardown alike: once configure ran, its shutdown hooks run,
    // whether a worker started or not (a resource it opened is closed either way).
    let hooks = config.take_shutdown_hooks();
    let answer_by = inv.schedule.map(|s| s.answer_by);
    if config.worker.task_queue.trim().is_empty() {
        run_hooks(hooks, answer_by).await;
        return Err(LambdaWorkerError::MissingTaskQueue);
    }
    // Every layer and the configure callback ran: the connection options are final.
    config.secure_connection();
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
    let mut config = std::mem::take(&mut inv.config);
    let idle_shutdown = config.idle_shutdown;
    let tasks = TaskActivity::default();
    if let (Some(longest), Some(s)) = (config.longest_activity, inv.schedule) {
        // Activities are cancelled once the graceful timeout has run from the shutdown
        // moment: one that cannot end by then is handed back instead of started.
        let finish_by = (s.shutdown_at + graceful_shutdown_timeout).min(s.drain_by);
        // With the idle exit on, the session stops polling at the first hand-back, so the
        // retry comes at once and a fresh invocation (with a whole window) runs it; with
        // it off, polling goes on until the shutdown moment and the retry comes after it.
        let polls_end = match idle_shutdown {
            Some(_) => PollsEnd::OnHandBack,
            None => PollsEnd::At(s.shutdown_at),
        };
        if !tasks.admit_activities(longest, finish_by, polls_end) {
            tracing::warn!(
                longest_activity_ms = longest.as_millis() as u64,
                "the longest activity ({:.1}s, {LONGEST_ACTIVITY_VAR}) cannot finish within \
                 this invocation's polling and graceful shutdown time: no activity is handed \
                 back, they all run as without the setting; raise the function's timeout",
                longest.as_secs_f64()
            );
        }
    }
    tasks.watch(&mut config.worker);
    let session = SessionConfig {
        connection: config.connection,
        client: config.client,
        worker: config.worker,
        metrics: config.metrics,
        tasks: tasks.clone(),
    };
    let schedule = inv.schedule;
    let connect_error = |source: BoxError| LambdaWorkerError::Connect {
        target: target.clone(),
        source,
    };
    let start = backend.start(session);
    let started = match schedule {
        Some(s) => tokio::time::timeout_at(s.shutdown_at, start)
            .await
            .unwrap_or_else(|_| Err("no connection before the shutdown moment".into())),
        None => start.await,
    };
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            run_hooks(hooks, answer_by).await;
            return Err(connect_error(e));
        }
    };
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
    tasks.polling_started();
    let RunningWorker {
        shutdown,
        mut finished,
        ..
    } = running;
    let shutdown_at = async {
        match schedule {
            Some(s) => tokio::time::sleep_until(s.shutdown_at).await,
            None => std::future::pending().await,
        }
    };
    let idle = async {
        match idle_shutdown {
            Some(quiet) => tasks.quiet_for(quiet).await,
            None => std::future::pending().await,
        }
    };
    let handed_back = async {
        match idle_shutdown {
            Some(_) => tasks.handed_back().await,
            None => std::future::pending().await,
        }
    };
    let stop = inv.stop.clone();
    let mut stop_reason = StopReason::WorkerStopped;
    let mut shutdown_began = None;
    let outcome = tokio::select! {
        result = &mut finished => Some(result),
        why = async {
            tokio::select! {
                () = shutdown_at => StopReason::Deadline,
                () = stop.stopped() => StopReason::Signal,
                () = idle => StopReason::Idle,
                () = handed_back => StopReason::HandedBack,
            }
        } => {
            stop_reason = why;
            shutdown_began = Some(Instant::now());
            match why {
                StopReason::Idle => tracing::info!(
                    "no task for {:.1}s ({IDLE_SHUTDOWN_VAR}): graceful shutdown",
                    idle_shutdown.unwrap_or_default().as_secs_f64()
                ),
                _ => tracing::info!("{}: graceful shutdown", why.describe()),
            }
            shutdown();
            match schedule {
                Some(s) => tokio::time::timeout_at(s.drain_by, &mut finished).await.ok(),
                None => Some(finished.await),
            }
        }
    };
    let ended = Instant::now();
    report.ran_for_ms = started.elapsed().as_millis() as u64;
    run_hooks(hooks, schedule.map(|s| s.answer_by)).await;
    let result = match outcome {
        None => Err(LambdaWorkerError::DrainTimeout {
            graceful_shutdown_timeout,
        }),
        // The backend's own diagnosis (a server gone while polling) is kept as it is.
        Some(Err(e)) => Err(match e.downcast::<LambdaWorkerError>() {
            Ok(e) => *e,
            Err(e) => LambdaWorkerError::Worker(e),
        }),
        Some(Ok(())) => Ok(()),
    };
    let counts = tasks.counts();
    let ms = |d: Duration| d.as_millis() as u64;
    let polled_until = shutdown_began.unwrap_or(ended);
    tracing::info!(
        request_id = %inv.context.request_id,
        outcome = match &result {
            Ok(()) => "ok",
            Err(e) => e.error_type(),
        },
        stop_reason = stop_reason.name(),
        workflow_tasks_completed = counts.workflow_completed,
        workflow_tasks_failed = counts.workflow_failed,
        activity_tasks_completed = counts.activity_completed,
        activity_tasks_failed = counts.activity_failed,
        activity_tasks_deferred = counts.activity_deferred,
        first_poll_ms = ms(started.saturating_duration_since(inv.received_at)),
        polled_ms = ms(polled_until - started),
        idle_ms = ms(tasks.idle().min(ended - started)),
        drain_ms = shutdown_began.map_or(0, |b| ms(ended - b)),
        slack_ms = schedule.map_or(0, |s| ms(s.deadline.saturating_duration_since(Instant::now()))),
        connection_reused = report.connection_reused,
        "invocation summary"
    );
    result.map(|()| report)
}

/// Why polling stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    /// The worker stopped by itself (an error, or no deadline and it ended).
    WorkerStopped,
    /// `deadline − buffer` was reached.
    Deadline,
    /// No task for the idle exit's duration.
    Idle,
    /// The process is stopping (SIGTERM).
    Signal,
    /// An activity task was handed back (the idle exit is on): a fresh invocation runs it.
    HandedBack,
}

impl StopReason {
    fn name(self) -> &'static str {
        match self {
            Self::WorkerStopped => "worker_stopped",
            Self::Deadline => "deadline",
            Self::Idle => "idle",
            Self::Signal => "sigterm",
            Self::HandedBack => "activity_handed_back",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Self::Deadline => "shutdown deadline buffer reached",
            Self::Signal => "the process is stopping (SIGTERM)",
            Self::Idle => "idle",
            Self::WorkerStopped => "the worker stopped",
            Self::HandedBack => "an activity task was handed back to run in a fresh invocation",
        }
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

    /// The connection the backend was asked for: target, TLS on, API key.
    type SeenConnection = (String, bool, Option<String>);

    #[derive(Clone)]
    struct Fake {
        behaviour: Behaviour,
        events: Arc<Mutex<Vec<String>>>,
        sessions: Arc<Mutex<Vec<SeenSession>>>,
        connections: Arc<Mutex<Vec<SeenConnection>>>,
    }

    impl Fake {
        fn new(behaviour: Behaviour) -> Self {
            Self {
                behaviour,
                events: Default::default(),
                sessions: Default::default(),
                connections: Default::default(),
            }
        }
        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }
    }

    impl WorkerBackend for Fake {
        fn start(&self, s: SessionConfig) -> BoxFuture<'static, Result<RunningWorker, BoxError>> {
            let c = &s.connection;
            self.connections.lock().unwrap().push((
                c.target.to_string(),
                c.tls_options.is_some(),
                c.api_key.clone(),
            ));
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

    /// The default stack with the fake backend, and an environment where the idle exit is
    /// off (these tests follow a session to the shutdown buffer; the fake's worker runs no
    /// tasks, so with the default idle exit every session would end after 2 s).
    fn stack<C: crate::Configure>(
        configure: C,
        backend: Fake,
    ) -> impl Service<Invocation, Response = WorkerReport, Error = BoxError> {
        crate::default_stack_with(
            version(),
            configure,
            backend,
            StaticEnvironment::new().with_var(IDLE_SHUTDOWN_VAR, "off"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_an_idle_worker_begins_its_graceful_shutdown_after_two_seconds() {
        let fake = Fake::new(Behaviour::DrainsOnShutdown);
        let start = Instant::now();
        crate::default_stack_with(
            version(),
            with_queue,
            fake.clone(),
            StaticEnvironment::new(),
        )
        .oneshot(invocation(Duration::from_secs(60)))
        .await
        .unwrap();
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(2) && elapsed <= Duration::from_millis(2_100),
            "{elapsed:?}"
        );
        assert_eq!(fake.events(), ["started", "shutdown", "drained"]);
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
    async fn shutdown_hooks_run_even_when_no_worker_started() {
        for (behaviour, queue) in [
            (Behaviour::FailsToConnect, true),
            (Behaviour::DrainsOnShutdown, false),
        ] {
            let ran = Arc::new(Mutex::new(false));
            let r = ran.clone();
            let configure = move |c: &mut LambdaWorkerConfig| {
                if queue {
                    with_queue(c)?;
                }
                let r = r.clone();
                c.add_shutdown_hook(move || {
                    *r.lock().unwrap() = true;
                    Ok::<_, BoxError>(())
                });
                Ok::<_, BoxError>(())
            };
            let err = stack(configure, Fake::new(behaviour))
                .oneshot(invocation(Duration::from_secs(60)))
                .await
                .unwrap_err();
            assert!(*ran.lock().unwrap(), "the hook did not run after: {err}");
        }
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

    #[tokio::test(start_paused = true)]
    async fn the_stop_signal_begins_the_graceful_shutdown_at_once() {
        let fake = Fake::new(Behaviour::DrainsOnShutdown);
        let (trigger, signal) = crate::StopSignal::new();
        let mut inv = invocation(Duration::from_secs(60));
        inv.stop = signal;
        let start = Instant::now();
        let stopping = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            trigger.stop();
        };
        let (report, ()) = tokio::join!(stack(with_queue, fake.clone()).oneshot(inv), stopping);
        report.unwrap();
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(2100),
            "{elapsed:?}"
        );
        assert_eq!(fake.events(), ["started", "shutdown", "drained"]);
    }

    /// A backend that diagnoses its own failure (a server gone while polling).
    struct Unreachable;
    impl WorkerBackend for Unreachable {
        fn start(&self, _: SessionConfig) -> BoxFuture<'static, Result<RunningWorker, BoxError>> {
            Box::pin(async {
                Ok(RunningWorker {
                    shutdown: Box::new(|| {}),
                    finished: Box::pin(async {
                        Err(LambdaWorkerError::ServerUnreachable {
                            target: "http://x:7233/".into(),
                            source: "Unavailable".into(),
                        }
                        .into())
                    }),
                    connection_reused: true,
                    timings: StartTimings::default(),
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_backends_own_diagnosis_is_answered_as_it_is() {
        let err =
            crate::default_stack_with(version(), with_queue, Unreachable, StaticEnvironment::new())
                .oneshot(invocation(Duration::from_secs(60)))
                .await
                .unwrap_err();
        let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
        assert_eq!(e.error_type(), "TemporalLambdaWorker.ServerUnreachable");
        assert!(e.to_string().contains("http://x:7233/"), "{e}");
    }

    mod tls_rule {
        //! An API key turns TLS on wherever it was set, unless TLS was explicitly disabled.
        use super::*;
        use crate::{ApiKeySecretLayer, InvocationStep, NoSecretResolver, StepLayer};
        use tower::ServiceBuilder;

        struct Dir(std::path::PathBuf);
        impl Dir {
            fn with_file(tag: &str, name: &str, text: &str) -> Self {
                let p = std::env::temp_dir().join(format!("tlw-tls-{tag}-{}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join(name), text).unwrap();
                Self(p)
            }
            fn path(&self, name: &str) -> String {
                self.0.join(name).to_str().unwrap().to_owned()
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }

        /// Log lines written while `f` runs (WARN and above).
        async fn logs_of<F: std::future::Future>(f: F) -> (F::Output, String) {
            #[derive(Clone, Default)]
            struct Buf(Arc<Mutex<Vec<u8>>>);
            impl std::io::Write for Buf {
                fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                    self.0.lock().unwrap().extend_from_slice(b);
                    Ok(b.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let buf = Buf::default();
            let b = buf.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(move || b.clone())
                .finish();
            let _guard = tracing::subscriber::set_default(subscriber);
            let out = f.await;
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            (out, text)
        }

        /// Runs one invocation through the default stack in `env` (with `extra` above
        /// the configure layer, as a user's own layer sits) and returns what the backend
        /// was asked to connect to.
        async fn connection_for<C: crate::Configure>(
            env: StaticEnvironment,
            configure: C,
            key_layer: Option<StepLayer<SetKey>>,
            secret_layer: bool,
        ) -> SeenConnection {
            let fake = Fake::new(Behaviour::DrainsOnShutdown);
            // The user's layers where the insertion point puts them: right after config
            // loading.
            let theirs =
                ServiceBuilder::new()
                    .option_layer(secret_layer.then(|| {
                        ApiKeySecretLayer::with_environment(NoSecretResolver, env.clone())
                    }))
                    .option_layer(key_layer);
            let svc =
                crate::stack_with_connection_layer(version(), configure, fake.clone(), env, theirs);
            svc.oneshot(invocation(Duration::from_secs(30)))
                .await
                .unwrap();
            fake.connections.lock().unwrap()[0].clone()
        }

        /// A user's own layer that sets the key.
        #[derive(Clone)]
        struct SetKey;
        impl InvocationStep for SetKey {
            fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
                inv.config.connection.api_key = Some("from-a-layer".into());
                Ok(())
            }
        }

        fn assert_tls(seen: &SeenConnection, host: &str, key: &str) {
            assert_eq!(seen.0, format!("https://{host}/"), "{seen:?}");
            assert!(seen.1, "TLS is on: {seen:?}");
            assert_eq!(seen.2.as_deref(), Some(key));
        }

        fn env(address: &str) -> StaticEnvironment {
            StaticEnvironment::new().with_var("TEMPORAL_ADDRESS", address)
        }

        #[tokio::test(start_paused = true)]
        async fn a_key_from_the_environment_turns_tls_on_even_with_an_http_address() {
            let seen = connection_for(
                env("http://ns.tmprl.cloud:7233").with_var("TEMPORAL_API_KEY", "from-env"),
                with_queue,
                None,
                false,
            )
            .await;
            assert_tls(&seen, "ns.tmprl.cloud:7233", "from-env");
        }

        #[tokio::test(start_paused = true)]
        async fn a_key_from_the_profile_turns_tls_on() {
            let dir = Dir::with_file(
                "profile",
                "temporal.toml",
                "[profile.default]\naddress = \"ns.tmprl.cloud:7233\"\napi_key = \"from-file\"\n",
            );
            let seen = connection_for(
                StaticEnvironment::new()
                    .with_var("TEMPORAL_CONFIG_FILE", dir.path("temporal.toml")),
                with_queue,
                None,
                false,
            )
            .await;
            assert_tls(&seen, "ns.tmprl.cloud:7233", "from-file");
        }

        #[tokio::test(start_paused = true)]
        async fn a_key_from_the_api_key_secret_layer_turns_tls_on() {
            let dir = Dir::with_file("secret", "key", "from-secret\n");
            let seen = connection_for(
                env("ns.tmprl.cloud:7233").with_var("TEMPORAL_API_KEY_FILE", dir.path("key")),
                with_queue,
                None,
                true,
            )
            .await;
            assert_tls(&seen, "ns.tmprl.cloud:7233", "from-secret");
        }

        #[tokio::test(start_paused = true)]
        async fn a_key_from_a_user_layer_turns_tls_on() {
            let seen = connection_for(
                env("ns.tmprl.cloud:7233"),
                with_queue,
                Some(StepLayer::from_step(SetKey)),
                false,
            )
            .await;
            assert_tls(&seen, "ns.tmprl.cloud:7233", "from-a-layer");
        }

        #[tokio::test(start_paused = true)]
        async fn a_key_from_configure_turns_tls_on() {
            let configure = |c: &mut LambdaWorkerConfig| {
                with_queue(c)?;
                c.connection.api_key = Some("from-configure".into());
                Ok::<_, BoxError>(())
            };
            let seen = connection_for(env("ns.tmprl.cloud:7233"), configure, None, false).await;
            assert_tls(&seen, "ns.tmprl.cloud:7233", "from-configure");
        }

        #[tokio::test(start_paused = true)]
        async fn a_connection_layer_inserted_in_the_default_stack_keeps_its_key() {
            let fake = Fake::new(Behaviour::DrainsOnShutdown);
            crate::stack_with_connection_layer(
                version(),
                with_queue,
                fake.clone(),
                env("ns.tmprl.cloud:7233"),
                StepLayer::from_step(SetKey),
            )
            .oneshot(invocation(Duration::from_secs(30)))
            .await
            .unwrap();
            let seen = fake.connections.lock().unwrap()[0].clone();
            assert_tls(&seen, "ns.tmprl.cloud:7233", "from-a-layer");
        }

        #[tokio::test(start_paused = true)]
        async fn a_connection_layer_wrapped_around_the_default_stack_is_an_error_not_a_lost_key() {
            let fake = Fake::new(Behaviour::DrainsOnShutdown);
            let svc = ServiceBuilder::new()
                .layer(StepLayer::from_step(SetKey))
                .service(crate::default_stack_with(
                    version(),
                    with_queue,
                    fake.clone(),
                    env("ns.tmprl.cloud:7233"),
                ));
            let err = svc
                .oneshot(invocation(Duration::from_secs(30)))
                .await
                .unwrap_err();
            let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
            assert_eq!(e.error_type(), "TemporalLambdaWorker.LayerOrder");
            assert!(
                e.to_string()
                    .contains("default_stack_with_connection_layer"),
                "{e}"
            );
            assert!(fake.connections.lock().unwrap().is_empty());
        }

        #[tokio::test(start_paused = true)]
        async fn no_key_no_tls() {
            let (seen, logs) = logs_of(connection_for(
                env("127.0.0.1:7233"),
                with_queue,
                None,
                false,
            ))
            .await;
            assert_eq!(seen, ("http://127.0.0.1:7233/".into(), false, None));
            assert_eq!(logs, "");
        }

        #[tokio::test(start_paused = true)]
        async fn tls_disabled_by_the_environment_keeps_it_off_with_one_warning() {
            let (seen, logs) = logs_of(connection_for(
                env("127.0.0.1:7233").with_var("TEMPORAL_TLS", "false"),
                with_queue,
                Some(StepLayer::from_step(SetKey)),
                false,
            ))
            .await;
            assert_eq!(
                seen,
                (
                    "http://127.0.0.1:7233/".into(),
                    false,
                    Some("from-a-layer".into())
                )
            );
            assert_eq!(logs.lines().count(), 1, "{logs}");
            assert!(logs.contains("API key"), "{logs}");
            assert!(logs.contains("TEMPORAL_TLS=false"), "{logs}");
            assert!(
                !logs.contains("from-a-layer"),
                "the key is never logged: {logs}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn tls_disabled_in_the_profile_keeps_it_off_with_one_warning() {
            let dir = Dir::with_file(
                "disabled",
                "temporal.toml",
                "[profile.default]\naddress = \"127.0.0.1:7233\"\napi_key = \"k\"\n\
                 [profile.default.tls]\ndisabled = true\n",
            );
            let (seen, logs) = logs_of(connection_for(
                StaticEnvironment::new()
                    .with_var("TEMPORAL_CONFIG_FILE", dir.path("temporal.toml")),
                with_queue,
                None,
                false,
            ))
            .await;
            assert_eq!(
                seen,
                ("http://127.0.0.1:7233/".into(), false, Some("k".into()))
            );
            assert_eq!(logs.lines().count(), 1, "{logs}");
            assert!(logs.contains("tls.disabled = true"), "{logs}");
        }
    }
}
