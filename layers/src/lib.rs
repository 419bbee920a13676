//! The lifecycle rules of `temporal-lambda-worker`, one `tower::Layer` each.
//!
//! Depend on `temporal-lambda-worker`, which re-exports everything here; this crate
//! exists so the rules build and test without the Temporal connection code.
//!
//! A request is an [`Invocation`]: the Lambda event and context plus a fresh
//! [`LambdaWorkerConfig`]. The default stack, outermost first:
//!
//! | layer | rule |
//! | --- | --- |
//! | [`LoadConfigLayer`] | client config from `temporal.toml` / `TEMPORAL_*`, task queue from `TEMPORAL_TASK_QUEUE` |
//! | [`ApiKeySecretLayer`] (optional) | the API key from `TEMPORAL_API_KEY_FILE` or a resolved `TEMPORAL_API_KEY_SECRET_ARN`, cached |
//! | [`LambdaDefaultsLayer`] | pre-fill the Lambda tuning defaults |
//! | [`ConfigureLayer`] | the user's configure callback (and its teardown) |
//! | [`DisableEagerActivitiesLayer`] | eager activities off, cannot be overridden |
//! | [`WorkerVersioningLayer`] | Worker Deployment Versioning on, with the deployment version |
//! | [`WorkerIdentityLayer`] | identity `request_id@function_arn` unless set |
//! | [`DeadlineWatchdogLayer`] | plan the [`Timeline`] (shutdown moment, drain end) from the final buffer; answer before the deadline |
#![warn(missing_docs, missing_debug_implementations)]
#![deny(unreachable_pub)]

mod cleanup;
pub mod config;
pub mod configure;
pub mod deadline;
pub mod disable_eager;
pub mod env;
pub mod error;
mod failed;
pub mod identity;
pub mod invocation;
pub mod lambda_defaults;
pub mod load_config;
pub mod secrets;
pub mod step;
pub mod timeline;
pub mod versioning;

pub use config::{InvocationInfo, LambdaWorkerConfig, ShutdownHook};
pub use configure::{
    AsyncConfigure, Configure, ConfigureCallback, ConfigureLayer, Configured, async_configure,
};
pub use deadline::{DeadlineWatchdog, DeadlineWatchdogLayer};
pub use disable_eager::{
    DisableEagerActivities, DisableEagerActivitiesLayer, DisableEagerActivitiesStep,
};
pub use env::{Environment, ProcessEnvironment, StaticEnvironment};
pub use error::{BoxError, ConnectProblem, LambdaWorkerError, error_type};
pub use futures_util::future::BoxFuture;
pub use identity::{WorkerIdentity, WorkerIdentityLayer, WorkerIdentityStep};
pub use invocation::{Invocation, StopSignal, StopTrigger};
pub use lambda_defaults::{LambdaDefaults, LambdaDefaultsLayer, LambdaDefaultsStep};
pub use load_config::{
    ALLOW_UNPUBLISHED_CODE_VAR, DEFAULT_IDLE_SHUTDOWN, DEFAULT_IDLE_SHUTDOWN_SETTLED,
    IDLE_SHUTDOWN_SETTLED_VAR, IDLE_SHUTDOWN_VAR, LONGEST_ACTIVITY_VAR, LoadConfig,
    LoadConfigLayer, LoadConfigStep,
};
pub use secrets::{ApiKeySecret, ApiKeySecretLayer, NoSecretResolver, SecretResolver};
pub use step::{InvocationStep, Step, StepLayer};
pub use temporalio_common::telemetry::metrics::CoreMeter;
pub use temporalio_common::worker::{VersioningBehavior, WorkerDeploymentVersion};
pub use timeline::{Moment, Timeline};
pub use versioning::{WorkerVersioning, WorkerVersioningLayer, WorkerVersioningStep};

pub mod testing {
    //! Helpers for unit-testing a layer of your own without a network or a real clock:
    //! run one invocation through a layer over a service that hands it back, with a
    //! Lambda context whose deadline is N seconds away. (`temporal_lambda_worker::testing`
    //! adds a fake backend for whole-stack tests.)
    //!
    //! ```
    //! use std::time::Duration;
    //! use temporal_lambda_worker_layers::{testing, Invocation, WorkerIdentityLayer};
    //!
    //! # #[tokio::main(flavor = "current_thread")] async fn main() {
    //! let inv = testing::invocation_in(Duration::from_secs(60));
    //! let seen = testing::run_through(WorkerIdentityLayer::new(), inv).await.unwrap();
    //! assert_eq!(
    //!     seen.config.worker.client_identity_override.as_deref(),
    //!     Some("test-request@arn:aws:lambda:us-east-1:000000000000:function:test")
    //! );
    //! # }
    //! ```
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub use lambda_runtime::Context;
    use tower::{Layer, Service, ServiceExt, service_fn};

    use crate::{BoxError, Invocation, WorkerDeploymentVersion};

    /// The function ARN of [`context`] and [`context_in`].
    pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:test";

    /// Runs one invocation through `layer` over a service that hands the invocation back,
    /// so a test can look at what the layer did to it.
    pub async fn run_through<L>(layer: L, inv: Invocation) -> Result<Invocation, BoxError>
    where
        L: Layer<
            tower::util::ServiceFn<
                fn(Invocation) -> std::future::Ready<Result<Invocation, BoxError>>,
            >,
        >,
        L::Service: Service<Invocation, Response = Invocation>,
        <L::Service as Service<Invocation>>::Error: Into<BoxError>,
    {
        let echo: fn(Invocation) -> std::future::Ready<Result<Invocation, BoxError>> =
            |inv| std::future::ready(Ok(inv));
        layer
            .layer(service_fn(echo))
            .oneshot(inv)
            .await
            .map_err(Into::into)
    }

    /// A deployment version.
    pub fn version(name: &str, build: &str) -> WorkerDeploymentVersion {
        WorkerDeploymentVersion::builder()
            .deployment_name(name)
            .build_id(build)
            .build()
    }

    /// A Lambda context with this request id and deadline (epoch milliseconds).
    pub fn context(request_id: &str, deadline_ms: u64) -> Context {
        let mut c = Context::default();
        c.request_id = request_id.into();
        c.deadline = deadline_ms;
        c.invoked_function_arn = FUNCTION_ARN.into();
        c
    }

    /// A context whose deadline is `remaining` from now (wall clock, as Lambda sends it).
    pub fn context_in(request_id: &str, remaining: Duration) -> Context {
        let ms = (SystemTime::now() + remaining)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        context(request_id, ms)
    }

    /// A fresh invocation (empty payload, request id `test-request`) whose deadline is
    /// `remaining` from now.
    pub fn invocation_in(remaining: Duration) -> Invocation {
        Invocation::new(
            serde_json::Value::Null,
            context_in("test-request", remaining),
        )
    }
}
