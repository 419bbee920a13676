//! The Lambda host: serves a stack of `Service<Invocation>` on the Lambda Runtime API, in
//! a few small pieces (as `lambda_runtime` builds its loop):
//!
//! - [`environment`]: the Lambda variables, read once through the injected
//!   [`Environment`] and checked (a broken one is the init error, and the process exits);
//! - [`runtime_api`]: the protocol. `next` hands out an invocation with its body parsed
//!   once (any body: Temporal's Worker Controller sends an empty one); its answer or its
//!   error goes back;
//! - [`invoke`]: the services an invocation passes through, [`CatchPanic`] →
//!   [`Invoke`] → the stack;
//! - [`error`]: [`HostError`], each failure's `errorType`, and whether it recycles the
//!   process;
//! - here: [`serve`], the loops (`AWS_LAMBDA_MAX_CONCURRENCY` of them on a Lambda Managed
//!   Instance), SIGTERM, and the recycle decision, which the call that answered returns:
//!   after an error that leaves a worker in an unknown state (or a panic) has been
//!   *answered*, the loops end so the process exits and Lambda starts a fresh one.
//!
//! Nothing below the Runtime API client is Lambda's: a second host (an HTTP endpoint)
//! drives the same stack through [`Invoke`] with events of its own.

mod deadline;
mod environment;
mod error;
mod invoke;
mod runtime_api;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tower::{Service, ServiceExt};

pub(crate) use environment::LambdaEnvironment;
pub(crate) use error::{HostError, stack_diagnostic};
use invoke::Event;
pub(crate) use invoke::{CatchPanic, Invoke};
pub(crate) use runtime_api::payload;
use runtime_api::{Next, RuntimeApi};

use crate::{BoxError, Environment, InvocationService, ProcessEnvironment, StopSignal};

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
    S: InvocationService,
{
    serve_in(stack, &ProcessEnvironment).await
}

/// [`serve`] in the Lambda environment `env`.
async fn serve_in<S>(stack: S, env: &dyn Environment) -> Result<(), BoxError>
where
    S: InvocationService,
{
    let env = match LambdaEnvironment::read(env) {
        Ok(env) => env,
        Err(broken) => {
            tracing::error!("{broken}");
            if let Some(uri) = broken.runtime_api.clone() {
                runtime_api::init_error(uri, &broken.message).await;
            }
            return Err(ProcessExit(broken.message).into());
        }
    };
    if env.loops > 1 {
        tracing::info!(
            loops = env.loops,
            "{}={}: serving up to {} invocations at once",
            environment::MAX_CONCURRENCY_VAR,
            env.loops,
            env.loops
        );
    }
    let (trigger, stop) = StopSignal::new();
    let counts = LoopCounts::default();
    let run = run_loops(stack, &env, stop, counts.clone());
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => result,
        name = stop_requested() => {
            let in_flight = counts.in_flight();
            tracing::info!(
                signal = name,
                in_flight,
                "{name}: the execution environment is shutting down; stopping"
            );
            trigger.stop();
            if in_flight > 0 {
                answer_in_flight(&mut run, &counts, name).await;
            }
            Ok(())
        }
    }
}

/// After SIGTERM: gives the invocations in flight [`SIGTERM_ANSWER_WITHIN`] to answer.
async fn answer_in_flight(
    run: &mut (impl std::future::Future + Unpin),
    counts: &LoopCounts,
    signal: &str,
) {
    let answered = tokio::time::timeout(SIGTERM_ANSWER_WITHIN, async {
        tokio::select! {
            _ = run => {}
            () = counts.idle() => {}
        }
    })
    .await;
    if answered.is_err() {
        let in_flight = counts.in_flight();
        tracing::warn!(
            in_flight,
            "{} had not answered {}ms after {signal}",
            match in_flight {
                1 => "the invocation in flight".to_owned(),
                n => format!("{n} invocations in flight"),
            },
            SIGTERM_ANSWER_WITHIN.as_millis()
        );
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT; never where they cannot be
/// watched.
pub(crate) async fn stop_requested() -> &'static str {
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

/// Serves invocations in `env.loops` loops at once until the process must end. The first
/// loop to end closes the others: each answers the invocation it holds, then stops; one
/// waiting in `next` stops waiting. After a recycling error the result is that error, else
/// the first loop's error.
async fn run_loops<S>(
    stack: S,
    env: &LambdaEnvironment,
    stop: StopSignal,
    counts: LoopCounts,
) -> Result<(), BoxError>
where
    S: InvocationService,
{
    let api = RuntimeApi::new(env).map_err(|e| {
        ProcessExit(format!(
            "the Lambda Runtime API client could not be made: {}",
            crate::diagnosis::causes(e.as_ref())
        ))
    })?;
    // Set once a loop ends (the process is recycled, or the Runtime API kept failing): the
    // other loops take no further invocation, and one waiting in `next` stops waiting.
    let (close, closing) = StopSignal::new();
    let runs = (0..env.loops).map(|_| {
        let service = CatchPanic::new(Invoke::new(
            stack.clone(),
            stop.clone(),
            env.local_timeout.clone(),
        ));
        async {
            let ended = run_loop(&api, service, &counts, &closing).await;
            close.stop();
            ended
        }
    });
    let ended = futures_util::future::join_all(runs).await;
    let mut first_error = None;
    for end in ended {
        match end {
            Ok(Some(why)) => return Err(ProcessExit::recycling(&why).into()),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One loop: `next`, the services, the answer, until the process must be recycled (the
/// reason is returned) or `closing` is set. A failed Runtime API request is retried (see
/// [`serve`]); a run of failures ends with the first invocation served.
async fn run_loop<S>(
    api: &RuntimeApi,
    mut service: S,
    counts: &LoopCounts,
    closing: &StopSignal,
) -> Result<Option<String>, BoxError>
where
    S: Service<Event, Response = Vec<u8>, Error = HostError>,
{
    let mut failures = 0;
    loop {
        let next = tokio::select! {
            biased;
            () = closing.stopped() => return Ok(None),
            next = api.next() => next,
        };
        let served = match next {
            Ok(next) => serve_next(api, next, &mut service, counts).await,
            Err(e) => Err(e),
        };
        match served {
            Ok(Some(why)) => return Ok(Some(why)),
            Ok(None) => failures = 0,
            Err(error) => {
                failures += 1;
                retry_after(failures, error.as_ref()).await?;
            }
        }
        if closing.is_stopped() {
            return Ok(None);
        }
    }
}

/// After the `failures`-th Runtime API failure in a row: waits before the next attempt,
/// or gives up after [`RUNTIME_API_RETRIES`].
async fn retry_after(
    failures: u32,
    error: &(dyn std::error::Error + 'static),
) -> Result<(), BoxError> {
    // The error and its causes ("client error (Connect): tcp connect error: …").
    let error = crate::diagnosis::causes(error);
    if failures > RUNTIME_API_RETRIES {
        return Err(ProcessExit(format!(
            "the Lambda Runtime API failed {failures} times in a row; exiting so Lambda \
             starts a fresh process: {error}"
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
    Ok(())
}

/// One invocation `next` handed out, through `service` (or, when it could not be read,
/// answered as that error), and its answer posted. Returns why the process must be
/// recycled, if it must.
async fn serve_next<S>(
    api: &RuntimeApi,
    next: Next,
    service: &mut S,
    counts: &LoopCounts,
) -> Result<Option<String>, BoxError>
where
    S: Service<Event, Response = Vec<u8>, Error = HostError>,
{
    let _in_flight = InFlight::new(counts);
    let Next { to, event } = next;
    let answer = match event {
        Ok(event) => match service.ready().await {
            Ok(ready) => ready.call(event).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let recycle = answer.as_ref().err().and_then(HostError::recycles);
    let answer = answer.map_err(|error| {
        let d = lambda_runtime::Diagnostic::from(&error);
        tracing::error!(request_id = to.request_id, error_type = %d.error_type, "{}", d.error_message);
        d
    });
    api.answer(&to, answer).await?;
    Ok(recycle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Invocation;

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

    #[tokio::test]
    async fn a_broken_environment_ends_serve_with_the_variable_named() {
        let stack = tower::service_fn(|_: Invocation| async { Ok::<(), BoxError>(()) });
        let env = crate::StaticEnvironment::new()
            .with_var("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .with_var("AWS_LAMBDA_FUNCTION_NAME", "f")
            .with_var("AWS_LAMBDA_FUNCTION_VERSION", "1");
        let e = serve_in(stack, &env).await.unwrap_err().to_string();
        assert!(
            e.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not set"),
            "{e}"
        );
    }
}
