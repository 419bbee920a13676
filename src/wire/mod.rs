//! The wire: every RPC of a worker's connection passes through here (the client's
//! `ConnectionOptions::service_override`), on its way to the server over a channel of our
//! own ([`upstream`]). It exists for the invocation boundary (issue 33): the SDK owns its
//! polls and cuts them at shutdown, and a task the server hands out around a worker's
//! shutdown waits for a timeout. The wire owns the polls instead:
//!
//! - **Each poll runs upstream in a task of its own**, so a poll the SDK gives up on is
//!   not cancelled under a task the server is handing out: its answer still arrives.
//!   A task that arrives for a poll nobody waits for any more is **handed back** at once
//!   ([`hand_back`]); so is every task handed to the worker that it never answered when
//!   its session ends. Nothing waits for a start-to-close timeout.
//! - **Closing** ([`Wire::close`], before the SDK's shutdown): new polls are held, not sent;
//!   the sticky queue is drained until its poll waits for nothing and the server counts
//!   no task on it (`DescribeTaskQueue`); the polls matching may have forwarded settle
//!   ([`Wire::settle`]: `ShutdownWorker` would cut a start being recorded for one), unless
//!   an activity is still running 0.3 s into closing; then `ShutdownWorker` unloads the
//!   sticky queue (later tasks of this worker's workflows go to the normal queue at once,
//!   and a waiting sticky poll comes back empty) and, where the namespace has
//!   `worker_poll_complete_on_shutdown`, ends every outstanding poll of the worker, whose
//!   tasks the still-running worker then takes. Completions sent while closing lose their
//!   sticky attributes, so the next task of their workflow is not queued on a sticky queue
//!   nobody polls.
//! - **Released** ([`Wire::release`], right after the SDK's shutdown began): held polls
//!   come back empty, and the SDK stops waiting for a poll still out 0.5 s later (it waits
//!   for its polls with `worker_poll_complete_on_shutdown`, and a saturated server was
//!   seen to leave them out): answered empty, the poll stays out, its task handed back.
//!   The SDK's own `ShutdownWorker`, which it awaits before anything else of its shutdown,
//!   waits 0.5 s at most for the server's answer (the call goes on), and a completion
//!   (`Respond…`) 1 s (the call goes on, the session's end waits for it within its limit,
//!   and a task its late answer carries is handed back); a `DescribeNamespace` (a worker
//!   still starting) fails after 1 s, and the worker ends with that error (the session,
//!   told by [`WireReport::start_cut`], as a stop).
//!   The wire's own calls are never cancelled at a limit: only the wait for them ends.
//! - **Finished** ([`Wire::finish`], once the worker stopped): every task handed out and not
//!   answered is handed back, and the polls still outstanding are dropped: those of a
//!   queue handing out tasks after a short wait for them to come back, their tasks handed
//!   back.
//!
//! The wire sends no compressed messages (the client's gzip is off with an override) unless
//! the connection asks for gzip, and reads a gzipped answer in any case.
//! Secrets in the headers (the API key) pass through untouched and are never logged.

mod codec;
mod proto;
pub(crate) mod upstream;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use temporalio_client::{
    callback_based::{CallbackBasedGrpcService, GrpcRequest, GrpcSuccessResponse},
    tonic::Status,
};
use tokio::{sync::Notify, time::Instant};

pub(crate) use proto::PollKind;

/// Where the wire sends what it forwards: the server, or a test's fake.
pub(crate) trait Upstream: Send + Sync + 'static {
    /// Sends one RPC and returns its answer.
    fn call(&self, request: GrpcRequest)
    -> BoxFuture<'static, Result<GrpcSuccessResponse, Status>>;
}

/// How long a sticky poll must have waited with no task, after an answer that reported no
/// backlog, for the sticky queue to count as drained.
const STICKY_QUIET: Duration = Duration::from_millis(50);
/// How long closing waits for the sticky queue to drain, at most.
const STICKY_DRAIN: Duration = Duration::from_secs(1);
/// How long after unloading the sticky queue a sticky poll still out counts as one that
/// loaded it again.
const STICKY_BACK: Duration = Duration::from_millis(200);
/// How old the worker's last polls must be (or back) before `ShutdownWorker` ends them
/// ([`Wire::settle`]); half of closing's limit where that is less. Under a backlog a
/// saturated History was seen to take over 300 ms to answer a record.
const POLL_SETTLED: Duration = Duration::from_secs(1);
/// How recently a sticky poll must have come back with a task of the normal queue for the
/// sticky polls to count as forwarded ones ([`Wire::settle`]).
const FORWARDED_RECENTLY: Duration = Duration::from_secs(2);
/// How recently a poll of a kind must have come back with a task for that kind's polls to
/// count as at risk with graceful poll shutdown ([`Wire::settle`]): less than the idle
/// exit's shortest settled wait (0.5 s, `session::SIGNAL_INTERVAL`), so that no idle exit
/// waits.
const TASKS_RECENTLY: Duration = Duration::from_millis(400);
/// How long closing waits for the polls `ShutdownWorker` ended to come back, at most
/// (they come back at once).
const POLLS_BACK: Duration = Duration::from_secs(1);
/// How long closing takes at most, all steps together: it comes out of the drain's time
/// (the SDK's graceful shutdown begins after it).
const CLOSE_LIMIT: Duration = Duration::from_millis(1500);
/// The same with an activity still in flight this far into closing
/// ([`Wire::activity_running_at`]): the drain's end (the graceful shutdown timeout plus 1 s
/// after the stop) must still leave it the whole graceful shutdown timeout and the
/// session's end ([`FINISH_LIMIT`]).
const CLOSE_LIMIT_BUSY: Duration = Duration::from_millis(300);
/// How long the end of a session (its hand-backs) takes at most: the session's answer
/// waits for it, within its drain.
const FINISH_LIMIT: Duration = Duration::from_millis(500);
/// How long the session's end waits for the polls of a queue handing out tasks to come
/// back before it drops them ([`Wire::finish`]): one matched with a task may be in that
/// task's record, whatever its age. The rest of [`FINISH_LIMIT`] is left for handing
/// their tasks back.
const FINISH_POLLS_BACK: Duration = Duration::from_millis(350);
const _: () = assert!(FINISH_POLLS_BACK.as_millis() < FINISH_LIMIT.as_millis());
/// How long the unload's `ShutdownWorker` may take however little of closing is left (a
/// drain that ran out of time leaves none): one given up as it is sent may never reach the
/// server, and the sticky queue would stay loaded with nobody polling it. It is answered
/// in milliseconds.
const UNLOAD_TIME: Duration = Duration::from_millis(200);
/// How long after the SDK's shutdown began ([`Wire::release`]) the SDK still waits for a
/// poll's answer. With `worker_poll_complete_on_shutdown` the SDK waits for its polls to
/// come back before it stops, and the server ends them at `ShutdownWorker`; but a
/// saturated server was seen to leave polls out for seconds after it, and the SDK did not
/// stop within its graceful shutdown timeout (the process exited as poisoned). Past this,
/// the SDK's poll is answered empty; the poll itself stays out, and a task it brings is
/// handed back.
const RELEASED_POLLS_BACK: Duration = Duration::from_millis(500);
/// How long the SDK waits for the answer to its own `ShutdownWorker`. The SDK awaits it
/// before anything else of its shutdown, with no deadline of its own; a saturated server
/// was seen to take over 4 s to answer (it unloads the sticky queue and ends the worker's
/// polls first), and the SDK did not stop within its graceful shutdown timeout. The
/// wire's own `ShutdownWorker` ([`Wire::close`]) has done that work by then; the SDK's
/// goes on without the SDK waiting.
const SDK_SHUTDOWN_WORKER_WAIT: Duration = Duration::from_millis(500);
/// How long into the SDK's shutdown the wire says what the server has not answered, if
/// the worker has not stopped by then.
const STILL_OUT_AFTER: Duration = Duration::from_secs(3);
/// A call of the client (not a poll) that takes longer is logged, at debug.
const SLOW_CALL: Duration = Duration::from_secs(1);
/// How long the SDK waits for the answer to a completion (`Respond…`) once its shutdown
/// began: it waits for its completions before it stops, and a saturated server was seen
/// to leave one unanswered for over 3 s (the process exited as poisoned). Past this, the
/// completion is answered empty and the call goes on.
const COMPLETION_WAIT: Duration = Duration::from_secs(1);
/// How long one call the wire makes itself (`ShutdownWorker`, a hand-back) may take.
const OWN_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The RPC's service, for the wire's own calls.
const WORKFLOW_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Polls go out.
    Open,
    /// New polls are held; sticky polls go out while `sticky_open`.
    Closing { sticky_open: bool },
    /// Held and new polls come back empty.
    Released,
    /// The worker has stopped: a task that comes back now is handed back, whoever waits.
    Finished,
}

/// A poll sent upstream whose answer has not come back.
#[derive(Debug)]
struct InFlight {
    kind: PollKind,
    since: Instant,
    /// Set once the poll's task is spawned.
    abort: Option<tokio::task::AbortHandle>,
}

impl InFlight {
    /// Its kind and how long it has been out, for the log.
    fn age(&self) -> (PollKind, Duration) {
        (self.kind, self.since.elapsed())
    }
}

/// The worker behind the polls, as its polls name it.
#[derive(Clone, Debug, Default)]
struct Worker {
    namespace: String,
    task_queue: String,
    sticky_queue: Option<String>,
    identity: String,
    instance_key: String,
    /// The headers of its last poll (authorization, namespace), for the wire's own calls.
    headers: http::HeaderMap,
}

/// A task handed to the worker, until it answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Workflow,
    Activity,
    Nexus,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    polls: HashMap<u64, InFlight>,
    next_poll: u64,
    worker: Option<Worker>,
    /// Task tokens handed to the worker and not answered yet.
    handed: HashMap<Bytes, TaskKind>,
    /// The workflow of each task in `handed`, for the log of its hand-back.
    workflow_of: HashMap<Bytes, String>,
    /// The namespace's `worker_poll_complete_on_shutdown`, once read.
    graceful_polls: Option<bool>,
    /// The sticky queue's backlog, as its last poll answer reported it.
    sticky_backlog: i64,
    /// When a sticky poll last came back with a task of the normal queue (matching
    /// forwards sticky polls to the normal queue's old backlog).
    sticky_forwarded: Option<Instant>,
    /// When a poll of each kind last came back with a task.
    task_came: HashMap<PollKind, Instant>,
    /// Hand-backs on their way to the server.
    handing_back: usize,
    /// Tasks come back on a poll and not yet given to the SDK or handed back.
    delivering: usize,
    /// When the SDK's shutdown began ([`Wire::release`]).
    released_at: Option<Instant>,
    /// The client's calls (not polls) on their way, by id: the RPC and when it was sent.
    calls: HashMap<u64, (String, Instant)>,
    /// Completions answered to the SDK before the server answered them, still on their way.
    late_calls: usize,
    report: WireReport,
}

impl State {
    /// Whether matching forwards the sticky polls now: one came back with a task of the
    /// normal queue in the last [`FORWARDED_RECENTLY`].
    fn sticky_forwarded_recently(&self) -> bool {
        self.sticky_forwarded
            .is_some_and(|at| at.elapsed() < FORWARDED_RECENTLY)
    }

    /// The kinds of poll whose queue hands out tasks now: a poll of the kind came back
    /// with one in the last [`TASKS_RECENTLY`].
    fn busy(&self) -> Vec<PollKind> {
        self.task_came
            .iter()
            .filter(|(_, at)| at.elapsed() < TASKS_RECENTLY)
            .map(|(kind, _)| *kind)
            .collect()
    }

    /// Drops the polls still out that `which` takes (their upstream calls cancelled).
    fn drop_polls(&mut self, which: impl Fn(&InFlight) -> bool) {
        let polls: Vec<_> = self.polls.extract_if(|_, p| which(p)).collect();
        for (_, poll) in &polls {
            if let Some(abort) = &poll.abort {
                abort.abort();
            }
        }
        self.report.dropped += polls.len() as u32;
        if !polls.is_empty() {
            let ages: Vec<_> = polls.iter().map(|(_, p)| p.age()).collect();
            let identity = self.worker.as_ref().map_or("", |w| w.identity.as_str());
            tracing::debug!(identity, polls = ?ages, "the wire: dropping the polls still out");
        }
    }

    /// The worker answered task `token`.
    fn answered(&mut self, token: &Bytes) {
        self.handed.remove(token);
        self.workflow_of.remove(token);
    }
}

/// What closing did before the unload, for its log line.
#[derive(Debug)]
struct Closed {
    sticky_drained: bool,
    /// The sticky queue's backlog as the server last counted it.
    server_backlog: Option<i64>,
    /// When the sticky queue's polls were last held, from closing's start.
    drained: Duration,
    /// Whether every poll at risk settled within closing's limit.
    settled: bool,
}

impl Default for Closed {
    fn default() -> Self {
        Self {
            sticky_drained: true,
            server_backlog: None,
            drained: Duration::ZERO,
            settled: true,
        }
    }
}

/// What the wire did in one session (logged, and read by tests and benches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WireReport {
    /// Tasks handed back (a workflow task failed for a new attempt, an activity failed
    /// for a retry), with nobody to run them.
    pub(crate) handed_back: u32,
    /// Polls held while closing (never sent).
    pub(crate) held: u32,
    /// Polls still outstanding when the worker stopped, dropped.
    pub(crate) dropped: u32,
    /// Polls the SDK stopped waiting for, [`RELEASED_POLLS_BACK`] after its shutdown began
    /// (answered empty; the poll stayed out, and a task it brought was handed back).
    pub(crate) let_go: u32,
    /// Completions answered to the SDK before the server answered them,
    /// [`COMPLETION_WAIT`] into its shutdown (the calls went on).
    pub(crate) calls_let_go: u32,
    /// The worker's start was cut: its `DescribeNamespace` failed unanswered
    /// [`COMPLETION_WAIT`] into its shutdown, so it never polled and its error says only
    /// that the session ended first.
    pub(crate) start_cut: bool,
}

/// One connection's wire. Each session on the connection [`begin`](Self::begin)s it.
pub(crate) struct Wire {
    upstream: Arc<dyn Upstream>,
    state: Mutex<State>,
    changed: Notify,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").finish_non_exhaustive()
    }
}

impl Wire {
    pub(crate) fn new(upstream: Arc<dyn Upstream>) -> Arc<Self> {
        Arc::new(Self {
            upstream,
            state: Mutex::new(State {
                phase: Phase::Open,
                polls: HashMap::new(),
                next_poll: 0,
                worker: None,
                handed: HashMap::new(),
                workflow_of: HashMap::new(),
                graceful_polls: None,
                sticky_backlog: 0,
                sticky_forwarded: None,
                task_came: HashMap::new(),
                handing_back: 0,
                delivering: 0,
                released_at: None,
                calls: HashMap::new(),
                late_calls: 0,
                report: WireReport::default(),
            }),
            changed: Notify::new(),
        })
    }

    /// The client's override: every RPC of the connection through [`Wire::call`].
    pub(crate) fn service(self: &Arc<Self>) -> CallbackBasedGrpcService {
        let wire = self.clone();
        CallbackBasedGrpcService {
            callback: Arc::new(move |request| {
                let wire = wire.clone();
                Box::pin(async move { wire.call(request).await })
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the namespace lets polls complete at shutdown, once known.
    pub(crate) fn graceful_polls(&self) -> Option<bool> {
        self.lock().graceful_polls
    }

    /// A new session on this connection: polls go out.
    pub(crate) fn begin(&self) {
        let mut s = self.lock();
        s.phase = Phase::Open;
        s.worker = None;
        s.sticky_backlog = 0;
        s.sticky_forwarded = None;
        s.task_came.clear();
        s.released_at = None;
        s.report = WireReport::default();
    }

    /// One RPC of the client; one that is not a poll is timed ([`timed`]).
    async fn call(self: Arc<Self>, request: GrpcRequest) -> Result<GrpcSuccessResponse, Status> {
        let rpc = request.rpc.clone();
        if rpc.starts_with("Poll") {
            return self.route(request).await;
        }
        let id = {
            let mut s = self.lock();
            s.next_poll += 1;
            let id = s.next_poll;
            s.calls.insert(id, (rpc.clone(), Instant::now()));
            id
        };
        let on_its_way = OnItsWay { wire: &self, id };
        let answer = timed(rpc, self.clone().route(request)).await;
        drop(on_its_way);
        answer
    }

    /// One RPC of the client, by what it is.
    async fn route(self: Arc<Self>, request: GrpcRequest) -> Result<GrpcSuccessResponse, Status> {
        match request.rpc.as_str() {
            "PollWorkflowTaskQueue" => self.poll(request, PollKind::workflow).await,
            "PollActivityTaskQueue" => self.poll(request, |_| Some(PollKind::Activity)).await,
            "PollNexusTaskQueue" => self.poll(request, |_| Some(PollKind::Nexus)).await,
            "RespondWorkflowTaskCompleted" => {
                let request = self.completing(request);
                let answer = self.completion(request, true).await?;
                // The answer may carry the workflow's next task (and eager activities).
                for (token, kind, workflow) in proto::tasks_in_completion(&answer.proto) {
                    let mut s = self.lock();
                    s.workflow_of.insert(token.clone(), workflow);
                    s.handed.insert(token, kind);
                }
                Ok(answer)
            }
            "RespondWorkflowTaskFailed"
            | "RespondActivityTaskCompleted"
            | "RespondActivityTaskFailed"
            | "RespondActivityTaskCanceled"
            | "RespondNexusTaskCompleted"
            | "RespondNexusTaskFailed"
            | "RespondQueryTaskCompleted" => {
                if let Some(token) = proto::task_token(&request.proto) {
                    self.lock().answered(&token);
                }
                self.completion(request, false).await
            }
            "DescribeNamespace" => {
                let answer = self.describe_namespace(request).await?;
                if let Some(graceful) = proto::graceful_polls(&answer.proto) {
                    self.lock().graceful_polls = Some(graceful);
                }
                Ok(answer)
            }
            "ShutdownWorker" => self.sdk_shutdown_worker(request).await,
            _ => self.upstream.call(request).await,
        }
    }

    /// A completion (`Respond…`) on its way, in a task of its own. Once the SDK's shutdown
    /// has begun, the SDK waits for its answer [`COMPLETION_WAIT`] at most (from its
    /// sending or the release, whichever is later): past that it is answered empty and the
    /// call goes on, the session's end waiting for it within its limit; a task its late
    /// answer carries (`carries_tasks`: a workflow task's completion) is handed back.
    async fn completion(
        self: &Arc<Self>,
        request: GrpcRequest,
        carries_tasks: bool,
    ) -> Result<GrpcSuccessResponse, Status> {
        let sent = Instant::now();
        let mut call = tokio::spawn(self.upstream.call(request));
        tokio::select! {
            biased;
            joined = &mut call => answer_of(joined),
            () = self.released_for(sent, COMPLETION_WAIT) => {
                {
                    let mut s = self.lock();
                    s.late_calls += 1;
                    s.report.calls_let_go += 1;
                }
                tracing::debug!("the wire: the server is slow to answer a completion; the SDK's shutdown goes on, and the call too");
                let wire = self.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(answer)) = call.await
                        && carries_tasks
                    {
                        for (token, kind, _) in proto::tasks_in_completion(&answer.proto) {
                            wire.hand_back_now(token, kind, OWN_CALL_TIMEOUT).await;
                        }
                    }
                    wire.lock().late_calls -= 1;
                    wire.changed.notify_waiters();
                });
                Ok(empty())
            }
        }
    }

    /// The SDK's `DescribeNamespace` (its `validate`, as a worker starts). Once the SDK's
    /// shutdown has begun, it waits [`COMPLETION_WAIT`] at most (from its sending or the
    /// release, whichever is later) and then fails, not to be retried: a worker whose
    /// session ended while it was still starting was seen to wait 5 s for it and outlast
    /// its graceful shutdown timeout (the process exited as poisoned). The worker ends
    /// with that error instead, and the report says its start was cut
    /// ([`WireReport::start_cut`]): the session ends as a stop, not as a failure.
    async fn describe_namespace(
        &self,
        request: GrpcRequest,
    ) -> Result<GrpcSuccessResponse, Status> {
        let sent = Instant::now();
        tokio::select! {
            biased;
            answer = self.upstream.call(request) => answer,
            () = self.released_for(sent, COMPLETION_WAIT) => {
                self.lock().report.start_cut = true;
                Err(Status::cancelled(
                    "the Temporal server did not answer DescribeNamespace before the \
                     worker's shutdown (the worker had not started polling)",
                ))
            }
        }
    }

    /// The SDK's own `ShutdownWorker`: sent in a task of its own, and answered empty to the
    /// SDK after [`SDK_SHUTDOWN_WORKER_WAIT`] if the server has not answered by then.
    async fn sdk_shutdown_worker(
        &self,
        request: GrpcRequest,
    ) -> Result<GrpcSuccessResponse, Status> {
        let call = tokio::spawn(timed(
            "ShutdownWorker (the SDK's)".into(),
            self.upstream.call(request),
        ));
        match tokio::time::timeout(SDK_SHUTDOWN_WORKER_WAIT, call).await {
            Ok(joined) => answer_of(joined),
            Err(_) => {
                tracing::debug!(
                    "the wire: the server is slow to answer the SDK's ShutdownWorker; the SDK's \
                     shutdown goes on, and the call too"
                );
                Ok(empty())
            }
        }
    }

    /// A `RespondWorkflowTaskCompleted` on its way: answers its task, and while closing
    /// drops its sticky attributes.
    fn completing(&self, mut request: GrpcRequest) -> GrpcRequest {
        let closing = {
            let mut s = self.lock();
            if let Some(token) = proto::task_token(&request.proto) {
                s.answered(&token);
            }
            s.phase != Phase::Open
        };
        if closing && let Some(proto) = proto::without_sticky_attributes(&request.proto) {
            request.proto = proto;
        }
        request
    }

    /// A poll: sent upstream in a task of its own, held while closing, empty once released.
    async fn poll(
        self: Arc<Self>,
        request: GrpcRequest,
        kind_of: impl FnOnce(&proto::PollRequest) -> Option<PollKind>,
    ) -> Result<GrpcSuccessResponse, Status> {
        let seen = proto::PollRequest::decode(&request.proto);
        let Some(kind) = seen.as_ref().and_then(kind_of) else {
            // Not a poll this wire understands: as it is.
            tracing::debug!(?seen, "the wire: a poll passed through untracked");
            return self.upstream.call(request).await;
        };
        if let Some(seen) = &seen {
            self.learn(seen, kind, &request.headers);
        }
        if self.held(kind) {
            self.lock().report.held += 1;
            self.released().await;
            return Ok(empty());
        }
        self.send_poll(request, kind).await
    }

    /// Sends a poll upstream in a task of its own and waits for its answer (the task
    /// outlives this future: a poll the SDK gives up on still delivers its task, handed
    /// back at once).
    async fn send_poll(
        self: Arc<Self>,
        request: GrpcRequest,
        kind: PollKind,
    ) -> Result<GrpcSuccessResponse, Status> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = Instant::now();
        // In flight before its task runs: the task removes it when the answer comes.
        let id = {
            let mut s = self.lock();
            s.next_poll += 1;
            let id = s.next_poll;
            let since = sent;
            let abort = None;
            s.polls.insert(id, InFlight { kind, since, abort });
            id
        };
        let wire = self.clone();
        let task = tokio::spawn(async move {
            let answer = wire.upstream.call(request).await;
            let task = wire.came_back(id, kind, &answer);
            let delivering = task.is_some();
            let stopped = wire.lock().phase == Phase::Finished;
            if (stopped || tx.send(answer).is_err())
                && let Some((token, kind)) = task
            {
                // Nobody waits for this poll any more, or nobody will run its task: the
                // task must not wait for a timeout. (Not there: the session's end took it.)
                let ours = wire.lock().handed.remove(&token).is_some();
                if ours {
                    wire.hand_back_now(token, kind, OWN_CALL_TIMEOUT).await;
                }
            }
            if delivering {
                wire.lock().delivering -= 1;
                wire.changed.notify_waiters();
            }
        });
        if let Some(poll) = self.lock().polls.get_mut(&id) {
            poll.abort = Some(task.abort_handle());
        }
        self.changed.notify_waiters();
        let mut rx = rx;
        let dropped = || Err(Status::cancelled("the poll was dropped"));
        tokio::select! {
            biased;
            answer = &mut rx => answer.unwrap_or_else(|_| dropped()),
            () = self.released_for(sent, RELEASED_POLLS_BACK) => {
                // The SDK waits no longer; an answer that came meanwhile is still its own.
                rx.close();
                match rx.try_recv() {
                    Ok(answer) => answer,
                    Err(_) => {
                        let mut s = self.lock();
                        s.report.let_go += 1;
                        let age = s.polls.get(&id).map(InFlight::age);
                        tracing::debug!(?age, "the wire: the SDK stops waiting for a poll the server did not end");
                        Ok(empty())
                    }
                }
            }
        }
    }

    /// Resolves `grace` after the SDK's shutdown began or `sent`, whichever is later.
    async fn released_for(&self, sent: Instant, grace: Duration) {
        self.released().await;
        let since = self.lock().released_at.unwrap_or_else(Instant::now);
        tokio::time::sleep_until(since.max(sent) + grace).await;
    }

    /// Poll `id` came back with `answer`: no longer in flight, its task (if any) handed to
    /// the worker, the sticky backlog as reported. Returns the task.
    fn came_back(
        &self,
        id: u64,
        kind: PollKind,
        answer: &Result<GrpcSuccessResponse, Status>,
    ) -> Option<(Bytes, TaskKind)> {
        let task = answer
            .as_ref()
            .ok()
            .and_then(|a| proto::task_token(&a.proto))
            .map(|token| (token, kind.task()));
        {
            let mut s = self.lock();
            s.polls.remove(&id);
            if let Some((token, task_kind)) = &task {
                // Counted until given to the SDK or handed back (`Wire::finish` waits).
                s.delivering += 1;
                s.task_came.insert(kind, Instant::now());
                s.handed.insert(token.clone(), *task_kind);
                if let Ok(answer) = answer {
                    let workflow = proto::workflow_of(&answer.proto, *task_kind);
                    s.workflow_of.insert(token.clone(), workflow);
                }
            }
            if kind == PollKind::Sticky
                && let Ok(answer) = answer
            {
                let read = proto::workflow_answer(&answer.proto);
                if task.is_some() && read.whole_history {
                    // The backlog it reports is the normal queue's.
                    s.sticky_forwarded = Some(Instant::now());
                } else {
                    s.sticky_backlog = read.backlog;
                }
            }
        }
        self.changed.notify_waiters();
        tracing::debug!(
            ?kind,
            task = task.is_some(),
            error = answer.as_ref().err().map(|s| s.code() as i32),
            "the wire: a poll came back"
        );
        task
    }

    /// Remembers the worker a poll names (its sticky queue, for `ShutdownWorker`).
    fn learn(&self, poll: &proto::PollRequest, kind: PollKind, headers: &http::HeaderMap) {
        let mut s = self.lock();
        let w = s.worker.get_or_insert_with(Worker::default);
        w.namespace.clone_from(&poll.namespace);
        w.identity.clone_from(&poll.identity);
        w.instance_key.clone_from(&poll.worker_instance_key);
        w.headers = headers.clone();
        match kind {
            PollKind::Sticky => {
                w.sticky_queue = Some(poll.task_queue.clone());
                w.task_queue.clone_from(&poll.normal_name);
            }
            _ => w.task_queue.clone_from(&poll.task_queue),
        }
    }

    /// Whether a poll of `kind` is held now.
    fn held(&self, kind: PollKind) -> bool {
        match self.lock().phase {
            Phase::Open => false,
            Phase::Closing { sticky_open } => !(sticky_open && kind == PollKind::Sticky),
            Phase::Released | Phase::Finished => true,
        }
    }

    /// Resolves once the wire is released.
    async fn released(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if matches!(self.lock().phase, Phase::Released | Phase::Finished) {
                return;
            }
            changed.await;
        }
    }

    /// Waits until `done` holds of the state, or `limit` passed; whether it held.
    async fn wait_for(&self, limit: Duration, done: impl Fn(&State) -> bool) -> bool {
        let until = Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.lock()) {
                return true;
            }
            // Time passing can make `done` true too (a poll that has waited long enough).
            let tick = Instant::now() + Duration::from_millis(10);
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(tick.min(until)) => {}
            }
            if Instant::now() >= until {
                return done(&self.lock());
            }
        }
    }

    /// Closes the session's polls before the SDK's shutdown (see the module docs).
    pub(crate) async fn close(&self) {
        let began = Instant::now();
        let sticky = self.begin_closing();
        let steps = self.drain_and_settle(sticky.is_some(), began, CLOSE_LIMIT);
        let (closed, limit) = tokio::select! {
            closed = steps => (closed, CLOSE_LIMIT),
            () = self.activity_running_at(began + CLOSE_LIMIT_BUSY) => {
                let cut_short = Closed {
                    sticky_drained: false,
                    drained: began.elapsed(),
                    settled: false,
                    ..Closed::default()
                };
                (cut_short, CLOSE_LIMIT_BUSY)
            }
        };
        // Whichever ended closing's steps, the sticky queue's polls are held from here.
        self.lock().phase = Phase::Closing { sticky_open: false };
        self.changed.notify_waiters();
        let left = || limit.saturating_sub(began.elapsed());
        let unloads = self.unload(sticky.is_some(), left).await;
        // With `worker_poll_complete_on_shutdown` the server ends every poll. Their tasks
        // reach the worker while it still runs.
        let graceful = self.graceful_polls() == Some(true);
        self.wait_for(POLLS_BACK.min(left()), |s| {
            s.polls
                .values()
                .all(|p| !graceful && p.kind != PollKind::Sticky)
        })
        .await;
        let s = self.lock();
        tracing::debug!(
            sticky = ?sticky,
            sticky_drained = closed.sticky_drained,
            sticky_backlog = s.sticky_backlog,
            server_backlog = closed.server_backlog,
            unloads,
            limit_ms = limit.as_millis() as u64,
            sticky_drained_ms = closed.drained.as_millis() as u64,
            settled = closed.settled,
            closed_ms = began.elapsed().as_millis() as u64,
            polls_out = s.polls.len(),
            handed_out = s.handed.len(),
            "the wire closed the worker's polls"
        );
    }

    /// Closing's steps before the unload: the sticky queue drained, the polls at risk
    /// settled ([`Wire::settle`]); all within `limit` of `began`.
    async fn drain_and_settle(&self, sticky: bool, began: Instant, limit: Duration) -> Closed {
        let left = || limit.saturating_sub(began.elapsed());
        let settle = POLL_SETTLED.min(limit / 2);
        let sticky_at_risk = || self.at_risk().contains(&PollKind::Sticky);
        let reserve = if sticky_at_risk() {
            settle
        } else {
            Duration::ZERO
        };
        let drain_until = began + STICKY_DRAIN.min(limit - reserve);
        let mut closed = Closed::default();
        if sticky {
            (closed.sticky_drained, closed.server_backlog) =
                self.drain_sticky(drain_until, settle).await;
        }
        // The other polls at risk settle while the sticky queue is still polled.
        let until_drained = drain_until.saturating_duration_since(Instant::now());
        self.settle(settle, until_drained, |k| k != PollKind::Sticky)
            .await;
        self.lock().phase = Phase::Closing { sticky_open: false };
        self.changed.notify_waiters();
        closed.drained = began.elapsed();
        // Every poll is held now. A drained queue's last poll has settled already; one the
        // drain ran out of time for may be young, and so may the others if it did.
        closed.settled = self.settle(settle, left(), |_| true).await;
        closed
    }

    /// Resolves at `at` if an activity handed to the worker is still running then; never
    /// otherwise.
    ///
    /// An activity in flight gets the SDK's graceful shutdown timeout from when the SDK's
    /// shutdown begins, which is after closing, and the drain must still end in time
    /// (`timeline.rs`, `drain_by`): so an activity still running [`CLOSE_LIMIT_BUSY`] into
    /// closing ends closing's steps there. One that ends sooner leaves closing its whole
    /// limit: its workflow's next task comes to the sticky queue as it ends, and the drain
    /// brings it.
    async fn activity_running_at(&self, at: Instant) {
        tokio::time::sleep_until(at).await;
        let running = self
            .lock()
            .handed
            .values()
            .any(|k| *k == TaskKind::Activity);
        if !running {
            std::future::pending::<()>().await;
        }
    }

    /// Holds new polls (the sticky queue's go on) and says which sticky queue the worker
    /// has.
    fn begin_closing(&self) -> Option<String> {
        let mut s = self.lock();
        s.phase = Phase::Closing { sticky_open: true };
        let sticky = s.worker.as_ref().and_then(|w| w.sticky_queue.clone());
        drop(s);
        self.changed.notify_waiters();
        sticky
    }

    /// Waits, within `limit`, until no poll at risk (of the kinds `among` takes) is younger
    /// than `age`; whether that came.
    ///
    /// A task matched to a poll is recorded as started in History under that poll's
    /// context, and a young poll may be in that record now: a sticky poll above all, which
    /// matching forwards to the normal queue's backlog once that backlog is older than a few
    /// seconds. `ShutdownWorker` ends that context (the sticky queue's unload cancels its
    /// forwarded polls; with graceful poll shutdown the server cancels every poll), and a
    /// record cut after History committed it leaves the task started and delivered to
    /// nobody: it is matched again, dropped as already started, and waits for its
    /// start-to-close timeout (temporalio/temporal#11733). A poll that waited longer has
    /// been matched with nothing, or its task is on its way here. New polls of the kinds
    /// it waits for are held by now, so it only waits for the last ones sent.
    ///
    /// Only the polls `ShutdownWorker` ends and matching may have forwarded are waited for:
    /// sticky polls once one came back with a task of the normal queue in the last
    /// [`FORWARDED_RECENTLY`], and with graceful poll shutdown the other queues' polls too
    /// (their partitions forward polls to the root partition, and the server cancels a
    /// forwarded poll with its origin) while their queue hands out tasks: a poll of that
    /// kind came back with one in the last [`TASKS_RECENTLY`]. A poll that reaches a
    /// backlog is matched and recorded as it arrives; one that waits on an idle queue is
    /// not, and at the idle exit (half a second after the last task at least) closing does
    /// not wait for it. A poll matched where it waits is recorded under its own RPC's
    /// context, which neither cuts. Holding sticky polls with none of them at risk would
    /// only let tasks queue on the sticky queue before its unload.
    async fn settle(
        &self,
        age: Duration,
        limit: Duration,
        among: impl Fn(PollKind) -> bool,
    ) -> bool {
        let at_risk: Vec<_> = self.at_risk().into_iter().filter(|k| among(*k)).collect();
        self.wait_for(limit, |s| {
            s.polls
                .values()
                .all(|p| !at_risk.contains(&p.kind) || p.since.elapsed() >= age)
        })
        .await
    }

    /// The kinds of poll that `ShutdownWorker` would end while matching may be recording a
    /// task forwarded to them (see [`Wire::settle`]).
    fn at_risk(&self) -> Vec<PollKind> {
        let s = self.lock();
        let mut kinds = Vec::new();
        if s.sticky_forwarded_recently() {
            kinds.push(PollKind::Sticky);
        }
        if s.graceful_polls == Some(true) {
            kinds.extend(s.busy().into_iter().filter(|k| *k != PollKind::Sticky));
        }
        kinds
    }

    /// `ShutdownWorker`, within what `left` says is left of closing; how many were sent.
    ///
    /// The unloaded sticky queue's polls come back at once (empty, or with a task matched
    /// as it was unloaded). One still out reached the server after the unload (sent before
    /// closing, on a busy worker thread) and loaded the queue again, so that the worker's
    /// next tasks would be queued there: unloaded once more.
    async fn unload(&self, sticky: bool, left: impl Fn() -> Duration) -> u32 {
        self.shutdown_worker(left().max(UNLOAD_TIME)).await;
        let sticky_back = |s: &State| s.polls.values().all(|p| p.kind != PollKind::Sticky);
        if sticky && !self.wait_for(STICKY_BACK.min(left()), sticky_back).await && !left().is_zero()
        {
            self.shutdown_worker(left()).await;
            return 2;
        }
        1
    }

    /// Keeps the sticky queue's polls going until the queue is drained or `until`: until a
    /// sticky poll has waited [`STICKY_QUIET`] for nothing after an answer that reported no
    /// backlog, and then the server, asked, counts no task on the queue. (The local signals
    /// lag on a busy worker thread: a poll counted as waiting may not have reached the
    /// server yet, and a poll answer counts only the tasks the server has loaded.) Returns
    /// whether it drained and the backlog the server last reported.
    async fn drain_sticky(&self, until: Instant, settled: Duration) -> (bool, Option<i64>) {
        let mut server_backlog = None;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let quiet = self
                .wait_for(left, |s| {
                    // A forwarded sticky poll waits until it has settled: before, it may be
                    // in a record of a normal-queue task, which the unload would cut.
                    let quiet = if s.sticky_forwarded_recently() {
                        settled
                    } else {
                        STICKY_QUIET
                    };
                    s.sticky_backlog == 0
                        && s.polls
                            .values()
                            .any(|p| p.kind == PollKind::Sticky && p.since.elapsed() >= quiet)
                })
                .await;
            if !quiet {
                return (false, server_backlog);
            }
            let left = until.saturating_duration_since(Instant::now());
            server_backlog = self.sticky_backlog_on_server(left).await;
            match server_backlog {
                // Not known (an error, a slow answer): the local signals decide.
                None | Some(0) => return (true, server_backlog),
                // Tasks wait there: the next sticky poll answer (the polls still go out)
                // is awaited before the queue counts as quiet again.
                Some(n) => self.lock().sticky_backlog = n,
            }
        }
    }

    /// The backlog of the worker's sticky queue as the server counts it; `None` when not
    /// known within `limit`.
    async fn sticky_backlog_on_server(&self, limit: Duration) -> Option<i64> {
        let worker = self.lock().worker.clone()?;
        let request = GrpcRequest {
            service: WORKFLOW_SERVICE.into(),
            rpc: "DescribeTaskQueue".into(),
            headers: own_headers(&worker.headers),
            proto: proto::describe_sticky(&worker)?,
        };
        match tokio::time::timeout(limit.min(OWN_CALL_TIMEOUT), self.upstream.call(request)).await {
            Ok(Ok(answer)) => proto::described_backlog(&answer.proto),
            Ok(Err(status)) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "describing the sticky queue failed");
                None
            }
            Err(_) => None,
        }
    }

    /// The SDK's shutdown has begun: held polls come back empty. If the worker has not
    /// stopped [`STILL_OUT_AFTER`] later, says which of its calls and polls the server has
    /// not answered (the SDK waits for its completions; a drain that times out names them).
    pub(crate) fn release(self: &Arc<Self>) {
        let mut s = self.lock();
        s.phase = Phase::Released;
        s.released_at = Some(Instant::now());
        drop(s);
        self.changed.notify_waiters();
        let wire = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STILL_OUT_AFTER).await;
            let s = wire.lock();
            if s.phase != Phase::Released {
                return;
            }
            let calls: Vec<_> = s
                .calls
                .values()
                .map(|(rpc, since)| (rpc.as_str(), since.elapsed()))
                .collect();
            let polls: Vec<_> = s.polls.values().map(InFlight::age).collect();
            if calls.is_empty() && polls.is_empty() {
                return;
            }
            tracing::info!(
                ?calls,
                ?polls,
                "the worker has not stopped {} s into its shutdown; the server has not \
                 answered these of its calls yet",
                STILL_OUT_AFTER.as_secs()
            );
        });
    }

    /// The worker has stopped: drops the polls still outstanding and hands back every task
    /// it was handed and did not answer. Returns what the wire did this session.
    ///
    /// Dropping a poll cancels it on the server, and a poll matched with a task may be in
    /// that task's record (stall 3, ARCHITECTURE.md): cut after History committed it, the
    /// task is started and delivered to nobody, and waits for its start-to-close timeout.
    /// Without graceful poll shutdown the polls of a worker that stopped under load are
    /// still out here (the SDK dropped them, the server did not end them), and on a queue
    /// that hands out tasks one can be matched at any age: a poll that waited 0.3 s for
    /// nothing was seen matched, recorded and cut. So the polls of queues handing out tasks
    /// ([`State::busy`]) get up to [`FINISH_POLLS_BACK`] to come back, and a task one brings
    /// is handed back at once. Others are dropped at once; at the idle exit (half a second
    /// after the last task at least) no queue counts as busy, and nothing waits.
    pub(crate) async fn finish(&self) -> WireReport {
        let began = Instant::now();
        let (unanswered, waited_for) = {
            let mut s = self.lock();
            s.phase = Phase::Finished;
            let busy = s.busy();
            s.drop_polls(|p| !busy.contains(&p.kind));
            (s.handed.drain().collect::<Vec<_>>(), s.polls.len())
        };
        self.changed.notify_waiters();
        if waited_for > 0 {
            tracing::debug!(
                waited_for,
                "the wire: waiting for the polls of a busy queue to come back"
            );
        }
        // Bounded: the session's answer waits for this, within its drain.
        let backs = unanswered
            .into_iter()
            .map(|(token, kind)| self.hand_back_now(token, kind, FINISH_LIMIT));
        let polls_back = async {
            self.wait_for(FINISH_POLLS_BACK, |s| s.polls.is_empty())
                .await;
            self.lock().drop_polls(|_| true);
        };
        futures_util::future::join(futures_util::future::join_all(backs), polls_back).await;
        // Late tasks (and their hand-backs) still on their way reach the server before the
        // answer (after it, the process may be frozen).
        let left = FINISH_LIMIT.saturating_sub(began.elapsed());
        self.wait_for(left, |s| {
            s.handing_back == 0 && s.delivering == 0 && s.late_calls == 0
        })
        .await;
        self.lock().report
    }

    /// Hands a task back to the server (see [`hand_back`]), counting it.
    async fn hand_back_now(&self, token: Bytes, kind: TaskKind, limit: Duration) {
        let (worker, workflow_id) = {
            let mut s = self.lock();
            let workflow_id = s.workflow_of.remove(&token).unwrap_or_default();
            (s.worker.clone().unwrap_or_default(), workflow_id)
        };
        let Some(request) = hand_back::request(&token, kind, &worker) else {
            tracing::warn!(
                ?kind,
                workflow_id,
                "a task handed to this worker was not run and cannot be handed back: it is retried after its timeout"
            );
            return;
        };
        // In a task of its own: one that outlasts `limit` is not cancelled (a server slow
        // under load still gets it, and the task is retried at once rather than after its
        // timeout); only this wait for its answer ends.
        let call = tokio::spawn(self.upstream.call(request));
        self.lock().handing_back += 1;
        let answer = tokio::time::timeout(limit.min(OWN_CALL_TIMEOUT), call)
            .await
            .map(answer_of);
        self.lock().handing_back -= 1;
        self.changed.notify_waiters();
        match answer {
            Ok(Ok(_)) => {
                self.lock().report.handed_back += 1;
                tracing::info!(
                    ?kind,
                    workflow_id,
                    "handed back a task this worker could not run: it is retried at once"
                );
            }
            Ok(Err(status)) if status.code() == temporalio_client::tonic::Code::NotFound => {
                // Already timed out or completed elsewhere.
                tracing::debug!(
                    ?kind,
                    workflow_id,
                    "a task to hand back was no longer there"
                );
            }
            Ok(Err(status)) => {
                tracing::warn!(?kind, workflow_id, code = ?status.code(), "handing back a task failed: it is retried after its timeout")
            }
            Err(_) => tracing::warn!(
                ?kind,
                workflow_id,
                "handing back a task is taking long: it goes on without this session (a \
                 hand-back the server does not get is retried after its timeout)"
            ),
        }
    }

    /// `ShutdownWorker` for the session's worker, ahead of the SDK's own, given up after
    /// `limit`.
    async fn shutdown_worker(&self, limit: Duration) {
        let Some(worker) = self.lock().worker.clone() else {
            return;
        };
        // The polls it ends, by kind and age (a young one may be in a record it cuts:
        // ARCHITECTURE.md, stall 3).
        let polls: Vec<_> = self.lock().polls.values().map(InFlight::age).collect();
        tracing::debug!(
            identity = worker.identity,
            ?polls,
            "the wire: ShutdownWorker"
        );
        let request = GrpcRequest {
            service: WORKFLOW_SERVICE.into(),
            rpc: "ShutdownWorker".into(),
            headers: own_headers(&worker.headers),
            proto: proto::shutdown_worker(&worker),
        };
        // In a task of its own: one that outlasts `limit` is not cancelled. Under load the
        // server was seen to take over 1.4 s to answer it (it unloads the sticky queue and
        // ends the worker's polls before it answers); cancelled, it ended none of them.
        let call = tokio::spawn(timed(
            "ShutdownWorker (the wire's)".into(),
            self.upstream.call(request),
        ));
        let answer = tokio::time::timeout(limit.min(OWN_CALL_TIMEOUT), call)
            .await
            .map(answer_of);
        match answer {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => tracing::warn!(
                code = ?status.code(),
                message = status.message(),
                "ShutdownWorker failed: tasks of this worker's workflows may wait on its sticky queue"
            ),
            Err(_) => tracing::debug!("ShutdownWorker is taking long: it goes on without closing"),
        }
    }
}

/// Says, once per process, how the namespace lets this worker's polls end at shutdown.
pub(crate) fn log_mode(graceful: bool) {
    if graceful {
        tracing::info!(
            "the namespace lets polls complete at shutdown (worker_poll_complete_on_shutdown): \
             a stopping worker's polls are ended by the server and their tasks run here"
        );
    } else {
        tracing::info!(
            "the namespace does not let polls complete at shutdown (no \
             worker_poll_complete_on_shutdown; on a self-hosted server, \
             frontend.enableCancelWorkerPollsOnShutdown=true): a stopping worker's polls are \
             dropped when it has stopped, and a task handed to one before then is handed back"
        );
    }
}

/// A client's call on its way ([`State::calls`]) until dropped.
struct OnItsWay<'a> {
    wire: &'a Wire,
    id: u64,
}

impl Drop for OnItsWay<'_> {
    fn drop(&mut self) {
        self.wire.lock().calls.remove(&self.id);
    }
}

/// The answer of a call run in a task of its own (a task that panicked or was aborted
/// answers `Internal`).
fn answer_of(
    joined: Result<Result<GrpcSuccessResponse, Status>, tokio::task::JoinError>,
) -> Result<GrpcSuccessResponse, Status> {
    joined.unwrap_or_else(|e| Err(Status::internal(e.to_string())))
}

/// `call`, logged at debug if its answer takes over [`SLOW_CALL`] (the SDK waits for its
/// completions and its `ShutdownWorker` before it stops).
async fn timed(
    rpc: String,
    call: impl std::future::Future<Output = Result<GrpcSuccessResponse, Status>>,
) -> Result<GrpcSuccessResponse, Status> {
    let began = Instant::now();
    let answer = call.await;
    let took = began.elapsed();
    if took > SLOW_CALL {
        tracing::debug!(
            rpc,
            took_ms = took.as_millis() as u64,
            code = answer.as_ref().err().map(|s| s.code() as i32),
            "the wire: a slow answer"
        );
    }
    answer
}

/// The answer to a poll that found nothing.
fn empty() -> GrpcSuccessResponse {
    GrpcSuccessResponse {
        headers: http::HeaderMap::new(),
        proto: Vec::new(),
    }
}

/// A worker's poll headers, for a short call of the wire's own: the authorization, the
/// namespace and the client's own headers, with a short deadline instead of the poll's.
fn own_headers(poll: &http::HeaderMap) -> http::HeaderMap {
    let mut headers = poll.clone();
    headers.insert("grpc-timeout", http::HeaderValue::from_static("2000m"));
    headers
}

mod hand_back;

#[cfg(test)]
mod tests;
