//! The edges production hits (issue 10): the API key on the wire, a server that dies under
//! a warm process, SIGTERM, a broken Lambda environment and a flaky Runtime API. Each
//! runs the bootstrap as its own process.

use std::time::Duration;

use temporal_lambda_local::{Bootstrap, RuntimeApi, WireRecorder};

use crate::{ARN, TempDir, example_binary};

/// A key with characters HPACK codes long, so a plaintext gRPC header would carry it
/// byte for byte; the recorder also decodes plaintext HTTP/2 headers in any case.
const KEY: &str = "tlw-test-key-{~|^}-4f1c9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_set_by_a_layer_never_crosses_the_wire_in_plaintext() {
    let wire = WireRecorder::start().await.unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("wire");
    let key_file = root.path().join("api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    // `custom_layer` sets the key through ApiKeySecretLayer; the environment has no
    // TEMPORAL_API_KEY and no TLS setting, so nothing but the rule turns TLS on.
    let _bootstrap = Bootstrap::start(
        &example_binary("custom_layer"),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", wire.address()),
            ("TEMPORAL_API_KEY_FILE", key_file.to_str().unwrap()),
            ("TEMPORAL_TASK_QUEUE", "tq-wire"),
        ],
    )
    .unwrap();
    let answer = api.invoke(b"", Duration::from_secs(10)).await;
    // The recorder speaks no TLS: the connection fails, and says why.
    let (ty, msg) = answer.error();
    assert_eq!(ty, "TemporalLambdaWorker.ConnectError", "{msg}");
    assert!(answer.slack() > 0.0);
    assert!(!msg.contains(KEY), "the key is in the error: {msg}");
    assert!(wire.connections() > 0, "the bootstrap never connected");
    let bytes = wire.bytes_at_least(2, Duration::from_secs(5)).await;
    assert!(
        !wire.saw(KEY),
        "the API key went over the wire readable; headers: {:?}",
        wire.plaintext_headers()
    );
    assert!(
        wire.plaintext_headers().is_empty(),
        "plaintext HTTP/2: {:?}",
        wire.plaintext_headers()
    );
    // A TLS handshake record (ClientHello) opens the connection.
    assert_eq!(
        bytes.get(..2),
        Some(&[0x16, 0x03][..]),
        "not a TLS handshake: {:?} (answer: {msg})",
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
    );
}

pub(crate) fn read(log: &std::path::Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits up to `timeout` for `needle` in the log.
async fn wait_for_log(log: &std::path::Path, needle: &str, timeout: Duration) -> bool {
    let until = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < until {
        if read(log).contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_polling_begins_the_graceful_shutdown_and_exits_cleanly() {
    let server = tokio::task::spawn_blocking(temporal_lambda_local::DevServer::start)
        .await
        .unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("sigterm");
    let log = root.path().join("bootstrap.log");
    let mut bootstrap = Bootstrap::start_logging_to(
        &crate::hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "tq-sigterm"),
            ("HELLO_DEPLOYMENT_NAME", "dep-sigterm"),
            ("RUST_LOG", "info"),
        ],
        &log,
    )
    .unwrap();
    let pending = api.submit(b"", Duration::from_secs(60));
    assert!(
        wait_for_log(&log, "worker polling", Duration::from_secs(30)).await,
        "never polled: {}",
        read(&log)
    );
    bootstrap.signal("TERM").unwrap();
    let sent = std::time::Instant::now();
    let code = tokio::task::spawn_blocking(move || {
        let code = bootstrap.wait_exit(Duration::from_secs(5));
        (code, bootstrap)
    })
    .await
    .unwrap()
    .0;
    let took = sent.elapsed();
    let text = read(&log);
    assert_eq!(
        code,
        Some(Some(0)),
        "not a clean exit after SIGTERM ({took:?}): {text}"
    );
    assert!(
        took < Duration::from_millis(1000),
        "took {took:?} to exit: {text}"
    );
    assert_eq!(
        text.matches("SIGTERM: the execution environment is shutting down")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("the process is stopping (SIGTERM): graceful shutdown"),
        "the polling worker did not begin its graceful shutdown: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    // If the drain beat the exit, the invocation was answered normally.
    if let temporal_lambda_local::Outcome::Error { error_type, .. } =
        &pending.answer().await.outcome
    {
        panic!("answered an error after SIGTERM: {error_type}");
    }
}

/// The hello bootstrap on `api`, logging to `log`, with nothing listening at its Temporal
/// address: each invocation answers a ConnectError quickly.
fn start_without_temporal(
    api: &RuntimeApi,
    root: &std::path::Path,
    log: &std::path::Path,
) -> Bootstrap {
    Bootstrap::start_logging_to(
        &crate::hello_binary(),
        &api.address(),
        "hello",
        root,
        &[("TEMPORAL_ADDRESS", "127.0.0.1:1"), ("RUST_LOG", "info")],
        log,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_next_request_is_retried_and_the_process_goes_on_serving() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    api.reset_next_requests(1);
    let root = TempDir::new("reset");
    let log = root.path().join("bootstrap.log");
    let mut bootstrap = start_without_temporal(&api, root.path(), &log);
    // Nothing listens at the Temporal address: an error answered quickly, which is all
    // this test needs of an invocation.
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        api.invoke(b"", Duration::from_secs(10)),
    )
    .await;
    let text = read(&log);
    let answer = answer.unwrap_or_else(|_| panic!("never answered: {text}"));
    let (ty, _) = answer.error();
    assert_eq!(ty, "TemporalLambdaWorker.ConnectError", "{text}");
    assert_eq!(api.resets_done(), 1);
    assert_eq!(text.matches("retrying in").count(), 1, "{text}");
    assert_eq!(bootstrap.exited(), None, "{text}");
}

/// A faulty emulator's `next` answers: without a deadline the invocation answers an
/// error naming the header; without a request id (nothing to answer) one log line. The
/// process goes on serving either way (`lambda_runtime` 1.5 panics on both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_next_answer_is_answered_or_logged_and_the_process_goes_on_serving() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("malformed-next");
    let log = root.path().join("bootstrap.log");
    let mut bootstrap = start_without_temporal(&api, root.path(), &log);
    let no_deadline = api.submit_without(b"", Duration::from_secs(5), "Lambda-Runtime-Deadline-Ms");
    let no_deadline = no_deadline.answer().await;
    let text = read(&log);
    let (ty, message) = no_deadline.error();
    assert_eq!(ty, "TemporalLambdaWorker.InvalidInvocation", "{text}");
    assert!(
        message.contains("without a Lambda-Runtime-Deadline-Ms header"),
        "{message}"
    );
    let no_id = api.submit_without(b"", Duration::from_secs(1), "Lambda-Runtime-Aws-Request-Id");
    assert_eq!(
        no_id.answer().await.outcome,
        temporal_lambda_local::Outcome::NoAnswer
    );
    // Nothing listens at the Temporal address: an error answered quickly is all this
    // test needs of a well-formed invocation.
    let answer = api.invoke(b"", Duration::from_secs(10)).await;
    let text = read(&log);
    let (ty, message) = answer.error();
    assert_eq!(ty, "TemporalLambdaWorker.ConnectError", "{text}");
    // The failure in words, not the SDK's Debug dump of it.
    assert!(
        message.contains("the connection failed: transport error: tcp connect error"),
        "{message}"
    );
    assert!(!message.contains("Os {"), "{message}");
    assert_eq!(
        text.matches("without a Lambda-Runtime-Aws-Request-Id header")
            .count(),
        1,
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(bootstrap.exited(), None, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_api_that_keeps_failing_ends_the_process_cleanly_after_three_retries() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    api.reset_next_requests(100);
    let root = TempDir::new("resets");
    let log = root.path().join("bootstrap.log");
    let mut bootstrap = Bootstrap::start_logging_to(
        &crate::hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[("RUST_LOG", "info")],
        &log,
    )
    .unwrap();
    let code = tokio::task::spawn_blocking(move || bootstrap.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    let text = read(&log);
    assert!(matches!(code, Some(Some(c)) if c != 0), "{code:?}: {text}");
    assert_eq!(api.resets_done(), 4, "{text}");
    assert_eq!(text.matches("retrying in").count(), 3, "{text}");
    assert!(text.contains("failed 4 times in a row"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_lambda_environment_posts_an_init_error_naming_the_variable() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    for (name, value) in [
        ("AWS_LAMBDA_FUNCTION_NAME", None),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", Some("lots")),
    ] {
        let root = TempDir::new(&format!("env-{name}"));
        let log = root.path().join("bootstrap.log");
        let mut cmd = Bootstrap::command(
            &crate::hello_binary(),
            &api.address(),
            "hello",
            root.path(),
            &[],
            Some(&log),
        )
        .unwrap();
        match value {
            None => cmd.env_remove(name),
            Some(v) => cmd.env(name, v),
        };
        let mut bootstrap = Bootstrap::from_command(cmd).unwrap();
        let code =
            tokio::task::spawn_blocking(move || bootstrap.wait_exit(Duration::from_secs(10)))
                .await
                .unwrap();
        let text = read(&log);
        assert!(
            matches!(code, Some(Some(c)) if c != 0),
            "{name}: {code:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{name}: {text}");
        // The exit line Rust prints for `main`'s error is words, not a quoted Debug string.
        assert!(
            text.contains("Error: the Lambda environment is broken: "),
            "{name}: {text}"
        );
        let errors = api.init_errors();
        let last = errors
            .last()
            .unwrap_or_else(|| panic!("{name}: no init error: {text}"));
        assert!(last.contains(name), "{last}");
        assert!(
            last.contains("TemporalLambdaWorker.InvalidLambdaEnvironment"),
            "{last}"
        );
    }
    assert_eq!(api.init_errors().len(), 2);
}

/// The JSON log lines of `text` whose message is `message`.
pub(crate) fn json_lines(text: &str, message: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// The fields of the `invocation summary` line of invocation `request_id` in `text`.
pub(crate) fn summary_fields(text: &str, request_id: &str) -> serde_json::Value {
    json_lines(text, "invocation summary")
        .into_iter()
        .find(|s| s["fields"]["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no summary for {request_id}: {text}"))["fields"]
        .clone()
}

/// A dev server, a Runtime API and the `hello` bootstrap logging JSON to a file, polling
/// as `dep-{tag}` on `tq-{tag}` with `env` added, its version registered and current.
pub(crate) struct HelloSetup {
    pub(crate) server: std::sync::Arc<temporal_lambda_local::DevServer>,
    pub(crate) api: RuntimeApi,
    pub(crate) log: std::path::PathBuf,
    pub(crate) bootstrap: Bootstrap,
    pub(crate) root: TempDir,
}

impl HelloSetup {
    pub(crate) async fn start(tag: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(tag, env, &[]).await
    }

    /// [`start`](Self::start), the dev server started with `server_args` added.
    pub(crate) async fn start_with(
        tag: &str,
        env: &[(&str, &str)],
        server_args: &'static [&'static str],
    ) -> Self {
        Self::start_through(tag, env, server_args, None).await
    }

    /// [`start_with`](Self::start_with), the bootstrap connecting through `proxy` (which
    /// is pointed at the dev server).
    pub(crate) async fn start_through(
        tag: &str,
        env: &[(&str, &str)],
        server_args: &'static [&'static str],
        proxy: Option<&temporal_lambda_local::SlowRpc>,
    ) -> Self {
        let server = std::sync::Arc::new(
            tokio::task::spawn_blocking(move || {
                temporal_lambda_local::DevServer::start_on_first_free(
                    std::iter::repeat_with(temporal_lambda_local::dev_server::free_port),
                    &[],
                    server_args,
                )
            })
            .await
            .unwrap(),
        );
        let api = RuntimeApi::start(ARN).await.unwrap();
        let root = TempDir::new(tag);
        let log = root.path().join("bootstrap.log");
        let (queue, deployment) = (format!("tq-{tag}"), format!("dep-{tag}"));
        let address = match proxy {
            Some(proxy) => {
                proxy.forward_to(&server.address);
                proxy.address()
            }
            None => server.address.as_str(),
        };
        let mut all = vec![
            ("TEMPORAL_ADDRESS", address),
            ("TEMPORAL_TASK_QUEUE", &queue),
            ("HELLO_DEPLOYMENT_NAME", &deployment),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ];
        all.extend_from_slice(env);
        let bootstrap = Bootstrap::start_logging_to(
            &crate::hello_binary(),
            &api.address(),
            "hello",
            root.path(),
            &all,
            &log,
        )
        .unwrap();
        server
            .register_version(&api, &deployment, "build-1")
            .await
            .unwrap();
        Self {
            server,
            api,
            log,
            bootstrap,
            root,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_exit_ends_the_invocation_after_the_work_and_the_summary_line_says_what_it_did() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start(
        "idle",
        &[
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "1.5"),
            // The window alone: the workflow starts while the invocation polls, so a worker
            // that had settled would leave before its first task.
            ("TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS", "off"),
        ],
    )
    .await;
    let (answer, result) = tokio::join!(
        api.invoke(b"", Duration::from_secs(60)),
        server.execute_hello("tq-idle", "wf-idle", "Idle")
    );
    assert!(result.unwrap().contains("Hello, Idle!"));
    answer.response();
    let text = read(log);
    // Without the idle exit it would poll until 7 s before the deadline: 53 s.
    assert!(
        answer.slack() > 45.0,
        "answered {:.1}s before the deadline: {text}",
        answer.slack()
    );
    assert!(!text.contains('\u{1b}'), "ANSI in the log: {text}");
    let summaries = json_lines(&text, "invocation summary");
    let last = summaries
        .last()
        .unwrap_or_else(|| panic!("no summary: {text}"));
    let f = &last["fields"];
    assert_eq!(f["request_id"], answer.request_id.as_str(), "{last}");
    assert_eq!(f["outcome"], "ok", "{last}");
    assert_eq!(f["stop_reason"], "idle", "{last}");
    assert!(
        f["workflow_tasks_completed"].as_u64().unwrap() >= 2,
        "{last}"
    );
    assert_eq!(f["workflow_tasks_failed"], 0, "{last}");
    assert_eq!(f["activity_tasks_completed"], 1, "{last}");
    assert_eq!(f["activity_tasks_failed"], 0, "{last}");
    assert_eq!(f["connection_reused"], true, "{last}");
    // Idle is counted from polling start to the end of the drain.
    let idle = f["idle_ms"].as_u64().unwrap();
    let session = f["polled_ms"].as_u64().unwrap() + f["drain_ms"].as_u64().unwrap();
    assert!(idle >= 1500 && idle <= session + 1, "{last}");
    for field in ["first_poll_ms", "drain_ms", "slack_ms"] {
        assert!(f[field].is_u64(), "{field} in {last}");
    }
    // One summary per invocation: the registering one and this one.
    assert_eq!(summaries.len(), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_logged_once_without_colour() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("once");
    let log = root.path().join("bootstrap.log");
    let _bootstrap = Bootstrap::start_logging_to(
        &crate::hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[("TEMPORAL_ADDRESS", "127.0.0.1:1")],
        &log,
    )
    .unwrap();
    let answer = api.invoke(b"", Duration::from_secs(10)).await;
    assert_eq!(answer.error().0, "TemporalLambdaWorker.ConnectError");
    // The answer is posted after the log line is written.
    let text = read(&log);
    assert_eq!(
        text.matches("Nothing accepts connections").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("Diagnostic {"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_that_could_not_finish_before_the_drain_ends_runs_in_the_next_invocation() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start(
        "admit",
        &[
            ("TEMPORAL_LONGEST_ACTIVITY_SECS", "7"),
            // The invocations are made by hand here, not by the Worker Controller when the
            // handed-back task waits: the second one must still poll when it comes back.
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
        ],
    )
    .await;
    // A 7 s activity, expected to take 7 s. The first invocation (12 s) polls for 5 s and
    // its drain ends 5 s later, at 10 s: a whole invocation has room for the activity, but
    // the workflow starts 4.5 s in, so the activity is polled after 3 s, too late to end by
    // then. Without the setting it would run until 11.7 s, past the drain (it ignores the
    // cancellation): the worker is abandoned and the invocation answers DrainTimeout.
    let first = api.submit(b"", Duration::from_secs(12));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let workflow = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .execute_workflow("SlowHelloWorkflow", "tq-admit", "wf-admit", Some("7000"))
                .await
        }
    });
    let first = first.answer().await;
    first.response();
    // The next invocation (17 s: polls 10 s) has time for it, and for the workflow task
    // after it while still polling.
    let second = api.invoke(b"", Duration::from_secs(17)).await;
    second.response();
    let result = workflow.await.unwrap().unwrap();
    assert!(result.contains("Hello after 7000 ms!"), "{result}");

    let history = server.history("wf-admit").await.unwrap();
    let events = history["events"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or_default())
        .collect();
    assert!(
        !kinds.iter().any(|k| k.contains("TIMED_OUT")),
        "a timeout in the history: {kinds:?}"
    );
    let started = events
        .iter()
        .find(|e| e["eventType"].as_str() == Some("EVENT_TYPE_ACTIVITY_TASK_STARTED"))
        .unwrap_or_else(|| panic!("no activity started: {kinds:?}"));
    let attempt = &started["activityTaskStartedEventAttributes"]["attempt"];
    assert_eq!(attempt, 2, "the run of the second invocation: {started}");

    let text = read(log);
    let f = summary_fields(&text, &first.request_id);
    assert_eq!(f["activity_tasks_deferred"], 1, "{f}");
    assert_eq!(f["activity_tasks_completed"], 0, "{f}");
    let f = summary_fields(&text, &second.request_id);
    assert_eq!(f["activity_tasks_deferred"], 0, "{f}");
    assert_eq!(f["activity_tasks_completed"], 1, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_the_server_would_not_retry_is_never_handed_back() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start(
        "last-attempt",
        &[
            ("TEMPORAL_LONGEST_ACTIVITY_SECS", "12"),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
        ],
    )
    .await;
    // A 15 s invocation polls for 8 s; its drain ends at 13 s. An activity expected to take
    // up to 12 s fits when polled at once, not when polled 2 s in: with retries left it
    // would be handed back. This one has a single attempt (maximum_attempts = 1), which a
    // hand-back would use up and fail the workflow; it takes 1 s, so it runs and ends well
    // within the polling.
    let first = api.submit(b"", Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = server
        .execute_workflow(
            "SlowHelloOnceWorkflow",
            "tq-last-attempt",
            "wf-last-attempt",
            Some("1000"),
        )
        .await;
    let answer = first.answer().await;
    answer.response();
    assert!(
        result
            .as_deref()
            .is_ok_and(|r| r.contains("Hello after 1000 ms!")),
        "{result:?}"
    );
    let text = read(log);
    let f = summary_fields(&text, &answer.request_id);
    assert_eq!(f["activity_tasks_deferred"], 0, "{f}");
    assert_eq!(f["activity_tasks_completed"], 1, "{f}");
    assert!(
        text.contains("runs anyway: it is on the last attempt its retry policy allows"),
        "the warning says why it ran: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_invocation_leaves_once_its_workflow_is_done() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start("settled", &[]).await;
    // As the Worker Controller invokes: the workflow's first task waits in the queue. Its
    // chain of 3 activities keeps the worker (each result is expected), and its completion
    // leaves nothing expected: the invocation leaves 500 ms later, not after the 2 s window.
    server
        .start_workflow("ChainWorkflow", "tq-settled", "wf-chain", Some("3"))
        .await
        .unwrap();
    let answer = api.invoke(b"", Duration::from_secs(60)).await;
    answer.response();
    let status = server.workflow_status("wf-chain").await.unwrap();
    assert!(status.contains("COMPLETED"), "{status}");
    let text = read(log);
    let f = summary_fields(&text, &answer.request_id);
    assert_eq!(f["stop_reason"], "settled", "{f}");
    assert_eq!(f["activity_tasks_completed"], 3, "{f}");
    let polled = f["polled_ms"].as_u64().unwrap();
    assert!(
        polled < 2000,
        "polled {polled} ms: it waited for the window: {f}"
    );
    assert!(
        text.contains("none expected (TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_idle_exit_on_a_handed_back_activity_runs_in_a_fresh_invocation_at_once() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start(
        "handback",
        &[
            ("TEMPORAL_LONGEST_ACTIVITY_SECS", "20"),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "12"),
        ],
    )
    .await;
    // A 30 s invocation polls until 23 s and its drain ends at 28 s; an activity expected
    // to take up to 20 s fits only when polled before 8 s. The workflow starts 9 s in, so
    // its activity (1 s in fact) is handed back. The shutdown moment is 14 s away, but the
    // invocation stops polling at the hand-back and the retry comes a second later, for
    // the next invocation.
    let first = api.submit(b"", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(9)).await;
    let workflow = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .execute_workflow(
                    "SlowHelloWorkflow",
                    "tq-handback",
                    "wf-handback",
                    Some("1000"),
                )
                .await
        }
    });
    let first = first.answer().await;
    first.response();
    assert!(
        first.slack() > 15.0,
        "answered {:.1}s before the deadline: it polled on after the hand-back",
        first.slack()
    );
    let answered = std::time::Instant::now();
    let second = api.submit(b"", Duration::from_secs(30));
    let result = workflow.await.unwrap().unwrap();
    assert!(result.contains("Hello after 1000 ms!"), "{result}");
    let waited = answered.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "the handed-back activity ran {waited:?} after the first answer: its retry \
         waited for the first invocation's shutdown moment"
    );
    let second = second.answer().await;
    second.response();

    let text = read(log);
    let f = summary_fields(&text, &first.request_id);
    assert_eq!(f["stop_reason"], "activity_handed_back", "{f}");
    assert_eq!(f["activity_tasks_deferred"], 1, "{f}");
    let f = summary_fields(&text, &second.request_id);
    assert_eq!(f["activity_tasks_deferred"], 0, "{f}");
    assert_eq!(f["activity_tasks_completed"], 1, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_workflow_type_the_worker_does_not_register_is_named_once() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start("unregistered", &[("TEMPORAL_IDLE_SHUTDOWN_SECS", "1")]).await;
    server
        .start_workflow(
            "ShipmentWorkflow",
            "tq-unregistered",
            "wf-unregistered",
            None,
        )
        .await
        .unwrap();
    let answer = api.invoke(b"", Duration::from_secs(30)).await;
    answer.response();
    let text = read(log);
    // The server retries the failed task; the type is named once.
    let said = text
        .lines()
        .filter(|l| l.contains("which this worker does not register"))
        .count();
    assert_eq!(said, 1, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("which this worker does not register"))
        .unwrap();
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    assert!(line.contains("it registers: "), "{line}");
    assert!(line.contains("HelloWorkflow"), "{line}");
    let summaries = json_lines(&text, "invocation summary");
    let last = summaries
        .last()
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert_eq!(last["fields"]["outcome"], "failed_work", "{last}");
    assert_eq!(
        last["fields"]["unregistered_workflow_types"], "ShipmentWorkflow",
        "{last}"
    );
}
