//! The serverless loop on one machine: a Temporal dev server with its Worker Controller on,
//! the local Lambda control plane serving the `hello` function, and workflows started with
//! no worker started by hand — the server invokes the function when their tasks wait.
//!
//! Usage: `lambda-local BOOTSTRAP [--workflows N] [--timeout SECS] [--concurrency N] [--serve]`
//! (defaults: 2 workflows, 15 s, concurrency 2). `--serve` keeps everything running after
//! the workflows, for starting your own, until Ctrl-C.
//!
//! The bootstrap is expected to run `HelloWorkflow` on the `hello-task-queue` task queue
//! as deployment `hello-app`, build `build-1` (the `hello` example's defaults).

use std::{path::PathBuf, time::Duration};

use temporal_lambda_worker_testkit::{FunctionSpec, Outcome, ServerlessLoop};

const FUNCTION: &str = "hello";
const TASK_QUEUE: &str = "hello-task-queue";
const DEPLOYMENT: &str = "hello-app";
const BUILD_ID: &str = "build-1";
const EXTERNAL_ID: &str = "local-external-id";
const USAGE: &str =
    "usage: lambda-local BOOTSTRAP [--workflows N] [--timeout SECS] [--concurrency N] [--serve]";

struct Args {
    bootstrap: PathBuf,
    workflows: usize,
    timeout: u64,
    concurrency: usize,
    serve: bool,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        bootstrap: PathBuf::new(),
        workflows: 2,
        timeout: 15,
        concurrency: 2,
        serve: false,
    };
    let number = |v: Option<String>, what: &str| -> Result<u64, String> {
        v.ok_or(format!("{what} needs a value; {USAGE}"))?
            .parse()
            .map_err(|e| format!("{what}: {e}; {USAGE}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--workflows" => args.workflows = number(it.next(), "--workflows")? as usize,
            "--timeout" => args.timeout = number(it.next(), "--timeout")?,
            "--concurrency" => args.concurrency = number(it.next(), "--concurrency")? as usize,
            "--serve" => args.serve = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ if args.bootstrap.as_os_str().is_empty() => args.bootstrap = a.into(),
            _ => return Err(format!("unexpected argument {a}; {USAGE}")),
        }
    }
    if args.bootstrap.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    args.bootstrap = args
        .bootstrap
        .canonicalize()
        .map_err(|e| format!("bootstrap {}: {e}", args.bootstrap.display()))?;
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_target(false)
        .init();
    let args = args()?;
    let task_root = std::env::temp_dir().join(format!("lambda-local-{}", std::process::id()));
    std::fs::create_dir_all(&task_root).map_err(|e| e.to_string())?;
    let spec = FunctionSpec::new(FUNCTION, &args.bootstrap)
        .env("TEMPORAL_TASK_QUEUE", TASK_QUEUE)
        .timeout(Duration::from_secs(args.timeout))
        .concurrency(args.concurrency)
        .task_root(&task_root);
    println!(
        "starting the local Lambda control plane (function {}, timeout {}s, concurrency {}) \
         and the Temporal dev server with the Worker Controller; creating version \
         {DEPLOYMENT}/{BUILD_ID} backed by the function (the server invokes it once)…",
        spec.arn(),
        args.timeout,
        args.concurrency
    );
    let ServerlessLoop { plane, server, .. } =
        ServerlessLoop::start(spec, DEPLOYMENT, BUILD_ID, EXTERNAL_ID).await?;
    let address = server.address.clone();
    println!(
        "  control plane {}, dev server {address} (pid {}); {DEPLOYMENT}/{BUILD_ID} is the \
         current version",
        plane.endpoint_url(),
        server.pid()
    );
    let wait = Duration::from_secs(args.timeout * 3);

    for i in 1..=args.workflows {
        let before = plane
            .wait_for(FUNCTION, wait, |s| s.outstanding == 0)
            .await
            .map_err(|s| format!("invocations did not end: {s:?}"))?;
        let id = format!("hello-{}-{i}", std::process::id());
        let name = format!("Temporal #{i}");
        println!("starting workflow {id} while no worker polls…");
        let result = server
            .execute_hello(TASK_QUEUE, &id, &name)
            .await
            .map_err(|e| format!("workflow {id} failed: {e}"))?;
        let greeting = result
            .lines()
            .find(|l| l.contains("Hello,"))
            .unwrap_or("")
            .trim();
        let after = plane
            .wait_for(FUNCTION, wait, |s| s.outstanding == 0)
            .await
            .map_err(|s| format!("invocations did not end: {s:?}"))?;
        println!("workflow {id} completed: {greeting}");
        for a in &after.attempts[before.attempts.len()..] {
            match &a.answer.outcome {
                Outcome::Response(body) => println!(
                    "  served by invoke #{} ({}, connection reused: {}), answered {:.2}s before \
                     its {}s deadline",
                    a.invoke,
                    if a.cold_start { "cold start" } else { "warm" },
                    body["connection_reused"],
                    a.answer.slack(),
                    args.timeout
                ),
                other => println!("  invoke #{} attempt {}: {other:?}", a.invoke, a.attempt),
            }
        }
    }
    let stats = plane.stats(FUNCTION);
    println!(
        "done: {} workflows, {} invokes from the server, {} process(es) started",
        args.workflows, stats.invokes, stats.processes_started
    );
    if args.serve {
        println!(
            "serving until Ctrl-C. Start a workflow and watch the server invoke the function:\n  \
             temporal workflow execute --address {address} --type HelloWorkflow --task-queue \
             {TASK_QUEUE} --input '\"you\"'"
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(plane);
    drop(server);
    let _ = std::fs::remove_dir_all(&task_root);
    Ok(())
}
