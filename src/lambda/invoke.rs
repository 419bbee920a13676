//! The services one invocation passes through on its way to the stack, outermost first
//! (as `lambda_runtime` builds its own, `CatchPanicService` → … → the handler):
//!
//! - [`CatchPanic`]: a panic anywhere below becomes [`HostError::Panicked`];
//! - [`Invoke`]: the Runtime API's event becomes an [`Invocation`] (the deadline read, a
//!   local emulator's made usable, the stop signal attached); the stack's response becomes
//!   the answer's JSON, and its error a [`HostError`].

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    task::{Context, Poll},
    time::SystemTime,
};

use futures_util::{FutureExt, future::BoxFuture};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use tower::Service;

use super::{
    HostError,
    deadline::{Emulated, LOCAL_TIMEOUT_VAR, normalize_deadline},
};
use crate::{BoxError, Invocation, StopSignal};

/// The event as the Runtime API hands it out.
pub(crate) type Event = LambdaEvent<serde_json::Value>;

/// Catches a panic of the service below, in its `call` or its future.
#[derive(Clone, Debug)]
pub(crate) struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, R> Service<R> for CatchPanic<S>
where
    S: Service<R, Error = HostError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = HostError;
    type Future = BoxFuture<'static, Result<S::Response, HostError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HostError>> {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.poll_ready(cx)))
            .unwrap_or_else(|panic| Poll::Ready(Err(panicked(panic.as_ref()))))
    }

    fn call(&mut self, request: R) -> Self::Future {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => AssertUnwindSafe(future)
                .catch_unwind()
                .map(|result| result.unwrap_or_else(|panic| Err(panicked(panic.as_ref()))))
                .boxed(),
            Err(panic) => std::future::ready(Err(panicked(panic.as_ref()))).boxed(),
        }
    }
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> HostError {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied());
    HostError::Panicked(text.unwrap_or("(a panic without a message)").to_owned())
}

/// Turns the Runtime API's event into an [`Invocation`] for the stack, and the stack's
/// answer into the JSON (or the error) the Runtime API is sent.
#[derive(Clone, Debug)]
pub(crate) struct Invoke<S> {
    stack: S,
    /// Every invocation carries it: SIGTERM fires it.
    stop: StopSignal,
    /// `TEMPORAL_LOCAL_TIMEOUT_SECS`, for a deadline that is not real.
    local_timeout: Option<String>,
}

impl<S> Invoke<S> {
    pub(crate) fn new(stack: S, stop: StopSignal, local_timeout: Option<String>) -> Self {
        Self {
            stack,
            stop,
            local_timeout,
        }
    }
}

impl<S> Service<Event> for Invoke<S>
where
    S: Service<Invocation, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Serialize + Send + 'static,
{
    type Response = Vec<u8>;
    type Error = HostError;
    type Future = BoxFuture<'static, Result<Vec<u8>, HostError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HostError>> {
        self.stack.poll_ready(cx).map_err(HostError::Stack)
    }

    fn call(&mut self, event: Event) -> Self::Future {
        let LambdaEvent {
            payload,
            mut context,
        } = event;
        let deadline = normalize_deadline(
            &mut context,
            self.local_timeout.as_deref(),
            SystemTime::now(),
        );
        match deadline {
            Err(e) => std::future::ready(Err(HostError::Rule(e))).boxed(),
            Ok(emulated) => {
                if let Some(how) = emulated {
                    say_emulated(&context.request_id, how);
                }
                let mut inv = Invocation::new(payload, context);
                inv.stop = self.stop.clone();
                answer(self.stack.call(inv)).boxed()
            }
        }
    }
}

/// One log line: how an emulator's deadline was read.
fn say_emulated(request_id: &str, how: Emulated) {
    let secs = how.timeout().as_secs_f64();
    match how {
        Emulated::LocalTimeout(_) => tracing::info!(
            request_id,
            "the Runtime API's deadline is not real (a local emulator): polling as if the \
             timeout were {secs:.1}s ({LOCAL_TIMEOUT_VAR})"
        ),
        Emulated::SentAsDuration(_) => tracing::info!(
            request_id,
            "the Runtime API sent a duration as the deadline (a local emulator, such as cargo \
             lambda watch): read as a timeout of {secs:.1}s ({LOCAL_TIMEOUT_VAR} overrides it)"
        ),
    }
}

/// The stack's answer as the Runtime API is sent it.
async fn answer<R: Serialize>(
    response: impl Future<Output = Result<R, BoxError>>,
) -> Result<Vec<u8>, HostError> {
    let response = response.await.map_err(HostError::Stack)?;
    serde_json::to_vec(&response).map_err(HostError::Unserializable)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{LambdaWorkerError, error_type};

    fn event(payload: serde_json::Value, deadline_in: Duration) -> Event {
        let mut context = lambda_runtime::Context::default();
        context.request_id = "req-1".into();
        let deadline = SystemTime::now() + deadline_in;
        context.deadline = deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        LambdaEvent::new(payload, context)
    }

    fn host<S>(stack: S) -> CatchPanic<Invoke<S>> {
        CatchPanic::new(Invoke::new(stack, StopSignal::default(), None))
    }

    #[tokio::test]
    async fn the_stack_sees_the_payload_and_its_answer_is_json() {
        let stack = service_fn(|inv: Invocation| async move {
            Ok::<_, BoxError>(
                serde_json::json!({ "saw": inv.payload, "id": inv.context.request_id }),
            )
        });
        let body = host(stack)
            .oneshot(event(serde_json::json!({"k": 1}), Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "saw": {"k": 1}, "id": "req-1" })
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_stack_or_its_call_becomes_a_recycling_error() {
        let in_future = service_fn(|_: Invocation| async {
            if true {
                panic!("in the future");
            }
            Ok::<(), BoxError>(())
        });
        let e = host(in_future)
            .oneshot(event(serde_json::Value::Null, Duration::from_secs(60)))
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), error_type::PANIC);
        assert!(e.recycles().unwrap().contains("in the future"), "{e}");

        let in_call = service_fn(
            |_: Invocation| -> std::future::Ready<Result<(), BoxError>> { panic!("in call") },
        );
        let e = host(in_call)
            .oneshot(event(serde_json::Value::Null, Duration::from_secs(60)))
            .await
            .unwrap_err();
        assert!(e.recycles().unwrap().contains("in call"), "{e}");
    }

    #[tokio::test]
    async fn the_stacks_errors_keep_their_type_and_an_unreal_deadline_is_named() {
        let failing = service_fn(|_: Invocation| async {
            Err::<(), BoxError>(LambdaWorkerError::MissingTaskQueue.into())
        });
        let e = host(failing)
            .oneshot(event(serde_json::Value::Null, Duration::from_secs(60)))
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), error_type::MISSING_TASK_QUEUE);

        // An epoch time long past: neither a deadline nor a duration.
        let never = service_fn(|_: Invocation| async { Ok::<(), BoxError>(()) });
        let mut unreal = event(serde_json::Value::Null, Duration::ZERO);
        unreal.context.deadline = 1_000_000_000_000;
        let e = host(never).oneshot(unreal).await.unwrap_err();
        assert_eq!(e.error_type(), error_type::INVALID_DEADLINE);

        // `cargo lambda watch` sends its timeout (600 000 ms): polled as 600 s.
        let remaining = service_fn(|inv: Invocation| async move {
            Ok::<_, BoxError>(inv.timeline().remaining().map(|r| r.as_secs()))
        });
        let mut watch = event(serde_json::Value::Null, Duration::ZERO);
        watch.context.deadline = 600_000;
        let body = host(remaining).oneshot(watch).await.unwrap();
        let secs: Option<u64> = serde_json::from_slice(&body).unwrap();
        assert!(secs.is_some_and(|s| (598..=600).contains(&s)), "{secs:?}");
    }
}
