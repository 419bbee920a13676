//! Idle exit through the real serverless loop (issues 14 and 20): the dev server's Worker
//! Controller invokes the `hello` function through the local control plane (as
//! `scripts/hello.sh` runs it), for a suite of workloads, once per value of
//! `TEMPORAL_IDLE_SHUTDOWN_SECS`. Prints, per run: billed seconds (the sum of invocation
//! durations, hand-out → answer) and billed seconds per workflow, invocations, cold starts,
//! workflow start → close latency (median, p95, max; the workflows the bench started, not
//! their children) and workflows not completed. Asserts nothing.
//!
//! The workloads (`TLW_BENCH_SCENARIOS`, comma-separated; default all but `burst`):
//! - `sparse`: a `HelloWorkflow` (one activity) every 10 s, 12 of them;
//! - `chain`: a `ChainWorkflow` of 5 activities one after another, every 10 s, 6 of them;
//! - `timers`: a `TimerWorkflow` (activity, timer of 0.5, 1 or 3 s, activity), every 10 s, 6;
//! - `signal`: a `WhichBuildWorkflow` waiting for a signal sent 1–5 s after its start, then
//!   an activity, every 10 s, 6;
//! - `even300`: 300 `HelloWorkflow`s arriving evenly over 10 s;
//! - `parent`: a `ParentWorkflow` running 3 child `HelloWorkflow`s one after another, every
//!   10 s, 6;
//! - `burst`: 300 `HelloWorkflow`s at once.
//!
//! Run: `cargo bench --bench idle_exit` (the debug `hello`; build it first with
//! `cargo build --workspace --examples`), or `TLW_BENCH_BOOTSTRAP=path`. Knobs:
//! `TLW_BENCH_IDLE` (comma-separated values of `TEMPORAL_IDLE_SHUTDOWN_SECS` to compare,
//! `off` for none, each optionally `+` a value of `TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS`:
//! `2+off`, `2+0.1`; default `off,2+off,2`), `TLW_BENCH_TIMEOUT_SECS` (the function's timeout, 60),
//! `TLW_BENCH_SPARSE` (workflows of the sparse stream, 12), `TLW_BENCH_EVERY_SECS` (the gap
//! between the starts of the spaced workloads, 10), `TLW_BENCH_SPACED` (workflows of each
//! other spaced workload, 6), `TLW_BENCH_BURST` (workflows of the burst and of `even300`,
//! 300), `TLW_BENCH_CONCURRENCY` (10), `TLW_BENCH_SERVER_ARGS` (more
//! `temporal server start-dev` arguments, whitespace-separated), `TLW_BENCH_SLOWEST` (print the slowest workflow's
//! history), `TLW_BENCH_LOGS=dir` (keep every bootstrap's log).

use std::{path::PathBuf, sync::Arc, time::Duration};

use temporal_lambda_local::{
    DevServer, FunctionSpec, ServerlessLoop, TempDir,
    bench::{debug_example, env_or, epoch_secs, percentile, server_args_from_env, workflow_times},
};

const EXTERNAL_ID: &str = "bench-external-id";

fn bootstrap() -> PathBuf {
    std::env::var_os("TLW_BENCH_BOOTSTRAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| debug_example("hello"))
}

struct Row {
    idle: String,
    scenario: &'static str,
    workflows: usize,
    billed: f64,
    invocations: usize,
    cold_starts: usize,
    latencies: Vec<f64>,
    lost: usize,
}

async fn start_workflows(server: &Arc<DevServer>, queue: &str, ids: Vec<String>) {
    use futures::StreamExt;
    futures::stream::iter(ids)
        .for_each_concurrent(16, |id| {
            let server = server.clone();
            let queue = queue.to_owned();
            async move {
                if let Err(e) = server.start_hello(&queue, &id, "Idle").await {
                    eprintln!("could not start {id}: {e}");
                }
            }
        })
        .await;
}

/// Starts one workflow of `kind` (and, for `signal`, sends its signal 1–5 s later).
async fn start_one(server: &Arc<DevServer>, queue: &str, kind: &str, id: &str, i: usize) {
    let started = match kind {
        "chain" => {
            server
                .start_workflow("ChainWorkflow", queue, id, Some("5"))
                .await
        }
        "timers" => {
            let millis = ["500", "1000", "3000"][i % 3];
            server
                .start_workflow("TimerWorkflow", queue, id, Some(millis))
                .await
        }
        "signal" => {
            let r = server
                .start_workflow("WhichBuildWorkflow", queue, id, Some("true"))
                .await;
            let (server, id) = (server.clone(), id.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1 + (i % 5) as u64)).await;
                if let Err(e) = server.signal(&id, "proceed").await {
                    eprintln!("could not signal {id}: {e}");
                }
            });
            r
        }
        "parent" => {
            server
                .start_workflow("ParentWorkflow", queue, id, Some("3"))
                .await
        }
        _ => server.start_hello(queue, id, "Idle").await,
    };
    if let Err(e) = started {
        eprintln!("could not start {id}: {e}");
    }
}

/// Starts the workflows of `scenario`, paced as it says; their ids.
async fn start_scenario(
    server: &Arc<DevServer>,
    queue: &str,
    scenario: &str,
    name: &str,
) -> Vec<String> {
    let every = Duration::from_secs(env_or("TLW_BENCH_EVERY_SECS", 10));
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("wf-{name}-{i}")).collect() };
    match scenario {
        "burst" => {
            let ids = ids(env_or("TLW_BENCH_BURST", 300));
            start_workflows(server, queue, ids.clone()).await;
            ids
        }
        "even300" => {
            // Evenly over 10 s: a batch of 10 every 10 s / (n / 10).
            let ids = ids(env_or("TLW_BENCH_BURST", 300));
            let batches = ids.len().div_ceil(10).max(1);
            let gap = Duration::from_secs(10) / batches as u32;
            let mut next = tokio::time::Instant::now();
            for batch in ids.chunks(10) {
                tokio::time::sleep_until(next).await;
                next += gap;
                start_workflows(server, queue, batch.to_vec()).await;
            }
            ids
        }
        kind => {
            let n = if kind == "sparse" {
                env_or("TLW_BENCH_SPARSE", 12)
            } else {
                env_or("TLW_BENCH_SPACED", 6)
            };
            let ids = ids(n);
            let mut next = tokio::time::Instant::now();
            for (i, id) in ids.iter().enumerate() {
                tokio::time::sleep_until(next).await;
                next += every;
                start_one(server, queue, kind, id, i).await;
            }
            tokio::time::sleep_until(next).await;
            ids
        }
    }
}

async fn run(idle: &str, scenario: &'static str, tag: usize) -> Row {
    let timeout = Duration::from_secs(env_or("TLW_BENCH_TIMEOUT_SECS", 60));
    let name = format!("idle{tag}");
    let queue = format!("tq-{name}");
    let deployment = format!("dep-{name}");
    let root = TempDir::new(&format!("bench-idle-{tag}"));
    let mut spec = FunctionSpec::new(&name, bootstrap())
        .env("TEMPORAL_TASK_QUEUE", &queue)
        .env("HELLO_DEPLOYMENT_NAME", &deployment)
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        // The bench registers the function's unqualified ARN (one build, never upgraded).
        .env("TEMPORAL_ALLOW_UNPUBLISHED_CODE", "1")
        .timeout(timeout)
        .concurrency(env_or("TLW_BENCH_CONCURRENCY", 10))
        .task_root(root.path());
    // `WINDOW[+SETTLED]`. The window is always set: unset is the 2 s default, not off; the
    // settled wait only when given (unset: the library's default).
    let (window, settled) = window_and_settled(idle);
    spec = spec.env("TEMPORAL_IDLE_SHUTDOWN_SECS", window);
    if let Some(settled) = settled {
        spec = spec.env("TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS", settled);
    }
    if let Some(dir) = std::env::var_os("TLW_BENCH_LOGS") {
        // Every bootstrap's log, at INFO, in DIR/<run>.log.
        let file = PathBuf::from(dir).join(format!("{name}-{scenario}.log"));
        spec.set_env("AWS_LAMBDA_LOG_LEVEL", "INFO");
        spec = spec.log_to(file);
    }
    let ServerlessLoop { plane, server, .. } =
        ServerlessLoop::launch_with(spec, EXTERNAL_ID, server_args_from_env())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .registered(&deployment, "build-1", &queue)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let server = Arc::new(server);
    // The version-creation invocation is not part of the run: wait for it to end.
    let _ = plane
        .wait_for(&name, timeout + Duration::from_secs(5), |s| {
            s.attempts.len() as u64 >= s.invokes
        })
        .await;
    let before = plane.stats(&name).attempts.len();
    let ids = start_scenario(&server, &queue, scenario, &name).await;
    // Every workflow closed (or 5 minutes), then every invocation answered.
    let query = format!("TaskQueue='{queue}' AND ExecutionStatus='Running'");
    for _ in 0..600 {
        if matches!(server.count_workflows(&query).await, Ok(0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = plane
        .wait_for(&name, timeout + Duration::from_secs(10), |s| {
            s.attempts.len() as u64 >= s.invokes
        })
        .await
        .unwrap_or_else(|s| s);
    let attempts = &stats.attempts[before..];
    let billed = attempts
        .iter()
        .filter_map(|a| {
            a.answer
                .answered_at
                .duration_since(a.answer.handed_out)
                .ok()
        })
        .map(|d| d.as_secs_f64())
        .sum();
    let started: std::collections::HashSet<&String> = ids.iter().collect();
    let latencies: Vec<f64> = workflow_times(
        &server,
        &format!("TaskQueue='{queue}' AND ExecutionStatus='Completed'"),
    )
    .await
    .unwrap_or_default()
    .iter()
    .filter(|(id, _)| started.contains(id))
    .map(|(_, (start, close))| close - start)
    .collect();
    if std::env::var_os("TLW_BENCH_SLOWEST").is_some() {
        explain_slowest(&server, &queue, &started).await;
    }
    drop(plane);
    Row {
        idle: idle.to_owned(),
        scenario,
        workflows: ids.len(),
        billed,
        invocations: attempts.len(),
        cold_starts: attempts.iter().filter(|a| a.cold_start).count(),
        lost: ids.len() - latencies.len(),
        latencies,
    }
}

/// With `TLW_BENCH_SLOWEST` set: the slowest completed workflow's history on stderr, one
/// event per line with its time from the workflow's start (where a long tail comes from).
async fn explain_slowest(
    server: &DevServer,
    queue: &str,
    started: &std::collections::HashSet<&String>,
) {
    let query = format!("TaskQueue='{queue}' AND ExecutionStatus='Completed'");
    let times = workflow_times(server, &query).await.unwrap_or_default();
    let Some((id, (start, close))) = times
        .iter()
        .filter(|(id, _)| started.contains(id))
        .max_by(|a, b| (a.1.1 - a.1.0).total_cmp(&(b.1.1 - b.1.0)))
    else {
        return;
    };
    eprintln!("slowest: {id}, {:.2} s", close - start);
    let history = server.history(id).await.unwrap_or_default();
    for e in history["events"].as_array().into_iter().flatten() {
        let at = e["eventTime"]
            .as_str()
            .and_then(epoch_secs)
            .unwrap_or(*start);
        let attributes = e
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.ends_with("Attributes")))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let detail: String = attributes.chars().take(160).collect();
        eprintln!(
            "  {:>7.3} s  {}  {detail}",
            at - start,
            e["eventType"].as_str().unwrap_or("?")
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let idles = std::env::var("TLW_BENCH_IDLE").unwrap_or_else(|_| "off,2+off,2".into());
    println!(
        "idle exit through the serverless loop: {}, function timeout {} s",
        bootstrap().display(),
        env_or("TLW_BENCH_TIMEOUT_SECS", 60)
    );
    println!(
        "| idle exit | scenario | billed s | billed s per workflow | invocations | cold starts | latency median s | p95 s | max s | not completed |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let scenarios = std::env::var("TLW_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "sparse,chain,timers,signal,even300,parent".into());
    let mut tag = 0;
    for scenario in scenarios.split(',') {
        let scenario = SCENARIOS
            .into_iter()
            .find(|k| *k == scenario.trim())
            .unwrap_or_else(|| panic!("unknown scenario {scenario}: one of {SCENARIOS:?}"));
        for idle in idles.split(',') {
            tag += 1;
            let r = run(idle.trim(), scenario, tag).await;
            let at = |p: f64| percentile(&r.latencies, p);
            println!(
                "| {} | {} | {:.1} | {:.2} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                idle_label(&r.idle),
                r.scenario,
                r.billed,
                r.billed / r.workflows.max(1) as f64,
                r.invocations,
                r.cold_starts,
                at(0.5),
                at(0.95),
                at(1.0),
                r.lost
            );
        }
    }
}

/// A `TLW_BENCH_IDLE` value, `WINDOW[+SETTLED]`, split.
fn window_and_settled(idle: &str) -> (&str, Option<&str>) {
    idle.split_once('+')
        .map_or((idle, None), |(w, s)| (w, Some(s)))
}

/// `off`, `2 s` (the window, the default settled wait), `2 s, settled 0.2 s` or `2 s,
/// settled off`.
fn idle_label(idle: &str) -> String {
    let (window, settled) = window_and_settled(idle);
    let secs = |v: &str| {
        if v == "off" {
            "off".to_owned()
        } else {
            format!("{v} s")
        }
    };
    match settled {
        _ if window == "off" => "off".to_owned(),
        None => secs(window),
        Some(s) => format!("{}, settled {}", secs(window), secs(s)),
    }
}

const SCENARIOS: [&str; 7] = [
    "sparse", "chain", "timers", "signal", "even300", "parent", "burst",
];
