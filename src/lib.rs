//! Run a Temporal Serverless Worker on AWS Lambda, as a Tower middleware stack.
//!
//! Temporal invokes the Lambda function when Tasks arrive on a versioned Task Queue with
//! no pollers. Each invocation runs one poll session: a worker with Lambda-tuned
//! defaults and Worker Deployment Versioning polls until shortly before the invocation
//! deadline, then drains gracefully, and the invocation answers before the deadline.
//!
//! # The one-call entry
//!
//! ```no_run
//! use temporal_lambda_worker::{run_worker, BoxError, LambdaWorkerConfig, WorkerDeploymentVersion};
//!
//! fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
//!     config.worker.task_queue = "my-task-queue".into();
//!     // config.worker.register_workflow::<MyWorkflow>()?;
//!     // config.worker.register_activities(MyActivities);
//!     Ok(())
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), BoxError> {
//!     let version = WorkerDeploymentVersion::builder()
//!         .deployment_name("my-app")
//!         .build_id("build-1")
//!         .build();
//!     run_worker(version, configure).await
//! }
//! ```
//!
//! # Composing the stack yourself
//!
//! Every lifecycle rule is a `tower::Layer` over [`Invocation`]; put your own anywhere.
//! This is the stack [`run_worker`] uses, with a layer of ours inserted before the
//! configure step (a real one might fetch an API key from a secret store):
//!
//! ```no_run
//! use temporal_lambda_worker::*;
//! use tower::ServiceBuilder;
//!
//! #[derive(Clone)]
//! struct ApiKeyFromFile;
//! impl InvocationStep for ApiKeyFromFile {
//!     fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
//!         let key = std::fs::read_to_string("/var/task/api-key").map_err(|e| LambdaWorkerError::Config {
//!             path: Some("/var/task/api-key".into()),
//!             message: format!("cannot be read: {e}"),
//!         })?;
//!         inv.config.connection.api_key = Some(key.trim().to_owned());
//!         Ok(())
//!     }
//! }
//!
//! # fn configure(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> { Ok(()) }
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), BoxError> {
//!     let version = WorkerDeploymentVersion::builder().deployment_name("my-app").build_id("build-1").build();
//!     let stack = ServiceBuilder::new()
//!         .layer(LoadConfigLayer::new())
//!         .layer(StepLayer::from_step(ApiKeyFromFile))
//!         .layer(LambdaDefaultsLayer::new())
//!         .layer(ConfigureLayer::new(configure))
//!         .layer(DisableEagerActivitiesLayer::new())
//!         .layer(WorkerVersioningLayer::new(version))
//!         .layer(WorkerIdentityLayer::new())
//!         .layer(DeadlineWatchdogLayer::new())
//!         .service(WorkerService::new(TemporalBackend::new()));
//!     serve(stack).await
//! }
//! ```
#![warn(missing_docs)]

pub mod connection_cache;
pub mod lambda;
pub mod temporal;
pub mod worker_service;

pub use lambda::{AcceptAnyPayloadLayer, InvocationHandler, RecycleLayer, RecycleSignal, serve};
pub use temporal::TemporalBackend;
pub use temporal_lambda_worker_layers as layers;
pub use temporal_lambda_worker_layers::*;
pub use worker_service::{
    RunningWorker, SessionConfig, WorkerBackend, WorkerReport, WorkerService,
};

use tower::{Service, ServiceBuilder};

/// The stack [`run_worker`] serves, over any backend and environment (tests pass a fake
/// backend and a [`StaticEnvironment`]).
pub fn default_stack_with<C, B, E>(
    version: WorkerDeploymentVersion,
    configure: C,
    backend: B,
    environment: E,
) -> impl Service<
    Invocation,
    Response = WorkerReport,
    Error = BoxError,
    Future = impl Send + use<C, B, E>,
> + Clone
+ Send
+ 'static
where
    C: Configure,
    B: WorkerBackend,
    E: Environment,
{
    ServiceBuilder::new()
        .layer(LoadConfigLayer::with_environment(environment))
        .layer(LambdaDefaultsLayer::new())
        .layer(ConfigureLayer::new(configure))
        .layer(DisableEagerActivitiesLayer::new())
        .layer(WorkerVersioningLayer::new(version))
        .layer(WorkerIdentityLayer::new())
        .layer(DeadlineWatchdogLayer::new())
        .service(WorkerService::new(backend))
}

/// The stack [`run_worker`] serves: every lifecycle layer around a [`WorkerService`]
/// talking to a real Temporal server.
pub fn default_stack<C: Configure>(
    version: WorkerDeploymentVersion,
    configure: C,
) -> impl Service<Invocation, Response = WorkerReport, Error = BoxError, Future = impl Send + use<C>>
+ Clone
+ Send
+ 'static {
    default_stack_with(
        version,
        configure,
        TemporalBackend::new(),
        ProcessEnvironment,
    )
}

/// Serves Lambda invocations with the default stack: each one runs a worker for
/// `version`, configured by `configure`, until shortly before its deadline.
///
/// Returns only when the process must be recycled (a worker that would not drain) or the
/// Runtime API fails; return the error from `main` so the process exits.
pub async fn run_worker<C: Configure>(
    version: WorkerDeploymentVersion,
    configure: C,
) -> Result<(), BoxError> {
    serve(default_stack(version, configure)).await
}
