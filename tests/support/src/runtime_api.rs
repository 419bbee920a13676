//! A Lambda Runtime API on loopback.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header::HeaderValue};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::{
    net::TcpListener,
    sync::{Notify, oneshot},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

const PREFIX: &str = "/2018-06-01/runtime";

/// How an invocation was answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `POST .../{id}/response` with this body.
    Response(serde_json::Value),
    /// `POST .../{id}/error`.
    Error {
        /// `errorType` from the body.
        error_type: String,
        /// `errorMessage` from the body.
        error_message: String,
    },
    /// No answer came before the deadline (plus the given slack).
    NoAnswer,
}

/// One invocation's result.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The request id handed out.
    pub request_id: String,
    /// The deadline given in `Lambda-Runtime-Deadline-Ms`.
    pub deadline: SystemTime,
    /// When the answer arrived.
    pub answered_at: SystemTime,
    /// The answer.
    pub outcome: Outcome,
}

impl Answer {
    /// Time between the answer and the deadline (negative: late).
    pub fn slack(&self) -> f64 {
        match self.deadline.duration_since(self.answered_at) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
    /// The response body, panicking with the error otherwise.
    pub fn response(&self) -> &serde_json::Value {
        match &self.outcome {
            Outcome::Response(v) => v,
            other => panic!("expected a response, got {other:?}"),
        }
    }
    /// The error message, panicking otherwise.
    pub fn error(&self) -> (&str, &str) {
        match &self.outcome {
            Outcome::Error {
                error_type,
                error_message,
            } => (error_type, error_message),
            other => panic!("expected an error answer, got {other:?}"),
        }
    }
}

struct Queued {
    payload: Bytes,
    timeout: Duration,
    request_id: String,
    reply: oneshot::Sender<(SystemTime, Outcome)>,
    handed_out: oneshot::Sender<SystemTime>,
}

struct State {
    function_arn: String,
    queue: Mutex<VecDeque<Queued>>,
    queued: Notify,
    in_flight: Mutex<HashMap<String, oneshot::Sender<(SystemTime, Outcome)>>>,
    init_errors: Mutex<Vec<String>>,
    next_calls: AtomicU64,
    counter: AtomicU64,
}

/// The Runtime API server. Dropping it stops serving.
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);
impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("rapi-{n}"))
            .ok()
            .map(RequestId::new)
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// The whole request body (empty when the connection broke mid-body).
async fn read_body(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(reply(StatusCode::NOT_FOUND, "unknown path"));
    };
    if method == Method::GET && rest == "/invocation/next" {
        state.next_calls.fetch_add(1, Ordering::Relaxed);
        let q = loop {
            let notified = state.queued.notified();
            if let Some(q) = state.queue.lock().unwrap().pop_front() {
                break q;
            }
            notified.await;
        };
        let deadline = SystemTime::now() + q.timeout;
        let _ = q.handed_out.send(SystemTime::now());
        state
            .in_flight
            .lock()
            .unwrap()
            .insert(q.request_id.clone(), q.reply);
        let mut r = reply(StatusCode::OK, q.payload);
        let h = r.headers_mut();
        h.insert(
            "Lambda-Runtime-Aws-Request-Id",
            q.request_id.parse().unwrap(),
        );
        h.insert(
            "Lambda-Runtime-Deadline-Ms",
            epoch_ms(deadline).to_string().parse().unwrap(),
        );
        h.insert(
            "Lambda-Runtime-Invoked-Function-Arn",
            state.function_arn.parse().unwrap(),
        );
        h.insert(
            "Lambda-Runtime-Trace-Id",
            format!(
                "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
                epoch_ms(deadline) / 1000,
                1u8,
                1u8
            )
            .parse()
            .unwrap(),
        );
        h.insert("Content-Type", "application/json".parse().unwrap());
        return Ok(r);
    }
    if method == Method::POST && rest == "/init/error" {
        let body = read_body(req).await;
        state
            .init_errors
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        return Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    if method == Method::POST
        && let Some(rest) = rest.strip_prefix("/invocation/")
        && let Some((id, kind)) = rest.split_once('/')
    {
        let at = SystemTime::now();
        let id = id.to_owned();
        let kind = kind.to_owned();
        let body = read_body(req).await;
        let Some(tx) = state.in_flight.lock().unwrap().remove(&id) else {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                r#"{"errorType":"InvalidRequestID"}"#,
            ));
        };
        let outcome = match kind.as_str() {
            "response" => {
                Outcome::Response(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
            }
            "error" => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                Outcome::Error {
                    error_type: v["errorType"].as_str().unwrap_or_default().to_owned(),
                    error_message: v["errorMessage"].as_str().unwrap_or_default().to_owned(),
                }
            }
            _ => return Ok(reply(StatusCode::NOT_FOUND, "unknown path")),
        };
        let _ = tx.send((at, outcome));
        return Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    Ok(reply(StatusCode::NOT_FOUND, "unknown path"))
}

impl RuntimeApi {
    /// Serves on a free 127.0.0.1 port, for a function with this ARN.
    pub async fn start(function_arn: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            function_arn: function_arn.to_owned(),
            queue: Mutex::default(),
            queued: Notify::new(),
            in_flight: Mutex::default(),
            init_errors: Mutex::default(),
            next_calls: AtomicU64::new(0),
            counter: AtomicU64::new(0),
        });
        let st = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let svc = ServiceBuilder::new()
                    .layer(SetRequestIdLayer::x_request_id(Counter::default()))
                    .layer(PropagateRequestIdLayer::x_request_id())
                    .layer(TraceLayer::new_for_http())
                    .layer(CatchPanicLayer::new())
                    .service_fn(move |req| handle(st.clone(), req));
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Invokes the function with `timeout` and waits for the answer, or for the deadline
    /// plus `slack` (then [`Outcome::NoAnswer`]). Returns when the answer arrived.
    pub async fn invoke(&self, payload: &[u8], timeout: Duration) -> Answer {
        let n = self.state.counter.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        let (tx, rx) = oneshot::channel();
        let (handed_tx, handed_rx) = oneshot::channel();
        self.state.queue.lock().unwrap().push_back(Queued {
            payload: Bytes::copy_from_slice(payload),
            timeout,
            request_id: request_id.clone(),
            reply: tx,
            handed_out: handed_tx,
        });
        self.state.queued.notify_waiters();
        let handed_at = handed_rx
            .await
            .expect("the runtime API keeps the invocation");
        let deadline = UNIX_EPOCH + Duration::from_millis(epoch_ms(handed_at + timeout));
        let wait = (handed_at + timeout + Duration::from_secs(3))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok((answered_at, outcome))) => Answer {
                request_id,
                deadline,
                answered_at,
                outcome,
            },
            _ => Answer {
                request_id,
                deadline,
                answered_at: SystemTime::now(),
                outcome: Outcome::NoAnswer,
            },
        }
    }

    /// Bodies posted to `init/error`.
    pub fn init_errors(&self) -> Vec<String> {
        self.state.init_errors.lock().unwrap().clone()
    }

    /// How many times `next` was called.
    pub fn next_calls(&self) -> u64 {
        self.state.next_calls.load(Ordering::Relaxed)
    }
}
