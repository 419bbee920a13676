//! A layer that applies one synchronous rule to the invocation, then calls the inner service.
//!
//! Most lifecycle rules (load the config, pre-fill Lambda defaults, disable eager
//! activities, pin the deployment version, set the identity) change the request and
//! nothing else. Each is an [`InvocationStep`]; [`StepLayer`] turns it into a
//! `tower::Layer`. Your own rule (say, setting an API key) can be one too:
//!
//! ```
//! use temporal_lambda_worker_layers::{Invocation, InvocationStep, LambdaWorkerError, StepLayer};
//!
//! #[derive(Clone)]
//! struct Namespace(&'static str);
//!
//! impl InvocationStep for Namespace {
//!     fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
//!         inv.config.client.namespace = self.0.to_owned();
//!         Ok(())
//!     }
//! }
//!
//! let layer = StepLayer::from_step(Namespace("payments"));
//! # let _ = layer;
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project::pin_project;
use tower::{Layer, Service};

use crate::{BoxError, Invocation, LambdaWorkerError};

/// One synchronous lifecycle rule applied to an invocation before the inner service runs.
pub trait InvocationStep: Clone + Send + Sync + 'static {
    /// Changes the invocation, or fails it with an error the person can act on.
    fn apply(&self, invocation: &mut Invocation) -> Result<(), LambdaWorkerError>;
}

/// A `tower::Layer` that applies an [`InvocationStep`].
#[derive(Clone, Debug, Default)]
pub struct StepLayer<T> {
    step: T,
}

impl<T> StepLayer<T> {
    /// Wraps a step.
    pub fn from_step(step: T) -> Self {
        Self { step }
    }
    /// The step this layer applies.
    pub fn step(&self) -> &T {
        &self.step
    }
}

impl<S, T: Clone> Layer<S> for StepLayer<T> {
    type Service = Step<S, T>;
    fn layer(&self, inner: S) -> Self::Service {
        Step {
            inner,
            step: self.step.clone(),
        }
    }
}

/// The service made by [`StepLayer`].
#[derive(Clone, Debug)]
pub struct Step<S, T> {
    inner: S,
    step: T,
}

impl<S, T> Service<Invocation> for Step<S, T>
where
    S: Service<Invocation>,
    S::Error: Into<BoxError>,
    T: InvocationStep,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = StepFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut invocation: Invocation) -> Self::Future {
        match self.step.apply(&mut invocation) {
            Ok(()) => StepFuture::Inner {
                future: self.inner.call(invocation),
            },
            Err(error) => StepFuture::Failed { error: Some(error) },
        }
    }
}

/// Response future of [`Step`].
#[pin_project(project = StepFutureProj)]
#[derive(Debug)]
pub enum StepFuture<F> {
    /// The step passed; waiting on the inner service.
    Inner {
        /// The inner service's future.
        #[pin]
        future: F,
    },
    /// The step failed the invocation.
    Failed {
        /// The error, taken when polled.
        error: Option<LambdaWorkerError>,
    },
}

impl<F, R, E> Future for StepFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            StepFutureProj::Inner { future } => future.poll(cx).map_err(Into::into),
            StepFutureProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("StepFuture polled after completion")
                .into())),
        }
    }
}
