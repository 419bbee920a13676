//! The few fields the wire reads and writes, on the gRPC messages' bytes. Polls and
//! completions are read through small messages of the fields needed (prost skips the
//! rest, history included); the rare messages the wire rewrites or makes itself use the
//! SDK's full types.

use bytes::Bytes;
use prost::Message;
use temporalio_common::protos::temporal::api::{
    enums::v1::{TaskQueueKind, TaskQueueType},
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{
        DescribeNamespaceResponse, DescribeTaskQueueRequest, DescribeTaskQueueResponse,
        RespondWorkflowTaskCompletedRequest, ShutdownWorkerRequest,
    },
};

use super::{TaskKind, Worker};

/// Which poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PollKind {
    /// A workflow task poll of the task queue.
    Normal,
    /// A workflow task poll of this worker's sticky queue.
    Sticky,
    Activity,
    Nexus,
}

impl PollKind {
    /// A workflow task poll's kind, by its task queue's.
    pub(crate) fn workflow(poll: &PollRequest) -> Option<Self> {
        match TaskQueueKind::try_from(poll.kind) {
            Ok(TaskQueueKind::Sticky) => Some(Self::Sticky),
            Ok(TaskQueueKind::Normal | TaskQueueKind::Unspecified) => Some(Self::Normal),
            _ => None,
        }
    }

    /// The kind of task it hands out.
    pub(crate) fn task(self) -> TaskKind {
        match self {
            Self::Normal | Self::Sticky => TaskKind::Workflow,
            Self::Activity => TaskKind::Activity,
            Self::Nexus => TaskKind::Nexus,
        }
    }
}

/// What a poll request says of its worker (the fields every poll request shares).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PollRequest {
    pub(crate) namespace: String,
    pub(crate) task_queue: String,
    pub(crate) kind: i32,
    pub(crate) normal_name: String,
    pub(crate) identity: String,
    pub(crate) worker_instance_key: String,
}

#[derive(Clone, PartialEq, Message)]
struct PollFields {
    #[prost(string, tag = "1")]
    namespace: String,
    #[prost(message, optional, tag = "2")]
    task_queue: Option<TaskQueueFields>,
    #[prost(string, tag = "3")]
    identity: String,
    #[prost(string, tag = "8")]
    worker_instance_key: String,
}

#[derive(Clone, PartialEq, Message)]
struct TaskQueueFields {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "2")]
    kind: i32,
    #[prost(string, tag = "3")]
    normal_name: String,
}

impl PollRequest {
    /// Reads a `Poll*TaskQueueRequest`.
    pub(crate) fn decode(proto: &[u8]) -> Option<Self> {
        let f = PollFields::decode(proto).ok()?;
        let q = f.task_queue.unwrap_or_default();
        Some(Self {
            namespace: f.namespace,
            task_queue: q.name,
            kind: q.kind,
            normal_name: q.normal_name,
            identity: f.identity,
            worker_instance_key: f.worker_instance_key,
        })
    }
}

/// A workflow poll's answer, down to the queue's backlog as the server counts it and its
/// history's event ids.
#[derive(Clone, PartialEq, Message)]
struct WorkflowTask {
    #[prost(int64, tag = "7")]
    backlog_count_hint: i64,
    #[prost(message, optional, tag = "8")]
    history: Option<HistoryEventIds>,
}

#[derive(Clone, PartialEq, Message)]
struct HistoryEventIds {
    #[prost(message, repeated, tag = "1")]
    events: Vec<EventId>,
}

#[derive(Clone, PartialEq, Message)]
struct EventId {
    #[prost(int64, tag = "1")]
    event_id: i64,
}

/// What a workflow poll's answer says of where its task came from (read at once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WorkflowAnswer {
    /// Tasks the queue still holds (`backlog_count_hint`).
    pub(crate) backlog: i64,
    /// Whether it carries the workflow's whole history (its first event is event 1). A
    /// task of the sticky queue carries only the events since the worker's last task, so a
    /// sticky poll answered with the whole history was handed a task of the normal queue:
    /// matching forwarded that poll to the normal queue's backlog (whose count `backlog`
    /// then is).
    pub(crate) whole_history: bool,
}

/// Reads a workflow poll's answer; the default when it cannot be read.
pub(crate) fn workflow_answer(proto: &[u8]) -> WorkflowAnswer {
    let Ok(task) = WorkflowTask::decode(proto) else {
        return WorkflowAnswer::default();
    };
    let first = task
        .history
        .and_then(|h| h.events.first().map(|e| e.event_id));
    WorkflowAnswer {
        backlog: task.backlog_count_hint,
        whole_history: first == Some(1),
    }
}

/// Field 1, `task_token`, of every poll answer and task answer.
#[derive(Clone, PartialEq, Message)]
struct Token {
    #[prost(bytes = "bytes", tag = "1")]
    task_token: Bytes,
}

/// The task token of a poll's answer or a task's answer; `None` when empty (a poll that
/// found nothing).
pub(crate) fn task_token(proto: &[u8]) -> Option<Bytes> {
    Token::decode(proto)
        .ok()
        .map(|t| t.task_token)
        .filter(|t| !t.is_empty())
}

/// A task's workflow execution (`WorkflowExecution.workflow_id`).
#[derive(Clone, PartialEq, Message)]
struct Execution {
    #[prost(string, tag = "1")]
    workflow_id: String,
}

/// A workflow task (`PollWorkflowTaskQueueResponse`): its token and workflow.
#[derive(Clone, PartialEq, Message)]
struct WorkflowTaskOrigin {
    #[prost(bytes = "bytes", tag = "1")]
    task_token: Bytes,
    #[prost(message, optional, tag = "2")]
    workflow_execution: Option<Execution>,
}

/// An activity task (`PollActivityTaskQueueResponse`): its token and workflow.
#[derive(Clone, PartialEq, Message)]
struct ActivityTaskOrigin {
    #[prost(bytes = "bytes", tag = "1")]
    task_token: Bytes,
    #[prost(message, optional, tag = "4")]
    workflow_execution: Option<Execution>,
}

/// The workflow id of the task a poll of `kind` answered (empty when it names none: a
/// Nexus task, or an answer that cannot be read), for the log.
pub(crate) fn workflow_of(proto: &[u8], kind: TaskKind) -> String {
    let execution = match kind {
        TaskKind::Workflow => WorkflowTaskOrigin::decode(proto)
            .ok()
            .and_then(|t| t.workflow_execution),
        TaskKind::Activity => ActivityTaskOrigin::decode(proto)
            .ok()
            .and_then(|t| t.workflow_execution),
        TaskKind::Nexus => None,
    };
    execution.map(|e| e.workflow_id).unwrap_or_default()
}

#[derive(Clone, PartialEq, Message)]
struct CompletionAnswer {
    #[prost(message, optional, tag = "1")]
    workflow_task: Option<WorkflowTaskOrigin>,
    #[prost(message, repeated, tag = "2")]
    activity_tasks: Vec<ActivityTaskOrigin>,
}

/// A task handed to the worker: its token, kind and workflow id.
pub(crate) type HandedTask = (Bytes, TaskKind, String);

/// The tasks a `RespondWorkflowTaskCompletedResponse` hands out: the workflow's next task
/// and eager activities.
pub(crate) fn tasks_in_completion(proto: &[u8]) -> Vec<HandedTask> {
    let Ok(answer) = CompletionAnswer::decode(proto) else {
        return Vec::new();
    };
    let id = |e: Option<Execution>| e.map(|e| e.workflow_id).unwrap_or_default();
    let workflow = answer
        .workflow_task
        .map(|t| (t.task_token, TaskKind::Workflow, id(t.workflow_execution)));
    let activities = answer
        .activity_tasks
        .into_iter()
        .map(|t| (t.task_token, TaskKind::Activity, id(t.workflow_execution)));
    workflow
        .into_iter()
        .chain(activities)
        .filter(|(t, _, _)| !t.is_empty())
        .collect()
}

/// A `DescribeNamespaceResponse`'s `capabilities.worker_poll_complete_on_shutdown`.
pub(crate) fn graceful_polls(proto: &[u8]) -> Option<bool> {
    let answer = DescribeNamespaceResponse::decode(proto).ok()?;
    let capabilities = answer.namespace_info?.capabilities?;
    Some(capabilities.worker_poll_complete_on_shutdown)
}

/// A `RespondWorkflowTaskCompletedRequest` without `sticky_attributes` (the server then
/// clears the workflow's stickiness: its next task goes to the normal queue); `None`
/// when it had none or cannot be read.
pub(crate) fn without_sticky_attributes(proto: &[u8]) -> Option<Bytes> {
    let mut request = RespondWorkflowTaskCompletedRequest::decode(proto).ok()?;
    request.sticky_attributes.take()?;
    Some(request.encode_to_vec().into())
}

/// The `ShutdownWorker` request for `worker`.
pub(crate) fn shutdown_worker(worker: &Worker) -> Bytes {
    ShutdownWorkerRequest {
        namespace: worker.namespace.clone(),
        sticky_task_queue: worker.sticky_queue.clone().unwrap_or_default(),
        identity: worker.identity.clone(),
        reason: "graceful shutdown (Lambda invocation ending)".into(),
        worker_instance_key: worker.instance_key.clone(),
        task_queue: worker.task_queue.clone(),
        task_queue_types: vec![
            TaskQueueType::Workflow as i32,
            TaskQueueType::Activity as i32,
            TaskQueueType::Nexus as i32,
        ],
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

/// The `DescribeTaskQueue` request that asks for the backlog of `worker`'s sticky queue (the
/// legacy mode's `TaskQueueStatus`, whose `backlog_count_hint` the server counts as tasks
/// are written, unlike a poll answer's, which counts the tasks it has loaded); `None`
/// without a sticky queue.
#[allow(deprecated)] // the legacy mode is the one that describes a sticky queue
pub(crate) fn describe_sticky(worker: &Worker) -> Option<Bytes> {
    let sticky = worker.sticky_queue.clone()?;
    let request = DescribeTaskQueueRequest {
        namespace: worker.namespace.clone(),
        task_queue: Some(TaskQueue {
            name: sticky,
            kind: TaskQueueKind::Sticky as i32,
            normal_name: worker.task_queue.clone(),
        }),
        task_queue_type: TaskQueueType::Workflow as i32,
        include_task_queue_status: true,
        ..Default::default()
    };
    Some(request.encode_to_vec().into())
}

/// The backlog a `DescribeTaskQueueResponse` reports in its `TaskQueueStatus`.
#[allow(deprecated)]
pub(crate) fn described_backlog(proto: &[u8]) -> Option<i64> {
    let answer = DescribeTaskQueueResponse::decode(proto).ok()?;
    Some(answer.task_queue_status?.backlog_count_hint)
}
