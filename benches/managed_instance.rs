//! Lambda Managed Instances (issue 21): memory of one process for each additional invocation
//! it holds at once. The `hello` bootstrap runs as its own process with
//! `AWS_LAMBDA_MAX_CONCURRENCY=N` against the real dev server and a Runtime API on loopback;
//! after a warm-up (4N workflows drained by rounds of N invocations at once, so the process
//! made its N connections and workers), it is given k = 1, 2, … N invocations at once, each
//! polling, and its VmRSS is read while all k poll. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench managed_instance` (builds the release `hello`, as
//! `warm_memory` does). `TLW_BENCH_BOOTSTRAP=path/to/bootstrap` measures that binary (several,
//! comma-separated, for a before/after in one run). `TLW_BENCH_CONCURRENCY` (default 8) sets
//! N; `TLW_BENCH_ROUNDS` (default 3) how many times each k is measured (the median is
//! printed).
//!
//! The throughput of one environment at N = 4 against four processes, and the boundary
//! timeouts, are `boundary_load`'s (`TLW_BENCH_PROCESSES=1 TLW_BENCH_PER_PROCESS=4` against
//! `TLW_BENCH_PROCESSES=4`).

use std::{path::Path, time::Duration};

use temporal_lambda_local::{
    Bootstrap, DevServer, RuntimeApi, TempDir,
    bench::{bootstraps_or, dev_server_from_env, env_or, percentile, release_example, status_kib},
};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:bench";
/// Each measured invocation: 9 s, so it polls 2 s before the 7 s shutdown buffer.
const INVOCATION: Duration = Duration::from_secs(9);
/// When VmRSS is read after the hand-out: every worker of the round is polling by then.
const READ_AFTER: Duration = Duration::from_millis(1500);

/// `k` invocations at once; VmRSS of `pid` while all poll; whether every one answered.
async fn hold(api: &RuntimeApi, pid: u32, k: usize) -> (u64, bool) {
    let pending: Vec<_> = (0..k).map(|_| api.submit(b"", INVOCATION)).collect();
    tokio::time::sleep(READ_AFTER).await;
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    let answers = futures::future::join_all(pending.into_iter().map(|p| p.answer())).await;
    let ok = answers
        .iter()
        .all(|a| matches!(a.outcome, temporal_lambda_local::Outcome::Response(_)));
    (rss, ok)
}

async fn measure(binary: &Path, server: &DevServer, n: usize, rounds: usize, tag: usize) {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new(&format!("bench-mi-{tag}"));
    let queue = format!("tq-mi-{tag}");
    let deployment = format!("dep-mi-{tag}");
    let concurrency = n.to_string();
    let process = Bootstrap::start(
        binary,
        &api.address(),
        "bench",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", &queue),
            ("HELLO_DEPLOYMENT_NAME", &deployment),
            ("AWS_LAMBDA_MAX_CONCURRENCY", &concurrency),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("RUST_LOG", "warn"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
        ],
    )
    .unwrap();
    server
        .register_version(&api, &deployment, "build-1")
        .await
        .unwrap();
    println!("{} (AWS_LAMBDA_MAX_CONCURRENCY={n})", binary.display());
    let idle = status_kib(process.pid(), "VmRSS").unwrap_or(0);
    // Warm-up: 4N workflows queued, then rounds of N invocations at once until all closed,
    // so N connections exist and every worker's first allocations are made.
    for i in 0..4 * n {
        let id = format!("wf-mi-{tag}-warm-{i}");
        if let Err(e) = server.start_hello(&queue, &id, "Warm").await {
            println!("  warm-up: {id} not started: {e}");
        }
    }
    let running = format!("TaskQueue='{queue}' AND ExecutionStatus='Running'");
    let mut warm_rounds = 0;
    while warm_rounds < 2 || server.count_workflows(&running).await.unwrap_or(0) > 0 {
        let pending: Vec<_> = (0..n).map(|_| api.submit(b"", INVOCATION)).collect();
        futures::future::join_all(pending.into_iter().map(|p| p.answer())).await;
        warm_rounds += 1;
        if warm_rounds == 10 {
            println!("  warm-up: workflows still running after 10 rounds");
            break;
        }
    }
    println!(
        "  VmRSS idle after start-up {:.2} MiB, idle after the warm-up {:.2} MiB",
        idle as f64 / 1024.0,
        status_kib(process.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0
    );
    let mut medians = Vec::new();
    for k in 1..=n {
        let mut seen = Vec::new();
        let mut failed = 0;
        for _ in 0..rounds {
            let (rss, ok) = hold(&api, process.pid(), k).await;
            seen.push(rss as f64);
            failed += usize::from(!ok);
        }
        let median = percentile(&seen, 0.5);
        println!(
            "  {k} at once: VmRSS {:.2} MiB (median of {rounds}; min {:.2}, max {:.2}){}",
            median / 1024.0,
            percentile(&seen, 0.0) / 1024.0,
            percentile(&seen, 1.0) / 1024.0,
            if failed > 0 {
                format!("; {failed} rounds with an error answer")
            } else {
                String::new()
            }
        );
        medians.push(median);
    }
    if let (Some(first), Some(last)) = (medians.first(), medians.last())
        && n > 1
    {
        println!(
            "  each additional invocation at once: {:+.0} KiB ({:.2} MiB at 1 → {:.2} MiB at {n})",
            (last - first) / (n - 1) as f64,
            first / 1024.0,
            last / 1024.0
        );
    }
    drop(process);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binaries = bootstraps_or(|| release_example("hello"));
    let n: usize = env_or("TLW_BENCH_CONCURRENCY", 8usize).max(1);
    let rounds: usize = env_or("TLW_BENCH_ROUNDS", 3usize).max(1);
    let server = dev_server_from_env().await;
    println!("managed instance memory: up to {n} invocations at once in one process");
    for (tag, binary) in binaries.iter().enumerate() {
        measure(binary, &server, n, rounds, tag).await;
    }
}
