//! A Lambda Runtime API on loopback.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::{
    net::TcpListener,
    sync::{Notify, oneshot},
};

use crate::http::{Body, read_body, reply, reset, serve};

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
    /// When a `next` call took it.
    pub handed_out: SystemTime,
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
    /// Seeds the X-Ray trace and parent ids (never zero).
    trace_seed: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`, if not the function's ARN.
    invoked_arn: Option<String>,
    /// A header left out of the `next` answer (a faulty emulator's).
    omit: Option<&'static str>,
}

struct State {
    function_arn: String,
    queue: Mutex<VecDeque<Queued>>,
    queued: Notify,
    in_flight: Mutex<HashMap<String, oneshot::Sender<(SystemTime, Outcome)>>>,
    init_errors: Mutex<Vec<String>>,
    first_next: Mutex<Option<SystemTime>>,
    counter: AtomicU64,
    active_tracing: AtomicBool,
    reset_next: AtomicUsize,
    resets_done: AtomicUsize,
}

/// An invocation queued by [`RuntimeApi::submit`].
pub struct Pending {
    state: Arc<State>,
    request_id: String,
    timeout: Duration,
    reply: oneshot::Receiver<(SystemTime, Outcome)>,
    handed_out: oneshot::Receiver<SystemTime>,
}

impl Pending {
    /// The request id it will be handed out with.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Waits until it was handed out and answered, or until its deadline plus 3 s passed
    /// (then [`Outcome::NoAnswer`], and a late answer is refused as Lambda refuses it).
    pub async fn answer(self) -> Answer {
        let Pending {
            state,
            request_id,
            timeout,
            reply,
            handed_out,
        } = self;
        let handed_at = handed_out
            .await
            .expect("the runtime API keeps the invocation");
        let deadline = UNIX_EPOCH + Duration::from_millis(epoch_ms(handed_at + timeout));
        let wait = (handed_at + timeout + Duration::from_secs(3))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        match tokio::time::timeout(wait, reply).await {
            Ok(Ok((answered_at, outcome))) => Answer {
                request_id,
                handed_out: handed_at,
                deadline,
                answered_at,
                outcome,
            },
            _ => {
                state.in_flight.lock().unwrap().remove(&request_id);
                Answer {
                    request_id,
                    handed_out: handed_at,
                    deadline,
                    answered_at: SystemTime::now(),
                    outcome: Outcome::NoAnswer,
                }
            }
        }
    }
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

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Routes a request to its endpoint: `next`, an invocation's answer, or the init error.
async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, "unknown path");
    };
    if method == Method::GET && rest == "/invocation/next" {
        return next(&state).await;
    }
    if method == Method::POST && rest == "/init/error" {
        let body = read_body(req).await;
        state
            .init_errors
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        return reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#);
    }
    if method == Method::POST
        && let Some(rest) = rest.strip_prefix("/invocation/")
        && let Some((id, kind)) = rest.split_once('/')
    {
        let (id, kind) = (id.to_owned(), kind.to_owned());
        return answer(&state, req, &id, &kind).await;
    }
    reply(StatusCode::NOT_FOUND, "unknown path")
}

/// `GET …/invocation/next`: the next queued invocation, once there is one (or the reset a
/// test asked for).
async fn next(state: &State) -> Response<Body> {
    if state
        .reset_next
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        state.resets_done.fetch_add(1, Ordering::Relaxed);
        return reset();
    }
    state
        .first_next
        .lock()
        .unwrap()
        .get_or_insert_with(SystemTime::now);
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
    let arn = q.invoked_arn.as_deref().unwrap_or(&state.function_arn);
    let sampled = u8::from(state.active_tracing.load(Ordering::Relaxed));
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled={sampled}",
        epoch_ms(deadline) / 1000,
        q.trace_seed,
        q.trace_seed,
    );
    for (name, value) in [
        ("Lambda-Runtime-Aws-Request-Id", q.request_id.clone()),
        ("Lambda-Runtime-Deadline-Ms", epoch_ms(deadline).to_string()),
        ("Lambda-Runtime-Invoked-Function-Arn", arn.to_owned()),
        ("Lambda-Runtime-Trace-Id", trace),
        ("Content-Type", "application/json".to_owned()),
    ] {
        h.insert(name, value.parse().unwrap());
    }
    if let Some(name) = q.omit {
        h.remove(name);
    }
    r
}

/// `POST …/invocation/{id}/response` or `…/error`: the invocation's answer, handed to
/// whoever invoked it.
async fn answer(state: &State, req: Request<Incoming>, id: &str, kind: &str) -> Response<Body> {
    let at = SystemTime::now();
    let body = read_body(req).await;
    let outcome = match kind {
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
        _ => return reply(StatusCode::NOT_FOUND, "unknown path"),
    };
    let Some(tx) = state.in_flight.lock().unwrap().remove(id) else {
        return reply(
            StatusCode::BAD_REQUEST,
            r#"{"errorType":"InvalidRequestID"}"#,
        );
    };
    let _ = tx.send((at, outcome));
    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
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
            first_next: Mutex::default(),
            counter: AtomicU64::new(0),
            active_tracing: AtomicBool::new(false),
            reset_next: AtomicUsize::new(0),
            resets_done: AtomicUsize::new(0),
        });
        let st = state.clone();
        let server = serve(listener, "rapi", move |req| handle(st.clone(), req));
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
    /// plus 3 s (then [`Outcome::NoAnswer`]). Returns when the answer arrived.
    pub async fn invoke(&self, payload: &[u8], timeout: Duration) -> Answer {
        self.submit(payload, timeout).answer().await
    }

    /// Queues an invocation for the next `next` call; its deadline starts when it is
    /// handed out. Await [`Pending::answer`] for the answer.
    pub fn submit(&self, payload: &[u8], timeout: Duration) -> Pending {
        self.queue(payload, timeout, None, None)
    }

    /// [`submit`](Self::submit), handed out without the header `omit` (say
    /// `Lambda-Runtime-Deadline-Ms`), as a faulty emulator would. Without
    /// `Lambda-Runtime-Aws-Request-Id` it cannot be answered: its answer is
    /// [`Outcome::NoAnswer`].
    pub fn submit_without(&self, payload: &[u8], timeout: Duration, omit: &'static str) -> Pending {
        self.queue(payload, timeout, None, Some(omit))
    }

    /// [`submit`](Self::submit), handed out with `invoked_arn` as the invoked function ARN
    /// (as Lambda passes the ARN the caller named: with a qualifier, or without).
    pub fn submit_invoked(&self, payload: &[u8], timeout: Duration, invoked_arn: &str) -> Pending {
        self.queue(payload, timeout, Some(invoked_arn.to_owned()), None)
    }

    fn queue(
        &self,
        payload: &[u8],
        timeout: Duration,
        invoked_arn: Option<String>,
        omit: Option<&'static str>,
    ) -> Pending {
        let n = self.state.counter.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        let (tx, reply) = oneshot::channel();
        let (handed_tx, handed_out) = oneshot::channel();
        self.state.queue.lock().unwrap().push_back(Queued {
            payload: Bytes::copy_from_slice(payload),
            timeout,
            request_id: request_id.clone(),
            reply: tx,
            handed_out: handed_tx,
            trace_seed: (u64::from(std::process::id()) << 20) + n + 1,
            invoked_arn,
            omit,
        });
        self.state.queued.notify_waiters();
        Pending {
            state: self.state.clone(),
            request_id,
            timeout,
            reply,
            handed_out,
        }
    }

    /// Turns Lambda's active tracing on or off: the `Lambda-Runtime-Trace-Id` header of
    /// the invocations handed out next says `Sampled=1` or (the default, as on Lambda
    /// without active tracing) `Sampled=0`.
    pub fn set_active_tracing(&self, on: bool) {
        self.state.active_tracing.store(on, Ordering::Relaxed);
    }

    /// Drops the connection of the next `n` `GET /invocation/next` requests without an
    /// answer (what a bootstrap sees as a connection reset).
    pub fn reset_next_requests(&self, n: usize) {
        self.state.reset_next.store(n, Ordering::Relaxed);
    }

    /// How many `next` requests were reset so far.
    pub fn resets_done(&self) -> usize {
        self.state.resets_done.load(Ordering::Relaxed)
    }

    /// Bodies posted to `init/error`.
    pub fn init_errors(&self) -> Vec<String> {
        self.state.init_errors.lock().unwrap().clone()
    }

    /// Invocations handed out and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.lock().unwrap().len()
    }

    /// Invocations waiting for a `next` call.
    pub fn queued(&self) -> usize {
        self.state.queue.lock().unwrap().len()
    }

    /// When `next` was first called: the bootstrap's init phase is over.
    pub fn first_next_at(&self) -> Option<SystemTime> {
        *self.state.first_next.lock().unwrap()
    }
}
