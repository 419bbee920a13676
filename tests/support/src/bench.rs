//! What the benchmarks share: their `TLW_BENCH_*` knobs, the debug example bootstraps and
//! a dev server with extra arguments.

use std::path::PathBuf;

use crate::{DevServer, dev_server::free_port};

/// The variable `name` parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The debug build of example `name` in the workspace's target dir (build it first with
/// `cargo build --workspace --examples`).
pub fn debug_example(name: &str) -> PathBuf {
    let path = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("debug/examples")
        .join(name);
    // Absolute: the bootstrap is started from its own task root (a relative
    // CARGO_TARGET_DIR would name nothing there).
    std::path::absolute(&path).unwrap_or(path)
}

/// The extra `temporal server start-dev` arguments in `TLW_BENCH_SERVER_ARGS`
/// (whitespace-separated; `--dynamic-config-value KEY=VALUE`, say).
pub fn server_args_from_env() -> Vec<String> {
    std::env::var("TLW_BENCH_SERVER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A dev server started with [`server_args_from_env`].
pub async fn dev_server_from_env() -> DevServer {
    let args = server_args_from_env();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        DevServer::start_on(free_port(), &[], &args)
    })
    .await
    .expect("start the dev server")
}

/// The bootstraps listed in `TLW_BENCH_BOOTSTRAP` (comma-separated, for a before/after in
/// one run), else `default()`.
pub fn bootstraps_or(default: impl FnOnce() -> PathBuf) -> Vec<PathBuf> {
    match std::env::var("TLW_BENCH_BOOTSTRAP") {
        Ok(list) => list
            .split(',')
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{p}: {e}")))
            .collect(),
        Err(_) => vec![default()],
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-26T03:27:17.726731426Z`).
pub fn epoch_secs(t: &str) -> Option<f64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut hms = time.split(':');
    let (h, min, s) = (
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
    );
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// The server's start and close times (seconds since the epoch) of the closed workflows
/// `query` lists, by workflow id.
pub async fn workflow_times(
    server: &DevServer,
    query: &str,
) -> crate::Result<std::collections::HashMap<String, (f64, f64)>> {
    let listed = server.list_workflows(query).await?;
    Ok(listed
        .iter()
        .filter_map(|w| {
            let id = w["execution"]["workflowId"].as_str()?;
            let start = w["startTime"].as_str().and_then(epoch_secs)?;
            let close = w["closeTime"].as_str().and_then(epoch_secs)?;
            Some((id.to_owned(), (start, close)))
        })
        .collect())
}

/// Starts a `HelloWorkflow` (input `name`) on `queue` for each of `ids`, ten at a time;
/// panics when one cannot be started.
pub async fn start_hellos(server: &DevServer, queue: &str, ids: &[String], name: &str) {
    for chunk in ids.chunks(10) {
        let starts = chunk.iter().map(|id| server.start_hello(queue, id, name));
        for r in futures_util::future::join_all(starts).await {
            r.unwrap();
        }
    }
}

/// Waits until `query` counts `before + n` workflows, or `limit` passed: how many of the
/// `n` it counted, and when (polled every 100 ms).
pub async fn wait_for_count(
    server: &DevServer,
    query: &str,
    before: usize,
    n: usize,
    limit: std::time::Duration,
) -> (usize, std::time::SystemTime) {
    let start = std::time::Instant::now();
    loop {
        let done = server.count_workflows(query).await.unwrap() - before;
        if done >= n || start.elapsed() > limit {
            return (done, std::time::SystemTime::now());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Seconds since the epoch of `t`.
pub fn system_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
}

/// The `p` quantile (0 to 1) of `values` by nearest rank: `percentile(v, 0.5)` is the
/// median, 0 the minimum and 1 the maximum; `NaN` when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) as f64 * p).round() as usize],
    }
}

/// The release build of example `name` (the `bench` profile, which is the release one),
/// built first: what the end-to-end benchmarks measure by default.
pub fn release_example(name: &str) -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--profile", "bench", "--example", name])
        .current_dir(&workspace)
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --profile bench --example {name} failed"
    );
    let path = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("release/examples")
        .join(name);
    std::path::absolute(&path).unwrap_or(path)
}

/// A memory figure of process `pid` from `/proc/PID/status`, in KiB: `"VmRSS"` (now) or
/// `"VmHWM"` (its peak).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// An event's time, in seconds since the epoch.
fn event_time(e: &serde_json::Value) -> Option<f64> {
    e["eventTime"].as_str().and_then(epoch_secs)
}

/// The workflow-task and activity timeouts in one history (`temporal workflow show -o
/// json`), counted into `into` by kind (`TIMEOUT_TYPE_START_TO_CLOSE on
/// TASK_QUEUE_KIND_STICKY`, `activity TIMEOUT_TYPE_…`); returns the seconds the workflow
/// waited on them (scheduled → timed out).
pub fn timeouts(
    history: &serde_json::Value,
    into: &mut std::collections::BTreeMap<String, usize>,
) -> f64 {
    let mut waited = 0.0;
    let Some(events) = history["events"].as_array() else {
        return waited;
    };
    let scheduled_of = |id: &serde_json::Value| events.iter().find(|s| &s["eventId"] == id);
    for e in events {
        let (kind, scheduled) = if crate::dev_server::event_is(e, "WORKFLOW_TASK_TIMED_OUT") {
            let attrs = &e["workflowTaskTimedOutEventAttributes"];
            let timeout = attrs["timeoutType"].as_str().unwrap_or("?");
            // A sticky schedule-to-start timeout is the one on the sticky queue.
            let scheduled = scheduled_of(&attrs["scheduledEventId"]);
            let queue = scheduled
                .and_then(|s| {
                    s["workflowTaskScheduledEventAttributes"]["taskQueue"]["kind"].as_str()
                })
                .unwrap_or("?");
            (format!("{timeout} on {queue}"), scheduled)
        } else if crate::dev_server::event_is(e, "ACTIVITY_TASK_TIMED_OUT") {
            let attrs = &e["activityTaskTimedOutEventAttributes"];
            let timeout = attrs["failure"]["timeoutFailureInfo"]["timeoutType"]
                .as_str()
                .unwrap_or("?");
            (
                format!("activity {timeout}"),
                scheduled_of(&attrs["scheduledEventId"]),
            )
        } else {
            continue;
        };
        if let (Some(from), Some(to)) = (scheduled.and_then(event_time), event_time(e)) {
            waited += to - from;
        }
        *into.entry(kind).or_default() += 1;
    }
    waited
}
