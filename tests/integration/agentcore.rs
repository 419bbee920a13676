//! The AgentCore host (issue 36) as its own process: the `hello` bootstrap with
//! `HELLO_HOST=agentcore` serving AgentCore Runtime's HTTP contract on a free port, against
//! the real dev server. (The Worker Controller's side, `InvokeAgentRuntime` through a local
//! control plane, is not built yet: this test invokes the container as it would.)

use std::time::Duration;

use temporal_lambda_local::{Bootstrap, DevServer, dev_server::free_port};
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
