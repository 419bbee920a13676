//! Workflows started around a version's promotion (issue 33, stall 1), through the real
//! serverless loop: the dev server's Worker Controller invokes the `hello` function through
//! the local control plane. Each round ships a new build as a published Lambda version
//! (`HELLO_BUILD_ID=build-N`, registered by its qualified ARN) of a deployment of its own
//! (`promote-app-N`: the first version a deployment makes current, whose first tasks have no
//! earlier version to go to; with `TLW_BENCH_UPGRADE=1`, one deployment whose current
//! version each round replaces), waits a gap after
//! registering it (the deploy's next command comes 0, 1 or 3 s later: before and after the
//! version-creation invocation's idle exit would have come), makes it current, and starts
//! `HelloWorkflow`s at chosen offsets after that: during the routing's propagation, and
//! around the first invocations' idle exits.
//!
//! Prints, per workflow kind of offset and overall: start → first workflow task started
//! (the server's event times; median, p95, max, how many over 1 s), every workflow-task or
//! activity timeout in the histories by kind, and workflows not completed. Asserts
//! nothing.
//!
//! Run: `cargo bench --bench boundary` (the debug `hello`; build it first with
//! `cargo build --workspace --examples`), or each bootstrap in `TLW_BENCH_BOOTSTRAP`
//! (comma-separated) in turn, each with a loop of its own. Knobs: `TLW_BENCH_ROUNDS` (20),
//! `TLW_BENCH_OFFSETS_MS` (comma-separated offsets after the version is made current;
//! default `0,50,100,300,700,1500,2500,4000,6000,9000`), `TLW_BENCH_TIMEOUT_SECS` (the
//! function's timeout, 30), `TLW_BENCH_SERVER_ARGS`, `TLW_BENCH_LOGS=dir` (keep the
//! bootstraps' logs).

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use temporal_lambda_local::{
    DevServer, FunctionSpec, ServerlessLoop, TempDir,
    bench::{bootstraps_or, debug_example, env_or, percentile, server_args_from_env, timeouts},
    control_plane::function_arn,
};

const EXTERNAL_ID: &str = "bench-external-id";
const FUNCTION: &str = "promote";
/// The deployment and task queue of round `round`.
fn deployment(round: usize) -> (String, String) {
    if std::env::var_os("TLW_BENCH_UPGRADE").is_some() {
        ("promote-app".into(), "promote-queue".into())
    } else {
        (
            format!("promote-app-{round}"),
            format!("promote-queue-{round}"),
        )
    }
}
/// The gaps between a version's registration and its promotion, in turn.
const GAPS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(3),
];

struct Started {
    id: String,
    offset_ms: u64,
}

fn offsets() -> Vec<u64> {
    env_or(
        "TLW_BENCH_OFFSETS_MS",
        "0,50,100,300,700,1500,2500,4000,6000,9000".to_owned(),
    )
    .split(',')
    .map(|o| o.trim().parse().expect("an offset in ms"))
    .collect()
}

/// One round: build `round` shipped, registered, promoted after `gap`, workflows started at
/// `offsets` after the promotion.
async fn round(
    lp: &ServerlessLoop,
    round: usize,
    gap: Duration,
    offsets: &[u64],
) -> temporal_lambda_local::Result<Vec<Started>> {
    let build = format!("build-{round}");
    let (deployment, queue) = deployment(round);
    lp.plane
        .update_function(FUNCTION, |spec| {
            spec.set_env("HELLO_BUILD_ID", &build);
            spec.set_env("HELLO_DEPLOYMENT_NAME", &deployment);
            spec.set_env("TEMPORAL_TASK_QUEUE", &queue);
        })
        .await?;
    let version = lp.plane.publish_version(FUNCTION).await?;
    let arn = format!("{}:{version}", function_arn(FUNCTION));
    lp.register(&deployment, &build, &arn, &queue).await?;
    tokio::time::sleep(gap).await;
    lp.make_current(&deployment, &build).await?;
    let promoted = tokio::time::Instant::now();
    let server: &DevServer = &lp.server;
    let queue = &queue;
    let starts = offsets.iter().map(|&offset_ms| {
        let id = format!("promote-{round}-{offset_ms}");
        async move {
            tokio::time::sleep_until(promoted + Duration::from_millis(offset_ms)).await;
            server.start_hello(queue, &id, "Promote").await?;
            Ok::<_, temporal_lambda_local::Error>(Started { id, offset_ms })
        }
    });
    futures::future::join_all(starts)
        .await
        .into_iter()
        .collect()
}

async fn run(binary: &Path, tag: usize) {
    let rounds: usize = env_or("TLW_BENCH_ROUNDS", 20);
    let timeout = Duration::from_secs(env_or("TLW_BENCH_TIMEOUT_SECS", 30));
    let offsets = offsets();
    let root = TempDir::new(&format!("bench-boundary-{tag}"));
    let log = std::env::var_os("TLW_BENCH_LOGS")
        .map(|d| Path::new(&d).join(format!("boundary-{tag}.log")))
        .unwrap_or_else(|| root.path().join("bootstrap.log"));
    let (deployment, queue) = deployment(0);
    let spec = FunctionSpec::new(FUNCTION, binary)
        .env("TEMPORAL_TASK_QUEUE", &queue)
        .env("HELLO_DEPLOYMENT_NAME", &deployment)
        .env("HELLO_BUILD_ID", "build-0")
        .timeout(timeout)
        .concurrency(10)
        .task_root(root.path())
        .log_to(&log);
    let lp = ServerlessLoop::launch_with(spec, EXTERNAL_ID, server_args_from_env())
        .await
        .expect("launch the loop");
    println!(
        "{} ({} rounds × {} workflows, offsets {offsets:?} ms after promotion, gaps {GAPS:?})",
        binary.display(),
        rounds,
        offsets.len()
    );
    let mut started = Vec::new();
    for r in 1..=rounds {
        match round(&lp, r, GAPS[r % GAPS.len()], &offsets).await {
            Ok(s) => started.extend(s),
            Err(e) => println!("  round {r}: {e}"),
        }
    }
    let server = Arc::new(lp.server);
    // Each workflow's first task, then its close (a few invocations at most).
    let mut waits: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut by_kind = BTreeMap::new();
    let mut lost = 0;
    for s in &started {
        match server.first_task_wait(&s.id, timeout * 3).await {
            Ok(w) => {
                waits.entry(s.offset_ms).or_default().push(w.as_secs_f64());
                all.push(w.as_secs_f64());
            }
            Err(_) => lost += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for s in &started {
        let status = server.workflow_status(&s.id).await.unwrap_or_default();
        if !status.contains("COMPLETED") {
            lost += 1;
        }
        if let Ok(h) = server.history(&s.id).await {
            timeouts(&h, &mut by_kind);
        }
    }
    let line = |what: &str, w: &[f64]| {
        println!(
            "  {what:>22}: n {:3}, start → first task median {:.3} s, p95 {:.3} s, max {:.3} \
             s, over 1 s: {}",
            w.len(),
            percentile(w, 0.5),
            percentile(w, 0.95),
            percentile(w, 1.0),
            w.iter().filter(|&&x| x > 1.0).count()
        )
    };
    for (offset, w) in &waits {
        line(&format!("{offset} ms after promotion"), w);
    }
    line("all", &all);
    println!(
        "  timeouts: {}; workflows not started or not completed: {lost}",
        by_kind.values().sum::<usize>()
    );
    for (kind, n) in &by_kind {
        println!("    {n:4}  {kind}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binaries = bootstraps_or(|| debug_example("hello"));
    for (tag, binary) in binaries.iter().enumerate() {
        run(binary, tag).await;
    }
}
