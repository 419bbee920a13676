//! Serving a stack on the Lambda Runtime API.
//!
//! The loop (`run_loop`) asks `next` for an invocation ([`crate::runtime_api`]), hands it
//! to the stack through [`InvocationHandler`] and posts the answer, one at a time; with
//! `AWS_LAMBDA_MAX_CONCURRENCY=N` (a Lambda Managed Instance) `N` such loops run at once
//! (`run_loops`), sharing the stack, the stop signal and the recycle decision:
//! - any body is accepted: Temporal's Worker Controller invokes the function with an
//!   *empty* payload, and a body that is not JSON is handed on as a JSON string (empty →
//!   `null`);
//! - [`InvocationHandler`] turns the event into an [`Invocation`] and a failure into a
//!   `Diagnostic` with an actionable message;
//! - after an error that leaves a worker running in an unknown state (or a panic in the
//!   stack) has been *answered*, the loop ends so the process exits and Lambda starts a
//!   fresh one for the next invocation.

use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use futures_util::{FutureExt, future::BoxFuture};
use lambda_runtime::{Context as LambdaContext, Diagnostic, LambdaEvent};
use lambda_runtime_api_client::{PooledClient, build_request};
use serde::Serialize;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use crate::{
    BoxError, Environment, Invocation, LambdaWorkerError, ProcessEnvironment, StopSignal,
    rules::LOCAL_TIMEOUT_VAR,
    rules::deadline::normalize_deadline,
    rules::error::panic_message,
    runtime_api::{INVALID_INVOCATION, Next, RuntimeApi, runtime_api_uri},
};

/// Shared by the handlers of every loop: why the process must be recycled (the first
/// reason given).
#[derive(Clone, Debug, Default)]
pub(crate) struct RecycleSignal(Arc<Mutex<Option<String>>>);

impl RecycleSignal {
    fn set(&self, why: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Adapts a stack of `Service<Invocation>` to `lambda_runtime`'s handler.
#[derive(Clone, Debug)]
pub(crate) struct InvocationHandler<S> {
    inner: S,
    recycle: RecycleSignal,
    stop: StopSignal,
}

impl<S> InvocationHandler<S> {
    /// Wraps `inner`, reporting process-poisoning errors to `recycle`; every invocation
    /// carries `stop`.
    pub(crate) fn new(inner: S, recycle: RecycleSignal, stop: StopSignal) -> Self {
        Self {
            inner,
            recycle,
            stop,
        }
    }
}

/// The `Diagnostic` reported for an error from the stack.
pub(crate) fn diagnostic(error: &BoxError) -> Diagnostic {
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

/// The JSON the handler sees for a raw body.
pub(crate) fn normalize_payload(body: &[u8]) -> Option<Vec<u8>> {
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

/// The error `serve` ends with: the process must exit. Its `Debug` is its message, so
/// the `Error: …` line Rust prints when `main` returns it reads as words, not as a struct.
struct ProcessExit(String);

impl ProcessExit {
    /// After a process-poisoning error was answered.
    fn recycling(why: &str) -> Self {
        Self(format!(
            "exiting so Lambda starts a fresh process (the invocation was answered): {why}"
        ))
    }
}

impl std::fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProcessExit {}

/// Invocations in flight (at most one per loop), shared by the loops and `serve` (for
/// SIGTERM).
#[derive(Clone, Debug)]
struct LoopCounts {
    in_flight: Arc<watch::Sender<usize>>,
}

impl Default for LoopCounts {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(watch::channel(0).0),
        }
    }
}

impl LoopCounts {
    fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
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

/// How many invocations one execution environment of a Lambda Managed Instance takes at
/// once; unset on Lambda's default (one invocation at a time per environment).
pub(crate) const MAX_CONCURRENCY_VAR: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// How many invocations to serve at once: [`MAX_CONCURRENCY_VAR`], 1 when it is unset or
/// at most 1 (as `lambda_runtime` does). A value that is not a whole number is an error
/// naming it.
pub(crate) fn max_concurrency(env: &dyn Environment) -> Result<usize, String> {
    let Some(value) = env.var(MAX_CONCURRENCY_VAR) else {
        return Ok(1);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(1);
    }
    match value.parse::<u32>() {
        Ok(n) => Ok(usize::try_from(n.max(1)).unwrap_or(usize::MAX)),
        Err(_) => Err(format!(
            "the Lambda environment is broken: {MAX_CONCURRENCY_VAR} is {value:?}, not a \
             whole number of invocations. Lambda sets it for a function on a capacity \
             provider (Lambda Managed Instances); unset it, or set a number, elsewhere"
        )),
    }
}

/// Checks the Lambda environment before `lambda_runtime` reads it: the message names the
/// variable that is missing or invalid.
pub(crate) fn check_lambda_environment(env: &dyn Environment) -> Result<(), String> {
    max_concurrency(env)?;
    for name in LAMBDA_VARIABLES {
        let value = env.var(name).unwrap_or_default();
        let problem = if value.trim().is_empty() {
            "is not set".to_owned()
        } else if name == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" && value.parse::<i32>().is_err() {
            format!("is {value:?}, not a number of megabytes")
        } else if name == "AWS_LAMBDA_RUNTIME_API" && runtime_api_uri(&value).is_err() {
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
        .and_then(|a| runtime_api_uri(&a).ok())
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
/// - One invocation at a time; on a Lambda Managed Instance, up to
///   `AWS_LAMBDA_MAX_CONCURRENCY` at once (that many loops of `next` → the stack → the
///   answer, each invocation with its own worker, deadline and summary line).
/// - A missing or invalid Lambda variable (`AWS_LAMBDA_RUNTIME_API`,
///   `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_VERSION`,
///   `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) is reported to `/runtime/init/error` with a
///   message naming it, and returned as the error (no panic).
/// - A failed Runtime API request is retried up to 3 times in a row (100, 200, 400 ms
///   apart, one warning each) before the error is returned.
/// - SIGTERM (or SIGINT) logs one line, makes every polling worker begin its graceful
///   shutdown, gives the invocations in flight up to 300 ms to answer, and returns `Ok`.
/// - After a process-poisoning error was answered, takes no further invocation, lets the
///   others in flight finish and answer, and returns that error.
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
        return Err(ProcessExit(message).into());
    }
    let loops = max_concurrency(&ProcessEnvironment).map_err(ProcessExit)?;
    if loops > 1 {
        tracing::info!(
            loops,
            "{MAX_CONCURRENCY_VAR}={loops}: serving up to {loops} invocations at once"
        );
    }
    let (trigger, stop) = StopSignal::new();
    let counts = LoopCounts::default();
    let run = run_loops(stack, stop, counts.clone(), loops);
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
                    let in_flight = counts.in_flight();
                    tracing::warn!(
                        in_flight,
                        "{} had not answered {}ms after {name}",
                        match in_flight {
                            1 => "the invocation in flight".to_owned(),
                            n => format!("{n} invocations in flight"),
                        },
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

/// Serves invocations in `loops` loops at once until the process must end. The first loop
/// to end closes the others: each answers the invocation it holds, then stops; one waiting
/// in `next` stops waiting. After a recycling error the result is that error, else the
/// first loop's error.
async fn run_loops<S>(
    stack: S,
    stop: StopSignal,
    counts: LoopCounts,
    loops: usize,
) -> Result<(), BoxError>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    let api = RuntimeApi::from_env(&ProcessEnvironment).map_err(|e| {
        ProcessExit(format!(
            "the Lambda Runtime API client could not be made: {}",
            crate::temporal::causes(e.as_ref())
        ))
    })?;
    let recycle = RecycleSignal::default();
    // Set once a loop ends (the process is recycled, or the Runtime API kept failing): the
    // other loops take no further invocation, and one waiting in `next` stops waiting.
    let (close, closing) = StopSignal::new();
    let runs = (0..loops).map(|_| {
        let handler = InvocationHandler::new(stack.clone(), recycle.clone(), stop.clone());
        async {
            let ended = run_loop(&api, handler, &counts, &closing).await;
            close.stop();
            ended
        }
    });
    let ended = futures_util::future::join_all(runs).await;
    if let Some(why) = recycle.get() {
        return Err(ProcessExit::recycling(&why).into());
    }
    ended.into_iter().find(Result::is_err).unwrap_or(Ok(()))
}

/// One loop: `next`, the stack, the answer, until the process is recycled or `closing` is
/// set. A failed Runtime API request is retried (see [`serve`]); a run of failures ends
/// with the first invocation served.
async fn run_loop<S>(
    api: &RuntimeApi,
    mut handler: InvocationHandler<S>,
    counts: &LoopCounts,
    closing: &StopSignal,
) -> Result<(), BoxError>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    let mut failures = 0;
    loop {
        let served = tokio::select! {
            biased;
            () = closing.stopped() => return Ok(()),
            served = api.next() => served,
        };
        let served = match served {
            Ok(next) => serve_next(api, next, &mut handler, counts).await,
            Err(e) => Err(e),
        };
        match served {
            Ok(()) => failures = 0,
            Err(error) => {
                // The error and its causes ("client error (Connect): tcp connect error: …").
                let error = crate::temporal::causes(error.as_ref());
                failures += 1;
                if failures > RUNTIME_API_RETRIES {
                    return Err(ProcessExit(format!(
                        "the Lambda Runtime API failed {failures} times in a row; exiting so \
                         Lambda starts a fresh process: {error}"
                    ))
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
        if handler.recycle.get().is_some() || closing.is_stopped() {
            return Ok(());
        }
    }
}

/// One invocation `next` handed out: the stack's answer (or the error of an invocation
/// whose headers could not be read), posted.
async fn serve_next<S>(
    api: &RuntimeApi,
    next: Next,
    handler: &mut InvocationHandler<S>,
    counts: &LoopCounts,
) -> Result<(), BoxError>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    let _in_flight = InFlight::new(counts);
    let answer = match &next.context {
        Ok(context) => handler.answer(&next, context.clone()).await,
        Err(message) => {
            tracing::error!(
                request_id = next.request_id,
                error_type = INVALID_INVOCATION,
                "{message}"
            );
            Err(Diagnostic {
                error_type: INVALID_INVOCATION.to_owned(),
                error_message: message.clone(),
            })
        }
    };
    api.answer(&next, answer).await
}

impl<S> InvocationHandler<S>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    /// Runs the stack for `next` and serializes its answer. A panic in the stack is
    /// answered as an error and recycles the process: the worker's state is unknown.
    async fn answer(&mut self, next: &Next, context: LambdaContext) -> Result<Vec<u8>, Diagnostic> {
        let body = normalize_payload(&next.body);
        let payload = serde_json::from_slice(body.as_deref().unwrap_or(&next.body))
            .expect("normalize_payload makes any body JSON");
        let event = LambdaEvent::new(payload, context);
        let called = async { self.ready().await?.call(event).await };
        let response = match std::panic::AssertUnwindSafe(called).catch_unwind().await {
            Ok(response) => response?,
            Err(panic) => {
                let message = format!(
                    "the stack panicked: {}; exiting so Lambda starts a fresh process",
                    panic_message(panic.as_ref())
                );
                tracing::error!(request_id = next.request_id, "{message}");
                self.recycle.set(message.clone());
                return Err(Diagnostic {
                    error_type: PANIC_ERROR_TYPE.to_owned(),
                    error_message: message,
                });
            }
        };
        serde_json::to_vec(&response).map_err(|e| Diagnostic {
            error_type: "TemporalLambdaWorker.Error".to_owned(),
            error_message: format!("the stack's response does not serialize to JSON: {e}"),
        })
    }
}

/// The `errorType` of an invocation whose stack panicked.
const PANIC_ERROR_TYPE: &str = "TemporalLambdaWorker.Panic";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_error_prints_its_message_as_debug_for_main() {
        // `main` returning the error prints `Error: {:?}`.
        let e: BoxError = ProcessExit::recycling("the worker did not drain").into();
        assert_eq!(
            format!("{e:?}"),
            "exiting so Lambda starts a fresh process (the invocation was answered): the \
             worker did not drain"
        );
        assert_eq!(format!("{e:?}"), e.to_string());
    }

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
    fn the_managed_instance_concurrency_is_read_and_a_bad_value_named() {
        assert_eq!(
            max_concurrency(&lambda_env()),
            Ok(1),
            "unset: one at a time"
        );
        for (value, loops) in [("", 1), ("0", 1), ("1", 1), ("4", 4), (" 16 ", 16)] {
            let env = lambda_env().with_var(MAX_CONCURRENCY_VAR, value);
            assert_eq!(max_concurrency(&env), Ok(loops), "{value:?}");
        }
        for bad in ["four", "-2", "2.5"] {
            let env = lambda_env().with_var(MAX_CONCURRENCY_VAR, bad);
            let e = check_lambda_environment(&env).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "the Lambda environment is broken: {MAX_CONCURRENCY_VAR} is \"{bad}\", not a \
                     whole number"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn the_first_recycling_reason_is_kept() {
        let recycle = RecycleSignal::default();
        assert_eq!(recycle.get(), None);
        recycle.set("the first poisoned session".into());
        recycle.set("a second one".into());
        assert_eq!(recycle.get().as_deref(), Some("the first poisoned session"));
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
