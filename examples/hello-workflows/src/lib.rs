//! What the `hello` and `otel` example bootstraps share: the Python reference example's
//! greeting workflow and activity (and a slow variant for in-flight-work tests), their
//! registration, and the deployment version from the environment.

use std::time::Duration;

use temporalio_common::{RetryPolicy, worker::WorkerDeploymentVersion};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, SyncWorkflowContext, WorkerOptions, WorkflowContext,
    WorkflowResult,
    activities::{ActivityContext, ActivityError},
    error::WorkflowRegistrationError,
};

/// Registers [`HelloWorkflow`], [`SlowHelloWorkflow`], [`SlowHelloOnceWorkflow`],
/// [`WhichBuildWorkflow`], [`ApprovalWorkflow`], the workload suite's [`ChainWorkflow`],
/// [`TimerWorkflow`] and [`ParentWorkflow`], and [`GreetingActivities`].
pub fn register(worker: &mut WorkerOptions) -> Result<(), WorkflowRegistrationError> {
    worker.register_workflow::<HelloWorkflow>()?;
    worker.register_workflow::<ApprovalWorkflow>()?;
    worker.register_workflow::<ChainWorkflow>()?;
    worker.register_workflow::<TimerWorkflow>()?;
    worker.register_workflow::<ParentWorkflow>()?;
    worker.register_workflow::<WhichBuildWorkflow>()?;
    worker.register_workflow::<SlowHelloWorkflow>()?;
    worker.register_workflow::<SlowHelloOnceWorkflow>()?;
    worker.register_activities(GreetingActivities);
    Ok(())
}

/// `HELLO_DEPLOYMENT_NAME` / `HELLO_BUILD_ID`, else `hello-app` / `build-1`.
pub fn version_from_env() -> WorkerDeploymentVersion {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    WorkerDeploymentVersion::builder()
        .deployment_name(env("HELLO_DEPLOYMENT_NAME", "hello-app"))
        .build_id(env("HELLO_BUILD_ID", "build-1"))
        .build()
}

/// Greets through one activity.
#[workflow]
#[derive(Default)]
pub struct HelloWorkflow;

#[workflow_methods]
impl HelloWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        let greeting = ctx
            .execute_activity(
                GreetingActivities::greet,
                name,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(greeting)
    }
}

fn greet_options() -> ActivityOptions {
    ActivityOptions::start_to_close_timeout(Duration::from_secs(10))
}

/// Greets `links` times, one activity after another (the workload suite's chain: each
/// activity's task comes a workflow task after the previous one ended).
#[workflow]
#[derive(Default)]
pub struct ChainWorkflow;

#[workflow_methods]
impl ChainWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, links: u32) -> WorkflowResult<String> {
        let mut last = String::new();
        for i in 0..links {
            last = ctx
                .execute_activity(
                    GreetingActivities::greet,
                    format!("link {i}"),
                    greet_options(),
                )
                .await?;
        }
        Ok(last)
    }
}

/// Greets, waits `millis` milliseconds on a durable timer, greets again (the workload
/// suite's timer: the next task comes when the timer fires, seconds later).
#[workflow]
#[derive(Default)]
pub struct TimerWorkflow;

#[workflow_methods]
impl TimerWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, millis: u64) -> WorkflowResult<String> {
        ctx.execute_activity(
            GreetingActivities::greet,
            "before".to_owned(),
            greet_options(),
        )
        .await?;
        ctx.timer(Duration::from_millis(millis)).await;
        let after = ctx
            .execute_activity(
                GreetingActivities::greet,
                "after".to_owned(),
                greet_options(),
            )
            .await?;
        Ok(after)
    }
}

/// Runs `children` [`HelloWorkflow`] children one after another (the workload suite's
/// parent: each child's tasks, then the parent's next one).
#[workflow]
#[derive(Default)]
pub struct ParentWorkflow;

#[workflow_methods]
impl ParentWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, children: u32) -> WorkflowResult<String> {
        let parent = ctx.info().workflow_id().to_owned();
        let mut last = String::new();
        for i in 0..children {
            let child = ctx
                .start_child_workflow(
                    HelloWorkflow::run,
                    format!("child {i}"),
                    ChildWorkflowOptions::workflow_id(format!("{parent}-child-{i}")),
                )
                .await?;
            last = child.result().await?;
        }
        Ok(last)
    }
}

/// Runs one activity that takes `millis` milliseconds: an activity still in flight when the
/// invocation's shutdown begins (the benchmarks use it to measure the drain).
#[workflow]
#[derive(Default)]
pub struct SlowHelloWorkflow;

#[workflow_methods]
impl SlowHelloWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, millis: u64) -> WorkflowResult<String> {
        let greeting = ctx
            .execute_activity(
                GreetingActivities::greet_slowly,
                millis,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(60)),
            )
            .await?;
        Ok(greeting)
    }
}

/// [`SlowHelloWorkflow`] with a retry policy of one attempt: an activity whose failure the
/// server never retries.
#[workflow]
#[derive(Default)]
pub struct SlowHelloOnceWorkflow;

#[workflow_methods]
impl SlowHelloOnceWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, millis: u64) -> WorkflowResult<String> {
        let mut once = RetryPolicy::default();
        once.set_maximum_attempts(1);
        let greeting = ctx
            .execute_activity(
                GreetingActivities::greet_slowly,
                millis,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
                    .retry_policy(once)
                    .build(),
            )
            .await?;
        Ok(greeting)
    }
}

/// Says which build ran it, for upgrade tests: with `true` as input it first waits for the
/// `proceed` signal (a workflow of an old build, waiting while a new one is deployed); then
/// its activity [`GreetingActivities::which_build`] answers, and that is the result.
#[workflow]
#[derive(Default)]
pub struct WhichBuildWorkflow {
    proceed: bool,
}

#[workflow_methods]
impl WhichBuildWorkflow {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        wait_for_signal: bool,
    ) -> WorkflowResult<String> {
        if wait_for_signal {
            ctx.wait_condition(|s| s.proceed).await?;
        }
        let build = ctx
            .execute_activity(
                GreetingActivities::which_build,
                (),
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(build)
    }

    #[signal]
    pub fn proceed(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.proceed = true;
    }
}

/// Waits for the `approve` signal or for its timeout (the input, in seconds), whichever
/// comes first: the signal-or-timer pattern, with the SDK's deterministic `select!`
/// (never `tokio::select!` in workflow code). Answers `approved` or `timed out`.
#[workflow]
#[derive(Default)]
pub struct ApprovalWorkflow {
    approved: bool,
}

#[workflow_methods]
impl ApprovalWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, timeout_secs: u64) -> WorkflowResult<String> {
        let approved = temporalio_sdk::workflows::select! {
            signalled = ctx.wait_condition(|s| s.approved) => { signalled?; true }
            _ = ctx.timer(Duration::from_secs(timeout_secs)) => false,
        };
        Ok(if approved { "approved" } else { "timed out" }.to_owned())
    }

    #[signal]
    pub fn approve(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.approved = true;
    }
}

/// What [`GreetingActivities::which_build`] answers: `BUILD on Lambda version VERSION`, from
/// `HELLO_BUILD_ID` (else `build-1`) and `AWS_LAMBDA_FUNCTION_VERSION`.
pub fn which_build() -> String {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    format!(
        "{} on Lambda version {}",
        env("HELLO_BUILD_ID", "build-1"),
        env("AWS_LAMBDA_FUNCTION_VERSION", "(none)")
    )
}

pub struct GreetingActivities;

#[activities]
impl GreetingActivities {
    #[activity]
    pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
        // A span of the application's own: with the `otel` bootstrap's tracing bridge it
        // is exported as a child of the activity's span.
        Ok(tracing::info_span!("compose_greeting").in_scope(|| format!("Hello, {name}!")))
    }

    #[activity]
    pub async fn which_build(_ctx: ActivityContext) -> Result<String, ActivityError> {
        Ok(which_build())
    }

    #[activity]
    pub async fn greet_slowly(_ctx: ActivityContext, millis: u64) -> Result<String, ActivityError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("Hello after {millis} ms!"))
    }
}
