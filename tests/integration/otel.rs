//! The `otel` bootstrap against a real OTLP/gRPC receiver: the invocation span, the
//! SDK's workflow and activity spans and its worker metrics all arrive before the
//! invocation answers; with the receiver down the invocation still answers in time.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::TraceId;
use temporal_lambda_worker::otel::is_xray_trace_id;

use temporal_lambda_local::{Answer, Bootstrap, DevServer, OtlpReceiver, ReceivedSpan, RuntimeApi};

use crate::{ARN, TempDir, example_binary};

fn arrived_before(span_or_metric_at: SystemTime, answer: &Answer) -> bool {
    span_or_metric_at <= answer.answered_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_worker_metrics_reach_the_collector_before_the_answer() {
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    api.set_active_tracing(true);
    let receiver = OtlpReceiver::start().await.unwrap();
    let root = TempDir::new("otel");
    let endpoint = receiver.endpoint();
    let _bootstrap = Bootstrap::start(
        &example_binary("otel"),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "tq-otel"),
            ("HELLO_DEPLOYMENT_NAME", "dep-otel"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "hello-otel"),
        ],
    )
    .unwrap();
    server
        .register_version(&api, "dep-otel", "build-1")
        .await
        .unwrap();

    let (answer, result) = tokio::join!(
        api.invoke(b"", Duration::from_secs(15)),
        server.execute_hello("tq-otel", "wf-otel", "OTel")
    );
    assert!(result.unwrap().contains("Hello, OTel!"));
    answer.response();
    assert!(answer.slack() > 0.0, "answered after the deadline");

    let spans = receiver.spans();
    let invocation = spans
        .iter()
        .find(|s| s.attributes.get("faas.invocation_id") == Some(&answer.request_id))
        .unwrap_or_else(|| panic!("no span for {}: {spans:#?}", answer.request_id));
    assert_eq!(invocation.name, "hello");
    assert_eq!(invocation.attributes["faas.trigger"], "other");
    assert_eq!(invocation.attributes["faas.coldstart"], "false");
    assert_eq!(invocation.attributes["cloud.resource_id"], ARN);
    let trace_id = TraceId::from_hex(&invocation.trace_id).unwrap();
    assert!(is_xray_trace_id(trace_id), "{}", invocation.trace_id);
    assert!(
        !invocation.parent_span_id.is_empty(),
        "the Lambda trace header's Parent was not used"
    );
    let in_trace = |name: &str| -> &ReceivedSpan {
        spans
            .iter()
            .find(|s| s.name.starts_with(name) && s.trace_id == invocation.trace_id)
            .unwrap_or_else(|| panic!("no {name} in the invocation's trace: {spans:#?}"))
    };
    let workflow = in_trace("RunWorkflow:HelloWorkflow");
    // The SDK's interceptors are added once per invocation (by the OtelLayer), not twice.
    let runs = spans
        .iter()
        .filter(|s| s.name == workflow.name && s.trace_id == invocation.trace_id)
        .count();
    assert_eq!(runs, 1, "{spans:#?}");
    assert_eq!(workflow.parent_span_id, invocation.span_id);
    assert_eq!(workflow.attributes["temporalWorkflowID"], "wf-otel");
    let activity = in_trace("RunActivity:GreetingActivities::greet");
    assert_eq!(activity.attributes["temporalWorkflowID"], "wf-otel");
    // The application's own `tracing` span, through the bridge, under the activity.
    let own = in_trace("compose_greeting");
    assert_eq!(own.parent_span_id, activity.span_id);
    // Nothing of the exporter's transport or the runtimes' internals.
    let internal: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.attributes.get("code.module.name").is_some_and(|m| {
                [
                    "h2",
                    "hyper",
                    "tonic",
                    "tower",
                    "lambda_runtime",
                    "temporalio_sdk_core",
                ]
                .iter()
                .any(|t| m.starts_with(t))
            })
        })
        .map(|s| (&s.name, &s.attributes["code.module.name"]))
        .collect();
    assert!(internal.is_empty(), "{internal:?}");
    for span in [invocation, workflow, activity, own] {
        assert_eq!(span.service_name.as_deref(), Some("hello-otel"));
        assert!(
            arrived_before(span.received_at, &answer),
            "{} arrived after the answer",
            span.name
        );
    }

    let metrics = receiver.metrics();
    let worker_metric = metrics
        .iter()
        .filter(|m| arrived_before(m.received_at, &answer))
        .find(|m| m.name.starts_with("temporal_") && m.name.contains("poll"))
        .unwrap_or_else(|| panic!("no temporal_*poll* metric before the answer: {metrics:#?}"));
    assert_eq!(worker_metric.service_name.as_deref(), Some("hello-otel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_the_invocation_answers_in_time_with_one_warning() {
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    api.set_active_tracing(true);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let root = TempDir::new("otel-down");
    let log = root.path().join("bootstrap.log");
    let _bootstrap = Bootstrap::start_logging_to(
        &example_binary("otel"),
        &api.address(),
        "hello",
        root.path(),
        &[
            ("TEMPORAL_ADDRESS", &server.address),
            ("TEMPORAL_TASK_QUEUE", "tq-otel-down"),
            ("HELLO_DEPLOYMENT_NAME", "dep-otel-down"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        &log,
    )
    .unwrap();

    let answer = api.invoke(b"", Duration::from_secs(10)).await;
    answer.response();
    assert!(
        answer.slack() > 0.0,
        "answered {:.3}s after the deadline",
        -answer.slack()
    );
    let log = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<_> = log
        .lines()
        .filter(|l| l.contains("OpenTelemetry flush"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains(&endpoint), "{}", warnings[0]);
    assert!(
        warnings[0].contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{}",
        warnings[0]
    );
}
