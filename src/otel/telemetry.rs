//! The process's exporters and providers ([`Telemetry`]), their flush, and what is never
//! exported.

use std::sync::{
    Arc, OnceLock, RwLock,
    atomic::{AtomicBool, Ordering},
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
};
use tokio::time::Instant;

use super::{
    LambdaIdGenerator, OtelOptions, ResolvedOtelOptions, meter::OtelCoreMeter,
    tracer::InvocationParentTracer,
};
use crate::{BoxError, CoreMeter, Environment, LambdaWorkerConfig, ProcessEnvironment};

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

    /// Whether [`apply_metrics`](super::apply_metrics) with this telemetry was applied to `config` (the
    /// [`OtelLayer`](super::OtelLayer) applies metrics and tracing together).
    pub(crate) fn applied_to(&self, config: &LambdaWorkerConfig) -> bool {
        config
            .metrics
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, &self.inner.meter))
    }

    /// Whether this is the process's first invocation (true once, then false).
    pub(super) fn take_cold(&self) -> bool {
        self.inner.cold.swap(false, Ordering::Relaxed)
    }

    /// The invocation span's name: the function's name, else the service name.
    pub(super) fn span_name(&self) -> String {
        self.inner
            .function_name
            .clone()
            .unwrap_or_else(|| self.inner.options.service_name.clone())
    }

    pub(super) fn tracer(&self) -> &InvocationParentTracer {
        &self.inner.tracer
    }

    pub(super) fn meter(&self) -> Arc<dyn CoreMeter> {
        self.inner.meter.clone()
    }

    pub(super) fn plugin(&self) -> &SimplePlugin {
        &self.inner.plugin
    }

    /// The current invocation's context, for workflow and activity spans with no parent.
    pub(crate) fn invocation_slot(&self) -> &RwLock<Option<Context>> {
        self.inner.tracer.current()
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

pub(super) fn exported_target(target: &str) -> bool {
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
