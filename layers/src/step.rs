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

use crate::{BoxError, Invocation, LambdaWorkerError, failed::Failed};

/// One synchronous lifecycle rule applied to an invocation before the inner service runs.
pub trait InvocationStep: Clone + Send + Sync + 'static {
    /// Changes the invocation, or fails it with an error the person can act on (your own
    /// `errorType` and message: [`LambdaWorkerError::custom`]).
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
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut invocation: Invocation) -> Self::Future {
        match self.step.apply(&mut invocation) {
            Ok(()) => ResponseFuture::inner(self.inner.call(invocation)),
            Err(error) => ResponseFuture::failed(error),
        }
    }
}

/// Response future of [`Step`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    /// The step passed; waiting on the inner service.
    Inner {
        #[pin]
        future: F,
    },
    /// The step failed the invocation.
    Failed { failed: Failed },
}

impl<F> ResponseFuture<F> {
    /// Waits on the inner service's future.
    pub(crate) fn inner(future: F) -> Self {
        let kind = Kind::Inner { future };
        Self { kind }
    }

    /// Fails the invocation without calling the inner service.
    pub(crate) fn failed(error: LambdaWorkerError) -> Self {
        let failed = Failed::new(error);
        Self {
            kind: Kind::Failed { failed },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            KindProj::Failed { failed } => failed.poll(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use crate::{
        BoxError, ConfigureLayer, DeadlineWatchdogLayer, Invocation, LambdaDefaultsLayer,
        LambdaWorkerConfig, LambdaWorkerError, LoadConfigLayer, StaticEnvironment, StepLayer,
    };

    use super::InvocationStep;

    type Echo = tower::util::ServiceFn<fn(Invocation) -> std::future::Ready<Result<(), BoxError>>>;

    fn echo() -> Echo {
        let f: fn(Invocation) -> std::future::Ready<Result<(), BoxError>> =
            |_| std::future::ready(Ok(()));
        service_fn(f)
    }

    fn noop(_: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
        Ok(())
    }

    async fn error_of<S>(svc: S) -> LambdaWorkerError
    where
        S: tower::Service<Invocation, Response = (), Error = BoxError>,
    {
        let err = svc
            .oneshot(Invocation::new(Default::default(), Default::default()))
            .await
            .unwrap_err();
        *err.downcast::<LambdaWorkerError>().unwrap()
    }

    #[tokio::test]
    async fn a_misordered_stack_fails_naming_both_layers_and_the_order() {
        // The defaults after configure would overwrite what configure set.
        let svc = ServiceBuilder::new()
            .layer(LoadConfigLayer::with_environment(StaticEnvironment::new()))
            .layer(ConfigureLayer::new(noop))
            .layer(LambdaDefaultsLayer::new())
            .service(echo());
        let e = error_of(svc).await;
        assert_eq!(e.error_type(), "TemporalLambdaWorker.LayerOrder");
        let text = e.to_string();
        assert!(
            text.starts_with("LambdaDefaultsLayer runs after ConfigureLayer"),
            "{text}"
        );
        assert!(
            text.contains("LoadConfigLayer, ApiKeySecretLayer"),
            "{text}"
        );

        // Wrapping a whole stack in LoadConfigLayer again would rebuild the connection
        // options below a layer that already set them.
        let svc = ServiceBuilder::new()
            .layer(LoadConfigLayer::with_environment(StaticEnvironment::new()))
            .layer(LambdaDefaultsLayer::new())
            .layer(LoadConfigLayer::with_environment(StaticEnvironment::new()))
            .service(echo());
        let text = error_of(svc).await.to_string();
        assert!(
            text.starts_with("LoadConfigLayer runs after LambdaDefaultsLayer"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_documented_order_and_user_layers_anywhere_pass() {
        #[derive(Clone)]
        struct Mine;
        impl InvocationStep for Mine {
            fn apply(&self, _: &mut Invocation) -> Result<(), LambdaWorkerError> {
                Ok(())
            }
        }
        let svc = ServiceBuilder::new()
            .layer(StepLayer::from_step(Mine))
            .layer(LoadConfigLayer::with_environment(StaticEnvironment::new()))
            .layer(StepLayer::from_step(Mine))
            .layer(LambdaDefaultsLayer::new())
            .layer(ConfigureLayer::new(noop))
            .layer(StepLayer::from_step(Mine))
            .layer(DeadlineWatchdogLayer::new())
            .service(echo());
        svc.oneshot(Invocation::new(Default::default(), Default::default()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_user_rule_fails_with_its_own_error_type_and_message() {
        #[derive(Clone)]
        struct OnlyProduction;
        impl InvocationStep for OnlyProduction {
            fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
                Err(LambdaWorkerError::custom(
                    "MyCompany.WrongNamespace",
                    format!(
                        "namespace {} is not production",
                        inv.config.client.namespace
                    ),
                ))
            }
        }
        let e = error_of(StepLayer::from_step(OnlyProduction).layer_over(echo())).await;
        assert_eq!(e.error_type(), "MyCompany.WrongNamespace");
        assert_eq!(e.to_string(), "namespace default is not production");
    }

    trait LayerOver<S> {
        fn layer_over(self, s: S) -> <Self as tower::Layer<S>>::Service
        where
            Self: tower::Layer<S> + Sized,
        {
            tower::Layer::layer(&self, s)
        }
    }
    impl<S, T> LayerOver<S> for T {}
}
