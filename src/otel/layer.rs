//! [`OtelLayer`]: one span per invocation around the whole stack, the SDK's metrics and
//! tracing applied to the invocation's config, and a deadline-bounded flush after the
//! inner service is done (modelled on `lambda_runtime`'s OpenTelemetry layer).

use std::{
    sync::Arc,
    task::{Context as TaskContext, Poll},
};

use futures_util::future::BoxFuture;
use opentelemetry::{
    Context, KeyValue,
    trace::{FutureExt as _, SpanBuilder, SpanKind, Status, TraceContextExt},
};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{Telemetry, apply_metrics, apply_tracing};
use crate::{
    BoxError, Environment, Invocation, ProcessEnvironment, lambda::stack_diagnostic as diagnostic,
};

/// Wraps the stack in OpenTelemetry: see the [module docs](super). Put it outermost.
#[derive(Clone)]
pub struct OtelLayer {
    telemetry: Telemetry,
    env: Arc<dyn Environment>,
}

impl OtelLayer {
    /// The layer for `telemetry`, reading `_X_AMZN_TRACE_ID` from the process environment
    /// when the Runtime API gives no trace header.
    pub fn new(telemetry: Telemetry) -> Self {
        Self::with_environment(telemetry, ProcessEnvironment)
    }

    /// The layer for `telemetry`, reading the environment from `env`.
    pub fn with_environment(telemetry: Telemetry, env: impl Environment) -> Self {
        Self {
            telemetry,
            env: Arc::new(env),
        }
    }
}

impl std::fmt::Debug for OtelLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelLayer")
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for OtelLayer {
    type Service = Otel<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Otel {
            inner,
            layer: self.clone(),
        }
    }
}

/// The future of [`Otel`]: boxed, as its work is async and its type is not worth naming.
pub type ResponseFuture<R> = BoxFuture<'static, Result<R, BoxError>>;

/// The service made by [`OtelLayer`].
#[derive(Clone, Debug)]
pub struct Otel<S> {
    inner: S,
    layer: OtelLayer,
}

/// The X-Ray trace Lambda passes in: the Runtime API's header, else `_X_AMZN_TRACE_ID`.
fn lambda_parent(context: &lambda_runtime::Context, env: &dyn Environment) -> Context {
    context
        .xray_trace_id
        .clone()
        .or_else(|| env.var("_X_AMZN_TRACE_ID"))
        .and_then(|h| opentelemetry_aws::trace::xray_propagator::span_context_from_str(&h))
        .map(|parent| Context::new().with_remote_span_context(parent))
        .unwrap_or_default()
}

impl<S> Service<Invocation> for Otel<S>
where
    S: Service<Invocation, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut inv: Invocation) -> Self::Future {
        let telemetry = self.layer.telemetry.clone();
        let cold = telemetry.take_cold();
        let name = telemetry.span_name();
        let mut attributes = vec![
            KeyValue::new("faas.invocation_id", inv.context.request_id.clone()),
            KeyValue::new("faas.coldstart", cold),
            // Temporal's Worker Controller invokes the function; none of the
            // datasource/http/pubsub/timer triggers fits.
            KeyValue::new("faas.trigger", "other"),
        ];
        if !inv.context.invoked_function_arn.is_empty() {
            attributes.push(KeyValue::new(
                "cloud.resource_id",
                inv.context.invoked_function_arn.clone(),
            ));
        }
        let parent = lambda_parent(&inv.context, &*self.layer.env);
        let tracer = telemetry.tracer().inner();
        let span = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        apply_metrics(&mut inv.config, &telemetry);
        if let Err(e) = apply_tracing(&mut inv.config, &telemetry) {
            tracing::warn!("no workflow or activity spans for this invocation: {e}");
        }
        let flush_by = inv.timeline().answer_by();
        let current = CurrentInvocation::set(&telemetry, cx.clone());
        let response = self.inner.call(inv).with_context(cx.clone());
        Box::pin(async move {
            let result = response.await;
            let span = cx.span();
            if let Err(e) = &result {
                // What the Runtime API's error endpoint is told.
                let d = diagnostic(e);
                span.set_attribute(KeyValue::new("error.type", d.error_type));
                span.set_status(Status::error(d.error_message));
            }
            span.end();
            drop(current);
            let until = flush_by.cap(Instant::now() + telemetry.options().flush_timeout);
            if let Err(e) = telemetry.flush(until).await {
                tracing::warn!("{e}");
            }
            result
        })
    }
}

/// Makes the invocation's span the parent of workflow and activity spans that have none,
/// until dropped (when the invocation ends, or its future is dropped).
struct CurrentInvocation(Telemetry);

impl CurrentInvocation {
    fn set(telemetry: &Telemetry, cx: Context) -> Self {
        *telemetry
            .invocation_slot()
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(cx);
        Self(telemetry.clone())
    }
}

impl Drop for CurrentInvocation {
    fn drop(&mut self) {
        *self
            .0
            .invocation_slot()
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use opentelemetry::trace::{SpanId, Status as OtelStatus};
    use opentelemetry_sdk::{
        error::OTelSdkResult,
        metrics::InMemoryMetricExporter,
        trace::{InMemorySpanExporter, SpanData, SpanExporter},
    };
    use temporalio_common::telemetry::metrics::NewAttributes;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::{
        LambdaWorkerError, StaticEnvironment,
        otel::{OtelOptions, is_xray_trace_id},
    };

    const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:orders-fn";

    fn env() -> StaticEnvironment {
        StaticEnvironment::new()
            .with_var("AWS_LAMBDA_FUNCTION_NAME", "orders-fn")
            .with_var("OTEL_SERVICE_NAME", "orders")
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn invocation(request_id: &str, remaining: Duration, trace: Option<String>) -> Invocation {
        let mut c = lambda_runtime::Context::default();
        c.request_id = request_id.into();
        c.deadline = (SystemTime::now() + remaining)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        c.invoked_function_arn = ARN.into();
        c.xray_trace_id = trace;
        Invocation::new(serde_json::Value::Null, c)
    }

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// Telemetry exporting spans to memory (metrics: to memory too, not looked at).
    fn telemetry() -> (Telemetry, InMemorySpanExporter) {
        let spans = InMemorySpanExporter::default();
        let t = Telemetry::with_exporters(
            &OtelOptions::new(),
            &env(),
            spans.clone(),
            InMemoryMetricExporter::default(),
        );
        (t, spans)
    }

    /// An inner service that records one SDK-style metric through the config's meter,
    /// as the Temporal worker does.
    async fn records_a_metric(inv: Invocation) -> Result<&'static str, BoxError> {
        let meter = inv.config.metrics.clone().ok_or("no meter in the config")?;
        let attrs = meter.new_attributes(NewAttributes::default());
        meter.counter("temporal_test_polls".into()).add(1, &attrs);
        Ok("done")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn one_span_per_invocation_with_faas_attributes_flushed_before_the_answer() {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        let telemetry =
            Telemetry::with_exporters(&OtelOptions::new(), &env(), spans.clone(), metrics.clone());
        let mut stack = ServiceBuilder::new()
            .layer(OtelLayer::with_environment(telemetry.clone(), env()))
            .service(service_fn(records_a_metric));

        let root = format!("1-{:08x}-{:024x}", now_secs(), 7);
        let header = format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1");
        let inv = invocation("req-1", Duration::from_secs(10), Some(header));
        let answer = stack.ready().await.unwrap().call(inv).await.unwrap();
        assert_eq!(answer, "done");
        // Flushed before the answer: already at the exporters.
        let first = spans.get_finished_spans().unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        let span = &first[0];
        assert_eq!(span.name, "orders-fn");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(attr(span, "faas.invocation_id").as_deref(), Some("req-1"));
        assert_eq!(attr(span, "faas.coldstart").as_deref(), Some("true"));
        assert_eq!(attr(span, "faas.trigger").as_deref(), Some("other"));
        assert_eq!(attr(span, "cloud.resource_id").as_deref(), Some(ARN));
        // The Lambda trace is the parent.
        let trace_id = span.span_context.trace_id().to_string();
        assert_eq!(trace_id, root[2..].replace('-', ""));
        assert_eq!(
            span.parent_span_id,
            SpanId::from_hex("53995c3f42cd8ad8").unwrap()
        );
        // (service.name is a resource attribute: the integration test checks it at
        // a real receiver.)
        let exported = metrics.get_finished_metrics().unwrap();
        let names: Vec<_> = exported
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .map(|m| m.name().to_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "temporal_test_polls"),
            "{names:?}"
        );

        // A warm invocation with no trace header: a new trace, in X-Ray format.
        spans.reset();
        let inv = invocation("req-2", Duration::from_secs(10), None);
        stack.ready().await.unwrap().call(inv).await.unwrap();
        let second = spans.get_finished_spans().unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(attr(&second[0], "faas.coldstart").as_deref(), Some("false"));
        assert!(is_xray_trace_id(second[0].span_context.trace_id()));
        assert_eq!(second[0].parent_span_id, SpanId::INVALID);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_unsampled_lambda_trace_is_respected() {
        let (telemetry, spans) = telemetry();
        let header = format!(
            "Root=1-{:08x}-{:024x};Parent=53995c3f42cd8ad8;Sampled=0",
            now_secs(),
            9
        );
        let stack = OtelLayer::with_environment(telemetry.clone(), env())
            .layer(service_fn(records_a_metric));
        stack
            .oneshot(invocation("req-3", Duration::from_secs(10), Some(header)))
            .await
            .unwrap();
        assert!(spans.get_finished_spans().unwrap().is_empty());
    }

    // Each test keeps its `telemetry`: dropping the last clone shuts the provider down,
    // which empties the in-memory exporter.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_invocation_marks_its_span_and_keeps_the_error() {
        let (telemetry, spans) = telemetry();
        let stack = OtelLayer::with_environment(telemetry.clone(), env()).layer(service_fn(
            |_: Invocation| async {
                Err::<(), BoxError>(LambdaWorkerError::MissingTaskQueue.into())
            },
        ));
        let err = stack
            .oneshot(invocation("req-4", Duration::from_secs(10), None))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("task queue"), "{err}");
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(
            attr(span, "error.type").as_deref(),
            Some(LambdaWorkerError::MissingTaskQueue.error_type())
        );
        assert!(
            matches!(&span.status, OtelStatus::Error { description } if description.contains("task queue"))
        );
    }

    /// A collector that takes 3 s to answer (the invocation has 1.5 s).
    #[derive(Debug)]
    struct Stuck;
    impl SpanExporter for Stuck {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stuck_collector_never_pushes_the_answer_past_the_deadline() {
        let options = OtelOptions::new().flush_timeout(Duration::from_secs(5));
        let telemetry =
            Telemetry::with_exporters(&options, &env(), Stuck, InMemoryMetricExporter::default());
        let stack = OtelLayer::with_environment(telemetry.clone(), env())
            .layer(service_fn(records_a_metric));
        let remaining = Duration::from_millis(1500);
        let deadline = std::time::Instant::now() + remaining;
        let answer = stack
            .oneshot(invocation("req-5", remaining, None))
            .await
            .unwrap();
        assert_eq!(answer, "done");
        let slack = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            slack >= Duration::from_millis(100),
            "answered {slack:?} before the deadline"
        );
        // The same flush, called directly, says why and what to change.
        let err = telemetry
            .flush(Instant::now() + Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not finish within"), "{err}");
        assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    }
}
