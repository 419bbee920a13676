//! Tasks at the invocation boundary under load (issue 11): `HelloWorkflow`s queued at once,
//! drained by bootstrap processes (each its own process against the real dev server and a
//! Runtime API on loopback) through many short invocations, so many polls and task
//! completions meet a graceful shutdown. Afterwards every workflow's history is read and
//! its workflow-task timeouts are counted by kind. Also prints the throughput (first
//! workflow task started → last workflow closed) and the CPU seconds the bootstraps and the
//! dev server used meanwhile, and the bootstraps' per workflow (`/proc` utime + stime over
//! the drain; issue 14.4 and 20.3: with one process, one long invocation and the idle
//! exit, `TLW_BENCH_PROCESSES=1 TLW_BENCH_TIMEOUT_SECS=60
//! TLW_BENCH_ENV=TEMPORAL_IDLE_SHUTDOWN_SECS=1`, it is the burst of one invocation), and how
//! long the workflow tasks started on sticky queues took from scheduled to started (how long
//! a task on its way to a closing worker's sticky queue stays out of the drain's sight).
//! Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench boundary_load`. It measures the debug `hello` bootstrap (a
//! slow build makes the boundary race likely; build it first with
//! `cargo build --workspace --examples`), or each bootstrap in `TLW_BENCH_BOOTSTRAP`
//! (comma-separated) in turn, each against the dev server started as today's tests start
//! it. Knobs: `TLW_BENCH_WORKFLOWS` (300), `TLW_BENCH_PROCESSES` (2),
//! `TLW_BENCH_TIMEOUT_SECS` (9: a 2 s polling window after the 7 s shutdown buffer),
//! `TLW_BENCH_PER_PROCESS` (1: invocations each process takes at once, as on a Lambda
//! Managed Instance, `AWS_LAMBDA_MAX_CONCURRENCY`; each round then makes processes × that
//! many invocations at once),
//! `TLW_BENCH_STREAM_SECS` (0: all queued before the first invocation; else started evenly
//! over that many seconds while the invocations run, so every stop meets a young backlog),
//! `TLW_BENCH_GRPC_STARTS` (1: started over gRPC from the bench's process, not with a CLI
//! process each),
//! `TLW_BENCH_ENV` (more variables for the bootstraps), `TLW_BENCH_SERVER_ARGS` (more
//! `temporal server start-dev` arguments), `TLW_BENCH_LOG_DIR`/`TLW_BENCH_LOG_LEVEL`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use temporal_lambda_local::{
    Bootstrap, DevServer, Outcome, RuntimeApi, TempDir,
    bench::{
        bootstraps_or, debug_example, dev_server_from_env, env_or, epoch_secs, percentile, timeouts,
    },
    dev_server::event_is,
};

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:bench";

/// Runs `f` over `items` with at most `width` at a time.
async fn bounded<T, F, Fut, R>(items: Vec<T>, width: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use futures::StreamExt;
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(width)
        .collect()
        .await
}

/// One history, an event a line: time, type, task queue, identity (with `TLW_BENCH_LOG_DIR`,
/// for the first few histories with a timeout).
fn print_history(history: &serde_json::Value) {
    println!("  a history with a workflow-task timeout:");
    for e in history["events"].as_array().into_iter().flatten() {
        let attrs = e
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.ends_with("Attributes")))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        println!(
            "    {} {:>3} {:<45} {:<40} {}",
            e["eventTime"].as_str().unwrap_or_default(),
            e["eventId"].as_str().unwrap_or_default(),
            e["eventType"].as_str().unwrap_or_default(),
            attrs["taskQueue"]["name"].as_str().unwrap_or_default(),
            attrs["identity"].as_str().unwrap_or_default(),
        );
    }
}

/// For each workflow task of `history` scheduled on a sticky queue and started there: the
/// seconds from scheduled to started (History's transfer to matching, the match, the
/// record). How long a task on its way to a sticky queue can stay invisible to the drain's
/// signals at closing.
fn sticky_pickups(history: &serde_json::Value, into: &mut Vec<f64>) {
    let events = history["events"].as_array().map_or(&[][..], Vec::as_slice);
    let id = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or(v.as_i64())
    };
    let time = |e: &serde_json::Value| e["eventTime"].as_str().and_then(epoch_secs);
    let mut scheduled = std::collections::HashMap::new();
    for e in events {
        if event_is(e, "WORKFLOW_TASK_SCHEDULED") {
            let kind = &e["workflowTaskScheduledEventAttributes"]["taskQueue"]["kind"];
            let sticky = kind.as_str().is_some_and(|k| k.ends_with("STICKY")) || kind == 2;
            if let (true, Some(i), Some(t)) = (sticky, id(&e["eventId"]), time(e)) {
                scheduled.insert(i, t);
            }
        } else if event_is(e, "WORKFLOW_TASK_STARTED") {
            let of = id(&e["workflowTaskStartedEventAttributes"]["scheduledEventId"]);
            if let (Some(at), Some(t)) = (of.and_then(|i| scheduled.remove(&i)), time(e)) {
                into.push(t - at);
            }
        }
    }
}

/// CPU seconds (user + system) used so far by `pid` and every process below it.
fn tree_cpu_secs(pid: u32) -> f64 {
    let mut parent = std::collections::HashMap::new();
    let mut ticks = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // After the `(comm)` field: state ppid … utime (14th) stime (15th).
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        parent.insert(p, num(1) as u32);
        ticks.insert(p, num(11) + num(12));
    }
    let below = |mut p: u32| {
        while p > 1 {
            if p == pid {
                return true;
            }
            p = parent.get(&p).copied().unwrap_or(0);
        }
        false
    };
    // Clock ticks are 100 a second on Linux.
    ticks
        .iter()
        .filter(|(p, _)| below(**p))
        .map(|(_, t)| *t as f64 / 100.0)
        .sum()
}

/// Starts a `HelloWorkflow` (input "Load") on `queue` over `connection`; whether it started.
async fn start_over_grpc(
    connection: &temporalio_client::Connection,
    queue: &str,
    id: &str,
) -> bool {
    use temporalio_common::protos::temporal::api::{
        common::v1::{Payload, Payloads, WorkflowType},
        taskqueue::v1::TaskQueue,
        workflowservice::v1::StartWorkflowExecutionRequest,
    };
    let input = Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: b"\"Load\"".to_vec(),
        ..Default::default()
    };
    let request = StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: id.into(),
        workflow_type: Some(WorkflowType {
            name: "HelloWorkflow".into(),
        }),
        task_queue: Some(TaskQueue {
            name: queue.into(),
            ..Default::default()
        }),
        input: Some(Payloads {
            payloads: vec![input],
        }),
        request_id: format!("bench-{id}"),
        ..Default::default()
    };
    let mut service = connection.workflow_service();
    service
        .start_workflow_execution(temporalio_client::tonic::Request::new(request))
        .await
        .is_ok()
}

async fn run(binary: &Path, server: &Arc<DevServer>, tag: usize) {
    let workflows: usize = env_or("TLW_BENCH_WORKFLOWS", 300);
    let processes: usize = env_or("TLW_BENCH_PROCESSES", 2);
    let per_process: usize = env_or("TLW_BENCH_PER_PROCESS", 1usize).max(1);
    let per_process_var = per_process.to_string();
    let timeout = Duration::from_secs_f64(env_or("TLW_BENCH_TIMEOUT_SECS", 9.0));
    // `TLW_BENCH_LOG_DIR`: keep each bootstrap's log there (JSON), at `TLW_BENCH_LOG_LEVEL`
    // (a `RUST_LOG` filter).
    let log_dir = std::env::var_os("TLW_BENCH_LOG_DIR").map(PathBuf::from);
    let log_level = std::env::var("TLW_BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new(&format!("bench-load-{tag}"));
    let queue = format!("tq-load-{tag}");
    let deployment = format!("dep-load-{tag}");
    let mut env = vec![
        ("TEMPORAL_ADDRESS", server.address.as_str()),
        ("TEMPORAL_TASK_QUEUE", &queue),
        ("HELLO_DEPLOYMENT_NAME", &deployment),
        ("RUST_LOG", &log_level),
        // Every invocation polls its whole window (the idle exit is on by default).
        ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
    ];
    if per_process > 1 {
        env.push(("AWS_LAMBDA_MAX_CONCURRENCY", &per_process_var));
    }
    // `TLW_BENCH_ENV="K=V K2=V2"`: more variables for the bootstraps.
    let extra = std::env::var("TLW_BENCH_ENV").unwrap_or_default();
    env.extend(extra.split_whitespace().filter_map(|kv| kv.split_once('=')));
    if log_dir.is_some() {
        // JSON lines carry a timestamp, to set beside the histories'.
        env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON"));
    } else {
        env.push(("AWS_LAMBDA_LOG_LEVEL", "WARN"));
    }
    let mut bootstraps: Vec<Bootstrap> = (0..processes)
        .map(|i| {
            let name = format!("bench{i}");
            match &log_dir {
                Some(dir) => Bootstrap::start_logging_to(
                    binary,
                    &api.address(),
                    &name,
                    root.path(),
                    &env,
                    &dir.join(format!("{tag}-{name}.log")),
                ),
                None => Bootstrap::start(binary, &api.address(), &name, root.path(), &env),
            }
            .unwrap()
        })
        .collect();
    server
        .register_version(&api, &deployment, "build-1")
        .await
        .unwrap();
    println!(
        "{}: {workflows} workflows, {processes} processes × {per_process} invocations at \
         once, {:.1} s invocations",
        binary.display(),
        timeout.as_secs_f64()
    );
    let ids: Vec<String> = (0..workflows)
        .map(|i| format!("wf-load-{tag}-{i}"))
        .collect();
    // `TLW_BENCH_STREAM_SECS`: the workflows start evenly over that many seconds while the
    // invocations run (a young backlog at every stop), not all before them.
    let stream = Duration::from_secs_f64(env_or("TLW_BENCH_STREAM_SECS", 0.0));
    // `TLW_BENCH_GRPC_STARTS=1`: started over one gRPC connection of this process, not a
    // `temporal` CLI process each (fifteen of those a second saturate two cores: load
    // average 37, a third of the starts failing).
    let grpc = if env_or("TLW_BENCH_GRPC_STARTS", 0u8) == 1 {
        let url = temporalio_client::Url::parse(&format!("http://{}", server.address)).unwrap();
        let options = temporalio_client::ConnectionOptions::new(url).build();
        Some(
            temporalio_client::Connection::connect(options)
                .await
                .unwrap(),
        )
    } else {
        None
    };
    let starting = {
        let (server, queue, ids) = (server.clone(), queue.clone(), ids.clone());
        async move {
            let start = |id: String| {
                let (server, queue, grpc) = (server.clone(), queue.clone(), grpc.clone());
                async move {
                    match grpc {
                        Some(connection) => start_over_grpc(&connection, &queue, &id).await,
                        None => server.start_hello(&queue, &id, "Load").await.is_ok(),
                    }
                }
            };
            if stream.is_zero() {
                return bounded(ids, 16, start).await;
            }
            let mut tick = tokio::time::interval(stream / ids.len().max(1) as u32);
            let mut starts = Vec::new();
            for id in ids {
                tick.tick().await;
                starts.push(tokio::spawn(start(id)));
            }
            let done = futures::future::join_all(starts).await;
            done.into_iter().map(|r| r.unwrap_or(false)).collect()
        }
    };
    let starter = if stream.is_zero() {
        let started: Vec<bool> = starting.await;
        tokio::spawn(async move { started })
    } else {
        tokio::spawn(starting)
    };
    let cpu = |pids: &[u32]| pids.iter().map(|p| tree_cpu_secs(*p)).sum::<f64>();
    let bootstrap_pids: Vec<u32> = bootstraps.iter().map(Bootstrap::pid).collect();
    let (bootstrap_cpu, server_cpu) = (cpu(&bootstrap_pids), cpu(&[server.pid()]));
    let begin = Instant::now();
    let mut invocations = 0;
    let mut failed = 0;
    let running = format!("TaskQueue='{queue}' AND ExecutionStatus='Running'");
    // A bootstrap that exited (a poisoned worker ends its process) ends the run: nothing
    // would take its invocations.
    let mut exits = Vec::new();
    while (!starter.is_finished()
        || server.count_workflows(&running).await.unwrap_or(usize::MAX) > 0)
        && begin.elapsed().as_secs() < 300
    {
        let round = futures::future::join_all(
            (0..processes * per_process).map(|_| api.invoke(b"", timeout)),
        );
        let exited = async {
            loop {
                let exits: Vec<_> = bootstraps
                    .iter_mut()
                    .filter_map(Bootstrap::exited)
                    .collect();
                if !exits.is_empty() {
                    return exits;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let answers = tokio::select! {
            answers = round => answers,
            gone = exited => {
                exits = gone;
                break;
            }
        };
        invocations += answers.len();
        failed += answers
            .iter()
            .filter(|a| !matches!(a.outcome, Outcome::Response(_)))
            .count();
    }
    let drained = begin.elapsed();
    if !exits.is_empty() {
        println!(
            "  THE RUN STOPPED: a bootstrap process exited (codes {exits:?}) after {:.1} s",
            drained.as_secs_f64()
        );
    }
    let not_started = starter
        .await
        .map_or(workflows, |s| s.iter().filter(|ok| !**ok).count());
    let bootstrap_cpu = cpu(&bootstrap_pids) - bootstrap_cpu;
    let server_cpu = cpu(&[server.pid()]) - server_cpu;
    let histories = bounded(ids, 16, |id| {
        let server = server.clone();
        async move { server.history(&id).await }
    })
    .await;
    let mut by_kind = BTreeMap::new();
    let mut unread = 0;
    let mut shown = 0;
    let mut stalled = Vec::new();
    let mut pickups = Vec::new();
    // First workflow task started → last workflow closed, over all workflows.
    let (mut first_start, mut last_close) = (f64::MAX, 0.0f64);
    for h in histories {
        match h.ok() {
            Some(v) => {
                if let Some(events) = v["events"].as_array() {
                    if let Some(t) = events
                        .iter()
                        .find(|e| event_is(e, "WORKFLOW_TASK_STARTED"))
                        .and_then(|e| e["eventTime"].as_str().and_then(epoch_secs))
                    {
                        first_start = first_start.min(t);
                    }
                    if let Some(t) = events
                        .last()
                        .and_then(|e| e["eventTime"].as_str().and_then(epoch_secs))
                    {
                        last_close = last_close.max(t);
                    }
                }
                sticky_pickups(&v, &mut pickups);
                let before: usize = by_kind.values().sum();
                let w = timeouts(&v, &mut by_kind);
                if w > 0.0 {
                    stalled.push(w);
                }
                // With logs kept: the first few histories with a timeout, and every one with
                // a start-to-close timeout (the rarer kind, whose cause the logs show).
                let start_to_close = v.to_string().contains("START_TO_CLOSE");
                if log_dir.is_some()
                    && (shown < 3 || start_to_close)
                    && by_kind.values().sum::<usize>() > before
                {
                    shown += 1;
                    print_history(&v);
                }
            }
            None => unread += 1,
        }
    }
    let total: usize = by_kind.values().sum();
    let throughput = if first_start <= last_close {
        let span = last_close - first_start;
        format!(
            "{workflows} workflows in {span:.2} s (first task started → last closed): {:.1} \
             workflows/s",
            workflows as f64 / span
        )
    } else {
        "no workflow task started".to_owned()
    };
    println!(
        "  throughput: {throughput}; CPU while draining: bootstraps {bootstrap_cpu:.1} s ({:.2} \
         ms per workflow), dev server {server_cpu:.1} s, over {:.1} s of wall time on {} cores",
        bootstrap_cpu * 1e3 / workflows.max(1) as f64,
        drained.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ms = |p| percentile(&pickups, p) * 1e3;
    println!(
        "  sticky tasks, scheduled → started on the sticky queue: {} (p50 {:.0} ms, p95 {:.0} \
         ms, p99 {:.0} ms, max {:.0} ms)",
        pickups.len(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        ms(1.0)
    );
    println!(
        "  drained in {:.1} s through {invocations} invocations ({failed} answered an error; \
         {not_started} workflows not started, {unread} histories unread)",
        drained.as_secs_f64()
    );
    println!(
        "  workflow-task and activity timeouts: {total}; {} workflows stalled by them, {:.1} s in \
         all (max {:.1} s)",
        stalled.len(),
        // An empty sum is -0.0.
        stalled.iter().sum::<f64>() + 0.0,
        stalled.iter().copied().fold(0.0, f64::max)
    );
    for (kind, n) in &by_kind {
        println!("    {n:4}  {kind}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binaries = bootstraps_or(|| debug_example("hello"));
    let server = Arc::new(dev_server_from_env().await);
    println!("boundary load, dev server {}", server.address);
    for (tag, binary) in binaries.iter().enumerate() {
        run(binary, &server, tag).await;
    }
}
