//! An OTLP/gRPC receiver on 127.0.0.1: the trace and metrics services of the
//! OpenTelemetry collector protocol (`opentelemetry-proto`'s generated tonic servers,
//! served over HTTP/2 by hyper), recording what arrives and when. No collector binary
//! installs here, and the test must see exactly what the exporter sent.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use hyper::{Request, body::Incoming, server::conn::http2, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};
use tower::Service;

/// One span as received.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The span name.
    pub name: String,
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The span id, 16 hex digits.
    pub span_id: String,
    /// The parent span id, 16 hex digits, empty for a root span.
    pub parent_span_id: String,
    /// The resource's `service.name`.
    pub service_name: Option<String>,
    /// The span's attributes, values as strings.
    pub attributes: HashMap<String, String>,
    /// When the export carrying it arrived.
    pub received_at: SystemTime,
}

/// One metric as received.
#[derive(Clone, Debug)]
pub struct ReceivedMetric {
    /// The metric name.
    pub name: String,
    /// The resource's `service.name`.
    pub service_name: Option<String>,
    /// When the export carrying it arrived.
    pub received_at: SystemTime,
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    metrics: Mutex<Vec<ReceivedMetric>>,
    arrived: Notify,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    task: JoinHandle<()>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn service_name(resource: &Option<Resource>) -> Option<String> {
    resource
        .as_ref()
        .and_then(|r| attributes(&r.attributes).remove("service.name"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
struct Sink(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let now = SystemTime::now();
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = service_name(&rs.resource);
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    service_name: service.clone(),
                    attributes: attributes(&span.attributes),
                    received_at: now,
                });
            }
        }
        self.0.spans.lock().unwrap().extend(got);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let now = SystemTime::now();
        let mut got = Vec::new();
        for rm in request.into_inner().resource_metrics {
            let service = service_name(&rm.resource);
            for metric in rm.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                got.push(ReceivedMetric {
                    name: metric.name,
                    service_name: service.clone(),
                    received_at: now,
                });
            }
        }
        self.0.metrics.lock().unwrap().extend(got);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl OtlpReceiver {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let traces = TraceServiceServer::new(Sink(received.clone()));
        let metrics = MetricsServiceServer::new(Sink(received.clone()));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (traces, metrics) = (traces.clone(), metrics.clone());
                let route = service_fn(move |req: Request<Incoming>| {
                    let (mut traces, mut metrics) = (traces.clone(), metrics.clone());
                    async move {
                        let path = req.uri().path();
                        if path.starts_with("/opentelemetry.proto.collector.trace.v1.") {
                            traces.call(req).await
                        } else if path.starts_with("/opentelemetry.proto.collector.metrics.v1.") {
                            metrics.call(req).await
                        } else {
                            Ok::<_, Infallible>(tonic::Status::unimplemented(path).into_http())
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), route)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    /// The metrics received so far.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.received.metrics.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received, or `timeout` passes; returns
    /// whether it held.
    pub async fn wait_for(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&[ReceivedSpan], &[ReceivedMetric]) -> bool,
    ) -> bool {
        let check = || done(&self.spans(), &self.metrics());
        tokio::time::timeout(timeout, async {
            loop {
                let arrived = self.received.arrived.notified();
                if check() {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .is_ok()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
