//! The real [`WorkerBackend`]: Temporal workers on a dedicated thread.
//!
//! The SDK's `Worker::run` future is not `Send` (workflows run in a `LocalSet`), while
//! tower stacks and `lambda_runtime` want `Send` futures. This is handled once, here: a
//! thread running a current-thread Tokio runtime and a `LocalSet` owns the SDK runtime,
//! the cached connections and every worker (sessions that overlap run side by side there,
//! each on a connection of its own: see `connection_cache.rs`). The stack sends it a job over a channel and
//! gets back a `Send` [`RunningWorker`] (a shutdown handle and a completion receiver).
//! A worker stuck on that thread cannot stop the stack's own task from answering the
//! Runtime API before the deadline.
//!
//! Beside each worker run the server check and the rollout hold (`rollout.rs`); each
//! connection's RPCs pass through its [`Wire`] (`wire/`), which the worker's shutdown closes
//! before the SDK's and which hands back, when the worker has stopped, every task it was
//! handed and did not run.

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::{BoxFuture, LocalBoxFuture};
use temporalio_client::{Client, Connection, request_extensions::NoRetryOnMatching, tonic};
use temporalio_common::protos::temporal::api::{
    deployment::v1::WorkerDeploymentVersion,
    enums::v1::RoutingConfigUpdateState,
    workflowservice::v1::{
        DescribeWorkerDeploymentRequest, DescribeWorkerDeploymentVersionRequest,
        GetSystemInfoRequest,
    },
};
use temporalio_common::telemetry::TelemetryOptions;
use temporalio_sdk::{Runtime, Worker, runtime::RuntimeOptions};
use tokio::sync::{mpsc, oneshot};

use crate::{
    BoxError, ConnectProblem, CoreMeter, LambdaWorkerError,
    backend::{RunningWorker, SessionConfig, StartTimings, TaskActivity, WorkerBackend},
    connection_cache::{ConnectionCache, Lease, fingerprint},
    diagnosis::{connect_failure, connect_failure_kind, server_gone, status_in_words},
    rollout,
    wire::{Wire, upstream},
};

type Job = Box<dyn FnOnce(Rc<Host>) -> LocalBoxFuture<'static, ()> + Send>;

/// A connection and the wire its RPCs pass through (`None`: the client's own transport,
/// for options the wire cannot carry).
#[derive(Clone)]
struct Wired {
    connection: Connection,
    wire: Option<Arc<Wire>>,
}

/// The SDK runtime and the meter it was made with.
type MeteredRuntime = (Option<Arc<dyn CoreMeter>>, Rc<Runtime>);

struct Host {
    /// Made at the first session.
    runtime: RefCell<Option<MeteredRuntime>>,
    connections: RefCell<ConnectionCache<Wired>>,
    /// When each version (namespace, deployment, build id) was last found known and not
    /// held by the rollout hold.
    versions_settled: RefCell<std::collections::HashMap<[String; 3], Instant>>,
}

impl Host {
    /// The SDK runtime for `metrics`: the existing one while the meter is the same `Arc`.
    fn runtime(&self, metrics: Option<Arc<dyn CoreMeter>>) -> Result<Rc<Runtime>, BoxError> {
        let same = |a: &Option<Arc<dyn CoreMeter>>| match (a, &metrics) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if let Some((meter, runtime)) = &*self.runtime.borrow()
            && same(meter)
        {
            return Ok(runtime.clone());
        }
        let mut telemetry = TelemetryOptions::builder().build();
        // The meter's resource carries the service name; no extra label on every point.
        telemetry.attach_service_name = metrics.is_none();
        telemetry.metrics = metrics.clone();
        // Worker heartbeats off: a Lambda process is frozen between invocations, and
        // shut-down workers would otherwise keep heartbeating.
        let runtime = RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .heartbeat_interval(None)
            .build()
            .map_err(BoxError::from)
            .and_then(|o| Runtime::from_current_tokio(o).map_err(BoxError::from))
            .map(Rc::new)?;
        *self.runtime.borrow_mut() = Some((metrics, runtime.clone()));
        Ok(runtime)
    }
}

/// Runs workers against a real Temporal server, reusing the connection across warm
/// invocations while the connection options stay the same.
#[derive(Default)]
pub struct TemporalBackend {
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

impl std::fmt::Debug for TemporalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalBackend").finish_non_exhaustive()
    }
}

impl TemporalBackend {
    /// A backend; its thread starts with the first session.
    pub fn new() -> Self {
        Self::default()
    }

    fn sender(&self) -> Result<mpsc::UnboundedSender<Job>, BoxError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.as_ref() {
            Some(tx) if !tx.is_closed() => Ok(tx.clone()),
            _ => {
                let tx = spawn_host()?;
                *jobs = Some(tx.clone());
                Ok(tx)
            }
        }
    }
}

fn spawn_host() -> Result<mpsc::UnboundedSender<Job>, BoxError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("temporal-worker")
        .build()?;
    std::thread::Builder::new()
        .name("temporal-worker".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let host = Rc::new(Host {
                    runtime: RefCell::default(),
                    connections: RefCell::default(),
                    versions_settled: RefCell::default(),
                });
                while let Some(job) = rx.recv().await {
                    tokio::task::spawn_local(job(host.clone()));
                }
            });
        })?;
    Ok(tx)
}

impl WorkerBackend for TemporalBackend {
    fn start(
        &self,
        session: SessionConfig,
    ) -> BoxFuture<'static, Result<RunningWorker, LambdaWorkerError>> {
        let target = session.connection.target.to_string();
        let failed = move |source: BoxError| LambdaWorkerError::Connect {
            target: target.clone(),
            source,
            problem: ConnectProblem::Other,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let sent = self.sender().and_then(|tx| {
            tx.send(Box::new(move |host| {
                Box::pin(host_session(host, session, reply_tx))
            }))
            .map_err(|_| "the Temporal worker thread has stopped".into())
        });
        Box::pin(async move {
            sent.map_err(&failed)?;
            let (mut running, handed_over) = reply_rx
                .await
                .map_err(|_| failed("the Temporal worker thread dropped the session".into()))??;
            // The worker polls from the moment it was handed over; waking this task on the
            // stack's runtime can take a few hundred µs more (`benches/lifecycle`).
            running.timings.handover = handed_over.elapsed();
            Ok(running)
        })
    }
}

/// A session's answer from the worker's thread: the worker, handed over at that instant,
/// from which it polls.
type Reply = oneshot::Sender<Result<(RunningWorker, Instant), LambdaWorkerError>>;

/// One session on the host: start the worker, hand it over, run it to its end.
async fn host_session(host: Rc<Host>, session: SessionConfig, reply: Reply) {
    match start_worker(&host, session).await {
        Ok(started) => run_worker(host, started, reply).await,
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

/// Connects as `options` say, through a [`Wire`] where it can carry them.
async fn connect(
    mut options: temporalio_client::ConnectionOptions,
) -> Result<Wired, temporalio_client::errors::ClientConnectError> {
    if let Some(why) = upstream::unsupported(&options) {
        tracing::debug!("the client's own transport, not the wire: {why}");
        let connection = Connection::connect(options).await?;
        return Ok(Wired {
            connection,
            wire: None,
        });
    }
    let server = upstream::Server::connect(&options)
        .await
        .map_err(temporalio_client::errors::ClientConnectError::TonicTransportError)?;
    let wire = Wire::new(upstream::shared(server));
    options.service_override = Some(wire.service());
    options.dns_load_balancing = None;
    let connection = Connection::connect(options).await?;
    Ok(Wired {
        connection,
        wire: Some(wire),
    })
}

/// A worker created on the host, with the connection it was created on.
struct StartedWorker {
    worker: Worker,
    /// The connection, checked beside the polls and given back to the cache at the end.
    connection: Wired,
    lease: Lease,
    reused: bool,
    timings: StartTimings,
    /// The server, as a `ServerUnreachable` error names it.
    target: String,
    /// The worker's version, for the rollout hold.
    version: VersionOf,
}

/// Which version a session's worker polls as, and the task activity its rollout hold
/// holds.
struct VersionOf {
    namespace: String,
    deployment_name: String,
    build_id: String,
    tasks: TaskActivity,
}

/// Connects as `options` say; a failure in words, with its kind.
async fn connect_or_say_why(
    options: temporalio_client::ConnectionOptions,
    failed: impl Fn(BoxError, ConnectProblem) -> LambdaWorkerError,
) -> Result<Wired, LambdaWorkerError> {
    let host = options.target.host_str().map(str::to_owned);
    match connect(options).await {
        Ok(c) => Ok(c),
        Err(e) => {
            tracing::debug!(error = ?e, "connecting to Temporal failed (full detail)");
            let kind = connect_failure_kind(&e, host.as_deref()).await;
            Err(failed(connect_failure(&e).into(), kind))
        }
    }
}

impl VersionOf {
    fn of(session: &SessionConfig) -> Self {
        let deployment = &session.worker.deployment_options.version;
        Self {
            namespace: session.client.namespace.clone(),
            deployment_name: deployment.deployment_name.clone(),
            build_id: deployment.build_id.clone(),
            tasks: session.tasks.clone(),
        }
    }
}

/// Connects (or reuses a cached connection) and creates the worker.
async fn start_worker(
    host: &Host,
    session: SessionConfig,
) -> Result<StartedWorker, LambdaWorkerError> {
    if session.worker.workflows().is_empty() && registers_no_activity(&session.worker) {
        // The SDK would refuse it too, after connecting, in words that point elsewhere.
        return Err(LambdaWorkerError::NothingRegistered);
    }
    let target = session.connection.target.to_string();
    let failed = |source: BoxError, problem| LambdaWorkerError::Connect {
        target: target.clone(),
        source,
        problem,
    };
    let runtime = host.runtime(session.metrics.clone()).map_err(|e| {
        let source: BoxError = format!("the Temporal SDK runtime failed to start: {e}").into();
        failed(source, ConnectProblem::Other)
    })?;
    let key = fingerprint(&session.connection);
    let version = VersionOf::of(&session);
    let connecting = Instant::now();
    let (cached, lease) = host.connections.borrow_mut().take(key);
    let (connection, reused) = match cached {
        Some(c) => (c, true),
        None => (
            connect_or_say_why(session.connection, &failed).await?,
            false,
        ),
    };
    let connect = connecting.elapsed();
    let creating = Instant::now();
    let worker = Client::new(connection.connection.clone(), session.client)
        .map_err(BoxError::from)
        .and_then(|client| Worker::new(&runtime, client, session.worker).map_err(BoxError::from));
    match worker {
        Ok(worker) => Ok(StartedWorker {
            worker,
            connection,
            lease,
            reused,
            timings: StartTimings {
                connect,
                create_worker: creating.elapsed(),
                handover: Duration::ZERO,
            },
            target,
            version,
        }),
        Err(e) => {
            // The options were refused, not the connection: keep it.
            host.connections.borrow_mut().give_back(lease, connection);
            Err(failed(e, ConnectProblem::Other))
        }
    }
}

/// Hands the worker over through `reply`, runs it beside a check of its server, and
/// gives the connection back (or drops it, when it may be what broke).
async fn run_worker(host: Rc<Host>, started: StartedWorker, reply: Reply) {
    let StartedWorker {
        mut worker,
        connection,
        lease,
        reused,
        timings,
        target,
        version,
    } = started;
    let Wired { connection, wire } = connection;
    let done = hand_over(&worker, wire.as_ref(), reused, timings, reply);
    let instance = worker.worker_instance_key();
    let hold = tokio::task::spawn_local(hold_while_rolled_out(
        host.clone(),
        connection.clone(),
        version,
    ));
    let _hold = AbortOnDrop(hold);
    let mut result = poll_beside_watch(&host, &mut worker, &connection, reused, target, done).await;
    let start_cut = finish(wire.as_deref()).await.is_some_and(|r| r.start_cut);
    deregister(&connection, instance);
    if start_cut && let Some((Err(e), _)) = &result {
        // The session ended before the worker started: a server slow to answer, not a
        // failed worker (nothing was polled, so nothing is lost) and not a broken
        // connection. Ending it as an error would make Lambda retry the event and the
        // next invocation reconnect, more load on a server already behind.
        tracing::warn!(
            error = %e,
            "the worker's session ended before it started polling: the Temporal server did \
             not answer DescribeNamespace in time (a server slow to answer); nothing was \
             polled"
        );
        result = result.map(|(_, done)| (Ok(()), done));
    }
    match result {
        // Answered already: the server is gone.
        None => {}
        Some((result, done)) => {
            if result.is_err() {
                // The connection may be what broke: make the next invocations reconnect.
                host.connections.borrow_mut().invalidate();
            } else {
                host.connections
                    .borrow_mut()
                    .give_back(lease, Wired { connection, wire });
            }
            let _ = done.send(result);
        }
    }
}

/// The end of a worker's run, as the session's `finished` future receives it.
type Done = oneshot::Sender<Result<(), LambdaWorkerError>>;

/// Hands the worker over through `reply` (stopping it at once when nobody waits for it
/// any more); returns where its end is to be sent.
fn hand_over(
    worker: &Worker,
    wire: Option<&Arc<Wire>>,
    reused: bool,
    timings: StartTimings,
    reply: Reply,
) -> Done {
    let (done_tx, done_rx) = oneshot::channel::<Result<(), LambdaWorkerError>>();
    if let Some(wire) = wire {
        wire.begin();
    }
    let running = RunningWorker {
        shutdown: shutdown(worker.shutdown_handle(), wire.cloned()),
        finished: Box::pin(async move {
            done_rx.await.unwrap_or_else(|_| {
                Err(LambdaWorkerError::Worker(
                    "the Temporal worker thread dropped the worker".into(),
                ))
            })
        }),
        connection_reused: reused,
        timings,
    };
    if reply.send(Ok((running, Instant::now()))).is_err() {
        // Nobody waits for this worker any more (the invocation gave up): stop it at once.
        (worker.shutdown_handle())();
    }
    done_tx
}

/// Runs the worker beside a check of its server. Returns its result (and where to send
/// it), or `None` when the server went away: that was answered at once (the SDK would
/// retry its polls against a dead server until the shutdown moment and report success),
/// the connection dropped, and the worker stopped.
async fn poll_beside_watch(
    host: &Host,
    worker: &mut Worker,
    connection: &Connection,
    reused: bool,
    target: String,
    done: Done,
) -> Option<(Result<(), LambdaWorkerError>, Done)> {
    let stop = worker.shutdown_handle();
    let run = worker.run();
    tokio::pin!(run);
    // Beside the polls (never in front of them): is the server still there? A reused
    // connection is checked at once, a fresh one (just proven by connecting) later.
    let watch = watch_server(connection.clone(), reused);
    tokio::select! {
        biased;
        result = &mut run => Some((result.map_err(worker_failure), done)),
        (why, problem) = watch => {
            host.connections.borrow_mut().invalidate();
            stop();
            let _ = done.send(Err(LambdaWorkerError::ServerUnreachable {
                target,
                source: why.into(),
                problem,
            }));
            let _ = run.await;
            None
        }
    }
}

/// The worker's graceful shutdown: through the wire, its polls closed first
/// (`Wire::close`), then the SDK's.
fn shutdown(
    core: impl FnOnce() + Send + 'static,
    wire: Option<Arc<Wire>>,
) -> Box<dyn FnOnce() + Send> {
    let Some(wire) = wire else {
        return Box::new(core);
    };
    let host = tokio::runtime::Handle::current();
    Box::new(move || {
        host.spawn(async move {
            wire.close().await;
            core();
            wire.release();
        });
    })
}

/// Ends the session on the wire once its worker stopped (tasks it did not run handed
/// back), and says what the wire did.
async fn finish(wire: Option<&Wire>) -> Option<crate::wire::WireReport> {
    let wire = wire?;
    let report = wire.finish().await;
    static MODE: std::sync::Once = std::sync::Once::new();
    if let Some(graceful) = wire.graceful_polls() {
        MODE.call_once(|| crate::wire::log_mode(graceful));
    }
    tracing::debug!(
        handed_back = report.handed_back,
        polls_dropped = report.dropped,
        polls_held = report.held,
        polls_let_go = report.let_go,
        completions_let_go = report.calls_let_go,
        start_cut = report.start_cut,
        "the wire at the invocation boundary"
    );
    Some(report)
}

/// Aborts a task of the host when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The rollout hold (`rollout.rs`) of one session, read from the server beside the polls
/// (not again within [`rollout::LOOK_AGAIN_AFTER`] of finding the version settled).
async fn hold_while_rolled_out(host: Rc<Host>, connection: Connection, of: VersionOf) {
    let key = [
        of.namespace.clone(),
        of.deployment_name.clone(),
        of.build_id.clone(),
    ];
    let settled = host.versions_settled.borrow().get(&key).copied();
    if settled.is_some_and(|at| at.elapsed() < rollout::LOOK_AGAIN_AFTER) {
        return;
    }
    let describe = || describe_version(&connection, &of);
    if rollout::watch(&of.tasks, describe, std::time::SystemTime::now).await {
        host.versions_settled
            .borrow_mut()
            .insert(key, Instant::now());
    }
}

/// What the server says of the worker's version (`None`: it does not know it yet).
async fn describe_version(
    connection: &Connection,
    of: &VersionOf,
) -> Result<Option<rollout::VersionView>, rollout::LookFailed> {
    let mut service = connection.workflow_service();
    let request = DescribeWorkerDeploymentVersionRequest {
        namespace: of.namespace.clone(),
        deployment_version: Some(WorkerDeploymentVersion {
            deployment_name: of.deployment_name.clone(),
            build_id: of.build_id.clone(),
        }),
        ..Default::default()
    };
    let info = match service
        .describe_worker_deployment_version(unretried(request))
        .await
    {
        Ok(answer) => answer.into_inner().worker_deployment_version_info,
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Err(look_failed(&status)),
    };
    let Some(info) = info else {
        return Ok(None);
    };
    let at = |t: &Option<prost_types::Timestamp>| {
        (*t).and_then(|t| std::time::SystemTime::try_from(t).ok())
    };
    let status = info.status();
    let routed = matches!(status, rollout::Status::Current | rollout::Status::Ramping);
    // Only a version being routed to needs the deployment's propagation state.
    let propagating = routed && {
        let request = DescribeWorkerDeploymentRequest {
            namespace: of.namespace.clone(),
            deployment_name: of.deployment_name.clone(),
        };
        let answer = service
            .describe_worker_deployment(unretried(request))
            .await
            .map_err(|s| look_failed(&s))?;
        answer.into_inner().worker_deployment_info.is_some_and(|d| {
            d.routing_config_update_state() == RoutingConfigUpdateState::InProgress
        })
    };
    Ok(Some(rollout::VersionView {
        status,
        invoked: info.compute_config.is_some(),
        created: at(&info.create_time),
        routing_changed: [
            &info.routing_changed_time,
            &info.current_since_time,
            &info.ramping_since_time,
        ]
        .into_iter()
        .filter_map(at)
        .max(),
        propagating,
    }))
}

/// A failed look at the version: transient when the server throttled it, was unavailable
/// or did not answer in time.
fn look_failed(status: &tonic::Status) -> rollout::LookFailed {
    rollout::LookFailed {
        why: status_in_words(status),
        transient: matches!(
            status.code(),
            tonic::Code::ResourceExhausted
                | tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
        ),
    }
}

/// `message` as a request that is not retried and gives up after [`PROBE_TIMEOUT`].
fn unretried<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(PROBE_TIMEOUT);
    request.extensions_mut().insert(NoRetryOnMatching {
        predicate: |_| true,
    });
    request
}

/// Removes a stopped worker from the connection's worker set. `Worker::run` (SDK 1.1) ends
/// with the core worker's `shutdown`, not its `finalize_shutdown`, so the registration
/// made by `Worker::new` (the worker's slot provider and heartbeat entry, with everything
/// they hold) stays in the cached connection's `ClientWorkerSet` for the life of the
/// process: about 37 KB per warm invocation (`cargo bench --bench warm_memory`).
fn deregister(connection: &Connection, instance: uuid::Uuid) {
    let workers = connection.workers();
    // Both are no-ops (an error) when already done.
    let _ = workers.unregister_slot_provider(instance);
    let _ = workers.finalize_unregister(instance);
}

/// How often a polling worker's server is checked.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long one check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A failed check is repeated after this before the server is declared gone.
const PROBE_RETRY: Duration = Duration::from_millis(300);

/// Resolves (with what was seen) once the server fails two checks in a row; never while
/// it answers. Checks at once when `now`, else after [`PROBE_INTERVAL`].
async fn watch_server(connection: Connection, now: bool) -> (String, ConnectProblem) {
    if !now {
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    loop {
        if probe(&connection).await.is_err() {
            tokio::time::sleep(PROBE_RETRY).await;
            if let Err(why) = probe(&connection).await {
                return why;
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// One `GetSystemInfo` call, not retried. Any answer from the server, even an error
/// status, means it is there; only an unreachable one or no answer in time fails.
async fn probe(connection: &Connection) -> Result<(), (String, ConnectProblem)> {
    let request = unretried(GetSystemInfoRequest::default());
    let mut service = connection.workflow_service();
    match tokio::time::timeout(PROBE_TIMEOUT, service.get_system_info(request)).await {
        Err(_) => Err((
            format!(
                "no answer to a GetSystemInfo call within {:.1}s",
                PROBE_TIMEOUT.as_secs_f64()
            ),
            ConnectProblem::Other,
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => match server_gone(&status) {
            Some(why) => Err(why),
            None => Ok(()),
        },
    }
}

/// Whether `worker` registers no activity. The SDK 1.1 keeps `ActivityDefinitions::is_empty`
/// crate-private; its `Debug` lists the registered activity types, so an empty list is
/// read there (a unit test pins that form, so an SDK that changes it fails the test).
fn registers_no_activity(worker: &temporalio_sdk::WorkerOptions) -> bool {
    format!("{:?}", worker.activities()) == NO_ACTIVITIES
}

/// What `Debug` shows for an `ActivityDefinitions` with no activity.
const NO_ACTIVITIES: &str = "ActivityDefinitions { activities: [] }";

/// A worker's own failure: a namespace that cannot be described (its own `errorType`),
/// else the SDK's error as it is.
fn worker_failure(e: temporalio_sdk::error::WorkerRunError) -> LambdaWorkerError {
    use temporalio_sdk::error::{WorkerRunError, WorkerValidationError};
    match e {
        WorkerRunError::Validation(WorkerValidationError::NamespaceDescribeError {
            source,
            namespace,
        }) if source.code() == tonic::Code::NotFound => LambdaWorkerError::Namespace {
            namespace,
            source: status_in_words(&source).into(),
        },
        other => LambdaWorkerError::Worker(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An activity registry with one activity (the macro's constants are not read here).
    mod pings {
        #![allow(dead_code)]
        pub(super) struct Pings;

        #[temporalio_macros::activities]
        impl Pings {
            #[activity]
            async fn ping(
                _ctx: temporalio_sdk::activities::ActivityContext,
                _: (),
            ) -> Result<(), temporalio_sdk::activities::ActivityError> {
                Ok(())
            }
        }
    }
    use pings::Pings;

    #[test]
    fn an_empty_activity_registry_is_told_from_a_filled_one() {
        let mut worker = crate::LambdaWorkerConfig::default().worker;
        assert!(registers_no_activity(&worker));
        worker.register_activities(Pings);
        assert!(!registers_no_activity(&worker));
    }

    #[tokio::test]
    async fn a_worker_that_registers_nothing_is_refused_before_it_connects() {
        let config = crate::LambdaWorkerConfig::default();
        let session = SessionConfig {
            // Nothing listens there: the refusal comes before any connection.
            connection: temporalio_client::ConnectionOptions::new(
                temporalio_client::Url::parse("http://127.0.0.1:1").unwrap(),
            )
            .build(),
            client: config.client,
            worker: config.worker,
            metrics: None,
            tasks: TaskActivity::default(),
        };
        let e = TemporalBackend::new().start(session).await.unwrap_err();
        assert_eq!(e.error_type(), crate::error_type::NOTHING_REGISTERED);
        assert!(e.to_string().contains("register_workflow"), "{e}");
    }
}
