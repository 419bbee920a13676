//! The HTTP side of the AgentCore host: `GET /ping`, `POST /invocations`, and the
//! sessions an invocation starts in the background.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lambda_runtime::{Diagnostic, LambdaEvent};
use tokio::sync::watch;
use tower::ServiceExt;

use super::environment::AgentCoreEnvironment;
use crate::{
    BoxError, InvocationService, StopSignal,
    lambda::{CatchPanic, Invoke, payload},
};

/// The header AgentCore names the runtime session with.
const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// `/ping`'s state: sessions polling or draining, and when the status last changed.
#[derive(Debug, Default)]
struct Ping {
    sessions: usize,
    /// Unix seconds of the last change of status (`None` before any).
    last_update: Option<u64>,
}

/// One AgentCore container's host: the stack, and the sessions it runs.
pub(crate) struct Host<S> {
    /// Behind a lock only to clone it: a tower service need not be `Sync`.
    stack: Mutex<S>,
    stop: StopSignal,
    env: AgentCoreEnvironment,
    ping: Mutex<Ping>,
    /// Sessions in flight, for SIGTERM's wait.
    in_flight: watch::Sender<usize>,
    /// Why the process must end (the first reason), once a session poisoned it.
    poisoned: watch::Sender<Option<String>>,
    next_session: AtomicU64,
}

impl<S> Host<S>
where
    S: InvocationService,
{
    pub(crate) fn new(stack: S, stop: StopSignal, env: AgentCoreEnvironment) -> Self {
        Self {
            stack: Mutex::new(stack),
            stop,
            env,
            ping: Mutex::default(),
            in_flight: watch::channel(0).0,
            poisoned: watch::channel(None).0,
            next_session: AtomicU64::new(0),
        }
    }

    /// Sessions polling or draining now.
    pub(crate) fn sessions(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Resolves when no session runs.
    pub(crate) async fn idle(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Resolves with the reason once a session poisoned the process and the others ended.
    pub(crate) async fn poisoned(&self) -> String {
        let mut rx = self.poisoned.subscribe();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        };
        self.idle().await;
        why
    }

    /// One request.
    pub(crate) async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body,
        B::Error: std::fmt::Display,
    {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/ping") => self.ping(),
            (&Method::POST, "/invocations") => self.invoke(req).await,
            (method, path) => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": format!("no route for {method} {path}") }),
            ),
        }
    }

    /// `Healthy`, or `HealthyBusy` while a session runs; `time_of_last_update` once the
    /// status has changed, moving only when it changes.
    fn ping(&self) -> Response<Full<Bytes>> {
        let ping = self.ping.lock().unwrap_or_else(|p| p.into_inner());
        let status = if ping.sessions > 0 {
            "HealthyBusy"
        } else {
            "Healthy"
        };
        let mut body = serde_json::json!({ "status": status });
        if let Some(at) = ping.last_update {
            body["time_of_last_update"] = at.into();
        }
        json(StatusCode::OK, body)
    }

    /// Starts a session for the invocation and answers at once.
    async fn invoke<B>(self: Arc<Self>, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body,
        B::Error: std::fmt::Display,
    {
        let session_id = req
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let n = self.next_session.fetch_add(1, Ordering::Relaxed);
                format!("local-{}-{n}", std::process::id())
            });
        let body = match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                let error = format!("the invocation's body could not be read: {e}");
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": error }),
                );
            }
        };
        self.start(session_id.clone(), payload(&body));
        json(
            StatusCode::OK,
            serde_json::json!({ "status": "started", "sessionId": session_id }),
        )
    }

    /// Runs one poll session of the stack in the background.
    fn start(self: &Arc<Self>, session_id: String, payload: serde_json::Value) {
        let mut context = lambda_runtime::Context::default();
        context.request_id = session_id.clone();
        context.invoked_function_arn = self.env.runtime_arn.clone();
        context.deadline = epoch_ms(SystemTime::now() + self.env.session);
        let event = LambdaEvent::new(payload, context);
        let stack = self.stack.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let service = CatchPanic::new(Invoke::new(stack, self.stop.clone(), None));
        self.changed(1);
        let host = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.oneshot(event).await {
                let d = Diagnostic::from(&e);
                tracing::error!(session_id, error_type = %d.error_type, "{}", d.error_message);
                if let Some(why) = e.recycles() {
                    host.poisoned
                        .send_if_modified(|p| p.is_none() && p.replace(why).is_none());
                }
            }
            host.changed(-1);
        });
    }

    /// One session more (`1`) or less (`-1`): `/ping`'s status and its time.
    fn changed(&self, by: isize) {
        let mut ping = self.ping.lock().unwrap_or_else(|p| p.into_inner());
        let was_busy = ping.sessions > 0;
        ping.sessions = ping.sessions.saturating_add_signed(by);
        if was_busy != (ping.sessions > 0) {
            ping.last_update = Some(epoch_ms(SystemTime::now()) / 1000);
        }
        self.in_flight.send_replace(ping.sessions);
    }
}

/// Accepts connections on `listener` and serves each over HTTP/1.1.
pub(crate) async fn accept<S>(
    listener: tokio::net::TcpListener,
    host: Arc<Host<S>>,
) -> Result<(), BoxError>
where
    S: InvocationService,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let host = host.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let host = host.clone();
                async move { Ok::<_, Infallible>(host.handle(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!("an AgentCore connection ended: {e}");
            }
        });
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        Invocation, StaticEnvironment, WorkerStack,
        testing::{self, FakeBackend},
    };

    type Stack = tower::util::BoxCloneService<Invocation, crate::WorkerReport, BoxError>;

    fn host(backend: FakeBackend) -> Arc<Host<Stack>> {
        let env = StaticEnvironment::new()
            .with_var("TEMPORAL_TASK_QUEUE", "tq")
            .with_var("TEMPORAL_IDLE_SHUTDOWN_SECS", "1");
        let stack = WorkerStack::new(
            testing::version("dep", "b1"),
            |_: &mut crate::LambdaWorkerConfig| Ok::<_, BoxError>(()),
        )
        .environment(env)
        .backend(backend)
        .build();
        let stack = Stack::new(stack);
        let agentcore = AgentCoreEnvironment::read(
            &StaticEnvironment::new().with_var(super::super::RUNTIME_ARN_VAR, "arn:runtime/r"),
        )
        .unwrap();
        Arc::new(Host::new(stack, StopSignal::default(), agentcore))
    }

    async fn call(
        host: &Arc<Host<Stack>>,
        req: Request<Full<Bytes>>,
    ) -> (StatusCode, serde_json::Value)
where {
        let r = host.clone().handle(req).await;
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn ping() -> Request<Full<Bytes>> {
        Request::get("/ping").body(Full::default()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_answers_at_once_and_ping_is_busy_until_its_session_ends() {
        let backend = FakeBackend::new();
        let host = host(backend.clone());
        let (status, body) = call(&host, ping()).await;
        assert_eq!(
            (status, &body),
            (StatusCode::OK, &serde_json::json!({"status": "Healthy"}))
        );

        let invoke = Request::post("/invocations")
            .header(SESSION_HEADER, "session-0123456789012345678901234567890")
            .body(Full::new(Bytes::from(
                r#"{"deploymentName":"dep","buildId":"b1"}"#,
            )))
            .unwrap();
        let (status, body) = call(&host, invoke).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["sessionId"], "session-0123456789012345678901234567890");
        let (_, busy) = call(&host, ping()).await;
        assert_eq!(busy["status"], "HealthyBusy");
        let changed_at = busy["time_of_last_update"].clone();
        assert!(changed_at.is_u64(), "{busy}");
        // Asked again while busy: the time does not move.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, again) = call(&host, ping()).await;
        assert_eq!(again["time_of_last_update"], changed_at);

        // The session's worker is the stack's, with the session's identity.
        host.idle().await;
        let (_, done) = call(&host, ping()).await;
        assert_eq!(done["status"], "Healthy");
        let seen = backend.sessions();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].identity.as_deref(),
            Some("session-0123456789012345678901234567890@arn:runtime/r")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_invocations_each_get_their_own_session() {
        let backend = FakeBackend::new();
        let host = host(backend.clone());
        for _ in 0..2 {
            let req = Request::post("/invocations").body(Full::default()).unwrap();
            let (_, body) = call(&host, req).await;
            assert_eq!(body["status"], "started");
        }
        assert_eq!(host.sessions(), 2);
        host.idle().await;
        let ids: Vec<_> = backend
            .sessions()
            .iter()
            .map(|s| s.identity.clone())
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_naming_it() {
        let host = host(FakeBackend::new());
        let req = Request::get("/nope").body(Full::default()).unwrap();
        let (status, body) = call(&host, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no route for GET /nope");
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_for_another_version_starts_no_worker() {
        let backend = FakeBackend::new();
        let host = host(backend.clone());
        let other = Request::post("/invocations")
            .body(Full::new(Bytes::from(
                r#"{"deploymentName":"dep","buildId":"b2"}"#,
            )))
            .unwrap();
        let (status, _) = call(&host, other).await;
        // Answered at once (the Worker Controller waits 5 s at most); the session fails
        // with InvalidVersion in the log, and no worker polls as the wrong version.
        assert_eq!(status, StatusCode::OK);
        host.idle().await;
        assert!(backend.sessions().is_empty());
        let (_, ping) = call(&host, ping()).await;
        assert_eq!(ping["status"], "Healthy");
    }
}
