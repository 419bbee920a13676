//! AgentCore Runtime side by side (issue 36.4): this crate's host against the pattern
//! Temporal documents (a Python `bedrock-agentcore` handler starting a `temporalio` 1.35
//! worker with a simple 2 s idle timer, `benches/agentcore/python_worker.py`), each served
//! by the local control plane as an agent runtime and invoked by the dev server's real
//! Worker Controller, on the same workloads:
//!
//! - `sparse`: a `HelloWorkflow` every `TLW_BENCH_EVERY_SECS` (10) s, `TLW_BENCH_SPARSE` (6)
//!   of them: each comes after the last session was stopped, so each is a cold start;
//! - `burst`: `TLW_BENCH_BURST` (100) `HelloWorkflow`s at once.
//!
//! Printed per container and workload: invocations and sessions (each controller invocation
//! is a session, a process, of its own), the time from `InvokeAgentRuntime` to the
//! workflow's completion (sparse), workflow latency (start → close, server clock), the
//! sessions' peak RSS, and what AgentCore bills, per workflow: CPU-seconds (user + system of
//! the container) and memory GB-seconds (resident memory over each session's life, up to
//! its stop by the idle session timeout, `TLW_BENCH_IDLE_SESSION_SECS`, 5 s here; AWS's
//! minimum is 60 s, its default 900 s), with the sessions' busy time (`/ping` HealthyBusy).
//! Asserts nothing.
//!
//! Run: `cargo bench --bench agentcore`. The Rust container is the release `hello`
//! (`TLW_BENCH_BOOTSTRAP` for another); the Python one runs in a virtualenv
//! (`target/bench-venv`, made with `benches/agentcore/requirements.txt` when missing).
//! `TLW_BENCH_CONTAINERS=rust,python` (the default) picks which run, in that order.

use std::{path::PathBuf, time::Duration};

use temporal_lambda_local::{
    AgentRuntimeSpec, AgentRuntimeStats, ServerlessLoop, TempDir,
    bench::{env_or, percentile, release_example, system_secs, workflow_times},
    control_plane::agent_runtime_arn,
};

const EXTERNAL_ID: &str = "bench-external-id";
const DEPLOYMENT: &str = "bench-agentcore";
const BUILD: &str = "build-1";

/// The Python anchor's interpreter: the bench's virtualenv, made when missing.
fn python() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = workspace.join("target/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let run = |cmd: &mut std::process::Command| {
            assert!(cmd.status().expect("run").success(), "{cmd:?} failed");
        };
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv));
        run(std::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(workspace.join("benches/agentcore/requirements.txt")));
    }
    python
}

/// The agent runtime of `container` (`rust` or `python`) for task queue `tq`.
fn runtime(container: &str, tq: &str, log: &std::path::Path) -> AgentRuntimeSpec {
    let id = format!("bench_{container}");
    let spec = match container {
        "python" => AgentRuntimeSpec::new(&id, python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/benches/agentcore/python_worker.py"
            ))
            .env("TEMPORAL_NAMESPACE", "default"),
        _ => {
            let binary = std::env::var_os("TLW_BENCH_BOOTSTRAP")
                .map(PathBuf::from)
                .unwrap_or_else(|| release_example("hello"));
            AgentRuntimeSpec::new(&id, binary)
                .env("HELLO_HOST", "agentcore")
                .env("TEMPORAL_AGENTCORE_RUNTIME_ARN", &agent_runtime_arn(&id))
        }
    };
    spec.env("TEMPORAL_TASK_QUEUE", tq)
        .env("HELLO_DEPLOYMENT_NAME", DEPLOYMENT)
        .env("HELLO_BUILD_ID", BUILD)
        .idle_session_timeout(Duration::from_secs(env_or(
            "TLW_BENCH_IDLE_SESSION_SECS",
            5,
        )))
        .log_to(log)
}

/// Waits until every session started has been stopped.
async fn sessions_ended(lp: &ServerlessLoop) -> AgentRuntimeStats {
    lp.plane
        .wait_for_agent_runtime(&lp.function, Duration::from_secs(300), |s| {
            s.sessions.len() == s.sessions_started
        })
        .await
        .unwrap_or_else(|s| panic!("sessions still running: {s:?}"))
}

struct Row {
    container: String,
    scenario: &'static str,
    workflows: usize,
    invocations: usize,
    sessions: usize,
    invoke_to_done: Vec<f64>,
    latencies: Vec<f64>,
    peak_rss_mib: f64,
    cpu_secs: f64,
    gb_secs: f64,
    busy_secs: f64,
    life_secs: f64,
    lost: usize,
}

async fn run(container: &str, scenario: &'static str, root: &std::path::Path) -> Row {
    let tq = format!("tq-{container}-{scenario}");
    let log = root.join(format!("{container}-{scenario}.log"));
    let lp = ServerlessLoop::launch_agentcore(runtime(container, &tq, &log), EXTERNAL_ID)
        .await
        .unwrap();
    lp.register_agent_runtime(DEPLOYMENT, BUILD, &tq)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    lp.make_current(DEPLOYMENT, BUILD).await.unwrap();
    let before = sessions_ended(&lp).await;
    let server = &lp.server;
    let ids: Vec<String> = match scenario {
        "sparse" => (0..env_or("TLW_BENCH_SPARSE", 6))
            .map(|i| format!("wf-{i}"))
            .collect(),
        _ => (0..env_or("TLW_BENCH_BURST", 100))
            .map(|i| format!("wf-{i}"))
            .collect(),
    };
    let every = Duration::from_secs(env_or("TLW_BENCH_EVERY_SECS", 10));
    if scenario == "sparse" {
        for id in &ids {
            let next = tokio::time::Instant::now() + every;
            server.start_hello(&tq, id, "AgentCore").await.unwrap();
            tokio::time::sleep_until(next).await;
        }
    } else {
        temporal_lambda_local::bench::start_hellos(server, &tq, &ids, "AgentCore").await;
    }
    let query = format!("TaskQueue='{tq}' AND ExecutionStatus='Completed'");
    let (done, _) = temporal_lambda_local::bench::wait_for_count(
        server,
        &query,
        0,
        ids.len(),
        Duration::from_secs(120),
    )
    .await;
    let after = sessions_ended(&lp).await;
    let times = workflow_times(server, &query).await.unwrap();
    let latencies: Vec<f64> = times.values().map(|(s, c)| c - s).collect();
    // Each sparse workflow: from the invocation its start brought to its close.
    let invoked: Vec<f64> = after.invoked_at[before.invoked_at.len()..]
        .iter()
        .map(|t| system_secs(*t))
        .collect();
    let invoke_to_done = times
        .values()
        .filter_map(|(start, close)| {
            let at = invoked
                .iter()
                .find(|t| **t >= *start - 0.05 && **t <= *close)?;
            Some(close - at)
        })
        .collect();
    let sessions = &after.sessions[before.sessions.len()..];
    Row {
        container: container.to_owned(),
        scenario,
        workflows: ids.len(),
        invocations: after.invokes - before.invokes,
        sessions: sessions.len(),
        invoke_to_done,
        latencies,
        peak_rss_mib: sessions.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        cpu_secs: sessions.iter().map(|s| s.cpu.as_secs_f64()).sum(),
        gb_secs: sessions.iter().map(|s| s.rss_kib_secs).sum::<f64>() / 1024.0 / 1024.0,
        busy_secs: sessions.iter().map(|s| s.busy.as_secs_f64()).sum(),
        life_secs: sessions.iter().map(|s| s.life.as_secs_f64()).sum(),
        lost: ids.len() - done.min(ids.len()),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let containers = std::env::var("TLW_BENCH_CONTAINERS").unwrap_or_else(|_| "rust,python".into());
    let root = TempDir::new("bench-agentcore");
    let mut rows = Vec::new();
    for container in containers.split(',') {
        for scenario in ["sparse", "burst"] {
            let row = rt.block_on(run(container, scenario, root.path()));
            eprintln!("{container} {scenario}: done");
            rows.push(row);
        }
    }
    println!(
        "| container | workload | workflows | invocations | sessions | invoke → done median s | latency median s | p95 s | peak RSS MiB | CPU-s per workflow | memory GB-s per workflow | busy s | session life s | not completed |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &rows {
        let n = r.workflows as f64;
        let median = |v: &[f64]| percentile(v, 0.5);
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.4} | {:.4} | {:.1} | {:.1} | {} |",
            r.container,
            r.scenario,
            r.workflows,
            r.invocations,
            r.sessions,
            median(&r.invoke_to_done),
            median(&r.latencies),
            percentile(&r.latencies, 0.95),
            r.peak_rss_mib,
            r.cpu_secs / n,
            r.gb_secs / n,
            r.busy_secs,
            r.life_secs,
            r.lost,
        );
    }
}
