//! The session through the default stack over a fake backend, on Tokio's paused clock.

use crate::{
    BoxError, Invocation, LambdaWorkerConfig, LambdaWorkerError, StaticEnvironment,
    WorkerDeploymentVersion, WorkerReport, WorkerStack,
    backend::{RunningWorker, SessionConfig, StartTimings, WorkerBackend},
    rules::IDLE_SHUTDOWN_VAR,
    testing::{self, FakeBackend, FakeBehaviour, FakeSession},
};
use futures_util::future::BoxFuture;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use temporal_lambda_local::TempDir;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

fn version() -> WorkerDeploymentVersion {
    testing::version("my-app", "build-1")
}

/// The default stack with the fake backend, and an environment where the idle exit is
/// off (these tests follow a session to the shutdown buffer; the fake's worker runs no
/// tasks, so with the default idle exit every session would end after 2 s).
fn stack<C: crate::ConfigureCallback>(
    configure: C,
    backend: FakeBackend,
) -> impl Service<Invocation, Response = WorkerReport, Error = BoxError> {
    WorkerStack::new(version(), configure)
        .backend(backend)
        .environment(StaticEnvironment::new().with_var(IDLE_SHUTDOWN_VAR, "off"))
        .build()
}

#[tokio::test(start_paused = true)]
async fn by_default_an_idle_worker_begins_its_graceful_shutdown_after_two_seconds() {
    let fake = FakeBackend::new();
    let start = Instant::now();
    WorkerStack::new(version(), with_queue)
        .backend(fake.clone())
        .environment(StaticEnvironment::new())
        .build()
        .oneshot(testing::invocation_in(Duration::from_secs(60)))
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
    let fake = FakeBackend::new();
    let start = Instant::now();
    let report = stack(with_queue, fake.clone())
        .oneshot(testing::invocation_in(Duration::from_secs(60)))
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
        Some(format!("test-request@{}", testing::FUNCTION_ARN).as_str())
    );
    assert_eq!(
        (report.deployment_name.as_str(), report.build_id.as_str()),
        ("my-app", "build-1")
    );
    let session = &fake.sessions()[0];
    assert_eq!(session.task_queue, "tq");
    assert!(
        session
            .identity
            .as_deref()
            .unwrap()
            .starts_with("test-request@")
    );
    assert_eq!(
        session.eager_activity_reservations, 0,
        "eager activities stay off even when configure sets them"
    );
    assert!(session.versioning);
    assert_eq!(session.graceful_shutdown, Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn missing_task_queue_fails_before_connecting() {
    let fake = FakeBackend::new();
    let err = stack(
        |_: &mut LambdaWorkerConfig| Ok::<_, BoxError>(()),
        fake.clone(),
    )
    .oneshot(testing::invocation_in(Duration::from_secs(60)))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("TEMPORAL_TASK_QUEUE"), "{err}");
    assert!(
        err.to_string().contains("config.worker.task_queue"),
        "{err}"
    );
    assert!(fake.sessions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_server_is_a_connect_error_naming_the_address() {
    let err = stack(
        with_queue,
        FakeBackend::with_behaviour(FakeBehaviour::FailsToConnect),
    )
    .oneshot(testing::invocation_in(Duration::from_secs(60)))
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("http://localhost:7233/"), "{msg}");
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(msg.contains("TEMPORAL_ADDRESS"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_never_drains_is_abandoned_at_the_drain_cap_and_recycles() {
    let fake = FakeBackend::with_behaviour(FakeBehaviour::NeverDrains);
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
    .oneshot(testing::invocation_in(Duration::from_secs(60)))
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
        (FakeBehaviour::FailsToConnect, true),
        (FakeBehaviour::DrainsOnShutdown, false),
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
        let err = stack(configure, FakeBackend::with_behaviour(behaviour))
            .oneshot(testing::invocation_in(Duration::from_secs(60)))
            .await
            .unwrap_err();
        assert!(*ran.lock().unwrap(), "the hook did not run after: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_error_fails_the_invocation() {
    let err = stack(
        with_queue,
        FakeBackend::with_behaviour(FakeBehaviour::StopsWithError),
    )
    .oneshot(testing::invocation_in(Duration::from_secs(60)))
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
    stack(configure, FakeBackend::new())
        .oneshot(testing::invocation_in(Duration::from_secs(30)))
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
    stack(configure, FakeBackend::new())
        .oneshot(testing::invocation_in(Duration::from_secs(30)))
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
    let mut svc = stack(configure, FakeBackend::new());
    for _ in 0..3 {
        svc.ready()
            .await
            .unwrap()
            .call(testing::invocation_in(Duration::from_secs(20)))
            .await
            .unwrap();
    }
    assert_eq!(*calls.lock().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_stop_signal_begins_the_graceful_shutdown_at_once() {
    let fake = FakeBackend::new();
    let (trigger, signal) = crate::StopSignal::new();
    let mut inv = testing::invocation_in(Duration::from_secs(60));
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
    fn start(
        &self,
        _: SessionConfig,
    ) -> BoxFuture<'static, Result<RunningWorker, LambdaWorkerError>> {
        Box::pin(async {
            Ok(RunningWorker {
                shutdown: Box::new(|| {}),
                finished: Box::pin(async {
                    Err(LambdaWorkerError::ServerUnreachable {
                        target: "http://x:7233/".into(),
                        source: "Unavailable".into(),
                        problem: crate::ConnectProblem::Refused,
                    })
                }),
                connection_reused: true,
                timings: StartTimings::default(),
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_backends_own_diagnosis_is_answered_as_it_is() {
    let err = WorkerStack::new(version(), with_queue)
        .backend(Unreachable)
        .environment(StaticEnvironment::new())
        .build()
        .oneshot(testing::invocation_in(Duration::from_secs(60)))
        .await
        .unwrap_err();
    let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
    assert_eq!(e.error_type(), "TemporalLambdaWorker.ServerUnreachable");
    assert!(e.to_string().contains("http://x:7233/"), "{e}");
}

mod tls_rule_wherever_the_key_was_set {
    //! The TLS rule (`LambdaWorkerConfig::secure_connection`, unit-tested where it lives)
    //! holds wherever the key was set: the worker service applies it after every layer and
    //! the configure callback. An API key turns TLS on, unless TLS was explicitly disabled.
    use super::*;
    use crate::layers::{ApiKeySecretLayer, InvocationStep, NoSecretResolver, StepLayer};
    use crate::log_capture::warnings_of;
    use tower::ServiceBuilder;

    /// Runs one invocation through the default stack in `env` (with `extra` above
    /// the configure layer, as a user's own layer sits) and returns what the backend
    /// was asked to connect to.
    async fn connection_for<C: crate::ConfigureCallback>(
        env: StaticEnvironment,
        configure: C,
        key_layer: Option<StepLayer<SetKey>>,
        secret_layer: bool,
    ) -> FakeSession {
        let fake = FakeBackend::new();
        // The user's layers where the insertion point puts them: right after config
        // loading.
        let theirs = ServiceBuilder::new()
            .option_layer(
                secret_layer
                    .then(|| ApiKeySecretLayer::with_environment(NoSecretResolver, env.clone())),
            )
            .option_layer(key_layer);
        let svc = WorkerStack::new(version(), configure)
            .backend(fake.clone())
            .environment(env)
            .layer(theirs)
            .build();
        svc.oneshot(testing::invocation_in(Duration::from_secs(30)))
            .await
            .unwrap();
        fake.sessions()[0].clone()
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

    fn assert_tls(seen: &FakeSession, host: &str, key: &str) {
        assert_eq!(seen.target, format!("https://{host}/"), "{seen:?}");
        assert!(seen.tls, "TLS is on: {seen:?}");
        assert!(seen.api_key_is(key), "{seen:?}");
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
        let dir = TempDir::new("session-1");
        dir.write(
            "temporal.toml",
            "[profile.default]\naddress = \"ns.tmprl.cloud:7233\"\napi_key = \"from-file\"\n",
        );
        let seen = connection_for(
            StaticEnvironment::new().with_var(
                "TEMPORAL_CONFIG_FILE",
                dir.path().join("temporal.toml").to_str().unwrap(),
            ),
            with_queue,
            None,
            false,
        )
        .await;
        assert_tls(&seen, "ns.tmprl.cloud:7233", "from-file");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_from_the_api_key_secret_layer_turns_tls_on() {
        let dir = TempDir::new("session-2");
        dir.write("key", "from-secret\n");
        let seen = connection_for(
            env("ns.tmprl.cloud:7233").with_var(
                "TEMPORAL_API_KEY_FILE",
                dir.path().join("key").to_str().unwrap(),
            ),
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
    async fn a_layer_added_to_the_worker_stack_keeps_its_key() {
        let fake = FakeBackend::new();
        WorkerStack::new(version(), with_queue)
            .backend(fake.clone())
            .environment(env("ns.tmprl.cloud:7233"))
            .layer(StepLayer::from_step(SetKey))
            .build()
            .oneshot(testing::invocation_in(Duration::from_secs(30)))
            .await
            .unwrap();
        let seen = fake.sessions()[0].clone();
        assert_tls(&seen, "ns.tmprl.cloud:7233", "from-a-layer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_layer_wrapped_around_the_worker_stack_is_an_error_not_a_lost_key() {
        let fake = FakeBackend::new();
        let svc = ServiceBuilder::new()
            .layer(StepLayer::from_step(SetKey))
            .service(
                WorkerStack::new(version(), with_queue)
                    .backend(fake.clone())
                    .environment(env("ns.tmprl.cloud:7233"))
                    .build(),
            );
        let err = svc
            .oneshot(testing::invocation_in(Duration::from_secs(30)))
            .await
            .unwrap_err();
        let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
        assert_eq!(e.error_type(), "TemporalLambdaWorker.LayerOrder");
        assert!(e.to_string().contains("WorkerStack::layer"), "{e}");
        assert!(fake.sessions().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn no_key_no_tls() {
        let (seen, logs) = warnings_of(connection_for(
            env("127.0.0.1:7233"),
            with_queue,
            None,
            false,
        ))
        .await;
        assert_eq!(
            (seen.target.as_str(), seen.tls, seen.api_key_set),
            ("http://127.0.0.1:7233/", false, false)
        );
        assert_eq!(logs, "");
    }

    #[tokio::test(start_paused = true)]
    async fn tls_disabled_by_the_environment_keeps_it_off_with_one_warning() {
        let (seen, logs) = warnings_of(connection_for(
            env("127.0.0.1:7233").with_var("TEMPORAL_TLS", "false"),
            with_queue,
            Some(StepLayer::from_step(SetKey)),
            false,
        ))
        .await;
        assert_eq!(
            (seen.target.as_str(), seen.tls),
            ("http://127.0.0.1:7233/", false)
        );
        assert!(seen.api_key_is("from-a-layer"), "{seen:?}");
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
        let dir = TempDir::new("session-3");
        dir.write(
            "temporal.toml",
            "[profile.default]\naddress = \"127.0.0.1:7233\"\napi_key = \"k\"\n\
             [profile.default.tls]\ndisabled = true\n",
        );
        let (seen, logs) = warnings_of(connection_for(
            StaticEnvironment::new().with_var(
                "TEMPORAL_CONFIG_FILE",
                dir.path().join("temporal.toml").to_str().unwrap(),
            ),
            with_queue,
            None,
            false,
        ))
        .await;
        assert_eq!(
            (seen.target.as_str(), seen.tls),
            ("http://127.0.0.1:7233/", false)
        );
        assert!(seen.api_key_is("k"), "{seen:?}");
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("tls.disabled = true"), "{logs}");
    }
}

/// A backend whose worker takes 250 ms to start (100 ms connecting, 150 ms creating) and
/// whose start resolves 50 ms after the worker began polling (its reply's way back).
struct SlowStart;

impl WorkerBackend for SlowStart {
    fn start(
        &self,
        _: SessionConfig,
    ) -> BoxFuture<'static, Result<RunningWorker, LambdaWorkerError>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(RunningWorker {
                shutdown: Box::new(|| {}),
                finished: Box::pin(async { Ok(()) }),
                connection_reused: false,
                timings: StartTimings {
                    connect: Duration::from_millis(100),
                    create_worker: Duration::from_millis(150),
                    handover: Duration::from_millis(50),
                },
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_report_splits_the_time_to_the_first_poll() {
    let report = WorkerStack::new(version(), with_queue)
        .backend(SlowStart)
        .environment(StaticEnvironment::new())
        .build()
        .oneshot(testing::invocation_in(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        (report.connect_us, report.create_worker_us),
        (100_000, 150_000)
    );
    // From the invocation entering the stack to the worker polling: its start, not the
    // reply's way back, and the stack's own microseconds (the clock is paused: none).
    assert_eq!(report.first_poll_us, 250_000);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    // Dated 50 ms back from the start's end (real time, which runs on beside the paused
    // clock: the upper bound leaves room for a loaded machine, not for the whole start).
    let since = now_us - report.polling_since_epoch_us;
    assert!(
        (50_000..300_000).contains(&since),
        "polling began {since} µs ago"
    );
}

#[test]
fn an_idle_wait_below_the_controllers_signal_interval_is_raised_to_it() {
    // 0.2 s stranded a workflow started 0.4 s after the one that brought the invocation
    // (seen in serverless_loop::the_server_invokes_the_function_for_waiting_tasks).
    for var in [
        "TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS",
        "TEMPORAL_IDLE_SHUTDOWN_SECS",
    ] {
        let raised = super::at_least_the_signal_interval(var, Duration::from_millis(200));
        assert_eq!(raised, super::SIGNAL_INTERVAL);
        let kept = super::at_least_the_signal_interval(var, Duration::from_millis(800));
        assert_eq!(kept, Duration::from_millis(800));
    }
}
