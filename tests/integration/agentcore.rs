//! The AgentCore host (issue 36) as its own process: the `hello` bootstrap with
//! `HELLO_HOST=agentcore` serving AgentCore Runtime's HTTP contract, against the real dev
//! server: invoked directly, and through the whole loop (the dev server's Worker
//! Controller calling the local control plane's `InvokeAgentRuntime`, which runs each
//! runtime session's container as a process).

use std::time::Duration;

use temporal_lambda_local::{
    AgentRuntimeSpec, Bootstrap, DevServer, ServerlessLoop,
    control_plane::{SessionEnd, agent_runtime_arn},
    dev_server::free_port,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{TempDir, edges::read, hello_binary};

/// One HTTP/1.1 request to the container; the status and the JSON body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

async fn ping(port: u16) -> serde_json::Value {
    http(port, "GET", "/ping", "", "").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agentcore_host_runs_a_session_per_invocation_and_says_so_on_ping() {
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let root = TempDir::new("agentcore");
    let log = root.path().join("container.log");
    let port = free_port();
    let port_text = port.to_string();
    let _container = Bootstrap::start_logging_to(
        &hello_binary(),
        "127.0.0.1:9",
        "hello",
        root.path(),
        &[
            ("HELLO_HOST", "agentcore"),
            ("PORT", &port_text),
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "tq-agentcore"),
            ("HELLO_DEPLOYMENT_NAME", "dep-agentcore"),
            (
                "TEMPORAL_AGENTCORE_RUNTIME_ARN",
                "arn:aws:bedrock-agentcore:us-east-1:0:runtime/hello",
            ),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "1"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ],
        &log,
    )
    .unwrap();
    let up = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), up)
        .await
        .unwrap_or_else(|_| panic!("the container never listened: {}", read(&log)));
    assert_eq!(ping(port).await, serde_json::json!({ "status": "Healthy" }));

    // The Worker Controller's body: this build's own version. The session polls (busy),
    // registers the version with the server, and leaves by the idle exit.
    let body = r#"{"deploymentName":"dep-agentcore","buildId":"build-1"}"#;
    let session =
        "x-amzn-bedrock-agentcore-runtime-session-id: session-1-0123456789012345678901234567\r\n";
    let (status, started) = http(port, "POST", "/invocations", session, body).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "started");
    assert_eq!(ping(port).await["status"], "HealthyBusy");
    server
        .set_current_version("dep-agentcore", "build-1", Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", read(&log)));

    // Another invocation's session takes a workflow's tasks.
    let (status, _) = http(port, "POST", "/invocations", "", body).await;
    assert_eq!(status, 200);
    let result = server
        .execute_hello("tq-agentcore", "wf-agentcore", "AgentCore")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", read(&log)));
    assert!(result.contains("Hello, AgentCore!"), "{result}");

    // Both sessions end by the idle exit: Healthy again, the change dated.
    let idle = async {
        loop {
            let p = ping(port).await;
            if p["status"] == "Healthy" {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let p = tokio::time::timeout(Duration::from_secs(30), idle)
        .await
        .unwrap();
    assert!(p["time_of_last_update"].is_u64(), "{p}");
    let text = read(&log);
    assert!(
        text.contains("session-1-0123456789012345678901234567@arn:aws:bedrock-agentcore:us-east-1:0:runtime/hello"),
        "the session's identity: {text}"
    );

    // An invocation for another build: answered, and the session says why it ran nothing.
    let other = r#"{"deploymentName":"dep-agentcore","buildId":"build-9"}"#;
    let (status, _) = http(port, "POST", "/invocations", "", other).await;
    assert_eq!(status, 200);
    let named = async {
        while !read(&log).contains("this invocation is for version dep-agentcore/build-9") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), named)
        .await
        .unwrap_or_else(|_| panic!("the mismatch was not named: {}", read(&log)));
}

const EXTERNAL_ID: &str = "agentcore-external-id";

/// The `hello` container as an agent runtime of the local control plane: sessions leave
/// after 1 s without work, and AgentCore stops a session 2 s after it says `Healthy`.
fn hello_runtime(id: &str, tq: &str, dep: &str, log: &std::path::Path) -> AgentRuntimeSpec {
    AgentRuntimeSpec::new(id, hello_binary())
        .env("HELLO_HOST", "agentcore")
        .env("TEMPORAL_TASK_QUEUE", tq)
        .env("HELLO_DEPLOYMENT_NAME", dep)
        .env("TEMPORAL_AGENTCORE_RUNTIME_ARN", &agent_runtime_arn(id))
        .env("TEMPORAL_IDLE_SHUTDOWN_SECS", "1")
        .idle_session_timeout(Duration::from_secs(2))
        .log_to(log)
}

/// The whole loop on AgentCore: the Worker Controller checks the runtime endpoint, invokes
/// the runtime when the version is created and when workflows wait, each invocation a
/// session (a container process) of its own that answers at once, serves the workflows,
/// says `HealthyBusy` while it polls, leaves by the idle exit, says `Healthy`, and is
/// stopped by AgentCore's idle session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_controller_invokes_the_agent_runtime_and_its_sessions_serve_workflows() {
    let (id, tq, dep) = ("hello-ac", "tq-ac-loop", "dep-ac-loop");
    let root = TempDir::new("ac-loop");
    let log = root.path().join("containers.log");
    let lp = ServerlessLoop::launch_agentcore(hello_runtime(id, tq, dep, &log), EXTERNAL_ID)
        .await
        .unwrap();
    lp.register_agent_runtime(dep, "build-1", tq)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", read(&log)));
    lp.make_current(dep, "build-1").await.unwrap();
    // The greeting of a `HelloWorkflow` run through the loop.
    let hello = async |wf: &str, name: &str| {
        lp.server
            .execute_hello(tq, wf, name)
            .await
            .unwrap_or_else(|e| {
                let stats = lp.plane.agent_runtime_stats(id);
                panic!("{e}\n{stats:?}\n{}", read(&log))
            })
    };
    // Every session ends: left by the idle exit, then stopped by AgentCore.
    let all_ended = async |more_than: usize| {
        lp.plane
            .wait_for_agent_runtime(id, Duration::from_secs(30), |s| {
                s.sessions_started > more_than && s.sessions.len() == s.sessions_started
            })
            .await
            .unwrap_or_else(|s| panic!("sessions still running: {s:?}\n{}", read(&log)))
    };
    for i in 0..3 {
        let result = hello(&format!("wf-ac-loop-{i}"), "AgentCore").await;
        assert!(result.contains("Hello, AgentCore!"), "{result}");
    }
    let ended = all_ended(0).await;
    // With no session left, a workflow's task brings a new invocation, a new session.
    let result = hello("wf-ac-loop-after", "again").await;
    assert!(result.contains("Hello, again!"), "{result}");
    let stats = all_ended(ended.sessions_started).await;
    assert_eq!(
        stats.sessions_started, stats.invokes,
        "a session per invocation: {stats:?}"
    );
    for (status, body) in &stats.answers {
        assert_eq!(*status, 200, "{body}");
        assert!(
            body.contains(r#""status":"started""#),
            "answered at once: {body}"
        );
    }
    assert!(
        stats.sessions.iter().all(|s| s.ended == SessionEnd::Idle),
        "{stats:?}"
    );
    assert!(stats.bad_pings.is_empty(), "{stats:?}");
    // Each session: HealthyBusy while it polls, then Healthy.
    assert_eq!(
        stats.pings.iter().filter(|p| *p == "HealthyBusy").count(),
        stats.sessions_started,
        "{stats:?}"
    );
    assert_eq!(
        stats.pings.last().map(String::as_str),
        Some("Healthy"),
        "{stats:?}"
    );
    let text = read(&log);
    assert!(
        text.contains(&format!("@{}", agent_runtime_arn(id))),
        "the sessions' identity names the runtime: {text}"
    );
}

/// A version backed by a runtime whose container is another build: the invocation is
/// answered, the session starts no worker, and the log names both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runtime_invoked_for_another_version_says_so_in_its_log() {
    let (id, tq, dep) = ("hello-ac-other", "tq-ac-other", "dep-ac-other");
    let root = TempDir::new("ac-other");
    let log = root.path().join("containers.log");
    let lp = ServerlessLoop::launch_agentcore(hello_runtime(id, tq, dep, &log), EXTERNAL_ID)
        .await
        .unwrap();
    let err = lp
        .register_agent_runtime(dep, "build-2", tq)
        .await
        .expect_err("no worker of build-2 polls");
    assert!(
        matches!(&err, temporal_lambda_local::Error::Invocation(m) if m.contains("no worker of dep-ac-other/build-2")),
        "{err}"
    );
    let text = read(&log);
    assert!(
        text.contains("this invocation is for version dep-ac-other/build-2"),
        "{text}"
    );
    assert!(
        text.contains("build-1"),
        "the container's own version: {text}"
    );
}
