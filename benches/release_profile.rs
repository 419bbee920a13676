//! What the release profile costs to build and what it buys at run time (issue 22.6: CI
//! time). For each candidate profile: a clean release build of the `hello` bootstrap (wall
//! time and the CPU time of cargo and every compiler it ran), the stripped binary and its
//! deflated zip; then, interleaved across the candidates so the machine's drift falls on
//! all of them alike, cold starts (exec → the worker polling) against the real dev server,
//! and a burst of queued workflows in one warm invocation (completions per second, and the
//! bootstrap's CPU time per workflow). Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --profile dev --bench release_profile`. The harness itself needs no
//! optimisation (it only starts processes), so `--profile dev` reuses the test build; each
//! candidate builds in `target/profile-bench/<name>` (removed first, so every build is
//! clean: about 8–14 min each on 2 cores). Candidates: `TLW_BENCH_PROFILES`, a comma list
//! of `<lto>-<codegen units>` (`lto`: `fat`, `thin` or `off`), by default
//! `fat-1,thin-16,off-16` (the first is the shipped profile). Results: `benches/RESULTS.md`.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use temporal_lambda_local::{
    Bootstrap, DevServer, RuntimeApi, TempDir,
    bench::{env_or, percentile, start_hellos, wait_for_count},
};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:profile";
const QUEUED: usize = 100;

struct Candidate {
    name: String,
    lto: String,
    codegen_units: String,
    binary: PathBuf,
    cold_ms: Vec<f64>,
    rates: Vec<f64>,
    cpu_ms_per_workflow: Vec<f64>,
}

/// Clock ticks per second of `/proc/*/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 on is index 0 here).
fn stat_fields(pid: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// CPU seconds (user + system) of the waited-for children of this process.
fn children_cpu_secs(ticks: f64) -> f64 {
    let f = stat_fields("self");
    // cutime and cstime are fields 16 and 17.
    (f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0)) as f64 / ticks
}

/// CPU seconds (user + system) of process `pid`.
fn process_cpu_secs(pid: u32, ticks: f64) -> f64 {
    let f = stat_fields(&pid.to_string());
    // utime and stime are fields 14 and 15.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / ticks
}

fn build(c: &Candidate, dir: &Path, ticks: f64) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (wall, cpu) = (Instant::now(), children_cpu_secs(ticks));
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--example", "hello"])
        .env("CARGO_TARGET_DIR", dir)
        .env("CARGO_PROFILE_RELEASE_LTO", &c.lto)
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", &c.codegen_units)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "the {} build failed", c.name);
    (wall.elapsed().as_secs_f64(), children_cpu_secs(ticks) - cpu)
}

/// The size of `binary` zipped as cargo-lambda zips it (one deflated `bootstrap` entry).
fn zipped_size(binary: &Path) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import io, sys, zipfile\n\
             b = io.BytesIO()\n\
             with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1], 'bootstrap')\n\
             print(len(b.getvalue()))",
        ])
        .arg(binary)
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn start(binary: &Path, api: &RuntimeApi, server: &DevServer, root: &Path) -> Bootstrap {
    std::fs::create_dir_all(root).unwrap();
    Bootstrap::start(
        binary,
        &api.address(),
        "profile",
        root,
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "tq-profile"),
            ("HELLO_DEPLOYMENT_NAME", "dep-profile"),
        ],
    )
    .unwrap()
}

fn polling_at(a: &temporal_lambda_local::Answer) -> SystemTime {
    let us = a.response()["polling_since_epoch_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no polling time in {:?}", a.outcome));
    UNIX_EPOCH + Duration::from_micros(us)
}

/// The completed `HelloWorkflow`s of the bench's task queue.
const COMPLETED: &str =
    "TaskQueue='tq-profile' AND WorkflowType='HelloWorkflow' AND ExecutionStatus='Completed'";

/// One cold start of `c`: exec → the worker polling, in ms. The default idle exit ends the
/// invocation about 2 s later.
async fn cold_start(c: &Candidate, server: &DevServer, root: &Path) -> f64 {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let started = SystemTime::now();
    let _process = start(&c.binary, &api, server, root);
    let a = api.invoke(b"", Duration::from_secs(30)).await;
    polling_at(&a)
        .duration_since(started)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

/// QUEUED workflows queued, then one warm invocation of `c` serves them: completions per
/// second from the hand-out, and the bootstrap's CPU time per workflow in that invocation.
async fn burst(
    c: &Candidate,
    server: &DevServer,
    root: &Path,
    run: &str,
    ticks: f64,
) -> (f64, f64) {
    let api = RuntimeApi::start(ARN).await.unwrap();
    let process = start(&c.binary, &api, server, root);
    // A first invocation makes the process warm (connected) and its version known.
    let _ = api.invoke(b"", Duration::from_secs(30)).await;
    server
        .register_version(&api, "dep-profile", "build-1")
        .await
        .unwrap();
    let before = server.count_workflows(COMPLETED).await.unwrap();
    let ids: Vec<String> = (0..QUEUED)
        .map(|i| format!("profile-{}-{run}-{i}", std::process::id()))
        .collect();
    start_hellos(server, "tq-profile", &ids, "profile").await;
    let cpu = process_cpu_secs(process.pid(), ticks);
    let pending = api.submit(b"", Duration::from_secs(40));
    let watch = wait_for_count(server, COMPLETED, before, QUEUED, Duration::from_secs(33));
    let (a, (done, at)) = tokio::join!(pending.answer(), watch);
    let cpu = process_cpu_secs(process.pid(), ticks) - cpu;
    let secs = at
        .duration_since(a.handed_out)
        .unwrap_or_default()
        .as_secs_f64();
    (done as f64 / secs, cpu * 1e3 / done.max(1) as f64)
}

fn summary(v: &[f64], unit: &str) -> String {
    format!(
        "median {:.2} {unit} (min {:.2}, max {:.2}, n={})",
        percentile(v, 0.5),
        percentile(v, 0.0),
        percentile(v, 1.0),
        v.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("TLW_QUIET_BOOTSTRAP", "1") };
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ticks = clock_ticks();
    let list = std::env::var("TLW_BENCH_PROFILES").unwrap_or("fat-1,thin-16,off-16".into());
    let rounds: usize = env_or("TLW_BENCH_ROUNDS", 8);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/profile-bench");
    let mut candidates: Vec<Candidate> = list
        .split(',')
        .map(|name| {
            let (lto, cgu) = name
                .split_once('-')
                .unwrap_or_else(|| panic!("{name}: expected <lto>-<codegen units>"));
            Candidate {
                name: name.into(),
                lto: lto.into(),
                codegen_units: cgu.into(),
                binary: out.join(name).join("release/examples/hello"),
                cold_ms: vec![],
                rates: vec![],
                cpu_ms_per_workflow: vec![],
            }
        })
        .collect();

    println!("release profile candidates (opt-level, strip and panic as shipped):");
    println!("| profile | build wall | build CPU | binary | zip |");
    println!("| --- | --- | --- | --- | --- |");
    for c in &candidates {
        let (wall, cpu) = build(c, &out.join(&c.name), ticks);
        let size = std::fs::metadata(&c.binary).unwrap().len();
        println!(
            "| lto={} codegen-units={} | {wall:.0} s | {cpu:.0} s | {:.2} MiB | {:.2} MiB |",
            c.lto,
            c.codegen_units,
            size as f64 / 1048576.0,
            zipped_size(&c.binary) as f64 / 1048576.0
        );
    }

    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let root = TempDir::new("profile");
    for round in 0..rounds {
        for c in candidates.iter_mut() {
            let dir = root.path().join(format!("{}-{round}", c.name));
            c.cold_ms.push(cold_start(c, &server, &dir).await);
        }
    }
    for round in 0..rounds.div_ceil(4) {
        for c in candidates.iter_mut() {
            let dir = root.path().join(format!("{}-burst-{round}", c.name));
            let run = format!("{}-{round}", c.name);
            let (rate, cpu) = burst(c, &server, &dir, &run, ticks).await;
            c.rates.push(rate);
            c.cpu_ms_per_workflow.push(cpu);
        }
    }
    println!("\nat run time (rounds interleaved across the candidates):");
    for c in &candidates {
        println!("{}:", c.name);
        println!(
            "  cold start, exec → polling   {}",
            summary(&c.cold_ms, "ms")
        );
        println!(
            "  {QUEUED} queued workflows       {}",
            summary(&c.rates, "workflows/s")
        );
        println!(
            "  bootstrap CPU per workflow   {}",
            summary(&c.cpu_ms_per_workflow, "ms")
        );
    }
}
