//! The serverless loop on one machine: a Temporal dev server with its Worker Controller on,
//! the local Lambda control plane serving a function, and workflows started with no worker
//! started by hand — the server invokes the function when their tasks wait.
//!
//! Usage: `lambda-local BOOTSTRAP [OPTIONS]`:
//!
//! | option | default |
//! | --- | --- |
//! | `--function-name NAME` (the Lambda function's name, in its ARN and log lines) | `hello` |
//! | `--workflows N` | 2 |
//! | `--timeout SECS` (the function's) | 15 |
//! | `--concurrency N` (execution environments at most) | 2 |
//! | `--per-environment N` (invocations one environment takes at once, as on a Lambda Managed Instance: `AWS_LAMBDA_MAX_CONCURRENCY`) | 1 |
//! | `--task-queue Q` (also given to the bootstrap as `TEMPORAL_TASK_QUEUE`) | `hello-task-queue` |
//! | `--deployment D`, `--build-id B` (the version the server invokes the function for) | `hello-app`, `build-1` |
//! | `--workflow-type T`, `--input JSON` (the workflows started) | `HelloWorkflow`, `"Temporal #i"` |
//! | `--env K=V` (repeatable; the bootstrap gets only the Lambda variables and these) | |
//! | `--serve` (keep running after the workflows, until Ctrl-C) | |
//! | `--upgrade` (run the upgrade scenario instead: two builds, each a published Lambda version) | |
//! | `--upgrade-unqualified` (the same with the unqualified ARN: a PINNED workflow is stranded) | |
//!
//! The upgrade scenarios ([`temporal_lambda_worker_testkit::upgrade`]) take the bootstrap and
//! `--timeout` only; the bootstrap must register `WhichBuildWorkflow` (`hello` does).
//!
//! It ends non-zero with the reason when the version-creation invocation answers an error,
//! when the bootstrap polled as another version or task queue, or when a workflow fails
//! (2 for a usage error); `--help` prints the usage.
//!
//! From your own crate: `cargo install --git <this repository> temporal-lambda-worker-testkit
//! --bin lambda-local` (or `--path tests/support` in a clone), then `lambda-local
//! target/debug/my-bootstrap --function-name my-function --task-queue …`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use temporal_lambda_worker_testkit::{FunctionSpec, Outcome, ServerlessLoop, upgrade};

const EXTERNAL_ID: &str = "local-external-id";
const USAGE: &str = "usage: lambda-local BOOTSTRAP [--function-name NAME] [--workflows N] \
     [--timeout SECS] [--concurrency N] [--per-environment N] [--task-queue Q] [--deployment D] [--build-id B] \
     [--workflow-type T] [--input JSON] [--env K=V]... [--serve] | lambda-local BOOTSTRAP \
     [--timeout SECS] (--upgrade | --upgrade-unqualified)";
const HELP: &str = "\
Runs the serverless loop on this machine: a Temporal dev server with its Worker Controller,
the local Lambda control plane serving BOOTSTRAP as a function, and workflows started with
no worker running, so the server invokes the function for each.

Options (default):
  --function-name NAME  the Lambda function's name (hello)
  --workflows N         workflows to start, one after another (2)
  --timeout SECS        the function's timeout (15)
  --concurrency N       execution environments at most (2)
  --per-environment N   invocations one environment takes at once, as on a Lambda Managed
                        Instance (AWS_LAMBDA_MAX_CONCURRENCY=N for the bootstrap) (1)
  --task-queue Q        the task queue, also TEMPORAL_TASK_QUEUE of the bootstrap (hello-task-queue)
  --deployment D        the worker deployment the server invokes the function for (hello-app)
  --build-id B          its build id (build-1)
  --workflow-type T     the workflows started (HelloWorkflow)
  --input JSON          their input (\"Temporal #i\")
  --env K=V             a variable for the bootstrap (repeatable; it gets only the Lambda
                        variables and these)
  --serve               keep running after the workflows, until Ctrl-C
  --upgrade             the upgrade scenario instead: two builds, each a published Lambda version
  --upgrade-unqualified the same with the unqualified ARN: a PINNED workflow is stranded
  -h, --help            this text";

/// Which upgrade scenario to run instead of the workflows.
#[derive(Debug, PartialEq)]
enum Upgrade {
    Published,
    Unqualified,
}

#[derive(Debug)]
struct Args {
    bootstrap: PathBuf,
    function: String,
    workflows: usize,
    timeout: u64,
    concurrency: usize,
    per_environment: usize,
    task_queue: String,
    deployment: String,
    build_id: String,
    workflow_type: String,
    input: Option<String>,
    env: Vec<(String, String)>,
    serve: bool,
    upgrade: Option<Upgrade>,
}

/// The arguments to run with, `None` for `--help`, or a usage error.
fn args_from(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut it = argv.into_iter();
    let mut args = Args {
        bootstrap: PathBuf::new(),
        function: "hello".into(),
        workflows: 2,
        timeout: 15,
        concurrency: 2,
        per_environment: 1,
        task_queue: "hello-task-queue".into(),
        deployment: "hello-app".into(),
        build_id: "build-1".into(),
        workflow_type: "HelloWorkflow".into(),
        input: None,
        env: Vec::new(),
        serve: false,
        upgrade: None,
    };
    let value = |v: Option<String>, what: &str| -> Result<String, String> {
        v.filter(|v| !v.is_empty())
            .ok_or(format!("{what} needs a value; {USAGE}"))
    };
    let number = |v: Option<String>, what: &str| -> Result<u64, String> {
        value(v, what)?
            .parse()
            .map_err(|e| format!("{what}: {e}; {USAGE}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--function-name" => args.function = value(it.next(), "--function-name")?,
            "--workflows" => args.workflows = number(it.next(), "--workflows")? as usize,
            "--timeout" => args.timeout = number(it.next(), "--timeout")?,
            "--concurrency" => args.concurrency = number(it.next(), "--concurrency")? as usize,
            "--per-environment" => {
                args.per_environment = number(it.next(), "--per-environment")? as usize
            }
            "--task-queue" => args.task_queue = value(it.next(), "--task-queue")?,
            "--deployment" => args.deployment = value(it.next(), "--deployment")?,
            "--build-id" => args.build_id = value(it.next(), "--build-id")?,
            "--workflow-type" => args.workflow_type = value(it.next(), "--workflow-type")?,
            "--input" => {
                let input = value(it.next(), "--input")?;
                serde_json::from_str::<serde_json::Value>(&input)
                    .map_err(|e| format!("--input {input}: not JSON ({e}); {USAGE}"))?;
                args.input = Some(input);
            }
            "--env" => {
                let kv = value(it.next(), "--env")?;
                let (k, v) = kv
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or(format!("--env {kv}: expected KEY=VALUE; {USAGE}"))?;
                args.env.push((k.to_owned(), v.to_owned()));
            }
            "--serve" => args.serve = true,
            "--upgrade" => args.upgrade = Some(Upgrade::Published),
            "--upgrade-unqualified" => args.upgrade = Some(Upgrade::Unqualified),
            "-h" | "--help" => return Ok(None),
            _ if args.bootstrap.as_os_str().is_empty() && !a.starts_with("--") => {
                args.bootstrap = a.into()
            }
            _ => return Err(format!("unexpected argument {a}; {USAGE}")),
        }
    }
    if args.bootstrap.as_os_str().is_empty() {
        return Err(format!("no BOOTSTRAP given; {USAGE}"));
    }
    Ok(Some(args))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = match args_from(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(usage) => {
            eprintln!("lambda-local: {usage}");
            return ExitCode::from(2);
        }
    };
    match args.bootstrap.canonicalize() {
        Ok(path) => args.bootstrap = path,
        Err(e) => {
            eprintln!("lambda-local: bootstrap {}: {e}", args.bootstrap.display());
            return ExitCode::from(2);
        }
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lambda-local: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_target(false)
        // Colour only on a terminal: a log written to a file or a pipe stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let task_root = std::env::temp_dir().join(format!("lambda-local-{}", std::process::id()));
    std::fs::create_dir_all(&task_root).map_err(|e| e.to_string())?;
    if let Some(which) = &args.upgrade {
        let ran = run_upgrade(which, &args, &task_root).await;
        let _ = std::fs::remove_dir_all(&task_root);
        return ran;
    }
    let (deployment, build_id) = (&args.deployment, &args.build_id);
    let mut spec = FunctionSpec::new(&args.function, &args.bootstrap)
        .env("TEMPORAL_TASK_QUEUE", &args.task_queue);
    for (k, v) in &args.env {
        spec = spec.env(k, v);
    }
    let spec = spec
        .timeout(Duration::from_secs(args.timeout))
        .concurrency(args.concurrency)
        .per_environment(args.per_environment)
        .task_root(&task_root);
    let per_environment = match args.per_environment {
        0 | 1 => String::new(),
        n => format!(", {n} invocations at once per environment"),
    };
    println!(
        "starting the local Lambda control plane (function {}, timeout {}s, concurrency \
         {}{per_environment}) and the Temporal dev server with the Worker Controller; \
         creating version {deployment}/{build_id} backed by the function (the server \
         invokes it once)…",
        spec.arn(),
        args.timeout,
        args.concurrency
    );
    let ServerlessLoop { plane, server, .. } =
        ServerlessLoop::start(spec, deployment, build_id, EXTERNAL_ID, &args.task_queue).await?;
    let address = server.address.clone();
    println!(
        "  control plane {}, dev server {address} (pid {}); {deployment}/{build_id} is the \
         current version",
        plane.endpoint_url(),
        server.pid()
    );
    let wait = Duration::from_secs(args.timeout * 3);

    for i in 1..=args.workflows {
        let before = plane
            .wait_for(&args.function, wait, |s| s.outstanding == 0)
            .await
            .map_err(|s| format!("invocations did not end: {s:?}"))?;
        let id = format!("hello-{}-{i}", std::process::id());
        let input = args
            .input
            .clone()
            .unwrap_or_else(|| format!("\"Temporal #{i}\""));
        println!(
            "starting workflow {id} ({}) while no worker polls…",
            args.workflow_type
        );
        let result = server
            .execute_workflow(&args.workflow_type, &args.task_queue, &id, Some(&input))
            .await
            .map_err(|e| format!("workflow {id} failed: {e}"))?;
        let greeting = result
            .lines()
            .find(|l| l.contains("Hello,") || l.trim_start().starts_with("Result "))
            .unwrap_or("")
            .trim();
        let after = plane
            .wait_for(&args.function, wait, |s| s.outstanding == 0)
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
    let stats = plane.stats(&args.function);
    println!(
        "done: {} workflows, {} invokes from the server, {} process(es) started",
        args.workflows, stats.invokes, stats.processes_started
    );
    if args.serve {
        println!(
            "serving until Ctrl-C. Start a workflow and watch the server invoke the function:\n  \
             temporal workflow execute --address {address} --type {} --task-queue {} --input \
             '\"you\"'",
            args.workflow_type, args.task_queue
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(plane);
    drop(server);
    let _ = std::fs::remove_dir_all(&task_root);
    Ok(())
}

/// Runs an upgrade scenario, printing each step and check.
async fn run_upgrade(which: &Upgrade, args: &Args, dir: &std::path::Path) -> Result<(), String> {
    let scenario = upgrade::scenario_in(dir, &args.bootstrap, Duration::from_secs(args.timeout));
    let mut say = |line: String| println!("{line}");
    match which {
        Upgrade::Published => {
            upgrade::run_published(&scenario, &mut say).await?;
            println!(
                "done: every workflow ran on the build it must, each build on its own Lambda \
                 version"
            );
        }
        Upgrade::Unqualified => {
            let s = upgrade::run_unqualified(&scenario, &mut say).await?;
            println!(
                "as expected with the unqualified ARN: pinned-1 is still {} after {}s, while \
                 the server invoked the function {} time(s) for it; $LATEST now polls as \
                 build-2 and takes none of build-1's tasks. The bootstrap logged:\n  {}",
                s.status,
                upgrade::STRANDED_FOR.as_secs(),
                s.invocations,
                s.warning.trim()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Args, String> {
        args_from(a.iter().map(|s| s.to_string()))?.ok_or("help".into())
    }

    #[test]
    fn every_option_is_read_and_bad_values_are_named() {
        let a = parse(&[
            "./bootstrap",
            "--function-name",
            "orders-worker",
            "--task-queue",
            "orders",
            "--deployment",
            "shop",
            "--build-id",
            "b7",
            "--workflow-type",
            "OrderWorkflow",
            "--input",
            "{\"id\": 1}",
            "--env",
            "TEMPORAL_NAMESPACE=prod",
            "--env",
            "EMPTY=",
            "--workflows",
            "0",
            "--per-environment",
            "4",
        ])
        .unwrap();
        assert_eq!(a.per_environment, 4);
        assert_eq!(parse(&["b"]).unwrap().per_environment, 1);
        assert_eq!(a.function, "orders-worker");
        assert_eq!(parse(&["b"]).unwrap().function, "hello");
        assert_eq!(a.task_queue, "orders");
        assert_eq!((a.deployment.as_str(), a.build_id.as_str()), ("shop", "b7"));
        assert_eq!(a.workflow_type, "OrderWorkflow");
        assert_eq!(a.input.as_deref(), Some("{\"id\": 1}"));
        assert_eq!(
            a.env,
            [
                ("TEMPORAL_NAMESPACE".to_owned(), "prod".to_owned()),
                ("EMPTY".to_owned(), String::new())
            ]
        );
        assert_eq!(a.workflows, 0);
        assert!(
            parse(&["b", "--env", "NOEQUALS"])
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(
            parse(&["b", "--input", "{not json"])
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse(&["b", "--task-queue"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert_eq!(
            parse(&["b", "--upgrade"]).unwrap().upgrade,
            Some(Upgrade::Published)
        );
        assert_eq!(
            parse(&["b", "--upgrade-unqualified"]).unwrap().upgrade,
            Some(Upgrade::Unqualified)
        );
        for help in ["-h", "--help"] {
            assert!(matches!(
                args_from(["b".to_owned(), help.to_owned()]),
                Ok(None)
            ));
        }
        assert!(
            parse(&[])
                .unwrap_err()
                .starts_with("no BOOTSTRAP given; usage:")
        );
        assert!(
            parse(&["b", "--bogus"])
                .unwrap_err()
                .contains("unexpected argument --bogus")
        );
    }
}
