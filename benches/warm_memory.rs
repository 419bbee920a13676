//! Memory of one warm process across many invocations (issue 11): the `hello` bootstrap as
//! its own process against the real dev server and a Runtime API on loopback, one
//! `HelloWorkflow` per invocation, VmRSS read from `/proc` after each. Also the warm path
//! (issue 14.3): hand-out → that workflow closed, the workflow queued just before the
//! hand-out, from the server's close time; and the workflow's own start → close.
//! Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench warm_memory` (builds the release `hello`, as `lifecycle`
//! does). `TLW_BENCH_BOOTSTRAP=path/to/bootstrap` measures that binary instead (a debug
//! build, or the bootstrap of another commit, for a before/after in one run: give several,
//! comma-separated). `TLW_BENCH_INVOCATIONS` (default 525) sets N.
//!
//! Each invocation has a 10 s timeout and the idle exit at 0.2 s
//! (`TEMPORAL_IDLE_SHUTDOWN_SECS`), so it ends shortly after its workflow completed
//! (a bootstrap without the idle exit polls until deadline − 7 s: 3 s each).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use temporal_lambda_local::{
    Bootstrap, DevServer, RuntimeApi, TempDir,
    bench::{
        bootstraps_or, dev_server_from_env, env_or, percentile, release_example, status_kib,
        system_secs, workflow_times,
    },
};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:bench";
const CHECKPOINTS: [usize; 8] = [1, 25, 50, 100, 200, 300, 400, 525];

async fn measure(binary: &Path, server: &DevServer, n: usize, tag: usize) {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new(&format!("bench-mem-{tag}"));
    let queue = format!("tq-mem-{tag}");
    let deployment = format!("dep-mem-{tag}");
    let process = Bootstrap::start(
        binary,
        &api.address(),
        "bench",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", &queue),
            ("HELLO_DEPLOYMENT_NAME", &deployment),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "0.2"),
            ("RUST_LOG", "warn"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
        ],
    )
    .unwrap();
    server
        .register_version(&api, &deployment, "build-1")
        .await
        .unwrap();
    println!("{}", binary.display());
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failed = 0;
    let mut warm_ms = Vec::new();
    // Each workflow is queued before its invocation is handed out (as when the Worker
    // Controller invokes for it), so "hand-out → completed" does not include the `temporal`
    // CLI process that starts it. `TLW_BENCH_CONCURRENT=1`: started as the invocation is
    // handed out instead (how this bench measured before 2026-11-26; the CLI's start is
    // then part of the figure, and a slow start can miss a worker with a short idle exit).
    let queued = std::env::var_os("TLW_BENCH_CONCURRENT").is_none();
    // Warm invocations' hand-out times, by workflow id, for the server-side split below.
    let mut handed_out = std::collections::HashMap::new();
    for i in 1..=n {
        let id = format!("wf-mem-{tag}-{i}");
        let (answer, (result, done)) = if queued {
            // The workflow waits on the queue before the hand-out (as when the Worker
            // Controller invokes for it); its close time comes from the server below.
            let r = server
                .start_hello(&queue, &id, "Mem")
                .await
                .map(|_| String::new());
            let answer = api.invoke(b"", Duration::from_secs(10)).await;
            (answer, (r, std::time::SystemTime::now()))
        } else {
            let workflow = async {
                let r = server.execute_hello(&queue, &id, "Mem").await;
                (r, std::time::SystemTime::now())
            };
            tokio::join!(api.invoke(b"", Duration::from_secs(10)), workflow)
        };
        if i > 1
            && result.is_ok()
            && let Ok(d) = done.duration_since(answer.handed_out)
        {
            warm_ms.push(d.as_secs_f64() * 1e3);
            handed_out.insert(id.clone(), answer.handed_out);
        }
        if result.is_err() || !matches!(answer.outcome, temporal_lambda_local::Outcome::Response(_))
        {
            failed += 1;
        }
        if CHECKPOINTS.contains(&i) || i == n {
            let rss = status_kib(process.pid(), "VmRSS").unwrap_or(0);
            println!(
                "  after {i:4} invocations: VmRSS {:7.2} MiB  ({:.0} s)",
                rss as f64 / 1024.0,
                started.elapsed().as_secs_f64()
            );
            rows.push((i, rss));
        }
    }
    if let (Some(&(_, at25)), Some(&(last, end))) =
        (rows.iter().find(|(i, _)| *i >= 25), rows.last())
    {
        println!(
            "  growth after warm-up (25 → {last}): {:+.2} MiB, {:+.1} KiB per invocation; {failed} failed",
            (end as f64 - at25 as f64) / 1024.0,
            (end as f64 - at25 as f64) / (last - 25).max(1) as f64
        );
    }
    if queued {
        server_side_split(server, &queue, &handed_out).await;
    } else if !warm_ms.is_empty() {
        println!(
            "  warm path, handed out → workflow completed: median {:.1} ms, p95 {:.1} ms \
             (min {:.1}, max {:.1}, n={})",
            percentile(&warm_ms, 0.5),
            percentile(&warm_ms, 0.95),
            percentile(&warm_ms, 0.0),
            percentile(&warm_ms, 1.0),
            warm_ms.len()
        );
        server_side_split(server, &queue, &handed_out).await;
    }
}

/// Splits the warm path with the server's own times: hand-out → the server accepted the
/// workflow (the `temporal` CLI process that starts it, which the hand-out-based figure
/// includes), and the server's start → close (what an already polling worker is measured
/// by).
async fn server_side_split(
    server: &DevServer,
    queue: &str,
    handed_out: &std::collections::HashMap<String, std::time::SystemTime>,
) {
    let times = workflow_times(server, &format!("TaskQueue='{queue}'"))
        .await
        .unwrap_or_default();
    let (mut to_start, mut start_to_close, mut out_to_close) = (Vec::new(), Vec::new(), Vec::new());
    for (id, out) in handed_out {
        let Some(&(start, close)) = times.get(id) else {
            continue;
        };
        let out = system_secs(*out);
        to_start.push((start - out) * 1e3);
        start_to_close.push((close - start) * 1e3);
        out_to_close.push((close - out) * 1e3);
    }
    println!(
        "  server times: hand-out → workflow closed median {:.1} ms; hand-out → workflow \
         started {:.1} ms (negative: queued before); workflow start → close {:.1} ms (n={})",
        percentile(&out_to_close, 0.5),
        percentile(&to_start, 0.5),
        percentile(&start_to_close, 0.5),
        start_to_close.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binaries = bootstraps_or(|| release_example("hello"));
    let n: usize = env_or("TLW_BENCH_INVOCATIONS", 525);
    // `TLW_BENCH_SERVER_ARGS`: more `temporal server start-dev` arguments (dynamic config).
    let server = dev_server_from_env().await;
    println!("warm memory: {n} invocations, one HelloWorkflow each");
    for (tag, binary) in binaries.iter().enumerate() {
        measure(binary, &server, n, tag).await;
    }
}
