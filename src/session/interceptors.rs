//! The SDK interceptors that report a worker's tasks to its [`TaskActivity`]: every
//! workflow activation and every activity execution begins and ends here, and what the
//! workflows asked for is read on the way ([`Waits`](super::waits::Waits)).

use futures_util::future::BoxFuture;
use temporalio_common::protos::coresdk::{
    workflow_activation::{WorkflowActivation, workflow_activation_job::Variant as Job},
    workflow_completion::WorkflowActivationCompletion,
};
use temporalio_sdk::interceptors::{
    ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityResult, Next,
    WorkerInterceptor,
};
use tokio::time::Instant;

use super::{
    admission::{deferred, retried},
    tasks::{TaskActivity, TaskKind},
};

/// Reports workflow activations.
pub(super) struct WorkflowWatch(pub(super) TaskActivity);

#[async_trait::async_trait(?Send)]
impl WorkerInterceptor for WorkflowWatch {
    async fn on_workflow_activation(
        &self,
        activation: &WorkflowActivation,
    ) -> Result<(), anyhow::Error> {
        let begins = {
            let mut s = self.0.lock();
            s.waits.activation(activation, Instant::now());
            !activation.is_only_eviction() && s.workflows.insert(activation.run_id.clone())
        };
        for job in activation.jobs.iter().filter_map(|j| j.variant.as_ref()) {
            if let Job::InitializeWorkflow(init) = job {
                self.0.workflow_type_seen(&init.workflow_type);
            }
        }
        if begins {
            self.0.begin();
        }
        Ok(())
    }

    async fn on_workflow_activation_completion(&self, completion: &WorkflowActivationCompletion) {
        let ends = {
            let mut s = self.0.lock();
            s.waits.completion(completion, Instant::now());
            s.workflows.remove(&completion.run_id)
        };
        if ends {
            let ok = completion.status.as_ref().is_some_and(|s| s.is_success());
            self.0.end(TaskKind::Workflow, ok);
        }
    }
}

/// Reports activity executions, and hands back one that could not finish in time.
pub(super) struct ActivityWatch(pub(super) TaskActivity);

impl ActivityInboundInterceptor for ActivityWatch {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, BoxFuture<'a, ExecuteActivityResult>>,
    ) -> BoxFuture<'a, ExecuteActivityResult> {
        let info = input.activity_info();
        let (run, is_local) = (info.workflow_run_id.as_deref(), info.is_local);
        self.0.lock().waits.activity(run, is_local, Instant::now());
        let retry = retried(info.attempt, info.retry_policy.as_ref(), info.is_local);
        if let Some(retry_in) = self.0.defer_now(retry) {
            drop((input, next));
            return Box::pin(async move { Err(deferred(retry_in)) });
        }
        self.0.begin();
        let run = next.run(input);
        Box::pin(async move {
            // Ends the task even when the future is dropped (a cancelled activity).
            struct Ending<'b>(&'b TaskActivity, bool);
            impl Drop for Ending<'_> {
                fn drop(&mut self) {
                    self.0.end(TaskKind::Activity, self.1);
                }
            }
            let mut ending = Ending(&self.0, false);
            let result = run.await;
            ending.1 = result.is_ok();
            result
        })
    }
}
