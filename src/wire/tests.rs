//! The wire's rules over a fake server: no network.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prost::Message;
use temporalio_client::{
    callback_based::{GrpcRequest, GrpcSuccessResponse},
    tonic::Status,
};
use temporalio_common::protos::temporal::api::{
    enums::v1::TaskQueueKind,
    history::v1::{History, HistoryEvent},
    namespace::v1::{NamespaceInfo, namespace_info::Capabilities},
    taskqueue::v1::{StickyExecutionAttributes, TaskQueue, TaskQueueStatus},
    workflowservice::v1::{
        DescribeNamespaceResponse, DescribeTaskQueueRequest, DescribeTaskQueueResponse,
        PollActivityTaskQueueRequest, PollWorkflowTaskQueueRequest, PollWorkflowTaskQueueResponse,
        RespondActivityTaskCompletedRequest, RespondActivityTaskFailedRequest,
        RespondWorkflowTaskCompletedRequest, RespondWorkflowTaskFailedRequest,
        ShutdownWorkerRequest,
    },
};
use tokio::sync::oneshot;

use super::{Upstream, Wire, WireReport, empty, hand_back::HANDED_BACK_TYPE};

type Answer = Result<GrpcSuccessResponse, Status>;

/// A server whose polls wait until the test answers them.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(String, Bytes)>>,
    polls: Mutex<VecDeque<(String, oneshot::Sender<Answer>)>>,
    graceful: bool,
    /// Never answers a hand-back (a server that is slow or gone).
    hangs: bool,
    /// How long a hand-back takes to be answered (none: at once).
    hand_back_takes: Option<Duration>,
    /// The hand-backs answered (the wire did not cancel them).
    handed_back: Arc<std::sync::atomic::AtomicUsize>,
    /// What `DescribeTaskQueue` reports of the sticky queue's backlog, one answer each
    /// (none left: an answer without a status).
    described: Mutex<VecDeque<i64>>,
    /// How long a `ShutdownWorker` takes to be answered (none: at once).
    unload_takes: Option<Duration>,
    /// The `ShutdownWorker`s answered (the wire waited for them).
    unloaded: Arc<std::sync::atomic::AtomicUsize>,
    /// With `graceful`, `ShutdownWorker` leaves the polls out all the same (a saturated
    /// server).
    keeps_polls: bool,
    /// Never answers a `DescribeNamespace`.
    describe_hangs: bool,
}

impl Fake {
    fn graceful() -> Arc<Self> {
        Arc::new(Self {
            graceful: true,
            ..Self::default()
        })
    }

    fn rpcs(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.clone())
            .collect()
    }

    fn sent<M: Message + Default>(&self, rpc: &str) -> Vec<M> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.0 == rpc)
            .map(|c| M::decode(c.1.clone()).unwrap())
            .collect()
    }

    fn outstanding(&self) -> usize {
        self.polls.lock().unwrap().len()
    }

    /// Answers the oldest outstanding poll.
    fn answer(&self, answer: Answer) {
        let (_, tx) = self
            .polls
            .lock()
            .unwrap()
            .pop_front()
            .expect("no poll waits");
        let _ = tx.send(answer);
    }
}

impl Upstream for Arc<Fake> {
    fn call(&self, request: GrpcRequest) -> BoxFuture<'static, Answer> {
        let rpc = request.rpc.clone();
        self.calls
            .lock()
            .unwrap()
            .push((rpc.clone(), request.proto.clone()));
        if (self.hangs && rpc.starts_with("Respond"))
            || (self.describe_hangs && rpc == "DescribeNamespace")
        {
            return Box::pin(std::future::pending());
        }
        if rpc.starts_with("Poll") {
            let (tx, rx) = oneshot::channel();
            self.polls.lock().unwrap().push_back((rpc, tx));
            return Box::pin(async move { rx.await.unwrap_or_else(|_| Ok(empty())) });
        }
        let proto = match rpc.as_str() {
            "DescribeNamespace" => DescribeNamespaceResponse {
                namespace_info: Some(NamespaceInfo {
                    capabilities: Some(Capabilities {
                        worker_poll_complete_on_shutdown: self.graceful,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
            "DescribeTaskQueue" => match self.described.lock().unwrap().pop_front() {
                Some(backlog) => described(backlog),
                None => Vec::new(),
            },
            "ShutdownWorker" if self.graceful && !self.keeps_polls => {
                // The server ends the worker's polls: empty.
                for (_, tx) in self.polls.lock().unwrap().drain(..) {
                    let _ = tx.send(Ok(empty()));
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        let unload = (rpc == "ShutdownWorker").then(|| (self.unload_takes, self.unloaded.clone()));
        let hand_back = rpc
            .starts_with("Respond")
            .then(|| (self.hand_back_takes, self.handed_back.clone()));
        Box::pin(async move {
            if let Some((takes, answered)) = hand_back {
                if let Some(takes) = takes {
                    tokio::time::sleep(takes).await;
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            if let Some((takes, unloaded)) = unload {
                if let Some(takes) = takes {
                    tokio::time::sleep(takes).await;
                }
                unloaded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(GrpcSuccessResponse {
                headers: http::HeaderMap::new(),
                proto,
            })
        })
    }
}

#[allow(deprecated)]
fn described(backlog: i64) -> Vec<u8> {
    DescribeTaskQueueResponse {
        task_queue_status: Some(TaskQueueStatus {
            backlog_count_hint: backlog,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn request(rpc: &str, proto: Vec<u8>) -> GrpcRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer secret-key".parse().unwrap());
    GrpcRequest {
        service: "temporal.api.workflowservice.v1.WorkflowService".into(),
        rpc: rpc.into(),
        headers,
        proto: proto.into(),
    }
}

fn workflow_poll(sticky: bool) -> GrpcRequest {
    let task_queue = if sticky {
        TaskQueue {
            name: "sticky-1".into(),
            kind: TaskQueueKind::Sticky as i32,
            normal_name: "tq".into(),
        }
    } else {
        TaskQueue {
            name: "tq".into(),
            kind: TaskQueueKind::Normal as i32,
            normal_name: String::new(),
        }
    };
    let proto = PollWorkflowTaskQueueRequest {
        namespace: "ns".into(),
        task_queue: Some(task_queue),
        identity: "req@arn".into(),
        worker_instance_key: "instance-1".into(),
        ..Default::default()
    };
    request("PollWorkflowTaskQueue", proto.encode_to_vec())
}

fn activity_poll() -> GrpcRequest {
    let proto = PollActivityTaskQueueRequest {
        namespace: "ns".into(),
        task_queue: Some(TaskQueue {
            name: "tq".into(),
            ..Default::default()
        }),
        identity: "req@arn".into(),
        worker_instance_key: "instance-1".into(),
        ..Default::default()
    };
    request("PollActivityTaskQueue", proto.encode_to_vec())
}

fn task(token: &str) -> Answer {
    Ok(GrpcSuccessResponse {
        headers: http::HeaderMap::new(),
        proto: PollWorkflowTaskQueueResponse {
            task_token: token.as_bytes().to_vec(),
            ..Default::default()
        }
        .encode_to_vec(),
    })
}

fn task_with_backlog(token: &str, backlog: i64) -> Answer {
    Ok(GrpcSuccessResponse {
        headers: http::HeaderMap::new(),
        proto: PollWorkflowTaskQueueResponse {
            task_token: token.as_bytes().to_vec(),
            backlog_count_hint: backlog,
            ..Default::default()
        }
        .encode_to_vec(),
    })
}

fn event(event_id: i64) -> HistoryEvent {
    HistoryEvent {
        event_id,
        ..Default::default()
    }
}

/// A workflow task from the normal queue: the workflow's whole history, from event 1.
fn forwarded_answer(token: &str) -> Vec<u8> {
    PollWorkflowTaskQueueResponse {
        task_token: token.as_bytes().to_vec(),
        history: Some(History {
            events: vec![event(1), event(2)],
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn token_answer(token: &str) -> Vec<u8> {
    PollWorkflowTaskQueueResponse {
        task_token: token.as_bytes().to_vec(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A sticky poll's answer with a task of the normal queue (matching forwarded the poll).
fn forwarded_task(token: &str) -> Answer {
    Ok(GrpcSuccessResponse {
        headers: http::HeaderMap::new(),
        proto: forwarded_answer(token),
    })
}

fn token_of(answer: &Answer) -> Vec<u8> {
    let answer = answer.as_ref().expect("an answer");
    PollWorkflowTaskQueueResponse::decode(answer.proto.as_slice())
        .unwrap()
        .task_token
}

/// How many `ShutdownWorker`s the wire sent.
fn unloads(fake: &Fake) -> usize {
    fake.sent::<ShutdownWorkerRequest>("ShutdownWorker").len()
}

/// A sticky poll came back with a task and more waiting: the sticky queue never empties.
async fn full_sticky_queue(fake: &Arc<Fake>, wire: &Arc<Wire>) {
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    fake.answer(task_with_backlog("sticky-1", 5));
    sticky.await.unwrap().unwrap();
}

/// The worker was handed an activity and runs it (it has not answered it).
async fn an_activity_running(fake: &Arc<Fake>, wire: &Arc<Wire>) {
    let activity = tokio::spawn(wire.clone().call(activity_poll()));
    settle().await;
    fake.answer(task("act-token"));
    activity.await.unwrap().unwrap();
}

/// Lets spawned tasks run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn wire(fake: &Arc<Fake>) -> Arc<Wire> {
    let wire = Wire::new(Arc::new(fake.clone()));
    wire.begin();
    wire
}

/// A wire that has read the namespace's capabilities (as the SDK's first call does).
async fn described_wire(fake: &Arc<Fake>) -> Arc<Wire> {
    let wire = wire(fake);
    wire.clone()
        .call(request("DescribeNamespace", Vec::new()))
        .await
        .unwrap();
    wire
}

/// A wire whose sticky polls matching forwards (one came back with a task of the normal
/// queue), the next sticky poll out, and closing begun.
async fn closing_with_a_forwarded_sticky_poll(
    fake: &Arc<Fake>,
    wire: Option<Arc<Wire>>,
) -> (
    Arc<Wire>,
    tokio::task::JoinHandle<Answer>,
    tokio::task::JoinHandle<()>,
) {
    let wire = wire.unwrap_or_else(|| self::wire(fake));
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    fake.answer(forwarded_task("normal-1"));
    assert_eq!(token_of(&sticky.await.unwrap()), b"normal-1");
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    let closing = tokio::spawn({
        let wire = wire.clone();
        async move { wire.close().await }
    });
    (wire, sticky, closing)
}

#[tokio::test(start_paused = true)]
async fn a_task_for_a_poll_the_sdk_gave_up_on_is_handed_back_at_once() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    // The SDK polls, then drops the poll (its shutdown cut it).
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    poll.abort();
    settle().await;
    // The server had already handed the poll a task: its answer still arrives.
    fake.answer(task("wf-token"));
    settle().await;
    let failed: Vec<RespondWorkflowTaskFailedRequest> = fake.sent("RespondWorkflowTaskFailed");
    assert_eq!(failed.len(), 1, "{:?}", fake.rpcs());
    assert_eq!(failed[0].task_token, b"wf-token");
    assert_eq!(
        (failed[0].namespace.as_str(), failed[0].identity.as_str()),
        ("ns", "req@arn")
    );
    let why = failed[0].failure.as_ref().unwrap();
    assert!(format!("{why:?}").contains(HANDED_BACK_TYPE), "{why:?}");
    assert_eq!(wire.finish().await.handed_back, 1);
}

#[tokio::test(start_paused = true)]
async fn a_task_the_worker_took_is_not_handed_back_once_answered() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    fake.answer(task("wf-token"));
    assert_eq!(token_of(&poll.await.unwrap()), b"wf-token");
    let completed = RespondWorkflowTaskCompletedRequest {
        task_token: b"wf-token".to_vec(),
        ..Default::default()
    };
    wire.clone()
        .call(request(
            "RespondWorkflowTaskCompleted",
            completed.encode_to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(wire.finish().await, WireReport::default());
    assert!(
        !fake
            .rpcs()
            .contains(&"RespondWorkflowTaskFailed".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn the_tasks_a_stopped_worker_did_not_answer_are_handed_back_and_its_polls_dropped() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    an_activity_running(&fake, &wire).await;
    // A poll still out when the worker stopped.
    let _outstanding = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    let report = wire.finish().await;
    assert_eq!((report.handed_back, report.dropped), (1, 1), "{report:?}");
    let failed: Vec<RespondActivityTaskFailedRequest> = fake.sent("RespondActivityTaskFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].task_token, b"act-token");
    let info = format!("{:?}", failed[0].failure);
    assert!(info.contains("non_retryable: false"), "{info}");
}

/// The worker answered a task of the normal queue, polled again, and stopped with that
/// poll out (without graceful poll shutdown the server does not end it).
async fn stopped_with_a_poll_out_after_a_task(
    fake: &Arc<Fake>,
    wire: &Arc<Wire>,
) -> tokio::task::JoinHandle<Answer> {
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    fake.answer(task("wf-1"));
    assert_eq!(token_of(&poll.await.unwrap()), b"wf-1");
    let completed = RespondWorkflowTaskCompletedRequest {
        task_token: b"wf-1".to_vec(),
        ..Default::default()
    };
    let completed = request("RespondWorkflowTaskCompleted", completed.encode_to_vec());
    wire.clone().call(completed).await.unwrap();
    let next = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    wire.close().await;
    wire.release();
    next
}

/// A poll of a queue that hands out tasks, out when its worker stopped, may be in the
/// record of a task matched to it, whatever its age: dropped there, the task would be
/// started and delivered to nobody (a start-to-close timeout). The session's end waits for
/// it to come back and hands its task back.
#[tokio::test(start_paused = true)]
async fn a_poll_of_a_busy_queue_is_not_dropped_under_its_task() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let _poll = stopped_with_a_poll_out_after_a_task(&fake, &wire).await;
    // It waited 0.3 s for nothing before the stop, and is matched now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = tokio::time::Instant::now();
    let finish = tokio::spawn({
        let wire = wire.clone();
        async move { wire.finish().await }
    });
    // History answers the record 100 ms later: the task comes back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.answer(task("wf-2"));
    let report = finish.await.unwrap();
    assert_eq!((report.handed_back, report.dropped), (1, 0), "{report:?}");
    let failed: Vec<RespondWorkflowTaskFailedRequest> = fake.sent("RespondWorkflowTaskFailed");
    assert_eq!(failed.len(), 1, "{:?}", fake.rpcs());
    assert_eq!(failed[0].task_token, b"wf-2");
    assert!(
        start.elapsed() < super::FINISH_LIMIT,
        "{:?}",
        start.elapsed()
    );
}

/// A poll of a busy queue that gets nothing is dropped after
/// [`FINISH_POLLS_BACK`](super::FINISH_POLLS_BACK); one of an idle queue (the idle exit) at
/// once.
#[tokio::test(start_paused = true)]
async fn the_session_end_waits_only_for_the_polls_of_a_busy_queue() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let _poll = stopped_with_a_poll_out_after_a_task(&fake, &wire).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = tokio::time::Instant::now();
    let report = wire.finish().await;
    assert_eq!(start.elapsed(), super::FINISH_POLLS_BACK);
    assert_eq!((report.handed_back, report.dropped), (0, 1), "{report:?}");

    // The idle exit: the last task came half a second before the stop.
    let fake = Arc::new(Fake::default());
    let wire = self::wire(&fake);
    let _poll = stopped_with_a_poll_out_after_a_task(&fake, &wire).await;
    tokio::time::sleep(super::TASKS_RECENTLY).await;
    let start = tokio::time::Instant::now();
    assert_eq!(wire.finish().await.dropped, 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn closing_holds_new_polls_and_releasing_answers_them_empty() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    wire.close().await;
    let held = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    assert_eq!(fake.outstanding(), 0, "a poll went out while closing");
    wire.release();
    let answer = held.await.unwrap().unwrap();
    assert!(answer.proto.is_empty());
    assert_eq!(wire.finish().await.held, 1);
}

#[tokio::test(start_paused = true)]
async fn closing_drains_the_sticky_queue_then_unloads_it_before_the_sdk_stops() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    let start = tokio::time::Instant::now();
    let closing = tokio::spawn({
        let wire = wire.clone();
        async move { wire.close().await }
    });
    settle().await;
    // A task already on the sticky queue comes to the waiting poll while closing, and the
    // server says two more wait there…
    fake.answer(task_with_backlog("sticky-1", 2));
    assert_eq!(token_of(&sticky.await.unwrap()), b"sticky-1");
    // …so the next sticky poll still goes out, and its wait is not taken for an empty queue.
    let next = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    assert_eq!(fake.outstanding(), 1, "the sticky poll was held");
    tokio::time::sleep(super::STICKY_QUIET * 3).await;
    assert!(unloads(&fake) == 0);
    fake.answer(task_with_backlog("sticky-2", 0));
    assert_eq!(token_of(&next.await.unwrap()), b"sticky-2");
    // Once a sticky poll waits for nothing after an answer with no backlog, the worker's
    // sticky queue is unloaded.
    let last = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    tokio::time::sleep(super::STICKY_QUIET * 2).await;
    let shutdown: Vec<ShutdownWorkerRequest> = fake.sent("ShutdownWorker");
    assert_eq!(shutdown.len(), 1);
    assert_eq!(shutdown[0].sticky_task_queue, "sticky-1");
    assert_eq!(shutdown[0].task_queue, "tq");
    assert_eq!(shutdown[0].worker_instance_key, "instance-1");
    // The server answers a poll of the unloaded sticky queue (empty), and closing, which
    // waited for it, ends before the SDK is stopped.
    assert!(!closing.is_finished());
    fake.answer(Ok(empty()));
    assert!(last.await.unwrap().unwrap().proto.is_empty());
    closing.await.unwrap();
    assert!(start.elapsed() < super::POLLS_BACK, "{:?}", start.elapsed());
}

/// The poll answers' signals say the sticky queue is drained (no backlog, a poll waiting),
/// but a task was written there that the waiting poll has not been matched with (on a busy
/// worker thread, the poll counted as waiting may not have reached the server yet): the
/// server, asked, counts it, so the queue is not unloaded under it.
#[tokio::test(start_paused = true)]
async fn closing_unloads_the_sticky_queue_only_once_the_server_counts_no_task_there() {
    let fake = Arc::new(Fake::default());
    fake.described.lock().unwrap().extend([1, 0]);
    let wire = wire(&fake);
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    fake.answer(task_with_backlog("sticky-1", 0));
    assert_eq!(token_of(&sticky.await.unwrap()), b"sticky-1");
    let next = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    let closing = tokio::spawn({
        let wire = wire.clone();
        async move { wire.close().await }
    });
    tokio::time::sleep(super::STICKY_QUIET * 3).await;
    let asked: Vec<DescribeTaskQueueRequest> = fake.sent("DescribeTaskQueue");
    assert_eq!(asked.len(), 1, "{:?}", fake.rpcs());
    let queue = asked[0].task_queue.clone().unwrap();
    assert_eq!(
        (queue.name.as_str(), queue.kind),
        ("sticky-1", TaskQueueKind::Sticky as i32)
    );
    assert!(
        unloads(&fake) == 0,
        "the sticky queue was unloaded with a task on it"
    );
    // The waiting poll brings the task; then the server counts none and the queue goes.
    fake.answer(task_with_backlog("sticky-2", 0));
    assert_eq!(token_of(&next.await.unwrap()), b"sticky-2");
    let last = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    tokio::time::sleep(super::STICKY_QUIET * 2).await;
    assert_eq!(
        fake.sent::<DescribeTaskQueueRequest>("DescribeTaskQueue")
            .len(),
        2
    );
    assert_eq!(unloads(&fake), 1);
    fake.answer(Ok(empty()));
    assert!(last.await.unwrap().unwrap().proto.is_empty());
    closing.await.unwrap();
}

/// A sticky poll that reaches the server after the unload (sent before closing, late on
/// a busy worker thread) loads the sticky queue again and waits there, so that the
/// worker's next tasks would be queued where nobody polls: the queue is unloaded again.
#[tokio::test(start_paused = true)]
async fn a_sticky_poll_that_outlives_the_unload_is_unloaded_again() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    let closing = tokio::spawn({
        let wire = wire.clone();
        async move { wire.close().await }
    });
    tokio::time::sleep(super::STICKY_QUIET * 2).await;
    assert_eq!(unloads(&fake), 1);
    // The server does not answer the sticky poll: it came after the unload.
    tokio::time::sleep(super::STICKY_BACK).await;
    let sent: Vec<ShutdownWorkerRequest> = fake.sent("ShutdownWorker");
    assert_eq!(sent.len(), 2, "{:?}", fake.rpcs());
    assert_eq!(sent[1].sticky_task_queue, "sticky-1");
    fake.answer(Ok(empty()));
    assert!(sticky.await.unwrap().unwrap().proto.is_empty());
    closing.await.unwrap();
    assert_eq!(unloads(&fake), 2);
}

#[tokio::test(start_paused = true)]
async fn a_completion_sent_while_closing_loses_its_sticky_attributes() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let completion = || {
        let c = RespondWorkflowTaskCompletedRequest {
            task_token: b"t".to_vec(),
            sticky_attributes: Some(StickyExecutionAttributes::default()),
            ..Default::default()
        };
        request("RespondWorkflowTaskCompleted", c.encode_to_vec())
    };
    wire.clone().call(completion()).await.unwrap();
    wire.close().await;
    wire.clone().call(completion()).await.unwrap();
    let sent: Vec<RespondWorkflowTaskCompletedRequest> = fake.sent("RespondWorkflowTaskCompleted");
    let sticky: Vec<_> = sent.iter().map(|c| c.sticky_attributes.is_some()).collect();
    assert_eq!(sticky, [true, false]);
}

#[tokio::test(start_paused = true)]
async fn with_graceful_polls_closing_waits_for_the_polls_the_server_ends() {
    let fake = Fake::graceful();
    let wire = described_wire(&fake).await;
    assert_eq!(wire.graceful_polls(), Some(true));
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    wire.close().await;
    // Ended by ShutdownWorker before close returned: the SDK is not stopped yet.
    assert!(poll.is_finished());
    assert!(poll.await.unwrap().unwrap().proto.is_empty());
    assert_eq!(wire.finish().await.dropped, 0);
}

/// Seen with graceful poll shutdown under a stream of starts: a saturated server left a
/// round's polls out seconds after `ShutdownWorker`; the SDK, which waits for its polls
/// with that capability, did not stop within its graceful shutdown timeout, and the
/// process exited as poisoned. The SDK's wait is bounded; the poll's task is handed back.
#[tokio::test(start_paused = true)]
async fn a_poll_the_server_does_not_end_does_not_hold_the_sdk_shutdown() {
    let fake = Arc::new(Fake {
        graceful: true,
        keeps_polls: true,
        ..Fake::default()
    });
    let wire = described_wire(&fake).await;
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    wire.close().await;
    assert!(!poll.is_finished());
    wire.release();
    let released = tokio::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .expect("the SDK's poll still waits 3 s into its shutdown")
        .unwrap()
        .unwrap();
    assert!(answer.proto.is_empty());
    assert_eq!(released.elapsed(), super::RELEASED_POLLS_BACK);
    // The poll is still out upstream, and the task it brings is not lost.
    assert_eq!(fake.outstanding(), 1);
    fake.answer(task("wf-late"));
    settle().await;
    let failed: Vec<RespondWorkflowTaskFailedRequest> = fake.sent("RespondWorkflowTaskFailed");
    assert_eq!(failed.len(), 1, "{:?}", fake.rpcs());
    assert_eq!(failed[0].task_token, b"wf-late");
    let report = wire.finish().await;
    assert_eq!((report.let_go, report.handed_back), (1, 1), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn without_graceful_polls_closing_does_not_wait_for_the_normal_polls() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    let _poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    let start = tokio::time::Instant::now();
    wire.close().await;
    assert!(
        start.elapsed() < Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        fake.rpcs().last().map(String::as_str),
        Some("ShutdownWorker")
    );
}

#[tokio::test(start_paused = true)]
async fn a_hand_back_the_server_does_not_answer_holds_the_session_end_half_a_second_at_most() {
    let fake = Arc::new(Fake {
        hangs: true,
        ..Fake::default()
    });
    let wire = wire(&fake);
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    fake.answer(task("wf-token"));
    poll.await.unwrap().unwrap();
    let start = tokio::time::Instant::now();
    let report = wire.finish().await;
    assert_eq!(start.elapsed(), super::FINISH_LIMIT);
    assert_eq!(report.handed_back, 0);
}

/// A server slow under load answers a hand-back after the session's end stopped waiting
/// for it: the call goes on (cancelled, it might never reach the server, and the task would
/// wait for its timeout).
#[tokio::test(start_paused = true)]
async fn a_slow_hand_back_is_not_cancelled_at_the_session_end() {
    let fake = Arc::new(Fake {
        hand_back_takes: Some(super::FINISH_LIMIT * 2),
        ..Fake::default()
    });
    let wire = wire(&fake);
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    fake.answer(task("wf-token"));
    poll.await.unwrap().unwrap();
    let start = tokio::time::Instant::now();
    let report = wire.finish().await;
    assert_eq!(start.elapsed(), super::FINISH_LIMIT);
    assert_eq!(report.handed_back, 0);
    tokio::time::sleep(super::FINISH_LIMIT * 2).await;
    assert_eq!(
        fake.handed_back.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the hand-back was cancelled"
    );
}

/// Closing's limit bounds its drain, not the unload: a `ShutdownWorker` the wire gave up on
/// as it was sent would leave the sticky queue loaded with nobody polling it (tasks queued
/// there wait for their sticky timeout) until the SDK's own, after its graceful shutdown.
/// With an activity in flight and a sticky queue that never empties, the drain takes all
/// of closing's [`CLOSE_LIMIT_BUSY`](super::CLOSE_LIMIT_BUSY); the unload still gets its
/// answer.
#[tokio::test(start_paused = true)]
async fn a_drain_that_takes_all_of_closing_still_leaves_the_unload_its_answer() {
    let fake = Arc::new(Fake {
        unload_takes: Some(Duration::from_millis(20)),
        ..Fake::default()
    });
    let wire = wire(&fake);
    full_sticky_queue(&fake, &wire).await;
    an_activity_running(&fake, &wire).await;
    let start = tokio::time::Instant::now();
    wire.close().await;
    assert_eq!(
        fake.sent::<ShutdownWorkerRequest>("ShutdownWorker").len(),
        1
    );
    assert_eq!(
        fake.unloaded.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "ShutdownWorker given up after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() <= super::CLOSE_LIMIT_BUSY + Duration::from_millis(20),
        "{:?}",
        start.elapsed()
    );
}

/// Seen under a stream of starts with graceful poll shutdown: the server took over 1.4 s
/// to answer `ShutdownWorker` (it unloads the sticky queue and ends the worker's polls
/// first); given up at closing's limit, the call was cancelled and the polls stayed out.
#[tokio::test(start_paused = true)]
async fn a_slow_shutdown_worker_is_not_cancelled_at_closing_limit() {
    let fake = Arc::new(Fake {
        unload_takes: Some(Duration::from_secs(3)),
        ..Fake::default()
    });
    let wire = wire(&fake);
    let _sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    let start = tokio::time::Instant::now();
    wire.close().await;
    assert!(
        start.elapsed() <= super::CLOSE_LIMIT,
        "{:?}",
        start.elapsed()
    );
    let sent = unloads(&fake);
    assert!(sent >= 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fake.unloaded.load(std::sync::atomic::Ordering::SeqCst),
        sent,
        "a ShutdownWorker was cancelled"
    );
}

/// The SDK awaits its own `ShutdownWorker` before anything else of its shutdown, with no
/// deadline: seen under a stream of starts, a server that took seconds to answer it held
/// the SDK past its graceful shutdown timeout (the process exited as poisoned).
#[tokio::test(start_paused = true)]
async fn the_sdk_does_not_wait_long_for_its_own_shutdown_worker() {
    let fake = Arc::new(Fake {
        unload_takes: Some(Duration::from_secs(10)),
        ..Fake::default()
    });
    let wire = wire(&fake);
    let start = tokio::time::Instant::now();
    let answer = wire
        .clone()
        .call(request(
            "ShutdownWorker",
            ShutdownWorkerRequest::default().encode_to_vec(),
        ))
        .await
        .unwrap();
    assert!(answer.proto.is_empty());
    assert_eq!(start.elapsed(), super::SDK_SHUTDOWN_WORKER_WAIT);
    // The call itself goes on, and reaches the server.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(fake.unloaded.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Seen under a stream of starts with graceful poll shutdown: a worker whose session ended
/// while it was still starting waited 5 s for its `validate`'s `DescribeNamespace` and
/// outlasted its graceful shutdown timeout (the process exited as poisoned). Once the
/// shutdown has begun the wait is bounded, and fails (not retried: Cancelled); before, it
/// waits for the server.
#[tokio::test(start_paused = true)]
async fn a_describe_namespace_the_server_does_not_answer_ends_with_the_shutdown() {
    let fake = Arc::new(Fake {
        describe_hangs: true,
        ..Fake::default()
    });
    let wire = wire(&fake);
    let describe = tokio::spawn(wire.clone().call(request("DescribeNamespace", Vec::new())));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!describe.is_finished());
    wire.close().await;
    wire.release();
    let released = tokio::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(3), describe)
        .await
        .expect("the SDK still waits for DescribeNamespace 3 s into its shutdown")
        .unwrap()
        .unwrap_err();
    assert_eq!(released.elapsed(), super::COMPLETION_WAIT);
    assert_eq!(status.code(), temporalio_client::tonic::Code::Cancelled);
    assert!(status.message().contains("DescribeNamespace"), "{status:?}");
    // The session ends as a stop: the report says the start was cut.
    assert!(wire.finish().await.start_cut);
}

/// A `DescribeNamespace` the server answers is no cut start, even late in the session.
#[tokio::test(start_paused = true)]
async fn a_describe_namespace_answered_is_no_cut_start() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    wire.clone()
        .call(request("DescribeNamespace", Vec::new()))
        .await
        .unwrap();
    wire.close().await;
    wire.release();
    assert!(!wire.finish().await.start_cut);
}

fn activity_completed() -> GrpcRequest {
    let completed = RespondActivityTaskCompletedRequest {
        task_token: b"act-token".to_vec(),
        ..Default::default()
    };
    request("RespondActivityTaskCompleted", completed.encode_to_vec())
}

/// Seen under a stream of starts with graceful poll shutdown: the server left a
/// completion unanswered over 3 s into the SDK's shutdown; the SDK waits for its
/// completions before it stops, and the process exited as poisoned. Once the shutdown has
/// begun the SDK's wait is bounded; before, a completion waits for the server's answer.
#[tokio::test(start_paused = true)]
async fn a_completion_the_server_does_not_answer_does_not_hold_the_sdk_shutdown() {
    let fake = Arc::new(Fake {
        hand_back_takes: Some(Duration::from_secs(5)),
        ..Fake::default()
    });
    let wire = wire(&fake);
    an_activity_running(&fake, &wire).await;
    let start = tokio::time::Instant::now();
    wire.clone().call(activity_completed()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    let fake = Arc::new(Fake {
        hangs: true,
        ..Fake::default()
    });
    let wire = self::wire(&fake);
    an_activity_running(&fake, &wire).await;
    wire.close().await;
    wire.release();
    let released = tokio::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        wire.clone().call(activity_completed()),
    )
    .await
    .expect("the SDK still waits for its completion 3 s into its shutdown")
    .unwrap();
    assert!(answer.proto.is_empty());
    assert_eq!(released.elapsed(), super::COMPLETION_WAIT);
    assert_eq!(
        fake.sent::<RespondActivityTaskCompletedRequest>("RespondActivityTaskCompleted")
            .len(),
        1
    );
    assert_eq!(wire.finish().await.calls_let_go, 1);
}

#[tokio::test(start_paused = true)]
async fn with_an_activity_in_flight_closing_leaves_the_drain_its_time() {
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    full_sticky_queue(&fake, &wire).await;
    an_activity_running(&fake, &wire).await;
    let start = tokio::time::Instant::now();
    wire.close().await;
    assert!(
        start.elapsed() <= super::CLOSE_LIMIT_BUSY,
        "{:?}",
        start.elapsed()
    );
}

/// A sticky poll came back with a task of the normal queue: matching forwards this
/// worker's sticky polls to the normal queue's old backlog, and records the task it finds
/// there as started under the forwarded poll. `ShutdownWorker` would cut such a record
/// (the sticky queue's unload cancels its forwarded polls), leaving the task started and
/// delivered to nobody. So the sticky queue counts as drained only once its poll has
/// waited [`POLL_SETTLED`](super::POLL_SETTLED) (at most half of closing's limit) for
/// nothing, not 50 ms; the sticky polls go on meanwhile, and the tasks they bring reach
/// the worker.
#[tokio::test(start_paused = true)]
async fn closing_does_not_unload_under_a_sticky_poll_matching_may_have_forwarded() {
    let fake = Arc::new(Fake::default());
    let (wire, sticky, closing) = closing_with_a_forwarded_sticky_poll(&fake, None).await;
    tokio::time::sleep(super::STICKY_QUIET * 2).await;
    assert_eq!(
        fake.sent::<DescribeTaskQueueRequest>("DescribeTaskQueue")
            .len(),
        0,
        "taken for drained under a poll that may be recording a task: {:?}",
        fake.rpcs()
    );
    assert_eq!(unloads(&fake), 0);
    fake.answer(forwarded_task("normal-2"));
    assert_eq!(token_of(&sticky.await.unwrap()), b"normal-2");
    // The sticky queue is still polled.
    let next = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    assert_eq!(fake.outstanding(), 1, "the sticky poll was held");
    let settled = super::POLL_SETTLED.min(super::CLOSE_LIMIT / 2);
    tokio::time::sleep(settled - Duration::from_millis(20)).await;
    assert_eq!(unloads(&fake), 0, "unloaded under a young sticky poll");
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(unloads(&fake), 1);
    fake.answer(Ok(empty()));
    assert!(next.await.unwrap().unwrap().proto.is_empty());
    closing.await.unwrap();
    // Both tasks reached the worker: nothing to hand back but what it did not answer.
    assert_eq!(wire.finish().await.handed_back, 2);
}

/// A poll at risk that stays out is waited for from when it was sent:
/// [`POLL_SETTLED`](super::POLL_SETTLED), or half of closing's limit where that is less.
/// At risk: sticky polls once one was forwarded (not with an activity in flight: below),
/// and with graceful poll shutdown every other poll (`ShutdownWorker` then cancels them
/// all).
#[tokio::test(start_paused = true)]
async fn the_unload_waits_for_the_polls_at_risk_to_settle_within_closing_limit() {
    for (case, graceful) in [("forwarded", false), ("graceful", true)] {
        let fake = if graceful {
            Fake::graceful()
        } else {
            Arc::new(Fake::default())
        };
        let wire = described_wire(&fake).await;
        // A poll comes back with a task: forwarded from the normal queue to a sticky poll,
        // or from a queue that hands out tasks.
        let first = tokio::spawn(wire.clone().call(workflow_poll(!graceful)));
        settle().await;
        fake.answer(forwarded_task("normal-1"));
        first.await.unwrap().unwrap();
        let _poll = tokio::spawn(wire.clone().call(workflow_poll(!graceful)));
        settle().await;
        let start = tokio::time::Instant::now();
        let closing = tokio::spawn({
            let wire = wire.clone();
            async move { wire.close().await }
        });
        let limit = super::CLOSE_LIMIT;
        let settled = super::POLL_SETTLED.min(limit / 2);
        tokio::time::sleep(settled - Duration::from_millis(20)).await;
        assert!(unloads(&fake) == 0, "{case}");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(unloads(&fake), 1, "{case}");
        if !graceful {
            fake.answer(Ok(empty()));
        }
        closing.await.unwrap();
        assert!(start.elapsed() <= limit, "{case}: {:?}", start.elapsed());
    }
}

/// An activity in flight as closing begins cuts it short only if it is still running
/// [`CLOSE_LIMIT_BUSY`](super::CLOSE_LIMIT_BUSY) in. One that ends sooner leaves closing its
/// whole limit: here the sticky polls matching forwarded settle before the unload.
#[tokio::test(start_paused = true)]
async fn an_activity_that_ends_early_in_closing_leaves_it_its_whole_limit() {
    use temporalio_common::protos::temporal::api::workflowservice::v1::RespondActivityTaskCompletedRequest;
    let fake = Arc::new(Fake::default());
    let wire = wire(&fake);
    an_activity_running(&fake, &wire).await;
    let (_wire, _sticky, closing) =
        closing_with_a_forwarded_sticky_poll(&fake, Some(wire.clone())).await;
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let completed = RespondActivityTaskCompletedRequest {
        task_token: b"act-token".to_vec(),
        ..Default::default()
    };
    wire.clone()
        .call(request(
            "RespondActivityTaskCompleted",
            completed.encode_to_vec(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(super::CLOSE_LIMIT_BUSY).await;
    assert_eq!(unloads(&fake), 0, "cut short at {:?}", start.elapsed());
    closing.await.unwrap();
    // (The fake leaves the unloaded queue's poll out: unloaded once more.)
    assert!(unloads(&fake) >= 1);
    let settled = super::POLL_SETTLED.min(super::CLOSE_LIMIT / 2);
    assert!(start.elapsed() >= settled, "{:?}", start.elapsed());
}

/// A normal-queue poll comes back with a task: the queue hands out tasks.
async fn busy_normal_queue(fake: &Arc<Fake>, wire: &Arc<Wire>) {
    let poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    fake.answer(task("normal-1"));
    poll.await.unwrap().unwrap();
}

/// With graceful poll shutdown a poll is at risk only while its queue hands out tasks. At
/// the idle exit (its settled wait: half a second at least since the last task) closing
/// does not wait for young polls.
#[tokio::test(start_paused = true)]
async fn with_graceful_polls_an_idle_worker_closes_without_a_settle() {
    let fake = Fake::graceful();
    let wire = described_wire(&fake).await;
    busy_normal_queue(&fake, &wire).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _poll = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    let start = tokio::time::Instant::now();
    wire.close().await;
    assert_eq!(unloads(&fake), 1);
    assert!(
        start.elapsed() < super::STICKY_QUIET,
        "{:?}",
        start.elapsed()
    );
}

/// With graceful poll shutdown, `ShutdownWorker` cancels every poll of the worker, so a
/// normal poll sent just before closing settles first; meanwhile the sticky queue is still
/// polled (holding its polls then would let tasks queue there before its unload).
#[tokio::test(start_paused = true)]
async fn with_graceful_polls_the_sticky_queue_is_polled_while_the_other_polls_settle() {
    let fake = Fake::graceful();
    let wire = described_wire(&fake).await;
    busy_normal_queue(&fake, &wire).await;
    let sticky = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    let _normal = tokio::spawn(wire.clone().call(workflow_poll(false)));
    settle().await;
    let start = tokio::time::Instant::now();
    let closing = tokio::spawn({
        let wire = wire.clone();
        async move { wire.close().await }
    });
    tokio::time::sleep(super::STICKY_QUIET * 4).await;
    assert!(unloads(&fake) == 0);
    // A task comes to the sticky queue: its poll brings it, and the next one goes out.
    fake.answer(task_with_backlog("sticky-1", 0));
    assert_eq!(token_of(&sticky.await.unwrap()), b"sticky-1");
    let _next = tokio::spawn(wire.clone().call(workflow_poll(true)));
    settle().await;
    assert_eq!(
        fake.outstanding(),
        2,
        "the sticky poll was held: {:?}",
        fake.rpcs()
    );
    closing.await.unwrap();
    assert_eq!(unloads(&fake), 1);
    assert!(
        start.elapsed() >= super::POLL_SETTLED.min(super::CLOSE_LIMIT / 2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_sticky_answer_with_the_whole_history_is_a_task_of_the_normal_queue() {
    assert!(super::proto::workflow_answer(&forwarded_answer("t")).whole_history);
    let sticky = PollWorkflowTaskQueueResponse {
        task_token: b"t".to_vec(),
        history: Some(History {
            events: vec![event(7), event(8)],
        }),
        ..Default::default()
    };
    assert!(!super::proto::workflow_answer(&sticky.encode_to_vec()).whole_history);
    assert!(!super::proto::workflow_answer(&token_answer("t")).whole_history);
}

/// The tasks handed to the worker are known by their workflow, which a hand-back's log
/// line names.
#[test]
fn a_handed_task_is_known_by_its_workflow() {
    use temporalio_common::protos::temporal::api::{
        common::v1::WorkflowExecution,
        workflowservice::v1::{
            PollActivityTaskQueueResponse, RespondWorkflowTaskCompletedResponse,
        },
    };
    let execution = |id: &str| {
        Some(WorkflowExecution {
            workflow_id: id.into(),
            run_id: "run".into(),
        })
    };
    let workflow_task = PollWorkflowTaskQueueResponse {
        task_token: b"t".to_vec(),
        workflow_execution: execution("wf-1"),
        ..Default::default()
    };
    let activity_task = PollActivityTaskQueueResponse {
        task_token: b"a".to_vec(),
        workflow_execution: execution("wf-2"),
        ..Default::default()
    };
    use super::{TaskKind, proto};
    let wf = workflow_task.encode_to_vec();
    assert_eq!(proto::workflow_of(&wf, TaskKind::Workflow), "wf-1");
    let act = activity_task.encode_to_vec();
    assert_eq!(proto::workflow_of(&act, TaskKind::Activity), "wf-2");
    assert_eq!(proto::workflow_of(&act, TaskKind::Nexus), "");
    let completed = RespondWorkflowTaskCompletedResponse {
        workflow_task: Some(workflow_task),
        activity_tasks: vec![activity_task],
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(
        proto::tasks_in_completion(&completed),
        vec![
            (
                Bytes::from_static(b"t"),
                TaskKind::Workflow,
                "wf-1".to_owned()
            ),
            (
                Bytes::from_static(b"a"),
                TaskKind::Activity,
                "wf-2".to_owned()
            ),
        ]
    );
}
