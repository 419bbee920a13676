//! Span ids and parents: X-Ray-compatible trace ids, replay-safe workflow span ids, and
//! the invocation span as the parent of workflow and activity spans that have none.

use std::{
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use opentelemetry::{
    Context,
    trace::{SpanBuilder, SpanId, TraceContextExt, TraceId, Tracer},
};
use opentelemetry_aws::trace::XrayIdGenerator;
use opentelemetry_sdk::trace::{IdGenerator, SdkTracer, Span};
use temporalio_sdk::opentelemetry::WorkflowIdGenerator;

/// Trace ids in X-Ray format (epoch seconds, then 96 random bits) and span ids from the
/// SDK's [`WorkflowIdGenerator`], so workflow spans keep their ids across replays.
#[derive(Debug, Default)]
pub(crate) struct LambdaIdGenerator {
    xray: XrayIdGenerator,
    workflow: WorkflowIdGenerator,
}

impl IdGenerator for LambdaIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        self.xray.new_trace_id()
    }
    fn new_span_id(&self) -> SpanId {
        self.workflow.new_span_id()
    }
}

/// The tracer given to the SDK's OpenTelemetry plugin: a span whose parent context has
/// no span (a workflow started without trace headers, say) becomes a child of the
/// current invocation's span.
#[derive(Clone, Debug)]
pub(crate) struct InvocationParentTracer {
    inner: SdkTracer,
    current: Arc<RwLock<Option<Context>>>,
}

impl InvocationParentTracer {
    pub(crate) fn new(inner: SdkTracer, current: Arc<RwLock<Option<Context>>>) -> Self {
        Self { inner, current }
    }
    pub(crate) fn inner(&self) -> &SdkTracer {
        &self.inner
    }
    pub(crate) fn current(&self) -> &RwLock<Option<Context>> {
        &self.current
    }
}

impl Tracer for InvocationParentTracer {
    type Span = Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Span {
        if !parent_cx.span().span_context().is_valid() {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if let Some(invocation) = current.as_ref() {
                return self.inner.build_with_context(builder, invocation);
            }
        }
        self.inner.build_with_context(builder, parent_cx)
    }
}

/// Whether `id` has the X-Ray shape: its first 32 bits are a Unix time within a day of
/// now.
pub fn is_xray_trace_id(id: TraceId) -> bool {
    let secs = u64::from(u32::from_be_bytes(id.to_bytes()[..4].try_into().unwrap()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs.abs_diff(now) < 86_400
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    use super::*;

    #[test]
    fn root_spans_get_xray_trace_ids_and_orphans_the_invocation_parent() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_id_generator(LambdaIdGenerator::default())
            .build();
        let current = Arc::new(RwLock::new(None));
        let tracer = InvocationParentTracer::new(provider.tracer("t"), current.clone());

        // No invocation: a root span of its own trace, in X-Ray format.
        let mut alone = tracer.build_with_context(SpanBuilder::from_name("alone"), &Context::new());
        alone.end();
        // During an invocation: an orphan span becomes the invocation's child.
        let mut invocation = tracer.inner().start("invocation");
        let invocation_cx = invocation.span_context().clone();
        *current.write().unwrap() =
            Some(Context::new().with_remote_span_context(invocation_cx.clone()));
        let mut orphan =
            tracer.build_with_context(SpanBuilder::from_name("RunWorkflow:x"), &Context::new());
        orphan.end();
        // A span with a parent of its own keeps it.
        let other = tracer.inner().start("other");
        let other_cx = Context::new().with_remote_span_context(other.span_context().clone());
        let mut child = tracer.build_with_context(SpanBuilder::from_name("child"), &other_cx);
        child.end();
        invocation.end();

        let spans = exporter.get_finished_spans().unwrap();
        let span = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        assert!(is_xray_trace_id(span("alone").span_context.trace_id()));
        assert!(!span("alone").parent_span_id.eq(&invocation_cx.span_id()));
        assert_eq!(
            span("RunWorkflow:x").parent_span_id,
            invocation_cx.span_id()
        );
        assert_eq!(
            span("RunWorkflow:x").span_context.trace_id(),
            invocation_cx.trace_id()
        );
        assert_eq!(span("child").parent_span_id, other.span_context().span_id());
    }

    #[test]
    fn random_trace_ids_are_not_taken_for_xray_ones() {
        assert!(!is_xray_trace_id(TraceId::from(u128::MAX - 7)));
    }
}
