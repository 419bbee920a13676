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
//!     otel::run_worker(version, configure, otel::OtelOptions::new()).await
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
//!     .service(default_stack(version, configure));
//! serve(stack).await
//! # }
//! ```
//!
//! # In a configure callback
//!
//! [`apply_defaults`] does the metrics and tracing part and flushes in a shutdown hook;
//! without [`OtelLayer`] there is no invocation span, and workflow spans start their own
//! traces. Under an [`OtelLayer`] with the process telemetry ([`Telemetry::init`]) it does
//! nothing, so a configure callback may call it either way; an `OtelLayer` with telemetry
//! of its own plus `apply_defaults` would record every span twice.
//!
//! ```no_run
//! # use temporal_lambda_worker::{*, layers::*};
//! fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
//!     otel::apply_defaults(config, otel::OtelOptions::new())?;
//!     config.worker.task_queue = "my-task-queue".into();
//!     Ok(())
//! }
//! ```

mod layer;
mod meter;
mod tracer;

use std::{
    sync::{Arc, OnceLock, RwLock, atomic::AtomicBool},
    time::Duration,
};

use opentelemetry::{Context, KeyValue, metrics::MeterProvider};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
    trace::{BatchSpanProcessor, SdkTracerProvider},
};
use temporalio_sdk::{
    SimplePlugin,
    opentelemetry::{OpenTelemetryPlugin, WorkflowSpanProcessor},
    plugins::WorkerPlugin,
};
use tokio::time::Instant;

pub use layer::{OtelLayer, OtelService};
pub use tracer::{LambdaIdGenerator, is_xray_trace_id};

use crate::{
    BoxError, CoreMeter, Environment, LambdaWorkerConfig, ProcessEnvironment,
    WorkerDeploymentVersion, default_stack, serve,
};
use meter::OtelCoreMeter;
use tracer::InvocationParentTracer;

/// The collector endpoint when neither the options nor `OTEL_EXPORTER_OTLP_ENDPOINT` name
/// one: the ADOT Lambda layer's collector.
pub const DEFAULT_COLLECTOR_ENDPOINT: &str = "http://localhost:4317";
/// The service name when neither the options, `OTEL_SERVICE_NAME` nor
/// `AWS_LAMBDA_FUNCTION_NAME` give one.
pub const DEFAULT_SERVICE_NAME: &str = "temporal-lambda-worker";
/// How often metrics are exported while a worker polls (they are also flushed at the end
/// of every invocation).
pub const DEFAULT_METRIC_PERIODICITY: Duration = Duration::from_secs(10);
/// The longest the end-of-invocation flush may take.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// What to export to and as. Every field is optional; see the module docs for the
/// resolution orders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtelOptions {
    /// The OTLP/gRPC endpoint, e.g. `http://localhost:4317`.
    pub collector_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
    /// How often metrics are exported while a worker polls.
    pub metric_periodicity: Option<Duration>,
    /// The longest the end-of-invocation flush may take (default 1 s). It runs after the
    /// worker stopped, inside the shutdown buffer, and never later than 200 ms before
    /// the deadline.
    pub flush_timeout: Option<Duration>,
}

impl OtelOptions {
    /// No options set: everything comes from the environment or the defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the collector endpoint.
    pub fn collector_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.collector_endpoint = Some(endpoint.into());
        self
    }
    /// Sets the service name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }
    /// Sets the metric export period.
    pub fn metric_periodicity(mut self, period: Duration) -> Self {
        self.metric_periodicity = Some(period);
        self
    }
    /// Sets the flush timeout.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = Some(timeout);
        self
    }

    /// Fills every unset field from `env`, then from the defaults.
    pub fn resolve(&self, env: &dyn Environment) -> ResolvedOtelOptions {
        let var = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        ResolvedOtelOptions {
            collector_endpoint: self
                .collector_endpoint
                .clone()
                .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_else(|| DEFAULT_COLLECTOR_ENDPOINT.to_owned()),
            service_name: self
                .service_name
                .clone()
                .or_else(|| var("OTEL_SERVICE_NAME"))
                .or_else(|| var("AWS_LAMBDA_FUNCTION_NAME"))
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            metric_periodicity: self
                .metric_periodicity
                .unwrap_or(DEFAULT_METRIC_PERIODICITY),
            flush_timeout: self.flush_timeout.unwrap_or(DEFAULT_FLUSH_TIMEOUT),
        }
    }
}

/// [`OtelOptions`] with every value decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedOtelOptions {
    /// The OTLP/gRPC endpoint.
    pub collector_endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The metric export period.
    pub metric_periodicity: Duration,
    /// The longest the end-of-invocation flush may take.
    pub flush_timeout: Duration,
}

/// The process's telemetry: the exporters, the tracer and meter providers, the SDK meter
/// and the SDK tracing plugin. Cheap to clone; make it once per process.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    options: ResolvedOtelOptions,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    tracer: InvocationParentTracer,
    meter: Arc<dyn CoreMeter>,
    plugin: SimplePlugin,
    /// Whether no invocation has started yet in this process.
    cold: AtomicBool,
    function_name: Option<String>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

static PROCESS_TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

impl Telemetry {
    /// The process's telemetry, made on the first call from `options` and the process
    /// environment; a later call with options that resolve the same returns it, one with
    /// other options is an error (the exporters exist once per process). Call it from
    /// inside a Tokio runtime: the gRPC exporters run on it.
    pub fn init(options: OtelOptions) -> Result<Self, BoxError> {
        if let Some(t) = PROCESS_TELEMETRY.get() {
            let wanted = options.resolve(&ProcessEnvironment);
            if wanted != t.inner.options {
                return Err(format!(
                    "Telemetry::init was called again with other options ({wanted:?}) than the \
                     process's telemetry was made with ({:?}): it is made once per process. \
                     Pass the same options everywhere (otel::run_worker, apply_defaults), or \
                     use Telemetry::new for telemetry of its own",
                    t.inner.options
                )
                .into());
            }
            return Ok(t.clone());
        }
        let made = Self::new(&options, &ProcessEnvironment)?;
        Ok(PROCESS_TELEMETRY.get_or_init(|| made).clone())
    }

    /// New telemetry from `options` and `env`, not shared with anyone (tests, or several
    /// stacks in one process). Call it from inside a Tokio runtime.
    pub fn new(options: &OtelOptions, env: &dyn Environment) -> Result<Self, BoxError> {
        let resolved = options.resolve(env);
        let endpoint = &resolved.collector_endpoint;
        let exporter_error = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "could not make the OTLP {what} exporter for {endpoint}: {e}; \
                 set OTEL_EXPORTER_OTLP_ENDPOINT to the collector's gRPC endpoint, \
                 e.g. http://localhost:4317"
            )
        };
        let spans = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(resolved.flush_timeout)
            .build()
            .map_err(|e| exporter_error("trace", &e))?;
        let metrics = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(resolved.flush_timeout)
            .build()
            .map_err(|e| exporter_error("metric", &e))?;
        Ok(Self::build(resolved, env, spans, metrics))
    }

    /// Telemetry exporting through the given exporters instead of OTLP/gRPC (tests use
    /// `opentelemetry_sdk`'s in-memory ones; anything else that speaks the SDK's exporter
    /// traits works). The endpoint option is then only used in messages.
    pub fn with_exporters(
        options: &OtelOptions,
        env: &dyn Environment,
        spans: impl opentelemetry_sdk::trace::SpanExporter + 'static,
        metrics: impl opentelemetry_sdk::metrics::exporter::PushMetricExporter,
    ) -> Self {
        Self::build(options.resolve(env), env, spans, metrics)
    }

    fn build(
        options: ResolvedOtelOptions,
        env: &dyn Environment,
        spans: impl opentelemetry_sdk::trace::SpanExporter + 'static,
        metrics: impl opentelemetry_sdk::metrics::exporter::PushMetricExporter,
    ) -> Self {
        let resource = resource(&options, env);
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(WorkflowSpanProcessor::new(
                BatchSpanProcessor::builder(spans).build(),
            ))
            .with_id_generator(LambdaIdGenerator::default())
            .with_resource(resource.clone())
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(metrics)
                    .with_interval(options.metric_periodicity)
                    .build(),
            )
            .with_resource(resource)
            .build();
        let tracer = InvocationParentTracer::new(
            opentelemetry::trace::TracerProvider::tracer(
                &tracer_provider,
                "temporal-lambda-worker",
            ),
            Arc::new(RwLock::new(None)),
        );
        let plugin = OpenTelemetryPlugin::builder()
            .tracer(tracer.clone())
            .build();
        let meter: Arc<dyn CoreMeter> = Arc::new(OtelCoreMeter::new(
            meter_provider.meter("temporal-core-sdk"),
        ));
        Self {
            inner: Arc::new(Inner {
                options,
                tracer_provider,
                meter_provider,
                tracer,
                meter,
                plugin,
                cold: AtomicBool::new(true),
                function_name: env.var("AWS_LAMBDA_FUNCTION_NAME"),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &ResolvedOtelOptions {
        &self.inner.options
    }

    /// The tracer provider (for spans of your own; they are flushed with ours).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.inner.tracer_provider
    }

    /// The meter provider (for metrics of your own; they are flushed with ours).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.inner.meter_provider
    }

    /// A `tracing` layer exporting your own `tracing` spans (and the events inside them)
    /// through this telemetry, so they are flushed with ours: a span you open in an
    /// activity becomes a child of its `RunActivity:*` span. Add it to your subscriber
    /// (`tracing_subscriber::registry().with(telemetry.tracing_layer())`).
    ///
    /// It takes INFO and above, and never the spans of [`NOT_EXPORTED_TARGETS`]: the
    /// exporter's own HTTP/2 and gRPC stack would add thousands per invocation, and the
    /// Temporal and Lambda runtime crates' internal spans are not the workflow and
    /// activity spans (those come from the SDK's plugin).
    pub fn tracing_layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.inner.tracer.inner().clone())
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                *meta.level() <= tracing::Level::INFO && exported_target(meta.target())
            }))
    }

    /// Exports every finished span and the current metrics now, giving up at `until`.
    /// The exporters block, so each runs on Tokio's blocking pool while this waits.
    pub async fn flush(&self, until: Instant) -> Result<(), FlushError> {
        let budget = until.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(self.flush_error("no time was left before the deadline".into()));
        }
        let traces = self.inner.tracer_provider.clone();
        let metrics = self.inner.meter_provider.clone();
        let traces = tokio::task::spawn_blocking(move || traces.force_flush());
        let metrics = tokio::task::spawn_blocking(move || metrics.force_flush());
        let both = async { (traces.await, metrics.await) };
        match tokio::time::timeout_at(until, both).await {
            Err(_) => Err(self.flush_error(format!("it did not finish within {budget:?}"))),
            Ok((t, m)) => {
                let mut failed = Vec::new();
                for (what, r) in [("traces", t), ("metrics", m)] {
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failed.push(format!("{what}: {e}")),
                        Err(e) => failed.push(format!("{what}: {e}")),
                    }
                }
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(self.flush_error(failed.join("; ")))
                }
            }
        }
    }

    /// Whether [`apply_metrics`] with this telemetry was applied to `config` (the
    /// [`OtelLayer`] applies metrics and tracing together).
    pub fn applied_to(&self, config: &LambdaWorkerConfig) -> bool {
        config
            .metrics
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, &self.inner.meter))
    }

    fn flush_error(&self, reason: String) -> FlushError {
        FlushError {
            endpoint: self.inner.options.collector_endpoint.clone(),
            reason,
        }
    }
}

/// The targets (crates) whose `tracing` spans and events [`Telemetry::tracing_layer`]
/// never exports: the OTLP exporter's transport, OpenTelemetry itself, the Lambda
/// runtime, and the Temporal SDK's internals.
pub const NOT_EXPORTED_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "tower_http",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "temporalio_sdk_core",
    "temporalio_sdk",
    "temporalio_client",
    "temporalio_common",
];

fn exported_target(target: &str) -> bool {
    !NOT_EXPORTED_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The end-of-invocation flush failed: that invocation's telemetry is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushError {
    /// The collector endpoint.
    pub endpoint: String,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenTelemetry flush to {} failed, this invocation's traces and metrics are lost: \
             {}. Is the collector running (the ADOT Lambda layer listens on localhost:4317)? \
             Set OTEL_EXPORTER_OTLP_ENDPOINT to its gRPC endpoint",
            self.endpoint, self.reason
        )
    }
}

impl std::error::Error for FlushError {}

fn resource(options: &ResolvedOtelOptions, env: &dyn Environment) -> Resource {
    let mut attributes = vec![
        KeyValue::new("cloud.provider", "aws"),
        KeyValue::new("cloud.platform", "aws_lambda"),
    ];
    for (key, var) in [
        ("cloud.region", "AWS_REGION"),
        ("faas.name", "AWS_LAMBDA_FUNCTION_NAME"),
        ("faas.version", "AWS_LAMBDA_FUNCTION_VERSION"),
        ("faas.instance", "AWS_LAMBDA_LOG_STREAM_NAME"),
    ] {
        if let Some(v) = env.var(var) {
            attributes.push(KeyValue::new(key, v));
        }
    }
    Resource::builder_empty()
        .with_service_name(options.service_name.clone())
        .with_attributes(attributes)
        .build()
}

/// Records the SDK's worker metrics with `telemetry`'s meter.
pub fn apply_metrics(config: &mut LambdaWorkerConfig, telemetry: &Telemetry) {
    config.metrics = Some(telemetry.inner.meter.clone());
}

/// Adds the SDK's OpenTelemetry interceptors to the worker: `RunWorkflow:*` and
/// `RunActivity:*` spans (and the spans of what workflows call), exported by `telemetry`.
/// Apply it once per invocation config.
pub fn apply_tracing(
    config: &mut LambdaWorkerConfig,
    telemetry: &Telemetry,
) -> Result<(), BoxError> {
    telemetry
        .inner
        .plugin
        .configure_worker_options(&mut config.worker)
        .map_err(|e| format!("the Temporal OpenTelemetry plugin failed: {e}").into())
}

/// Metrics, tracing and a flush after every invocation (as a shutdown hook), with the
/// process's [`Telemetry::init`]. For a configure callback; [`OtelLayer`] does the same
/// plus the invocation span.
pub fn apply_defaults(
    config: &mut LambdaWorkerConfig,
    options: OtelOptions,
) -> Result<Telemetry, BoxError> {
    let telemetry = Telemetry::init(options)?;
    if telemetry.applied_to(config) {
        // An OtelLayer with this telemetry did it all (and flushes): nothing to add.
        return Ok(telemetry);
    }
    apply_metrics(config, &telemetry);
    apply_tracing(config, &telemetry)?;
    let flushing = telemetry.clone();
    config.add_async_shutdown_hook(move || async move {
        let until = Instant::now() + flushing.options().flush_timeout;
        flushing.flush(until).await
    });
    Ok(telemetry)
}

/// [`crate::run_worker`] with OpenTelemetry: the default stack under an [`OtelLayer`]
/// with the process's [`Telemetry::init`] from `options`.
pub async fn run_worker<C: crate::Configure>(
    version: WorkerDeploymentVersion,
    configure: C,
    options: OtelOptions,
) -> Result<(), BoxError> {
    let telemetry = Telemetry::init(options)?;
    let result = serve(
        tower::ServiceBuilder::new()
            .layer(OtelLayer::new(telemetry.clone()))
            .service(default_stack(version, configure)),
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

/// The current invocation's context, for workflow and activity spans with no parent.
pub(crate) fn invocation_slot(t: &Telemetry) -> &RwLock<Option<Context>> {
    t.inner.tracer.current()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticEnvironment;

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
        let t = apply_defaults(&mut config, OtelOptions::new()).unwrap();
        assert!(t.applied_to(&config));
        assert_eq!(config.shutdown_hook_count(), 1);

        // What OtelLayer does with the same telemetry first: then nothing more is added.
        let mut under_layer = LambdaWorkerConfig::default();
        apply_metrics(&mut under_layer, &t);
        apply_tracing(&mut under_layer, &t).unwrap();
        apply_defaults(&mut under_layer, OtelOptions::new()).unwrap();
        assert_eq!(under_layer.shutdown_hook_count(), 0);
        // Later calls with the same options get the same process telemetry; other
        // options are an error, not silently ignored.
        let again = Telemetry::init(OtelOptions::new()).unwrap();
        assert!(again.applied_to(&config));
        let err = Telemetry::init(OtelOptions::new().service_name("other")).unwrap_err();
        assert!(err.to_string().contains("made once per process"), "{err}");
    }
}
