//! Handing a task back: the task was handed to this worker, which will not run it (its
//! poll was given up, or the worker stopped before answering it). Answering it as failed
//! makes the server retry it at once, instead of after its start-to-close timeout:
//!
//! - a workflow task: `RespondWorkflowTaskFailed` writes `WorkflowTaskStarted` +
//!   `WorkflowTaskFailed` (as a timeout would) and schedules the next attempt at once;
//!   the workflow's code sees nothing;
//! - an activity task: `RespondActivityTaskFailed` with a retryable, benign application
//!   failure retried after [`ACTIVITY_RETRY`]: one attempt of its retry policy, no
//!   history event while it retries (as for `LambdaWorkerConfig::longest_activity`'s
//!   hand-back);
//! - a Nexus task: not handed back (its timeout retries it).

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use temporalio_client::callback_based::GrpcRequest;
use temporalio_common::protos::temporal::api::{
    enums::v1::{ApplicationErrorCategory, WorkflowTaskFailedCause},
    failure::v1::{ApplicationFailureInfo, Failure, failure::FailureInfo},
    workflowservice::v1::{RespondActivityTaskFailedRequest, RespondWorkflowTaskFailedRequest},
};

use super::{TaskKind, WORKFLOW_SERVICE, Worker, own_headers};

/// The failure type a handed-back task is failed with.
pub(crate) const HANDED_BACK_TYPE: &str = crate::error_type::TASK_HANDED_BACK;
/// When a handed-back activity is retried.
pub(crate) const ACTIVITY_RETRY: Duration = Duration::from_millis(100);

/// The request that hands back task `token` of `kind`, which `worker` was handed; `None`
/// for a kind that is not handed back.
pub(crate) fn request(token: &Bytes, kind: TaskKind, worker: &Worker) -> Option<GrpcRequest> {
    let (rpc, proto) = match kind {
        TaskKind::Workflow => (
            "RespondWorkflowTaskFailed",
            RespondWorkflowTaskFailedRequest {
                task_token: token.to_vec(),
                cause: WorkflowTaskFailedCause::Unspecified as i32,
                failure: Some(failure(false)),
                identity: worker.identity.clone(),
                namespace: worker.namespace.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        TaskKind::Activity => (
            "RespondActivityTaskFailed",
            RespondActivityTaskFailedRequest {
                task_token: token.to_vec(),
                failure: Some(failure(true)),
                identity: worker.identity.clone(),
                namespace: worker.namespace.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        TaskKind::Nexus => return None,
    };
    Some(GrpcRequest {
        service: WORKFLOW_SERVICE.into(),
        rpc: rpc.into(),
        headers: own_headers(&worker.headers),
        proto: proto.into(),
    })
}

/// The failure a task is handed back with; an activity's is retried after
/// [`ACTIVITY_RETRY`].
fn failure(activity: bool) -> Failure {
    Failure {
        message: "handed back unstarted: the Lambda invocation's worker was stopping when it \
                  arrived; retried at once"
            .into(),
        source: "temporal-lambda-worker".into(),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: HANDED_BACK_TYPE.into(),
                non_retryable: false,
                next_retry_delay: activity.then(|| ACTIVITY_RETRY.try_into().unwrap_or_default()),
                category: ApplicationErrorCategory::Benign as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}
