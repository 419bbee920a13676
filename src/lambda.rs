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
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use lambda_runtime::{Diagnostic, LambdaEvent, LambdaInvocation, Runtime};
use serde::Serialize;
use tower::{Layer, Service};

use crate::{BoxError, Invocation, LambdaWorkerError};

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
}

impl<S> InvocationHandler<S> {
    /// Wraps `inner`, reporting process-poisoning errors to `recycle`.
    pub fn new(inner: S, recycle: RecycleSignal) -> Self {
        Self { inner, recycle }
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
        Box::pin(async move {
            let inv = Invocation::new(event.payload, event.context);
            inner.call(inv).await.map_err(|error| {
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

/// Raw, outermost layer: ends the run loop after a process-poisoning error was answered.
#[derive(Clone, Debug)]
pub struct RecycleLayer {
    signal: RecycleSignal,
}

impl RecycleLayer {
    /// The layer watching `signal`.
    pub fn new(signal: RecycleSignal) -> Self {
        Self { signal }
    }
}

impl<S> Layer<S> for RecycleLayer {
    type Service = Recycle<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Recycle {
            inner,
            signal: self.signal.clone(),
        }
    }
}

/// The service made by [`RecycleLayer`].
#[derive(Clone, Debug)]
pub struct Recycle<S> {
    inner: S,
    signal: RecycleSignal,
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
        let fut = self.inner.call(req);
        let signal = self.signal.clone();
        Box::pin(async move {
            fut.await?;
            match signal.take() {
                Some(why) => Err(format!(
                    "exiting so Lambda starts a fresh process (the invocation was answered): {why}"
                )
                .into()),
                None => Ok(()),
            }
        })
    }
}

/// Serves `stack` on the Lambda Runtime API at `AWS_LAMBDA_RUNTIME_API` until the
/// process must be recycled (returns the reason) or the Runtime API fails.
///
/// # Panics
/// When the Lambda environment variables `lambda_runtime` requires are missing
/// (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
/// `AWS_LAMBDA_FUNCTION_VERSION`).
pub async fn serve<S>(stack: S) -> Result<(), BoxError>
where
    S: Service<Invocation, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send + 'static,
{
    let signal = RecycleSignal::default();
    Runtime::new(InvocationHandler::new(stack, signal.clone()))
        .layer(AcceptAnyPayloadLayer)
        .layer(RecycleLayer::new(signal))
        .run()
        .await
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
}
