//! Runs a Lambda bootstrap against a local Temporal dev server through a local Lambda
//! Runtime API, and starts one workflow per simulated invocation.
//!
//! Usage: `lambda-local BOOTSTRAP [INVOCATIONS] [TIMEOUT_SECS]` (defaults: 3, 15).
//! The bootstrap is expected to run `HelloWorkflow` on the `hello-task-queue` task queue
//! as deployment `hello-app`, build `build-1` (the `hello` example).

use std::{path::PathBuf, time::Duration};

use temporal_lambda_worker_testkit::{Bootstrap, DevServer, Outcome, RuntimeApi};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:hello";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let bootstrap: PathBuf = args
        .next()
        .ok_or("usage: lambda-local BOOTSTRAP [INVOCATIONS] [TIMEOUT_SECS]")?
        .into();
    let bootstrap = bootstrap
        .canonicalize()
        .map_err(|e| format!("bootstrap {}: {e}", bootstrap.display()))?;
    let invocations: usize = args
        .next()
        .map_or(Ok(3), |a| a.parse())
        .map_err(|e| format!("INVOCATIONS: {e}"))?;
    let timeout: u64 = args
        .next()
        .map_or(Ok(15), |a| a.parse())
        .map_err(|e| format!("TIMEOUT_SECS: {e}"))?;

    println!("starting the Temporal dev server…");
    let server = tokio::task::spawn_blocking(DevServer::start)
        .await
        .map_err(|e| e.to_string())?;
    println!("  dev server pid {} on {}", server.pid(), server.address);
    let api = RuntimeApi::start(ARN).await.map_err(|e| e.to_string())?;
    println!("  Lambda Runtime API on {}", api.address());
    let task_root = std::env::temp_dir().join(format!("lambda-local-{}", std::process::id()));
    std::fs::create_dir_all(&task_root).map_err(|e| e.to_string())?;
    let function = Bootstrap::start(
        &bootstrap,
        &api.address(),
        "hello",
        &task_root,
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "hello-task-queue"),
        ],
    )
    .map_err(|e| format!("cannot start {}: {e}", bootstrap.display()))?;
    println!(
        "  bootstrap pid {} ({})",
        function.pid(),
        bootstrap.display()
    );

    println!("registering deployment version hello-app/build-1 (first invocation)…");
    server
        .register_version(&api, "hello-app", "build-1")
        .await?;

    for i in 1..=invocations {
        let id = format!("hello-{}-{i}", std::process::id());
        let name = format!("Temporal #{i}");
        let (answer, result) = tokio::join!(
            api.invoke(b"", Duration::from_secs(timeout)),
            server.execute_hello("hello-task-queue", &id, &name)
        );
        let result = result.map_err(|e| format!("workflow {id} failed: {e}"))?;
        let greeting = result
            .lines()
            .find(|l| l.contains("Hello,"))
            .unwrap_or("")
            .trim();
        match &answer.outcome {
            Outcome::Response(body) => println!(
                "invocation {i}: workflow {id} completed ({greeting}); answered {:.2}s before the \
                 {timeout}s deadline; connection reused: {}",
                answer.slack(),
                body["connection_reused"]
            ),
            other => return Err(format!("invocation {i} failed: {other:?}")),
        }
    }
    let _ = std::fs::remove_dir_all(&task_root);
    println!("done: {invocations} invocations served by one warm process");
    Ok(())
}
