//! Serving a stack through `lambda_runtime`.
//!
//! Three small adapters sit between the Lambda Runtime API client and the stack:
//! - [`AcceptAnyPayloadLayer`] (raw): Temporal's Worker Controller invokes the function
//!   asynchronously with an *empty* payload, which `lambda_runtime` would reject before
//!   any handler runs. Any body that is not JSON is handed on as a JSON string (empty → `null`).
//! - [`InvocationHandler`]: turns a `LambdaEvent` into an [`Invocation`] and a failure
//!   into a `Diagnostic` with an actionable message.
//! - [`RecycleLayer`] (raw, outermost): after an error that leaves a worker running in
//!   an unknown state has been *answered*, it ends the run loop so the process exits and
//!   Lambda starts a fresh one for the next invocation.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use futures_util::future::BoxFuture;
use lambda_runtime::{Diagnostic, LambdaEvent, LambdaInvocation, Runtime};
use lambda_runtime_api_client::{PooledClient, build_request};
use serde::Serialize;
use tokio::sync::watch;
use tower::{Layer, Service};

use crate::{
    BoxError, Environment, Invocation, LambdaWorkerError, ProcessEnvironment, StopSignal,
    rules::LOCAL_TIMEOUT_VAR, rules::deadline::normalize_deadline,
};

/// Shared between the handler and [`RecycleLayer`]: why the process must be recycled.
#[derive(Clone, Debug, Default)]
pub struct RecycleSignal(Arc<Mutex<Option<String>>>);

impl RecycleSignal {
    fn set(&self, why: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Adapts a stack of `Service<Invocation>` to `lambda_runtime`'s handler.
#[derive(Clone, Debug)]
pub struct InvocationHandler<S> {
    inner: S,
    recycle: RecycleSignal,
    stop: StopSignal,
}

impl<S> InvocationHandler<S> {
    /// Wraps `inner`, reporting process-poisoning errors to `recycle`; every invocation
    /// carries `stop`.
    pub fn new(inner: S, recycle: RecycleSignal, stop: StopSignal) -> Self {
        Self {
            inner,
            recycle,
            stop,
        }
    }
}

/// The `Diagnostic` reported for an error from the stack.
pub fn diagnostic(error: &BoxError) -> Diagnostic {
    let error_type = match error.downcast_ref::<LambdaWorkerError>() {
        Some(e) => e.error_type(),
        None => "TemporalLambdaWorker.Error",
    };
    Diagnostic {
        error_type: error_type.to_owned(),
        error_message: error.to_string(),
    }
}

impl<S> Service<LambdaEvent<serde_json::Value>> for InvocationHandler<S>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
{
    type Response = S::Response;
    type Error = Diagnostic;
    type Future = BoxFuture<'static, Result<S::Response, Diagnostic>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|e| diagnostic(&e))
    }

    fn call(&mut self, event: LambdaEvent<serde_json::Value>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let recycle = self.recycle.clone();
        let request_id = event.context.request_id.clone();
        let stop = self.stop.clone();
        let mut context = event.context;
        let local_timeout = ProcessEnvironment.var(LOCAL_TIMEOUT_VAR);
        let deadline =
            normalize_deadline(&mut context, local_timeout.as_deref(), SystemTime::now());
        Box::pin(async move {
            if let Ok(Some(timeout)) = deadline {
                tracing::info!(
                    request_id,
                    "the Runtime API's deadline is not real (a local emulator): polling as \
                     if the timeout were {:.1}s ({LOCAL_TIMEOUT_VAR})",
                    timeout.as_secs_f64()
                );
            }
            let mut inv = Invocation::new(event.payload, context);
            inv.stop = stop;
            let called = match deadline {
                Err(e) => Err(e.into()),
                Ok(_) => inner.call(inv).await,
            };
            called.map_err(|error: BoxError| {
                let d = diagnostic(&error);
                tracing::error!(request_id, error_type = %d.error_type, "{}", d.error_message);
                if error
                    .downcast_ref::<LambdaWorkerError>()
                    .is_some_and(LambdaWorkerError::recycles_process)
                {
                    recycle.set(d.error_message.clone());
                }
                d
            })
        })
    }
}

/// Raw layer: any invocation body becomes valid JSON (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAnyPayloadLayer;

impl<S> Layer<S> for AcceptAnyPayloadLayer {
    type Service = AcceptAnyPayload<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AcceptAnyPayload { inner }
    }
}

/// The service made by [`AcceptAnyPayloadLayer`].
#[derive(Clone, Debug)]
pub struct AcceptAnyPayload<S> {
    inner: S,
}

/// The JSON the handler sees for a raw body.
pub fn normalize_payload(body: &[u8]) -> Option<Vec<u8>> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return None;
    }
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
    };
    Some(serde_json::to_vec(&value).expect("a JSON value serializes"))
}

impl<S> Service<LambdaInvocation> for AcceptAnyPayload<S>
where
    S: Service<LambdaInvocation, Response = (), Error = BoxError>,
{
    type Response = ();
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: LambdaInvocation) -> Self::Future {
        if let Some(json) = normalize_payload(&req.body) {
            req.body = json.into();
        }
        self.inner.call(req)
    }
}

/// Raw, outermost layer: ends the run loop after a process-poisoning error was answered,
/// and counts the invocations in flight and served (for SIGTERM and the retry of a
/// failed `next`).
#[derive(Clone, Debug)]
pub struct RecycleLayer {
    signal: RecycleSignal,
    counts: LoopCounts,
}

impl<S> Layer<S> for RecycleLayer {
    type Service = Recycle<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Recycle {
            inner,
            signal: self.signal.clone(),
            counts: self.counts.clone(),
        }
    }
}

/// The service made by [`RecycleLayer`].
#[derive(Clone, Debug)]
pub struct Recycle<S> {
    inner: S,
    signal: RecycleSignal,
    counts: LoopCounts,
}

/// The error that ends the run loop so the process is recycled.
#[derive(Debug)]
struct Recycling(String);

impl std::fmt::Display for Recycling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exiting so Lambda starts a fresh process (the invocation was answered): {}",
            self.0
        )
    }
}

impl std::error::Error for Recycling {}

/// Invocations in flight (0 or 1) and answered, shared by the loop's layers and `serve`.
#[derive(Clone, Debug)]
struct LoopCounts {
    in_flight: Arc<watch::Sender<usize>>,
    served: Arc<AtomicU64>,
}

impl Default for LoopCounts {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(watch::channel(0).0),
            served: Arc::default(),
        }
    }
}

impl LoopCounts {
    fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }
    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    /// Resolves when no invocation is in flight.
    async fn idle(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Counts one invocation in flight until dropped.
struct InFlight(LoopCounts);

impl InFlight {
    fn new(counts: &LoopCounts) -> Self {
        counts.in_flight.send_modify(|n| *n += 1);
        Self(counts.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
        self.0.served.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S> Service<LambdaInvocation> for Recycle<S>
where
    S: Service<LambdaInvocation, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: LambdaInvocation) -> Self::Future {
        let in_flight = InFlight::new(&self.counts);
        let fut = self.inner.call(req);
        let signal = self.signal.clone();
        Box::pin(async move {
            let answered = fut.await;
            drop(in_flight);
            answered?;
            match signal.take() {
                Some(why) => Err(Recycling(why).into()),
                None => Ok(()),
            }
        })
    }
}

/// The variables `lambda_runtime` reads at start (it panics on a missing one); Lambda
/// sets them all.
const LAMBDA_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Checks the Lambda environment before `lambda_runtime` reads it: the message names the
/// variable that is missing or invalid.
pub(crate) fn check_lambda_environment(env: &dyn Environment) -> Result<(), String> {
    for name in LAMBDA_VARIABLES {
        let value = env.var(name).unwrap_or_default();
        let problem = if value.trim().is_empty() {
            "is not set".to_owned()
        } else if name == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" && value.parse::<i32>().is_err() {
            format!("is {value:?}, not a number of megabytes")
        } else if name == "AWS_LAMBDA_RUNTIME_API"
            && format!("http://{value}").parse::<http::Uri>().is_err()
        {
            format!("is {value:?}, not a host:port")
        } else {
            continue;
        };
        return Err(format!(
            "the Lambda environment is broken: {name} {problem}. Lambda sets {} for every \
             function; outside Lambda (an emulator, a test) set them yourself",
            LAMBDA_VARIABLES.join(", ")
        ));
    }
    Ok(())
}

/// Posts `/runtime/init/error` (when the Runtime API's address is known); a failure to
/// report is logged, never panics.
async fn report_init_error(env: &dyn Environment, message: &str) {
    let Some(uri) = env
        .var("AWS_LAMBDA_RUNTIME_API")
        .and_then(|a| format!("http://{a}").parse::<http::Uri>().ok())
    else {
        return;
    };
    let client = PooledClient::builder().with_endpoint(uri).build();
    let body = serde_json::to_vec(&Diagnostic {
        error_type: INIT_ERROR_TYPE.to_owned(),
        error_message: message.to_owned(),
    })
    .expect("a diagnostic serializes");
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(body.into());
    let sent = match request {
        Ok(r) => tokio::time::timeout(Duration::from_secs(2), client.call(r))
            .await
            .map_err(|_| "no answer within 2s".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        tracing::warn!("could not report the init error to the Lambda Runtime API: {e}");
    }
}

/// The `errorType` of an init error about the Lambda environment.
pub(crate) const INIT_ERROR_TYPE: &str = "TemporalLambdaWorker.InvalidLambdaEnvironment";
/// How many times in a row a failed Runtime API request (`next`) is retried.
const RUNTIME_API_RETRIES: u32 = 3;
/// The first retry's delay; doubled for each further one.
const RUNTIME_API_BACKOFF: Duration = Duration::from_millis(100);
/// After SIGTERM, how long an invocation in flight may take to answer (Lambda gives the
/// process 300–500 ms before it kills it).
const SIGTERM_ANSWER_WITHIN: Duration = Duration::from_millis(300);

/// Serves `stack` on the Lambda Runtime API at `AWS_LAMBDA_RUNTIME_API`.
///
/// - A missing or invalid Lambda variable (`AWS_LAMBDA_RUNTIME_API`,
///   `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_VERSION`,
///   `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) is reported to `/runtime/init/error` with a
///   message naming it, and returned as the error (no panic).
/// - A failed Runtime API request is retried up to 3 times in a row (100, 200, 400 ms
///   apart, one warning each) before the error is returned.
/// - SIGTERM (or SIGINT) logs one line, makes a polling worker begin its graceful
///   shutdown, gives the invocation in flight up to 300 ms to answer, and returns `Ok`.
/// - After a process-poisoning error was answered, returns that error.
///
/// Return its result from `main`, so the process exits (non-zero on an error).
pub async fn serve<S>(stack: S) -> Result<(), BoxError>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    if let Err(message) = check_lambda_environment(&ProcessEnvironment) {
        tracing::error!("{message}");
        report_init_error(&ProcessEnvironment, &message).await;
        return Err(message.into());
    }
    let (trigger, stop) = StopSignal::new();
    let counts = LoopCounts::default();
    let run = run_loop(stack, stop, counts.clone());
    tokio::pin!(run);
    let signal = stop_requested();
    tokio::select! {
        result = &mut run => result,
        name = signal => {
            let in_flight = counts.in_flight();
            tracing::info!(
                signal = name,
                in_flight,
                "{name}: the execution environment is shutting down; stopping"
            );
            trigger.stop();
            if in_flight > 0 {
                let answered = tokio::time::timeout(SIGTERM_ANSWER_WITHIN, async {
                    tokio::select! {
                        _ = &mut run => {}
                        () = counts.idle() => {}
                    }
                })
                .await;
                if answered.is_err() {
                    tracing::warn!(
                        "the invocation in flight had not answered {}ms after {name}",
                        SIGTERM_ANSWER_WITHIN.as_millis()
                    );
                }
            }
            Ok(())
        }
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT; never where they cannot be
/// watched.
async fn stop_requested() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending().await
}

/// `lambda_runtime`'s loop, started again after a failed Runtime API request.
async fn run_loop<S>(stack: S, stop: StopSignal, counts: LoopCounts) -> Result<(), BoxError>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    let recycle = RecycleSignal::default();
    let mut failures = 0;
    let mut served_before = counts.served();
    loop {
        let layer = RecycleLayer {
            signal: recycle.clone(),
            counts: counts.clone(),
        };
        let result = Runtime::new(InvocationHandler::new(
            stack.clone(),
            recycle.clone(),
            stop.clone(),
        ))
        .layer(AcceptAnyPayloadLayer)
        .layer(layer)
        .run()
        .await;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is::<Recycling>() => return Err(e),
            Err(e) => e,
        };
        if counts.served() != served_before {
            // It served since the last failure: a new run of failures.
            failures = 0;
            served_before = counts.served();
        }
        failures += 1;
        if failures > RUNTIME_API_RETRIES {
            return Err(format!(
                "the Lambda Runtime API failed {failures} times in a row; exiting so Lambda \
                 starts a fresh process: {error}"
            )
            .into());
        }
        let delay = RUNTIME_API_BACKOFF * 2u32.pow(failures - 1);
        tracing::warn!(
            attempt = failures,
            retries = RUNTIME_API_RETRIES,
            "a Lambda Runtime API request failed ({error}); retrying in {}ms",
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_body_becomes_json() {
        assert_eq!(normalize_payload(b"{}"), None);
        assert_eq!(normalize_payload(b"[1, 2]"), None);
        assert_eq!(normalize_payload(b"null"), None);
        assert_eq!(normalize_payload(b"").unwrap(), b"null");
        assert_eq!(normalize_payload(b"  \n").unwrap(), b"null");
        assert_eq!(normalize_payload(b"hello").unwrap(), b"\"hello\"");
        assert_eq!(normalize_payload(b"{broken").unwrap(), b"\"{broken\"");
    }

    #[test]
    fn diagnostics_carry_the_error_type_and_message() {
        let e: BoxError = LambdaWorkerError::MissingTaskQueue.into();
        let d = diagnostic(&e);
        assert_eq!(d.error_type, "TemporalLambdaWorker.MissingTaskQueue");
        assert!(d.error_message.contains("TEMPORAL_TASK_QUEUE"));
        let other: BoxError = "custom layer said no".into();
        assert_eq!(diagnostic(&other).error_type, "TemporalLambdaWorker.Error");
    }

    fn lambda_env() -> crate::StaticEnvironment {
        crate::StaticEnvironment::new()
            .with_var("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
            .with_var("AWS_LAMBDA_FUNCTION_NAME", "f")
            .with_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .with_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    }

    #[test]
    fn the_lambda_environment_check_names_the_broken_variable() {
        assert_eq!(check_lambda_environment(&lambda_env()), Ok(()));
        for name in LAMBDA_VARIABLES {
            let env = lambda_env().with_var(name, "");
            let e = check_lambda_environment(&env).unwrap_err();
            assert!(e.contains(&format!("{name} is not set")), "{e}");
        }
        let e = check_lambda_environment(
            &lambda_env().with_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots"),
        )
        .unwrap_err();
        assert!(
            e.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is \"lots\", not a number"),
            "{e}"
        );
        let e = check_lambda_environment(&lambda_env().with_var("AWS_LAMBDA_RUNTIME_API", "a b"))
            .unwrap_err();
        assert!(e.contains("AWS_LAMBDA_RUNTIME_API is \"a b\""), "{e}");
    }
}
