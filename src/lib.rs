//! Run a Temporal Serverless Worker on AWS Lambda, as a Tower middleware stack.
//!
//! Temporal invokes the Lambda function when Tasks arrive on a versioned Task Queue with
//! no pollers. Each invocation runs one poll session: a worker with Lambda-tuned
//! defaults and Worker Deployment Versioning polls until it has nothing left to do (the
//! idle exit: 500 ms after its last task once none of its workflows expects one, else
//! 2 s; `TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS`, `TEMPORAL_IDLE_SHUTDOWN_SECS`) or until
//! shortly before the invocation deadline, then drains gracefully, and the invocation
//! answers before the deadline.
//!
//! # The one-call entry
//!
//! ```no_run
//! use temporal_lambda_worker::{run_worker, BoxError, LambdaWorkerConfig, WorkerDeploymentVersion};
//!
//! fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
//!     if config.worker.task_queue.is_empty() {
//!         config.worker.task_queue = "my-task-queue".into(); // TEMPORAL_TASK_QUEUE wins when set
//!     }
//!     // config.worker.register_workflow::<MyWorkflow>()?;
//!     // config.worker.register_activities(MyActivities);
//!     Ok(())
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), BoxError> {
//!     temporal_lambda_worker::logging::init(); // CloudWatch-ready logs
//!     let version = WorkerDeploymentVersion::builder()
//!         .deployment_name("my-app")
//!         .build_id("build-1")
//!         .build();
//!     run_worker(version, configure).await
//! }
//! ```
//!
//! # Adding layers of your own
//!
//! Every lifecycle rule is a `tower::Layer` over [`Invocation`]; [`WorkerStack`] builds
//! them in their order around a [`WorkerService`]. [`WorkerStack::layer`] inserts one of
//! yours where connection settings are final, right after config loading: an auth or
//! secrets layer, or any rule of your own. Here, the API key from a secret file
//! ([`ApiKeySecretLayer`](layers::ApiKeySecretLayer)) and a rule written as an
//! [`InvocationStep`](layers::InvocationStep)
//! (`examples/custom_layer.rs` resolves the key from AWS Secrets Manager instead). A
//! concern around everything (metrics, tracing) wraps the built stack. A hand-built
//! `ServiceBuilder` stack of the [`layers`] over a [`WorkerService`] works too; built in
//! another order, it fails its first invocation with `TemporalLambdaWorker.LayerOrder`,
//! naming the two layers.
//!
//! ```no_run
//! use temporal_lambda_worker::{*, layers::*};
//!
//! /// Our own rule: never start a worker against another namespace.
//! #[derive(Clone)]
//! struct OnlyNamespace(&'static str);
//! impl InvocationStep for OnlyNamespace {
//!     fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
//!         let namespace = &inv.config.client.namespace;
//!         if namespace != self.0 {
//!             // Answered with this errorType and message, as they are.
//!             return Err(LambdaWorkerError::custom(
//!                 "MyCompany.WrongNamespace",
//!                 format!("namespace {namespace} is not {}: set TEMPORAL_NAMESPACE", self.0),
//!             ));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn configure(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> { Ok(()) }
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), BoxError> {
//!     let version = WorkerDeploymentVersion::builder().deployment_name("my-app").build_id("build-1").build();
//!     let stack = WorkerStack::new(version, configure)
//!         .layer(ApiKeySecretLayer::from_file()) // TEMPORAL_API_KEY_FILE
//!         .layer(StepLayer::from_step(OnlyNamespace("production")))
//!         .build();
//!     serve(stack).await
//! }
//! ```
//!
//! # OpenTelemetry
//!
//! With the `otel` feature, `otel::run_worker` serves the same stack under an
//! `otel::OtelLayer`: an invocation span with the SDK's workflow and activity spans inside,
//! the SDK's worker metrics, all over OTLP/gRPC and flushed before every answer.
#![warn(missing_docs, missing_debug_implementations)]
#![deny(unreachable_pub)]

pub mod agentcore;
pub mod backend;
mod connection_cache;
mod diagnosis;
mod lambda;
#[cfg(test)]
mod log_capture;
pub mod logging;
#[cfg(feature = "otel")]
pub mod otel;
mod rollout;
mod session;
mod stack;
mod temporal;
pub mod testing;
mod wire;
pub mod worker_service;

pub use lambda::serve;
pub use stack::{BelowConnection, InvocationService, WorkerStack};
pub use temporal_lambda_worker_layers::{
    AsyncConfigure, BoxError, BoxFuture, ConfigureCallback, Configured, ConnectProblem, CoreMeter,
    Environment, Invocation, InvocationInfo, LambdaWorkerConfig, LambdaWorkerError, Moment,
    ProcessEnvironment, StaticEnvironment, StopSignal, StopTrigger, Timeline, VersioningBehavior,
    WorkerDeploymentVersion, async_configure, error_type,
};
pub use worker_service::{WorkerReport, WorkerService};

/// The lifecycle rules, one `tower::Layer` each, named as tower names them: `XLayer`, its
/// service `X<S>`, and `x::ResponseFuture`. The rules that only change the request are an
/// [`InvocationStep`](layers::InvocationStep) each (`XStep`), made a layer by
/// [`StepLayer`](layers::StepLayer) (`XLayer` is `StepLayer<XStep>`, `X<S>` is
/// `Step<S, XStep>`, their future [`step::ResponseFuture`](layers::step::ResponseFuture));
/// a rule of your own can be one too. [`WorkerStack`] puts them all in
/// their order around a [`WorkerService`]; a hand-built stack in
/// another order fails its first invocation with `TemporalLambdaWorker.LayerOrder`.
pub mod layers {
    /// The variables [`LoadConfigLayer`] reads beside the client configuration, and the
    /// defaults it gives the idle exit (a test's `StaticEnvironment` names them here).
    pub use temporal_lambda_worker_layers::{
        ALLOW_UNPUBLISHED_CODE_VAR, DEFAULT_IDLE_SHUTDOWN, DEFAULT_IDLE_SHUTDOWN_SETTLED,
        IDLE_SHUTDOWN_SETTLED_VAR, IDLE_SHUTDOWN_VAR, LONGEST_ACTIVITY_VAR,
    };
    pub use temporal_lambda_worker_layers::{
        ApiKeySecret, ApiKeySecretLayer, Configure, ConfigureLayer, DeadlineWatchdog,
        DeadlineWatchdogLayer, DisableEagerActivities, DisableEagerActivitiesLayer,
        DisableEagerActivitiesStep, InvocationStep, LambdaDefaults, LambdaDefaultsLayer,
        LambdaDefaultsStep, LoadConfig, LoadConfigLayer, LoadConfigStep, NoSecretResolver,
        SecretResolver, Step, StepLayer, WorkerIdentity, WorkerIdentityLayer, WorkerIdentityStep,
        WorkerVersioning, WorkerVersioningLayer, WorkerVersioningStep,
    };

    /// [`StepLayer`]'s service [`Step`] and its [`ResponseFuture`](step::ResponseFuture),
    /// shared by every `XStep` layer.
    pub mod step {
        pub use temporal_lambda_worker_layers::step::ResponseFuture;
    }

    /// [`ConfigureLayer`]'s service [`Configure`] and its
    /// [`ResponseFuture`](configure::ResponseFuture).
    pub mod configure {
        pub use temporal_lambda_worker_layers::configure::ResponseFuture;
    }

    /// [`DeadlineWatchdogLayer`]'s service [`DeadlineWatchdog`] and its
    /// [`ResponseFuture`](deadline::ResponseFuture).
    pub mod deadline {
        pub use temporal_lambda_worker_layers::deadline::ResponseFuture;
    }

    /// [`ApiKeySecretLayer`]'s service [`ApiKeySecret`] and its
    /// [`ResponseFuture`](secrets::ResponseFuture).
    pub mod secrets {
        pub use temporal_lambda_worker_layers::secrets::ResponseFuture;
    }
}

/// The lifecycle-rules crate, for this crate's own paths.
use temporal_lambda_worker_layers as rules;

/// Serves Lambda invocations with the default stack: each one runs a worker for
/// `version`, configured by `configure`, until shortly before its deadline.
///
/// Returns only when the process must be recycled (a worker that would not drain) or the
/// Runtime API fails; return the error from `main` so the process exits.
pub async fn run_worker<C: ConfigureCallback>(
    version: WorkerDeploymentVersion,
    configure: C,
) -> Result<(), BoxError> {
    serve(WorkerStack::new(version, configure).build()).await
}

/// The deploy guide's troubleshooting section quotes the library's messages; these checks
/// keep the quotes exact as the messages change.
#[cfg(test)]
mod deploy_guide {
    use std::time::Duration;

    use tower::{Layer, ServiceExt, service_fn};

    use crate::{
        BoxError, ConnectProblem, Invocation, LambdaWorkerError, StaticEnvironment,
        WorkerDeploymentVersion, layers::WorkerVersioningLayer,
    };

    const GUIDE: &str = include_str!("../docs/deploy.md");

    fn assert_quoted(e: &LambdaWorkerError) {
        let line = format!("{}: {e}", e.error_type());
        assert!(
            GUIDE.contains(&line),
            "docs/deploy.md does not quote this message exactly:\n{line}"
        );
    }

    #[tokio::test]
    async fn the_troubleshooting_section_quotes_the_exact_messages() {
        assert_quoted(&LambdaWorkerError::TimeoutTooShort {
            remaining: Duration::from_secs(8),
            buffer: Duration::from_secs(7),
        });
        assert_quoted(&LambdaWorkerError::MissingTaskQueue);
        let cloud = "https://my-ns.a1b2c.tmprl.cloud:7233/";
        let status = temporalio_client::tonic::Status::unauthenticated("Request unauthorized.");
        let refused = temporalio_client::errors::ClientConnectError::SystemInfoCallError(status);
        for (source, problem) in [
            (
                crate::diagnosis::connect_failure(&refused),
                ConnectProblem::Credentials,
            ),
            // As connect_failure words them (seen against a plaintext server and a closed port).
            (
                "the connection failed: transport error: received corrupt message of type \
                 InvalidContentType"
                    .to_owned(),
                ConnectProblem::NotTls,
            ),
            (
                "the connection failed: transport error: tcp connect error: Connection refused \
                 (os error 111)"
                    .to_owned(),
                ConnectProblem::Refused,
            ),
        ] {
            assert_quoted(&LambdaWorkerError::Connect {
                target: cloud.into(),
                source: source.into(),
                problem,
            });
        }
        assert_quoted(&LambdaWorkerError::ServerUnreachable {
            target: "https://my-ns.a1b2c.tmprl.cloud:7233/".into(),
            source: "Unavailable: tcp connect error: Connection refused (os error 111)".into(),
            problem: ConnectProblem::Refused,
        });
        let broken = crate::lambda::LambdaEnvironment::read(&StaticEnvironment::new())
            .unwrap_err()
            .message
            .replace(
                "AWS_LAMBDA_RUNTIME_API is not set",
                "AWS_LAMBDA_FUNCTION_NAME is not set",
            );
        let line = format!(
            "{}: {broken}",
            crate::error_type::INVALID_LAMBDA_ENVIRONMENT
        );
        assert!(
            GUIDE.contains(&line),
            "docs/deploy.md does not quote:\n{line}"
        );

        let env =
            StaticEnvironment::new().with_var("TEMPORAL_CONFIG_FILE", "/var/task/temporal.toml");
        let svc = crate::layers::LoadConfigLayer::with_environment(env)
            .layer(service_fn(|_: Invocation| async { Ok::<_, BoxError>(()) }));
        let err = svc
            .oneshot(Invocation::new(serde_json::Value::Null, Default::default()))
            .await
            .unwrap_err();
        assert_quoted(&err.downcast::<LambdaWorkerError>().unwrap());

        let version = WorkerDeploymentVersion::builder()
            .deployment_name("")
            .build_id("build-1")
            .build();
        let svc = WorkerVersioningLayer::new(version)
            .layer(service_fn(|_: Invocation| async { Ok::<_, BoxError>(()) }));
        let ctx = lambda_runtime::Context::default();
        let err = svc
            .oneshot(Invocation::new(serde_json::Value::Null, ctx))
            .await
            .unwrap_err();
        assert_quoted(&err.downcast::<LambdaWorkerError>().unwrap());
    }

    #[test]
    fn the_troubleshooting_section_quotes_each_connect_hint() {
        for problem in [
            ConnectProblem::NotTls,
            ConnectProblem::Credentials,
            ConnectProblem::Certificate,
            ConnectProblem::Refused,
            ConnectProblem::Dns,
            ConnectProblem::Other,
        ] {
            let hint = problem.hint();
            assert!(
                GUIDE.contains(hint),
                "docs/deploy.md lacks the hint:\n{hint}"
            );
        }
        let e = LambdaWorkerError::Namespace {
            namespace: "nope".into(),
            source: "NotFound: Namespace nope is not found".into(),
        }
        .to_string();
        let hint = e.rsplit_once(". ").unwrap().1;
        assert!(GUIDE.contains(hint), "{hint}");
    }
}

#[cfg(test)]
mod readme {
    //! The README's "Your own bootstrap" Cargo.toml is the one `examples/own-bootstrap`
    //! builds with, and its release profile is this workspace's.

    #[test]
    fn the_readme_lists_every_error_type_and_no_other() {
        let readme = include_str!("../README.md");
        let section = readme
            .split_once("## Errors\n")
            .expect("the README has the section")
            .1
            .split_once("\n## ")
            .expect("a section follows")
            .0;
        let mut listed: Vec<&str> = section
            .match_indices("`TemporalLambdaWorker.")
            .map(|(at, _)| {
                let name = &section[at + 1..];
                &name[..name.find('`').expect("closed")]
            })
            .collect();
        listed.sort_unstable();
        let mut all = crate::error_type::ALL.to_vec();
        all.sort_unstable();
        assert_eq!(listed, all);
    }

    fn table(text: &str) -> toml::Table {
        text.parse().expect("valid TOML")
    }

    fn readme_cargo_toml() -> toml::Table {
        let readme = include_str!("../README.md");
        let section = readme
            .split_once("## Your own bootstrap")
            .expect("the README has the section")
            .1;
        let block = section
            .split_once("```toml\n")
            .expect("a toml block")
            .1
            .split_once("```")
            .expect("closed")
            .0;
        table(block)
    }

    #[test]
    fn the_readme_cargo_toml_is_the_examples() {
        let readme = readme_cargo_toml();
        // Read when the test runs, not compiled in: the published package, whose tests
        // scripts/package-check.sh type-checks, has no examples/.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/own-bootstrap/Cargo.toml"
        );
        let example = table(&std::fs::read_to_string(path).expect("the workspace's example"));
        let (r, e) = (&readme["dependencies"], &example["dependencies"]);
        let names = |t: &toml::Value| {
            let mut n: Vec<_> = t.as_table().unwrap().keys().cloned().collect();
            n.sort();
            n
        };
        assert_eq!(names(r), names(e));
        for (name, spec) in r.as_table().unwrap() {
            if name == "temporal-lambda-worker" {
                // A path here, the published version there.
                assert_eq!(spec.as_str(), Some("0.1"));
                continue;
            }
            assert_eq!(spec, &e[name], "{name}");
        }
        let root = table(include_str!("../Cargo.toml"));
        assert_eq!(readme["profile"]["release"], root["profile"]["release"]);
        assert_eq!(
            readme["profile"]["release"]["panic"].as_str(),
            Some("unwind")
        );
    }
}

/// The README's Rust examples, compiled (and run, unless marked otherwise) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
