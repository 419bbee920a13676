//! End-to-end lifecycle numbers against the real Temporal dev server, with the release
//! `hello` bootstrap run as its own process against a Lambda Runtime API on loopback.
//! Prints numbers; asserts nothing. Run: `cargo bench --bench lifecycle` (it builds the
//! `hello` example with the bench profile first, which is the release profile: same
//! artifacts as the benchmark itself). Results and the machine: `benches/RESULTS.md`.
//!
//! 1. cold start: exec → the worker polling, split into process start (exec → first
//!    `next` call), config load + layers, connect, worker creation;
//! 2. warm overhead: invocation handed out → the worker polling, invocations 2..N;
//! 3. shutdown slack (deadline − answer), with no work and with an activity in flight;
//! 4. peak RSS of the bootstrap after serving 20 invocations, and the binary's size;
//! 5. throughput: 100 queued one-activity workflows, completions per second;
//! 6. a `HelloWorkflow` queued before the hand-out (as when the Worker Controller invokes
//!    for it), hand-out → closed, warm and cold, against its floor: the same bootstrap
//!    already polling, the workflow's own start → close (close times from the server);
//!
//! (7, the per-layer cost, is `cargo bench --bench layers`.)
//!
//! Knobs, for before/after comparisons: `TLW_BENCH_BOOTSTRAP=path` measures that bootstrap
//! instead of building one (another commit's `hello`), and `TLW_BENCH_WARM_ONLY=1` runs
//! the warm path only: parts 2 and 6. With two bootstraps,
//! `TLW_BENCH_BOOTSTRAP=before,after TLW_BENCH_WARM_ONLY=1` runs part 2 as an A/B
//! instead: one warm process each, their invocations interleaved (200 rounds,
//! the order alternating), so that the machine's drift falls on both alike; it prints
//! each one's warm overhead and the paired differences.
use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use temporal_lambda_local::{
    Answer, Bootstrap, DevServer, RuntimeApi, TempDir,
    bench::{
        bootstraps_or, percentile, release_example, start_hellos, status_kib, system_secs,
        wait_for_count, workflow_times,
    },
};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:bench";
const COLD_RUNS: usize = 8;
const WARM_INVOCATIONS: usize = 20;
const ACTIVITY_RUNS: usize = 5;
const THROUGHPUT_RUNS: usize = 3;
const QUEUED: usize = 100;
/// Workflows per row of part 6.
const QUEUED_RUNS: usize = 10;
/// 9 s with the default 7 s buffer: about 2 s of polling per invocation.
const SHORT: Duration = Duration::from_secs(9);
/// Rounds of the interleaved A/B: one invocation of each bootstrap per round.
const AB_ROUNDS: usize = 200;

fn ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

fn epoch_us(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

/// "median X  p95 Y  (min … max, n)" of `v`, in the unit given.
fn summary(v: &[f64], unit: &str) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    format!(
        "median {:8.2} {unit}  p95 {:8.2} {unit}  (min {:.2}, max {:.2}, n={})",
        percentile(v, 0.5),
        percentile(v, 0.95),
        percentile(v, 0.0),
        percentile(v, 1.0),
        v.len()
    )
}

struct Function {
    api: RuntimeApi,
    process: Bootstrap,
    /// Removed once the process is gone (fields drop in order).
    _root: TempDir,
    started_at: SystemTime,
}

impl Function {
    async fn start(binary: &Path, server: &DevServer, tag: &str) -> Self {
        // The numbers follow a session to the shutdown buffer.
        Self::start_with(binary, server, tag, "tq-bench", "off").await
    }

    /// A function polling `queue`, leaving after `idle_exit` (seconds, or `off`) with no task.
    async fn start_with(
        binary: &Path,
        server: &DevServer,
        tag: &str,
        queue: &str,
        idle_exit: &str,
    ) -> Self {
        let api = RuntimeApi::start(ARN).await.unwrap();
        let root = TempDir::new(&format!("bench-{tag}"));
        let started_at = SystemTime::now();
        let process = Bootstrap::start(
            binary,
            &api.address(),
            "bench",
            root.path(),
            &[
                ("TEMPORAL_ADDRESS", &server.address),
                ("TEMPORAL_TASK_QUEUE", queue),
                ("TEMPORAL_IDLE_SHUTDOWN_SECS", idle_exit),
                ("HELLO_DEPLOYMENT_NAME", "dep-bench"),
            ],
        )
        .unwrap();
        Self {
            api,
            process,
            _root: root,
            started_at,
        }
    }
}

/// Warm overheads (hand-out → the worker polling) and their parts, in ms, one per invocation.
#[derive(Default)]
struct WarmOverhead {
    total: Vec<f64>,
    /// The Runtime API's answer read and the invocation built: hand-out → entering the
    /// stack (only from bootstraps whose answer has `first_poll_us`).
    runtime_api: Vec<f64>,
    /// The layers, the session's plan and the job to the worker's thread (the reply's way
    /// back is not in the figure: the worker polls from the moment it is handed over).
    stack_and_thread: Vec<f64>,
    connect: Vec<f64>,
    create: Vec<f64>,
}

impl WarmOverhead {
    fn push(&mut self, a: &Answer) {
        let total = ms(
            a.handed_out,
            epoch_us(report_us(a, "polling_since_epoch_us")),
        );
        let connect = report_us(a, "connect_us") as f64 / 1e3;
        let create = report_us(a, "create_worker_us") as f64 / 1e3;
        if let Some(first_poll) = a.response()["first_poll_us"].as_u64() {
            let first_poll = first_poll as f64 / 1e3;
            self.runtime_api.push(total - first_poll);
            self.stack_and_thread.push(first_poll - connect - create);
        }
        self.total.push(total);
        self.connect.push(connect);
        self.create.push(create);
    }

    fn print(&self, indent: &str) {
        println!("{indent}   {}", summary(&self.total, "ms"));
        let parts = [
            ("Runtime API answer → stack", &self.runtime_api),
            ("layers + job to the worker thread", &self.stack_and_thread),
            ("connect (a cached connection)", &self.connect),
            ("worker creation", &self.create),
        ];
        for (name, v) in parts.into_iter().filter(|(_, v)| !v.is_empty()) {
            println!("{indent}   of which {name:<33} {}", summary(v, "ms"));
        }
    }
}

fn report_us(a: &Answer, key: &str) -> u64 {
    a.response()[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {:?}", a.outcome))
}

/// The completed `HelloWorkflow`s of the bench's task queue.
const COMPLETED: &str =
    "TaskQueue='tq-bench' AND WorkflowType='HelloWorkflow' AND ExecutionStatus='Completed'";

async fn completed(server: &DevServer) -> usize {
    server.count_workflows(COMPLETED).await.unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("TLW_QUIET_BOOTSTRAP", "1") };
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and the like: nothing to list
    }
    let warm_only = std::env::var_os("TLW_BENCH_WARM_ONLY").is_some();
    let bootstraps = bootstraps_or(|| release_example("hello"));
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let binary = match &bootstraps[..] {
        [binary] => binary.clone(),
        [a, b] if warm_only => return warm_ab([a, b], &server).await,
        _ => {
            panic!("TLW_BENCH_BOOTSTRAP: one bootstrap, or two with TLW_BENCH_WARM_ONLY=1 (an A/B)")
        }
    };
    let size = std::fs::metadata(&binary).unwrap().len();
    println!(
        "temporal-lambda-worker lifecycle benchmark (release hello bootstrap, real dev server)"
    );
    println!(
        "bootstrap binary: {} ({:.2} MiB, stripped release profile)",
        binary.display(),
        size as f64 / 1048576.0
    );

    // 1. Cold starts: a new process each time, one invocation each.
    let (mut process, mut config, mut connect, mut create, mut total) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..if warm_only { 0 } else { COLD_RUNS } {
        let f = Function::start(&binary, &server, &format!("cold{i}")).await;
        let a = f.api.invoke(b"", SHORT).await;
        let polling = epoch_us(report_us(&a, "polling_since_epoch_us"));
        let first_next = f.api.first_next_at().unwrap();
        let c = report_us(&a, "connect_us") as f64 / 1e3;
        let w = report_us(&a, "create_worker_us") as f64 / 1e3;
        process.push(ms(f.started_at, first_next));
        config.push(ms(a.handed_out, polling) - c - w);
        connect.push(c);
        create.push(w);
        total.push(ms(f.started_at, polling));
    }
    if !warm_only {
        println!("\n1. cold start, exec → worker polling ({COLD_RUNS} processes):");
        println!("   total                 {}", summary(&total, "ms"));
        println!("   process start         {}", summary(&process, "ms"));
        println!("   config load + layers  {}", summary(&config, "ms"));
        println!("   connect               {}", summary(&connect, "ms"));
        println!("   worker creation       {}", summary(&create, "ms"));
    }

    // 2 + 3a + 4: one warm process serving WARM_INVOCATIONS idle invocations.
    let f = Function::start(&binary, &server, "warm").await;
    let (mut warm, mut idle_slack) = (WarmOverhead::default(), vec![]);
    for i in 0..WARM_INVOCATIONS {
        let a = f.api.invoke(b"", SHORT).await;
        if i > 0 {
            warm.push(&a);
        }
        idle_slack.push(a.slack() * 1e3);
    }
    let rss = status_kib(f.process.pid(), "VmHWM");
    println!(
        "\n2. warm overhead, handed out → worker polling (invocations 2..{WARM_INVOCATIONS}):"
    );
    warm.print("");

    // 3b: an activity in flight at shutdown. Shutdown begins 2 s after hand-out (9 s
    // timeout − 7 s buffer); the workflow starts at 1.5 s and its activity runs 2.5 s.
    server
        .register_version(&f.api, "dep-bench", "build-1")
        .await
        .unwrap();
    if warm_only {
        queued_workflow(&binary, &server, &f).await;
        return;
    }
    let mut busy_slack = vec![];
    let mut drained_for = vec![];
    for i in 0..ACTIVITY_RUNS {
        let pending = f.api.submit(b"", SHORT);
        let id = format!("slow-{}-{i}", std::process::id());
        let starter = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            server
                .cli_async(&[
                    "workflow",
                    "start",
                    "--type",
                    "SlowHelloWorkflow",
                    "--task-queue",
                    "tq-bench",
                    "--workflow-id",
                    &id,
                    "--input",
                    "2500",
                ])
                .await
                .unwrap();
        };
        let (a, ()) = tokio::join!(pending.answer(), starter);
        busy_slack.push(a.slack() * 1e3);
        drained_for.push(7000.0 - a.slack() * 1e3);
    }
    println!(
        "\n3. shutdown slack, deadline − answer at the Runtime API (9 s timeout, 7 s buffer):"
    );
    println!("   no work in flight     {}", summary(&idle_slack, "ms"));
    println!("   activity in flight    {}", summary(&busy_slack, "ms"));
    println!(
        "   (drain + answer after shutdown began: {})",
        summary(&drained_for, "ms")
    );
    let negative = idle_slack
        .iter()
        .chain(&busy_slack)
        .filter(|s| **s < 0.0)
        .count();
    println!("   answers after the deadline: {negative}");

    println!("\n4. memory and size:");
    match rss {
        Some(kib) => println!(
            "   peak RSS (VmHWM) after {WARM_INVOCATIONS} invocations: {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("   peak RSS: /proc/<pid>/status unreadable"),
    }
    println!(
        "   stripped release binary: {} bytes ({:.2} MiB)",
        size,
        size as f64 / 1048576.0
    );

    // 5. Throughput: QUEUED workflows waiting before the invocation starts.
    println!("\n5. throughput, {QUEUED} queued one-activity workflows, Lambda defaults:");
    let mut rates = vec![];
    for run in 0..THROUGHPUT_RUNS {
        let before = completed(&server).await;
        let ids: Vec<String> = (0..QUEUED)
            .map(|i| format!("tp-{}-{run}-{i}", std::process::id()))
            .collect();
        start_hellos(&server, "tq-bench", &ids, "throughput").await;
        let pending = f.api.submit(b"", Duration::from_secs(40));
        let watch = wait_for_count(&server, COMPLETED, before, QUEUED, Duration::from_secs(33));
        let (a, (done, at)) = tokio::join!(pending.answer(), watch);
        let secs = ms(a.handed_out, at) / 1e3;
        rates.push(done as f64 / secs);
        println!(
            "   run {}: {done}/{QUEUED} completed {secs:.2} s after the invocation began",
            run + 1
        );
    }
    println!("   {}", summary(&rates, "workflows/s"));

    queued_workflow(&binary, &server, &f).await;
    println!("\n7. per-layer cost: cargo bench --bench layers");
    drop(f);
}

/// Part 6: a `HelloWorkflow` waiting on the queue when the invocation is handed out, warm
/// (`f`, whose version is current) and cold (a new process each), against the floor: `f`
/// already polling when the workflow starts. Close times are the server's.
async fn queued_workflow(binary: &Path, server: &DevServer, f: &Function) {
    let run = std::process::id();
    let id = |row: &str, i: usize| format!("queued-{row}-{run}-{i}");
    // The floor: one invocation polling while the workflows run one after another.
    let pending = f.api.submit(b"", Duration::from_secs(12));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..QUEUED_RUNS {
        server
            .execute_hello("tq-bench", &id("floor", i), "floor")
            .await
            .unwrap();
    }
    pending.answer().await.response();
    let mut warm = HashMap::new();
    for i in 0..QUEUED_RUNS {
        server
            .start_hello("tq-bench", &id("warm", i), "warm")
            .await
            .unwrap();
        let a = f.api.invoke(b"", SHORT).await;
        a.response();
        warm.insert(id("warm", i), a.handed_out);
    }
    let (mut cold, mut cold_exec) = (HashMap::new(), HashMap::new());
    for i in 0..QUEUED_RUNS {
        server
            .start_hello("tq-bench", &id("cold", i), "cold")
            .await
            .unwrap();
        let g = Function::start(binary, server, &format!("queued-cold{i}")).await;
        let a = g.api.invoke(b"", SHORT).await;
        a.response();
        cold.insert(id("cold", i), a.handed_out);
        cold_exec.insert(id("cold", i), g.started_at);
    }
    let times = workflow_times(
        server,
        "TaskQueue='tq-bench' AND WorkflowType='HelloWorkflow'",
    )
    .await
    .unwrap();
    let floor: Vec<f64> = (0..QUEUED_RUNS)
        .filter_map(|i| times.get(&id("floor", i)))
        .map(|(start, close)| (close - start) * 1e3)
        .collect();
    let closed_after = |from: &HashMap<String, SystemTime>| -> Vec<f64> {
        from.iter()
            .filter_map(|(id, at)| Some((times.get(id)?.1 - system_secs(*at)) * 1e3))
            .collect()
    };
    let (warm, cold, cold_exec) = (
        closed_after(&warm),
        closed_after(&cold),
        closed_after(&cold_exec),
    );
    println!("\n6. a HelloWorkflow queued before the hand-out, → closed (server's close time):");
    println!(
        "   floor, already polling: start → closed  {}",
        summary(&floor, "ms")
    );
    println!(
        "   warm: hand-out → closed                {}",
        summary(&warm, "ms")
    );
    println!(
        "   cold: hand-out → closed                {}",
        summary(&cold, "ms")
    );
    println!(
        "   cold: exec → closed                    {}",
        summary(&cold_exec, "ms")
    );
    println!(
        "   warm − floor (medians): {:+.2} ms",
        percentile(&warm, 0.5) - percentile(&floor, 0.5)
    );
}

/// Part 2 as an A/B: a warm process per bootstrap, invocations interleaved, `AB_ROUNDS`
/// rounds with the order alternating; prints each one's warm overhead and its parts, and
/// the paired differences b − a with a sign test.
async fn warm_ab(binaries: [&Path; 2], server: &DevServer) {
    println!("temporal-lambda-worker warm-overhead A/B (release bootstraps, real dev server)");
    let mut functions = vec![];
    for (i, binary) in binaries.iter().enumerate() {
        println!("{}: {}", ["a", "b"][i], binary.display());
        // Each its own queue; a short idle exit, as no task comes: ~0.3 s per invocation.
        let f = Function::start_with(
            binary,
            server,
            &format!("ab{i}"),
            &format!("tq-ab{i}"),
            "0.3",
        )
        .await;
        f.api.invoke(b"", SHORT).await.response(); // the cold one, not counted
        functions.push(f);
    }
    let mut warm = [WarmOverhead::default(), WarmOverhead::default()];
    for round in 0..AB_ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            warm[i].push(&functions[i].api.invoke(b"", SHORT).await);
        }
    }
    println!(
        "\n2. warm overhead, handed out → worker polling ({AB_ROUNDS} invocations each, interleaved):"
    );
    for (i, name) in ["a", "b"].iter().enumerate() {
        println!("   {name}:");
        warm[i].print("   ");
    }
    let diffs: Vec<f64> = warm[0]
        .total
        .iter()
        .zip(&warm[1].total)
        .map(|(a, b)| b - a)
        .collect();
    let higher = diffs.iter().filter(|d| **d > 0.0).count();
    println!("   b − a, paired by round: {}", summary(&diffs, "ms"));
    println!(
        "   b higher in {higher} of {AB_ROUNDS} rounds (sign test, two-sided p = {:.3})",
        sign_test(higher, AB_ROUNDS)
    );
}

/// The two-sided p-value of `k` successes in `n` fair coin flips.
fn sign_test(k: usize, n: usize) -> f64 {
    let tail = k.min(n - k);
    // P(X <= tail) for X ~ Binomial(n, 1/2), summed in logs to stay finite.
    let ln_choose = |n: usize, k: usize| -> f64 {
        (1..=k)
            .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
            .sum()
    };
    let p: f64 = (0..=tail)
        .map(|i| (ln_choose(n, i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * p).min(1.0)
}
