//! Idle exit through the real serverless loop (issue 14): the dev server's Worker
//! Controller invokes the `hello` function through the local control plane (as
//! `scripts/hello.sh` runs it), for a sparse stream of workflows and for a burst, with
//! `TEMPORAL_IDLE_SHUTDOWN_SECS` unset (off) and set. Prints, per run: billed seconds (the
//! sum of invocation durations, hand-out → answer), invocations, cold starts, workflow
//! start → close latency (median, p95, max) and workflows not completed. Asserts nothing.
//!
//! Run: `cargo bench --bench idle_exit` (the debug `hello`; build it first with
//! `cargo build --workspace --examples`), or `TLW_BENCH_BOOTSTRAP=path`. Knobs:
//! `TLW_BENCH_IDLE` (comma-separated values of `TEMPORAL_IDLE_SHUTDOWN_SECS` to compare,
//! `off` for none; default `off,2`), `TLW_BENCH_TIMEOUT_SECS` (the function's timeout, 60), `TLW_BENCH_SPARSE`
//! (workflows of the sparse stream, 12, one every `TLW_BENCH_SPARSE_EVERY_SECS`, 10),
//! `TLW_BENCH_BURST` (workflows of the burst, 300), `TLW_BENCH_CONCURRENCY` (10).

use std::{path::PathBuf, sync::Arc, time::Duration};

use temporal_lambda_worker_testkit::{
    DevServer, FunctionSpec, ServerlessLoop,
    bench::{debug_example, env_or, percentile, workflow_times},
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

async fn run(idle: &str, scenario: &'static str, tag: usize) -> Row {
    let timeout = Duration::from_secs(env_or("TLW_BENCH_TIMEOUT_SECS", 60));
    let name = format!("idle{tag}");
    let queue = format!("tq-{name}");
    let deployment = format!("dep-{name}");
    let root = std::env::temp_dir().join(format!("tlw-bench-idle-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let mut spec = FunctionSpec::new(&name, bootstrap())
        .env("TEMPORAL_TASK_QUEUE", &queue)
        .env("HELLO_DEPLOYMENT_NAME", &deployment)
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .timeout(timeout)
        .concurrency(env_or("TLW_BENCH_CONCURRENCY", 10))
        .task_root(&root);
    // Always set: unset is the 2 s default, not off.
    spec = spec.env("TEMPORAL_IDLE_SHUTDOWN_SECS", idle);
    let ServerlessLoop { plane, server, .. } =
        ServerlessLoop::start(spec, &deployment, "build-1", EXTERNAL_ID, &queue)
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
    let ids: Vec<String> = match scenario {
        "sparse" => {
            let n: usize = env_or("TLW_BENCH_SPARSE", 12);
            let every = Duration::from_secs(env_or("TLW_BENCH_SPARSE_EVERY_SECS", 10));
            let ids: Vec<String> = (0..n).map(|i| format!("wf-{name}-{i}")).collect();
            for id in &ids {
                start_workflows(&server, &queue, vec![id.clone()]).await;
                tokio::time::sleep(every).await;
            }
            ids
        }
        _ => {
            let n: usize = env_or("TLW_BENCH_BURST", 300);
            let ids: Vec<String> = (0..n).map(|i| format!("wf-{name}-{i}")).collect();
            start_workflows(&server, &queue, ids.clone()).await;
            ids
        }
    };
    // Every workflow closed (or 5 minutes), then every invocation answered.
    let query = format!("TaskQueue='{queue}' AND ExecutionStatus='Running'");
    for _ in 0..600 {
        if server.count_workflows(&query).await == Ok(0) {
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
    let latencies: Vec<f64> = workflow_times(
        &server,
        &format!("TaskQueue='{queue}' AND ExecutionStatus='Completed'"),
    )
    .await
    .unwrap_or_default()
    .values()
    .map(|(start, close)| close - start)
    .collect();
    drop(plane);
    let _ = std::fs::remove_dir_all(&root);
    Row {
        idle: idle.to_owned(),
        scenario,
        billed,
        invocations: attempts.len(),
        cold_starts: attempts.iter().filter(|a| a.cold_start).count(),
        lost: ids.len() - latencies.len(),
        latencies,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let idles = std::env::var("TLW_BENCH_IDLE").unwrap_or_else(|_| "off,2".into());
    println!(
        "idle exit through the serverless loop: {}, function timeout {} s",
        bootstrap().display(),
        env_or("TLW_BENCH_TIMEOUT_SECS", 60)
    );
    println!(
        "| idle exit | scenario | billed s | invocations | cold starts | latency median s | p95 s | max s | not completed |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut tag = 0;
    for scenario in ["sparse", "burst"] {
        for idle in idles.split(',') {
            tag += 1;
            let r = run(idle.trim(), scenario, tag).await;
            let at = |p: f64| percentile(&r.latencies, p);
            println!(
                "| {} | {} | {:.1} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                if r.idle == "off" {
                    "off".to_owned()
                } else {
                    format!("{} s", r.idle)
                },
                r.scenario,
                r.billed,
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
