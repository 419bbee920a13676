//! OpenTelemetry traces and metrics for Lambda workers, exported over OTLP/gRPC to the
//! collector of the AWS Distro for OpenTelemetry (ADOT) Lambda layer and flushed at the
//! end of every invocation (a frozen Lambda container loses whatever was not flushed).
//!
//! Behind the `otel` cargo feature. What you get:
//!
//! - **Traces**: one span per invocation (named after the function, with the FaaS
//!   attributes `faas.invocation_id`, `faas.coldstart`, `faas.trigger`), parented to the
//!   X-Ray trace Lambda passes in (`Lambda-Runtime-Trace-Id`, else `_X_AMZN_TRACE_ID`),
//!   and inside it the Temporal SDK's `RunWorkflow:*` and `RunActivity:*` spans. Trace ids
//!   are X-Ray compatible (their first 32 bits are the start time in epoch seconds).
//! - **Metrics**: the Temporal SDK's own worker metrics (`temporal_*`), with the service
//!   name as the `service.name` resource attribute.
//! - **Flush**: traces and metrics are flushed after every invocation, bounded by
//!   [`OtelOptions::flush_timeout`] and by the deadline (never later than 200 ms before
//!   it), so a dead collector costs at most that long and never a missed deadline.
//! - **Once per process**: exporters and providers are made once ([`Telemetry::init`])
//!   and reused by warm invocations.
//!
//! The resolution orders: endpoint = [`OtelOptions::collector_endpoint`] →
//! `OTEL_EXPORTER_OTLP_ENDPOINT` → `http://localhost:4317`; service name =
//! [`OtelOptions::service_name`] → `OTEL_SERVICE_NAME` → `AWS_LAMBDA_FUNCTION_NAME` →
//! `temporal-lambda-worker`; metric periodicity = [`OtelOptions::metric_periodicity`] →
//! 10 s.
//!
//! # With the whole stack
//!
//! ```no_run
//! use temporal_lambda_worker::{otel, BoxError, LambdaWorkerConfig, WorkerDeploymentVersion};
//!
//! fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
//!     config.worker.task_queue = "my-task-queue".into();
//!     Ok(())
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), BoxError> {
//!     let version = WorkerDeploymentVersion::builder()
//!         .deployment_name("my-app")
//!         .build_id("build-1")
//!         .build();
//!     let telemetry = otel::Telemetry::init(otel::OtelOptions::new())?;
//!     otel::run_worker(version, configure, telemetry).await
//! }
//! ```
//!
//! # As a layer
//!
//! [`OtelLayer`] goes outermost, so the invocation span covers config loading too:
//!
//! ```no_run
//! # use temporal_lambda_worker::{*, layers::*};
//! # use tower::ServiceBuilder;
//! # fn configure(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> { Ok(()) }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! # let version = WorkerDeploymentVersion::builder().deployment_name("a").build_id("b").build();
//! let telemetry = otel::Telemetry::init(otel::OtelOptions::new().service_name("orders"))?;
//! let stack = ServiceBuilder::new()
//!     .layer(otel::OtelLayer::new(telemetry))
//!     .service(WorkerStack::new(version, configure).build());
//! serve(stack).await
//! # }
//! ```
//!
//! # In a configure callback
//!
//! In a stack without [`OtelLayer`], [`apply_defaults`] adds the metrics, the workflow and
//! activity spans, and a flush after each invocation (as a shutdown hook); there is no
//! invocation span then, so workflow spans start their own traces. Under an `OtelLayer`
//! it is not needed: the layer does all of it.
//!
//! ```no_run
//! # use temporal_lambda_worker::{*, layers::*};
//! fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
//!     let telemetry = otel::Telemetry::init(otel::OtelOptions::new())?;
//!     otel::apply_defaults(config, &telemetry)?;
//!     config.worker.task_queue = "my-task-queue".into();
//!     Ok(())
//! }
//! ```

mod apply;
mod layer;
mod meter;
mod options;
mod telemetry;
mod tracer;

use std::time::Duration;

use tokio::time::Instant;

pub use apply::{apply_defaults, apply_metrics, apply_tracing};
pub use layer::{Otel, OtelLayer, ResponseFuture};
pub use options::{
    DEFAULT_COLLECTOR_ENDPOINT, DEFAULT_FLUSH_TIMEOUT, DEFAULT_METRIC_PERIODICITY,
    DEFAULT_SERVICE_NAME, OtelOptions, ResolvedOtelOptions,
};
pub use telemetry::{FlushError, NOT_EXPORTED_TARGETS, Telemetry};
pub(crate) use tracer::LambdaIdGenerator;
pub use tracer::is_xray_trace_id;

use crate::{BoxError, WorkerDeploymentVersion, WorkerStack, serve};

/// [`crate::run_worker`] with OpenTelemetry: the default stack under an [`OtelLayer`]
/// with `telemetry` (the process's, from [`Telemetry::init`]).
pub async fn run_worker<C: crate::ConfigureCallback>(
    version: WorkerDeploymentVersion,
    configure: C,
    telemetry: Telemetry,
) -> Result<(), BoxError> {
    let result = serve(
        tower::ServiceBuilder::new()
            .layer(OtelLayer::new(telemetry.clone()))
            .service(WorkerStack::new(version, configure).build()),
    )
    .await;
    // Stopping (SIGTERM, or an error that ends the process): export what is still
    // pending within the time Lambda gives a stopping process. Every invocation was
    // flushed when it answered, so this is usually nothing.
    if let Err(e) = telemetry.flush(Instant::now() + SIGTERM_FLUSH).await {
        tracing::warn!("{e}");
    }
    result
}

/// How long the last flush of a stopping process may take.
const SIGTERM_FLUSH: Duration = Duration::from_millis(150);

#[cfg(test)]
mod tests {
    use opentelemetry::Context;

    use super::{telemetry::exported_target, *};
    use crate::{LambdaWorkerConfig, StaticEnvironment};

    #[test]
    fn options_win_then_the_environment_then_the_defaults() {
        let none = StaticEnvironment::new();
        let r = OtelOptions::new().resolve(&none);
        assert_eq!(r.collector_endpoint, "http://localhost:4317");
        assert_eq!(r.service_name, "temporal-lambda-worker");
        assert_eq!(r.metric_periodicity, Duration::from_secs(10));
        assert_eq!(r.flush_timeout, Duration::from_secs(1));

        let lambda = StaticEnvironment::new().with_var("AWS_LAMBDA_FUNCTION_NAME", "fn");
        assert_eq!(OtelOptions::new().resolve(&lambda).service_name, "fn");
        let env = lambda
            .with_var("OTEL_SERVICE_NAME", "svc")
            .with_var("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let r = OtelOptions::new().resolve(&env);
        assert_eq!(r.service_name, "svc");
        assert_eq!(r.collector_endpoint, "http://collector:4317");

        let r = OtelOptions::new()
            .service_name("opt")
            .collector_endpoint("http://opt:4317")
            .metric_periodicity(Duration::from_secs(3))
            .resolve(&env);
        assert_eq!(r.service_name, "opt");
        assert_eq!(r.collector_endpoint, "http://opt:4317");
        assert_eq!(r.metric_periodicity, Duration::from_secs(3));

        // An empty variable counts as unset.
        let blank = StaticEnvironment::new()
            .with_var("OTEL_SERVICE_NAME", "")
            .with_var("AWS_LAMBDA_FUNCTION_NAME", "fn");
        assert_eq!(OtelOptions::new().resolve(&blank).service_name, "fn");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn metrics_and_tracing_are_applied_once() {
        let t = Telemetry::with_exporters(
            &OtelOptions::new(),
            &StaticEnvironment::new(),
            opentelemetry_sdk::trace::InMemorySpanExporter::default(),
            opentelemetry_sdk::metrics::InMemoryMetricExporter::default(),
        );
        let mut config = LambdaWorkerConfig::default();
        assert!(!t.applied_to(&config));
        apply_metrics(&mut config, &t);
        apply_tracing(&mut config, &t).unwrap();
        assert!(t.applied_to(&config));
        assert!(format!("{config:?}").contains("metrics: \"<set>\""));
    }

    #[test]
    fn the_tracing_bridge_exports_user_spans_under_the_current_span_and_nothing_of_the_transport() {
        use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
        use tracing_subscriber::layer::SubscriberExt as _;

        let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let t = Telemetry::with_exporters(
            &OtelOptions::new(),
            &StaticEnvironment::new(),
            spans.clone(),
            opentelemetry_sdk::metrics::InMemoryMetricExporter::default(),
        );
        let subscriber = tracing_subscriber::registry().with(t.tracing_layer());
        let activity = t
            .tracer_provider()
            .tracer("test")
            .start("RunActivity:greet");
        let activity_cx = Context::new()
            .with_remote_span_context(opentelemetry::trace::Span::span_context(&activity).clone());
        tracing::subscriber::with_default(subscriber, || {
            let _in_activity = activity_cx.clone().attach();
            tracing::info_span!("compose_greeting").in_scope(|| {
                tracing::info_span!(target: "h2::proto", "Connection").in_scope(|| {});
                tracing::info_span!(target: "tonic::transport", "connect").in_scope(|| {});
                tracing::debug_span!("too_verbose").in_scope(|| {});
            });
        });
        t.tracer_provider().force_flush().unwrap();
        let exported = spans.get_finished_spans().unwrap();
        let names: Vec<_> = exported.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(names, ["compose_greeting"]);
        assert_eq!(
            exported[0].parent_span_id,
            opentelemetry::trace::Span::span_context(&activity).span_id()
        );
        assert!(exported_target("my_app::activities"));
        assert!(exported_target("hyperdrive"));
        assert!(!exported_target("hyper"));
        assert!(!exported_target("temporalio_sdk_core::worker"));
    }

    // The only test that touches the process telemetry (its exporters connect lazily, and
    // nothing here flushes, so no network is used).
    #[tokio::test(flavor = "current_thread")]
    async fn apply_defaults_adds_a_flush_hook_unless_the_layer_applied_everything() {
        let mut config = LambdaWorkerConfig::default();
        let t = Telemetry::init(OtelOptions::new()).unwrap();
        apply_defaults(&mut config, &t).unwrap();
        assert!(t.applied_to(&config));
        assert_eq!(config.shutdown_hook_count(), 1);

        // What OtelLayer does with the same telemetry first: then nothing more is added.
        let mut under_layer = LambdaWorkerConfig::default();
        apply_metrics(&mut under_layer, &t);
        apply_tracing(&mut under_layer, &t).unwrap();
        apply_defaults(&mut under_layer, &t).unwrap();
        assert_eq!(under_layer.shutdown_hook_count(), 0);
        // Later calls with the same options get the same process telemetry; other
        // options are an error, not silently ignored.
        let again = Telemetry::init(OtelOptions::new()).unwrap();
        assert!(again.applied_to(&config));
        let err = Telemetry::init(OtelOptions::new().service_name("other")).unwrap_err();
        assert!(err.to_string().contains("made once per process"), "{err}");
    }
}
