//! The workflows and activity the `hello` and `otel` examples register: the Python
//! reference example's greeting, and a slow variant for in-flight-work tests.

use std::time::Duration;

use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

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

pub struct GreetingActivities;

#[activities]
impl GreetingActivities {
    #[activity]
    pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
        Ok(format!("Hello, {name}!"))
    }

    #[activity]
    pub async fn greet_slowly(_ctx: ActivityContext, millis: u64) -> Result<String, ActivityError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("Hello after {millis} ms!"))
    }
}
