//! Issue 20.4: which memory size to give the function. Lambda gives a function CPU in
//! proportion to its memory (1,769 MB = one vCPU), so the release `hello` bootstrap runs
//! here in a cgroup v1 `cpu` group whose CFS quota is that share of one CPU, for 128, 256,
//! 512, 1,024 and 1,769 MB (needs root and `/sys/fs/cgroup/cpu`; every group is removed at
//! the end). The dev server runs outside the groups, as Temporal does outside Lambda.
//!
//! For each size, in rounds that go through the sizes in turn (so the machine's drift
//! touches every size alike): a cold start (a new process; exec → worker polling, the
//! exec through a `sh` that joins the group first), then warm invocations each serving one
//! `HelloWorkflow` queued before the hand-out (hand-out → workflow closed, and the billed
//! time: hand-out → answer, with the default idle exit), then a burst of queued workflows
//! drained by one invocation (workflows per second, and billed time per workflow). Then
//! the cost per 1,000 workflows at each size from Lambda's prices (below), x86_64 and
//! arm64, for the sparse pattern (one invocation per workflow) and the burst.
//!
//! Run: `cargo bench --bench memory_size` (builds the release `hello`), or
//! `TLW_BENCH_BOOTSTRAP=path`. Knobs: `TLW_BENCH_ROUNDS` (3), `TLW_BENCH_WARM` (warm
//! invocations per round, 3), `TLW_BENCH_BURST` (workflows per burst, 100),
//! `TLW_BENCH_SIZES` (comma-separated MB). Prints numbers; asserts nothing.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use temporal_lambda_local::{
    Answer, Bootstrap, DevServer, RuntimeApi, TempDir,
    bench::{
        bootstraps_or, env_or, percentile, release_example, start_hellos, system_secs,
        wait_for_count, workflow_times,
    },
};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:bench";
/// The memory size that gets one full vCPU.
const ONE_VCPU_MB: u64 = 1769;
const PERIOD_US: u64 = 100_000;
/// Lambda's prices in us-east-1, first tier, read 2026-12-06 (as third-party pages quote
/// AWS's price list; AWS's own page cannot be read from this machine): per GB-second of
/// duration for x86_64 and arm64, and per request.
const PRICE_GB_S_X86: f64 = 0.000_016_666_7;
const PRICE_GB_S_ARM: f64 = 0.000_013_333_4;
const PRICE_REQUEST: f64 = 0.20 / 1e6;
/// 9 s with the default 7 s buffer: at most 2 s of polling.
const SHORT: Duration = Duration::from_secs(9);

/// A cgroup v1 `cpu` group with the CPU share of `mb` of Lambda memory, removed on drop.
struct CpuGroup {
    dir: PathBuf,
}

impl CpuGroup {
    fn new(mb: u64) -> std::io::Result<Self> {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/cpu/tlw-bench-{}-{mb}",
            std::process::id()
        ));
        std::fs::create_dir(&dir)?;
        let group = Self { dir };
        std::fs::write(group.dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        let quota = PERIOD_US * mb / ONE_VCPU_MB;
        std::fs::write(group.dir.join("cpu.cfs_quota_us"), quota.to_string())?;
        Ok(group)
    }

    /// A script that moves itself into the group, then runs `binary` there.
    fn launcher(&self, binary: &Path, root: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = root.join("bootstrap-in-group");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec {}\n",
                self.dir.join("cgroup.procs").display(),
                binary.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // The processes in it are gone (killed when their `Bootstrap` dropped); the kernel
        // may take a moment to let go of the group.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// One bootstrap process in a group, with its own Runtime API.
struct Function {
    api: RuntimeApi,
    _process: Bootstrap,
    _root: TempDir,
    started_at: SystemTime,
}

impl Function {
    async fn start(binary: &Path, group: &CpuGroup, server: &DevServer, mb: u64, n: usize) -> Self {
        let api = RuntimeApi::start(ARN).await.unwrap();
        let root = TempDir::new(&format!("bench-mem-{mb}-{n}"));
        let launcher = group.launcher(binary, root.path());
        let (queue, deployment, memory) = (queue(mb), deployment(mb), mb.to_string());
        let started_at = SystemTime::now();
        let process = Bootstrap::start(
            &launcher,
            &api.address(),
            "bench",
            root.path(),
            &[
                ("TEMPORAL_ADDRESS", &server.address),
                ("TEMPORAL_TASK_QUEUE", &queue),
                ("HELLO_DEPLOYMENT_NAME", &deployment),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory),
            ],
        )
        .unwrap();
        Self {
            api,
            _process: process,
            _root: root,
            started_at,
        }
    }
}

fn queue(mb: u64) -> String {
    format!("tq-mem-{mb}")
}

fn deployment(mb: u64) -> String {
    format!("dep-mem-{mb}")
}

fn polling_at(a: &Answer) -> SystemTime {
    let us = a.response()["polling_since_epoch_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no polling time in {:?}", a.outcome));
    UNIX_EPOCH + Duration::from_micros(us)
}

fn secs(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Default)]
struct Samples {
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    warm_billed_s: Vec<f64>,
    burst_rate: Vec<f64>,
    burst_billed_s: Vec<f64>,
}

/// One round at `mb`: a cold start, warm invocations, a burst.
async fn round(binary: &Path, server: &DevServer, mb: u64, n: usize, s: &mut Samples) {
    let group = CpuGroup::new(mb).expect("create a cgroup v1 cpu group (root, cgroup v1)");
    let f = Function::start(binary, &group, server, mb, n).await;
    // Cold: the first invocation; the first round's also registers the version.
    let (a, set) = tokio::join!(f.api.invoke(b"", SHORT), async {
        if n == 0 {
            server
                .set_current_version(&deployment(mb), "build-1", Duration::from_secs(10))
                .await
        } else {
            Ok(())
        }
    });
    set.unwrap();
    s.cold_ms.push(secs(f.started_at, polling_at(&a)) * 1e3);

    let run = std::process::id();
    let mut handed_out = HashMap::new();
    for i in 0..env_or("TLW_BENCH_WARM", 3) {
        let id = format!("mem-{mb}-{run}-{n}-{i}");
        server.start_hello(&queue(mb), &id, "warm").await.unwrap();
        let a = f.api.invoke(b"", SHORT).await;
        a.response();
        s.warm_billed_s.push(secs(a.handed_out, a.answered_at));
        handed_out.insert(id, a.handed_out);
    }
    let times = workflow_times(
        server,
        &format!("TaskQueue='{}' AND ExecutionStatus='Completed'", queue(mb)),
    )
    .await
    .unwrap();
    for (id, at) in &handed_out {
        if let Some((_, close)) = times.get(id) {
            s.warm_ms.push((close - system_secs(*at)) * 1e3);
        }
    }

    let burst = env_or("TLW_BENCH_BURST", 100);
    let completed = format!(
        "TaskQueue='{}' AND WorkflowType='HelloWorkflow' AND ExecutionStatus='Completed'",
        queue(mb)
    );
    let before = server.count_workflows(&completed).await.unwrap();
    let ids: Vec<String> = (0..burst)
        .map(|i| format!("mem-burst-{mb}-{run}-{n}-{i}"))
        .collect();
    start_hellos(server, &queue(mb), &ids, "burst").await;
    let pending = f.api.submit(b"", Duration::from_secs(60));
    let watch = wait_for_count(server, &completed, before, burst, Duration::from_secs(50));
    let (a, (done, at)) = tokio::join!(pending.answer(), watch);
    s.burst_rate.push(done as f64 / secs(a.handed_out, at));
    s.burst_billed_s
        .push(secs(a.handed_out, a.answered_at) / done.max(1) as f64);
    drop(f);
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("TLW_QUIET_BOOTSTRAP", "1") };
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let [binary] = &bootstraps_or(|| release_example("hello"))[..] else {
        panic!("TLW_BENCH_BOOTSTRAP: this bench measures one bootstrap per run");
    };
    let binary = binary.clone();
    let sizes: Vec<u64> = std::env::var("TLW_BENCH_SIZES")
        .unwrap_or_else(|_| "128,256,512,1024,1769".into())
        .split(',')
        .map(|v| v.trim().parse().expect("sizes in MB"))
        .collect();
    let rounds = env_or("TLW_BENCH_ROUNDS", 3);
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    println!(
        "memory sizes: {} under a CPU quota of size / {ONE_VCPU_MB} MB of one CPU, {rounds} rounds",
        binary.display()
    );
    let mut samples: HashMap<u64, Samples> = HashMap::new();
    for n in 0..rounds {
        for &mb in &sizes {
            round(&binary, &server, mb, n, samples.entry(mb).or_default()).await;
        }
    }
    println!(
        "| memory | CPU share | cold start (exec → polling) | warm hand-out → closed | warm billed per workflow | burst workflows/s | burst billed per workflow |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &mb in &sizes {
        let s = &samples[&mb];
        println!(
            "| {mb} MB | {:.3} vCPU | {:.1} ms | {:.1} ms | {:.3} s | {:.1} | {:.3} s |",
            mb as f64 / ONE_VCPU_MB as f64,
            median(&s.cold_ms),
            median(&s.warm_ms),
            median(&s.warm_billed_s),
            median(&s.burst_rate),
            median(&s.burst_billed_s),
        );
    }
    println!();
    println!(
        "| memory | sparse, per 1,000 workflows: x86_64 | arm64 | burst, per 1,000 workflows: x86_64 | arm64 |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let burst = env_or("TLW_BENCH_BURST", 100) as f64;
    for &mb in &sizes {
        let s = &samples[&mb];
        let gb = mb as f64 / 1024.0;
        // Sparse: one invocation (one request) per workflow; burst: one per `burst`.
        let cost = |billed: f64, price: f64, requests: f64| {
            1000.0 * (billed * gb * price + requests * PRICE_REQUEST)
        };
        let (warm, burst_billed) = (median(&s.warm_billed_s), median(&s.burst_billed_s));
        println!(
            "| {mb} MB | ${:.5} | ${:.5} | ${:.5} | ${:.5} |",
            cost(warm, PRICE_GB_S_X86, 1.0),
            cost(warm, PRICE_GB_S_ARM, 1.0),
            cost(burst_billed, PRICE_GB_S_X86, 1.0 / burst),
            cost(burst_billed, PRICE_GB_S_ARM, 1.0 / burst),
        );
    }
}
