//! The serverless loop on one machine: a Temporal dev server with its Worker Controller on,
//! the local Lambda control plane serving a function, and workflows started with no worker
//! started by hand — the server invokes the function when their tasks wait.
//!
//! `lambda-local --help` lists the options (one source: the `Args` below). By default each
//! run publishes the function's code as a Lambda version and registers that version's
//! qualified ARN, as a deploy does (`--unpublished` registers `$LATEST` instead). The
//! upgrade scenarios ([`temporal_lambda_local::upgrade`]) take the bootstrap and
//! `--timeout` only; the bootstrap must register `WhichBuildWorkflow` (`hello` does).
//!
//! With `--agentcore` the bootstrap is served as an Amazon Bedrock AgentCore Runtime
//! container instead (its `main` calls `agentcore::run_worker`; `hello` with
//! `HELLO_HOST=agentcore`, which this sets for the function named `hello`): the control
//! plane plays `InvokeAgentRuntime`, each invocation a runtime session, a process of its
//! own on a free `PORT`.
//!
//! It ends non-zero with the reason when the version-creation invocation answers an error,
//! when the bootstrap polled as another version or task queue, or when a workflow fails
//! (2 for a usage error); `--help` prints the usage and exits 0.
//!
//! From your own crate: `cargo install --path tests/support` in a clone, then `lambda-local
//! target/debug/my-bootstrap --function-name my-function --task-queue …`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

use temporal_lambda_local::{
    AgentRuntimeSpec, DevServer, Error, FunctionSpec, Outcome, Result, ServerlessLoop,
    control_plane::agent_runtime_arn, upgrade,
};

const EXTERNAL_ID: &str = "local-external-id";

/// Runs the serverless loop on this machine: a Temporal dev server with its Worker
/// Controller, the local Lambda control plane serving BOOTSTRAP as a function, and
/// workflows started with no worker running, so the server invokes the function for each.
#[derive(Debug, Parser)]
#[command(name = "lambda-local", version, about, long_about = None)]
struct Args {
    /// The bootstrap to serve as the function (`cargo build`'s binary, or the `bootstrap`
    /// in a `cargo lambda build` zip).
    bootstrap: PathBuf,
    /// The Lambda function's name, in its ARN and log lines.
    #[arg(long = "function-name", value_name = "NAME", default_value = "hello")]
    function: String,
    /// Workflows to start, one after another (with `--workflow-type`; the `hello`
    /// example's HelloWorkflow when none is given).
    #[arg(long, value_name = "N", default_value_t = 2)]
    workflows: usize,
    /// The function's timeout, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    timeout: u64,
    /// Execution environments at most.
    #[arg(long, value_name = "N", default_value_t = 2)]
    concurrency: usize,
    /// Invocations one environment takes at once, as on a Lambda Managed Instance
    /// (`AWS_LAMBDA_MAX_CONCURRENCY=N` for the bootstrap).
    #[arg(long = "per-environment", value_name = "N", default_value_t = 1)]
    per_environment: usize,
    /// The task queue, also `TEMPORAL_TASK_QUEUE` of the bootstrap.
    #[arg(
        long = "task-queue",
        value_name = "Q",
        default_value = "hello-task-queue"
    )]
    task_queue: String,
    /// The worker deployment the server invokes the function for.
    #[arg(long, value_name = "D", default_value = "hello-app")]
    deployment: String,
    /// Its build id.
    #[arg(long = "build-id", value_name = "B", default_value = "build-1")]
    build_id: String,
    /// The type of the workflows started (none given: the `hello` example's HelloWorkflow
    /// for a function named `hello`, else no workflow is started).
    #[arg(long = "workflow-type", value_name = "T")]
    workflow_type: Option<String>,
    /// Their input, as JSON (default: `"Temporal #i"`).
    #[arg(long, value_name = "JSON", value_parser = json_text)]
    input: Option<String>,
    /// A variable for the bootstrap (repeatable; it gets the variables Lambda sets and
    /// these, nothing else of this shell's).
    #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Keep running after the workflows, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Register the function's unqualified ARN (`$LATEST`) instead of a published version.
    /// Only to reproduce what an unpublished deploy does: a version registered so runs
    /// whatever code is deployed next, and the bootstrap warns at every invocation.
    #[arg(long)]
    unpublished: bool,
    /// Serve the bootstrap as an AgentCore Runtime container (the agent runtime's id is
    /// `--function-name`) instead of a Lambda function.
    #[arg(long, conflicts_with_all = ["upgrade", "upgrade_unqualified", "unpublished"])]
    agentcore: bool,
    /// With `--agentcore`: how long a session whose container says `Healthy` lives on
    /// before AgentCore stops it (the runtime's `idleRuntimeSessionTimeout`), in seconds.
    #[arg(
        long = "idle-session-timeout",
        value_name = "SECS",
        default_value_t = 60
    )]
    idle_session_timeout: u64,
    /// Run the upgrade scenario instead: two builds, each a published Lambda version.
    #[arg(long, conflicts_with = "upgrade_unqualified")]
    upgrade: bool,
    /// The same with the unqualified ARN: a PINNED workflow is stranded.
    #[arg(long = "upgrade-unqualified")]
    upgrade_unqualified: bool,
}

/// Which upgrade scenario to run instead of the workflows.
#[derive(Debug, PartialEq)]
enum Upgrade {
    Published,
    Unqualified,
}

impl Args {
    fn upgrade(&self) -> Option<Upgrade> {
        match (self.upgrade, self.upgrade_unqualified) {
            (true, _) => Some(Upgrade::Published),
            (_, true) => Some(Upgrade::Unqualified),
            _ => None,
        }
    }
}

/// `--input`: must be JSON.
fn json_text(input: &str) -> Result<String> {
    serde_json::from_str::<serde_json::Value>(input)
        .map(|_| input.to_owned())
        .map_err(|e| Error::Usage(format!("not JSON ({e})")))
}

/// `--env K=V`.
fn key_value(kv: &str) -> Result<(String, String)> {
    kv.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| Error::Usage(format!("expected KEY=VALUE, not {kv:?}")))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // Usage errors exit 2, `--help` and `--version` 0 (clap's own).
    let mut args = Args::parse();
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

async fn run(args: Args) -> Result<()> {
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
    std::fs::create_dir_all(&task_root)
        .map_err(|e| Error::io(format!("creating {}", task_root.display()), e))?;
    let ran = match args.upgrade() {
        Some(which) => run_upgrade(&which, &args, &task_root).await,
        None if args.agentcore => run_agentcore(&args).await,
        None => run_loop(&args, &task_root).await,
    };
    let _ = std::fs::remove_dir_all(&task_root);
    ran
}

/// The loop: the function registered and current, the workflows, then (with `--serve`)
/// until Ctrl-C.
async fn run_loop(args: &Args, task_root: &std::path::Path) -> Result<()> {
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
        .task_root(task_root);
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
    say_if_no_collector().await;
    let lp = ServerlessLoop::launch(spec, EXTERNAL_ID).await?;
    let arn = version_arn(&lp, args).await?;
    lp.register(deployment, build_id, &arn, &args.task_queue)
        .await?;
    lp.make_current(deployment, build_id).await?;
    say_ready(&lp, deployment, build_id);
    let workflows = run_workflows(args, &lp).await?;
    let stats = lp.plane.stats(&args.function);
    println!(
        "done: {workflows} workflows, {} invokes from the server, {} process(es) started",
        stats.invokes, stats.processes_started
    );
    if args.serve {
        serve(args, &lp.server.address).await;
    }
    Ok(())
}

/// Where the loop's parts listen, once the version is current.
fn say_ready(lp: &ServerlessLoop, deployment: &str, build_id: &str) {
    println!(
        "  control plane {}, dev server {} (pid {}); {deployment}/{build_id} is the current \
         version",
        lp.plane.endpoint_url(),
        lp.server.address,
        lp.server.pid()
    );
}

/// `--agentcore`: the loop with the bootstrap as an AgentCore Runtime container.
async fn run_agentcore(args: &Args) -> Result<()> {
    let (id, deployment, build_id) = (&args.function, &args.deployment, &args.build_id);
    let mut spec = AgentRuntimeSpec::new(id, &args.bootstrap)
        .env("TEMPORAL_TASK_QUEUE", &args.task_queue)
        .env("TEMPORAL_AGENTCORE_RUNTIME_ARN", &agent_runtime_arn(id))
        .idle_session_timeout(Duration::from_secs(args.idle_session_timeout));
    if id == "hello" {
        spec = spec.env("HELLO_HOST", "agentcore");
    }
    for (k, v) in &args.env {
        spec = spec.env(k, v);
    }
    println!(
        "starting the local control plane (AgentCore agent runtime {}, idle session timeout \
         {}s) and the Temporal dev server with the Worker Controller; creating version \
         {deployment}/{build_id} backed by the runtime's DEFAULT endpoint (the server \
         invokes it once)…",
        spec.arn(),
        args.idle_session_timeout
    );
    say_if_no_collector().await;
    let lp = ServerlessLoop::launch_agentcore(spec, EXTERNAL_ID).await?;
    lp.register_agent_runtime(deployment, build_id, &args.task_queue)
        .await?;
    lp.make_current(deployment, build_id).await?;
    say_ready(&lp, deployment, build_id);
    let mut started = 0;
    if let Some(workflow_type) = args.workflow_type() {
        for i in 1..=args.workflows {
            let id = workflow_id(args, i);
            println!("starting workflow {id} ({workflow_type})…");
            let line = execute(args, &lp.server, workflow_type, i).await?;
            println!("workflow {id} completed: {line}");
            started += 1;
        }
    }
    let stats = lp.plane.agent_runtime_stats(&args.function);
    println!(
        "done: {started} workflows, {} invocations from the server, {} session(s) started, \
         {} stopped ({:?}); /ping went {:?}",
        stats.invokes,
        stats.sessions_started,
        stats.sessions.len(),
        stats.sessions.iter().map(|s| s.ended).collect::<Vec<_>>(),
        stats.pings
    );
    if args.serve {
        serve(args, &lp.server.address).await;
    }
    Ok(())
}

/// Starts `--workflows` workflows one after another, each served by the function, and says
/// which invocation served it. Returns how many it started.
async fn run_workflows(args: &Args, lp: &ServerlessLoop) -> Result<usize> {
    let Some(workflow_type) = args.workflow_type() else {
        println!(
            "no --workflow-type given: starting no workflow (start yours, or pass \
             --workflow-type)"
        );
        return Ok(0);
    };
    let (plane, server) = (&lp.plane, &lp.server);
    let wait = Duration::from_secs(args.timeout * 3);
    for i in 1..=args.workflows {
        let before = plane
            .wait_for(&args.function, wait, |s| s.outstanding == 0)
            .await
            .map_err(|s| Error::timeout(format!("the invocations to end ({s:?})"), wait))?;
        let id = workflow_id(args, i);
        println!("starting workflow {id} ({workflow_type}) while no worker polls…");
        let greeting = execute(args, server, workflow_type, i).await?;
        let after = plane
            .wait_for(&args.function, wait, |s| s.outstanding == 0)
            .await
            .map_err(|s| Error::timeout(format!("the invocations to end ({s:?})"), wait))?;
        println!("workflow {id} completed: {greeting}");
        say_attempts(&after.attempts[before.attempts.len()..], args.timeout);
    }
    Ok(args.workflows)
}

/// The id of the `i`th workflow this run starts.
fn workflow_id(args: &Args, i: usize) -> String {
    format!("{}-{}-{i}", args.function, std::process::id())
}

/// Runs the `i`th workflow (`--input`, else `"Temporal #i"`) to its end; its result line
/// (a greeting, or the CLI's `Result` line).
async fn execute(args: &Args, server: &DevServer, workflow_type: &str, i: usize) -> Result<String> {
    let id = workflow_id(args, i);
    let input = args
        .input
        .clone()
        .unwrap_or_else(|| format!("\"Temporal #{i}\""));
    let result = server
        .execute_workflow(workflow_type, &args.task_queue, &id, Some(&input))
        .await
        .map_err(|e| Error::workflow(&id, format!("failed: {e}")))?;
    Ok(result
        .lines()
        .find(|l| l.contains("Hello,") || l.trim_start().starts_with("Result "))
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// One line per invocation attempt.
fn say_attempts(attempts: &[temporal_lambda_local::control_plane::Attempt], timeout: u64) {
    for a in attempts {
        match &a.answer.outcome {
            Outcome::Response(body) => println!(
                "  served by invoke #{} ({}, connection reused: {}), answered {:.2}s before its \
                 {timeout}s deadline",
                a.invoke,
                if a.cold_start { "cold start" } else { "warm" },
                body["connection_reused"],
                a.answer.slack(),
            ),
            other => println!("  invoke #{} attempt {}: {other:?}", a.invoke, a.attempt),
        }
    }
}

/// `--serve`: a hint to start a workflow on the user's task queue, then until Ctrl-C.
async fn serve(args: &Args, address: &str) {
    let workflow_type = args.workflow_type();
    let input = match (&args.input, workflow_type) {
        (Some(input), _) => format!(" --input '{input}'"),
        (None, Some("HelloWorkflow")) => " --input '\"you\"'".to_owned(),
        (None, _) => String::new(),
    };
    println!(
        "serving until Ctrl-C. Start a workflow and watch the server invoke the function:\n  \
         temporal workflow execute --address {address} --task-queue {} --type {}{input}",
        args.task_queue,
        workflow_type.unwrap_or("<YourWorkflowType>"),
    );
    let _ = tokio::signal::ctrl_c().await;
}

impl Args {
    /// The workflows' type: the one given, else `hello`'s for the `hello` function.
    fn workflow_type(&self) -> Option<&str> {
        match &self.workflow_type {
            Some(t) => Some(t),
            None if self.function == "hello" => Some("HelloWorkflow"),
            None => None,
        }
    }
}

/// The ARN the version is registered with: a version published from the function's code
/// now, as a deploy does, or with `--unpublished` the unqualified ARN.
async fn version_arn(lp: &ServerlessLoop, args: &Args) -> Result<String> {
    let unqualified = temporal_lambda_local::control_plane::function_arn(&args.function);
    if args.unpublished {
        println!(
            "--unpublished: registering {unqualified} ($LATEST), which runs whatever code is \
             deployed next; the bootstrap warns about it at every invocation"
        );
        return Ok(unqualified);
    }
    let version = lp.plane.publish_version(&args.function).await?;
    println!("published the function's code as version {version}, as a deploy does");
    Ok(format!("{unqualified}:{version}"))
}

/// One line when no OpenTelemetry collector listens where a bootstrap built with the `otel`
/// feature sends (it would warn at every flush), saying what to do.
async fn say_if_no_collector() {
    let listening = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", 4317)),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    if !listening {
        println!(
            "no OpenTelemetry collector listens on localhost:4317: a bootstrap built with the \
             `otel` feature warns at every flush. Start one (docker run --rm -p 4317:4317 \
             otel/opentelemetry-collector), point it at yours (--env \
             OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:4317), or run a build without `otel`"
        );
    }
}

/// Runs an upgrade scenario, printing each step and check.
async fn run_upgrade(which: &Upgrade, args: &Args, dir: &std::path::Path) -> Result<()> {
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
    use clap::{CommandFactory, error::ErrorKind};

    use super::*;

    /// Parses `a`; clap's message on failure, which the tests read as a user would.
    fn parse(a: &[&str]) -> std::result::Result<Args, String> {
        Args::try_parse_from(std::iter::once("lambda-local").chain(a.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_options_are_one_consistent_definition() {
        Args::command().debug_assert();
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
        assert_eq!(a.workflow_type(), Some("OrderWorkflow"));
        // No type given: hello's for the `hello` function, none for another.
        assert_eq!(
            parse(&["b"]).unwrap().workflow_type(),
            Some("HelloWorkflow")
        );
        let other = parse(&["b", "--function-name", "orders"]).unwrap();
        assert_eq!(other.workflow_type(), None);
        assert_eq!(a.input.as_deref(), Some("{\"id\": 1}"));
        assert_eq!(
            a.env,
            [
                ("TEMPORAL_NAMESPACE".to_owned(), "prod".to_owned()),
                ("EMPTY".to_owned(), String::new())
            ]
        );
        assert_eq!(a.workflows, 0);
        assert!(!a.unpublished);
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
                .contains("a value is required")
        );
        assert_eq!(
            parse(&["b", "--upgrade"]).unwrap().upgrade(),
            Some(Upgrade::Published)
        );
        assert_eq!(
            parse(&["b", "--upgrade-unqualified"]).unwrap().upgrade(),
            Some(Upgrade::Unqualified)
        );
        assert!(parse(&["b", "--unpublished"]).unwrap().unpublished);
        for help in ["-h", "--help"] {
            let e = Args::try_parse_from(["lambda-local", "b", help]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DisplayHelp);
            assert_eq!(e.exit_code(), 0, "--help exits 0");
        }
        let e = parse(&[]).unwrap_err();
        assert!(e.contains("<BOOTSTRAP>"), "{e}");
        assert!(
            parse(&["b", "--bogus"])
                .unwrap_err()
                .contains("unexpected argument '--bogus'")
        );
    }
}
