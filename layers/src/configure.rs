//! Runs the user's configure callback on the fresh, pre-filled config.
//!
//! The callback may be a plain closure `Fn(&mut LambdaWorkerConfig) -> Result<(), E>`,
//! or async through [`async_configure`], in which case it may hand back a teardown
//! future that runs after the worker stopped and after the shutdown hooks (the
//! equivalent of the Python reference's async-generator form). Either form reads the
//! invocation it configures from [`LambdaWorkerConfig::invocation`] (the Lambda context,
//! the payload, the timeline). A panic or an error in the callback fails the invocation
//! with a message saying so; the process keeps serving.
//!
//! ```
//! use temporal_lambda_worker_layers::{
//!     async_configure, BoxError, Configured, ConfigureLayer, Invocation, LambdaWorkerConfig,
//! };
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! // Sync form.
//! let sync = ConfigureLayer::new(|config: &mut LambdaWorkerConfig| {
//!     config.worker.task_queue = "my-task-queue".into();
//!     Ok::<_, BoxError>(())
//! });
//! // Async form holding a resource until the worker has stopped.
//! let with_teardown = ConfigureLayer::new(async_configure(|mut config: LambdaWorkerConfig| async move {
//!     config.worker.task_queue = "my-task-queue".into();
//!     let pool = "a connection pool";
//!     Ok::<_, BoxError>(Configured::new(config).with_teardown(async move { drop(pool) }))
//! }));
//! let mut svc = ServiceBuilder::new()
//!     .layer(with_teardown)
//!     .service(service_fn(|inv: Invocation| async move { Ok::<_, BoxError>(inv.config.worker.task_queue) }));
//! let inv = Invocation::new(serde_json::Value::Null, Default::default());
//! assert_eq!(svc.ready().await?.call(inv).await?, "my-task-queue");
//! # let _ = sync; Ok(()) }
//! ```

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::{FutureExt, future::BoxFuture};
use tower::{Layer, Service};

use crate::{
    BoxError, Invocation, LambdaWorkerConfig, LambdaWorkerError, cleanup::Cleanup,
    error::panic_message,
};

/// What a configure step produces: the config, and optionally a teardown to run after
/// the worker stopped.
pub struct Configured {
    config: LambdaWorkerConfig,
    teardown: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configured")
            .field("config", &self.config)
            .field("teardown", &self.teardown.is_some())
            .finish()
    }
}

impl Configured {
    /// Just the config.
    pub fn new(config: LambdaWorkerConfig) -> Self {
        Self {
            config,
            teardown: None,
        }
    }
    /// Runs `teardown` after the worker stopped and the shutdown hooks ran.
    pub fn with_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(Box::pin(teardown));
        self
    }
}

impl From<LambdaWorkerConfig> for Configured {
    fn from(config: LambdaWorkerConfig) -> Self {
        Self::new(config)
    }
}

/// The user's configure step.
pub trait ConfigureCallback: Send + Sync + 'static {
    /// Changes the config (registering workflows and activities, overriding options).
    fn configure(
        &self,
        config: LambdaWorkerConfig,
    ) -> BoxFuture<'static, Result<Configured, BoxError>>;
}

impl<F, E> ConfigureCallback for F
where
    F: Fn(&mut LambdaWorkerConfig) -> Result<(), E> + Send + Sync + 'static,
    E: Into<BoxError>,
{
    fn configure(
        &self,
        mut config: LambdaWorkerConfig,
    ) -> BoxFuture<'static, Result<Configured, BoxError>> {
        let result = self(&mut config)
            .map(|()| Configured::new(config))
            .map_err(Into::into);
        Box::pin(std::future::ready(result))
    }
}

/// An async configure callback; made by [`async_configure`].
#[derive(Clone, Debug)]
pub struct AsyncConfigure<F>(F);

/// Wraps an async callback `Fn(LambdaWorkerConfig) -> impl Future<Output = Result<C, E>>`
/// where `C` is a [`LambdaWorkerConfig`] or a [`Configured`] (config plus teardown).
pub fn async_configure<F, Fut, C, E>(f: F) -> AsyncConfigure<F>
where
    F: Fn(LambdaWorkerConfig) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, E>> + Send + 'static,
    C: Into<Configured>,
    E: Into<BoxError>,
{
    AsyncConfigure(f)
}

impl<F, Fut, C, E> ConfigureCallback for AsyncConfigure<F>
where
    F: Fn(LambdaWorkerConfig) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, E>> + Send + 'static,
    C: Into<Configured>,
    E: Into<BoxError>,
{
    fn configure(
        &self,
        config: LambdaWorkerConfig,
    ) -> BoxFuture<'static, Result<Configured, BoxError>> {
        let fut = (self.0)(config);
        Box::pin(async move { fut.await.map(Into::into).map_err(Into::into) })
    }
}

/// The future of [`Configure`]: boxed, as its work is async and its type is not worth naming.
pub type ResponseFuture<R> = BoxFuture<'static, Result<R, BoxError>>;

/// Layer that runs the configure callback. Place it after [`LambdaDefaultsLayer`](crate::LambdaDefaultsLayer).
pub struct ConfigureLayer<C> {
    configure: Arc<C>,
}

impl<C> std::fmt::Debug for ConfigureLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureLayer").finish_non_exhaustive()
    }
}

impl<C> Clone for ConfigureLayer<C> {
    fn clone(&self) -> Self {
        Self {
            configure: self.configure.clone(),
        }
    }
}

impl<C: ConfigureCallback> ConfigureLayer<C> {
    /// The layer for this callback.
    pub fn new(configure: C) -> Self {
        Self {
            configure: Arc::new(configure),
        }
    }
}

impl<S, C> Layer<S> for ConfigureLayer<C> {
    type Service = Configure<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        Configure {
            inner,
            configure: self.configure.clone(),
        }
    }
}

/// The service made by [`ConfigureLayer`].
pub struct Configure<S, C> {
    inner: S,
    configure: Arc<C>,
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Configure<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configure")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, C> Clone for Configure<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            configure: self.configure.clone(),
        }
    }
}

impl<S, C> Service<Invocation> for Configure<S, C>
where
    S: Service<Invocation> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    C: ConfigureCallback,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut inv: Invocation) -> Self::Future {
        // Take the service that was driven to readiness; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let configure = self.configure.clone();
        Box::pin(async move {
            inv.enter(crate::invocation::Lifecycle::Configure)?;
            let mut config = std::mem::take(&mut *inv.config);
            config.set_invocation(crate::InvocationInfo {
                context: inv.context.clone(),
                payload: inv.payload.clone(),
                timeline: *inv.timeline(),
            });
            let configured = AssertUnwindSafe(async { configure.configure(config).await })
                .catch_unwind()
                .await
                .map_err(|p| LambdaWorkerError::ConfigurePanicked(panic_message(p.as_ref())))?
                .map_err(LambdaWorkerError::ConfigureFailed)?;
            *inv.config = configured.config;
            let hooks = inv.config.shutdown_hooks();
            let timeline = *inv.timeline();
            let result = inner.call(inv).await.map_err(Into::into);
            Cleanup::default()
                .hooks(hooks.take(), timeline.cleanup_by())
                .then(configured.teardown, timeline.answer_by())
                .run()
                .await;
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{context_in, run_through};
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    #[tokio::test]
    async fn the_sync_and_the_async_callback_read_their_invocation_the_same_way() {
        fn seen(config: &mut LambdaWorkerConfig) {
            let inv = config.invocation();
            config.worker.task_queue = format!(
                "{}|{}|{}",
                inv.context.request_id, inv.payload["tenant"], inv.context.invoked_function_arn
            );
        }
        let invocation = || {
            let mut inv = Invocation::new(
                serde_json::json!({ "tenant": "acme" }),
                context_in("req-7", Duration::from_secs(60)),
            );
            inv.context.invoked_function_arn = "arn:aws:lambda:us-east-1:1:function:f:3".into();
            inv
        };
        let want = "req-7|\"acme\"|arn:aws:lambda:us-east-1:1:function:f:3";
        let sync = ConfigureLayer::new(|config: &mut LambdaWorkerConfig| {
            seen(config);
            Ok::<_, BoxError>(())
        });
        let inv = run_through(sync, invocation()).await.unwrap();
        assert_eq!(inv.config.worker.task_queue, want);
        let asynchronous = ConfigureLayer::new(crate::async_configure(
            |mut config: LambdaWorkerConfig| async move {
                seen(&mut config);
                Ok::<_, BoxError>(config)
            },
        ));
        let inv = run_through(asynchronous, invocation()).await.unwrap();
        assert_eq!(inv.config.worker.task_queue, want);
        assert!(
            inv.config
                .invocation()
                .timeline
                .deadline()
                .instant()
                .is_some()
        );
    }

    #[tokio::test]
    async fn sync_callback_changes_the_config() {
        let layer = ConfigureLayer::new(|c: &mut LambdaWorkerConfig| {
            c.worker.task_queue = "tq".into();
            c.worker.max_cached_workflows = 3;
            Ok::<_, BoxError>(())
        });
        let inv = run_through(
            layer,
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap();
        assert_eq!(inv.config.worker.task_queue, "tq");
        assert_eq!(inv.config.worker.max_cached_workflows, 3);
    }

    #[tokio::test]
    async fn callback_error_fails_the_invocation() {
        let layer = ConfigureLayer::new(|_: &mut LambdaWorkerConfig| Err::<(), _>("no secrets"));
        let err = run_through(
            layer,
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.downcast_ref::<LambdaWorkerError>()
                .unwrap()
                .error_type(),
            "TemporalLambdaWorker.ConfigureFailed"
        );
        assert!(err.to_string().contains("no secrets"), "{err}");
    }

    #[tokio::test]
    async fn a_panic_in_sync_or_async_callback_is_an_error_and_the_service_goes_on() {
        let calls = Arc::new(Mutex::new(0));
        let calls2 = calls.clone();
        let layer = ConfigureLayer::new(move |_: &mut LambdaWorkerConfig| {
            let n = {
                let mut c = calls2.lock().unwrap();
                *c += 1;
                *c
            };
            if n == 1 {
                panic!("boom in configure");
            }
            Ok::<_, BoxError>(())
        });
        let mut svc =
            ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(|_: Invocation| async {
                    Ok::<_, BoxError>("ran")
                }));
        // The same service, twice: the first call panics, the second runs.
        for _ in 0..2 {
            let answer = svc
                .ready()
                .await
                .unwrap()
                .call(Invocation::new(Default::default(), Default::default()))
                .await;
            match *calls.lock().unwrap() {
                1 => {
                    let err = answer.unwrap_err().to_string();
                    assert!(
                        err.contains("configure callback panicked: boom in configure"),
                        "{err}"
                    );
                }
                _ => assert_eq!(answer.unwrap(), "ran"),
            }
        }
        assert_eq!(*calls.lock().unwrap(), 2);

        let layer = ConfigureLayer::new(async_configure(|_c: LambdaWorkerConfig| async move {
            if true {
                panic!("async boom");
            }
            Ok::<LambdaWorkerConfig, BoxError>(_c)
        }));
        let err = run_through(
            layer,
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("async boom"), "{err}");
    }

    #[tokio::test]
    async fn teardown_runs_after_the_inner_service_even_when_it_fails() {
        let log = Arc::new(Mutex::new(Vec::<&'static str>::new()));
        let log2 = log.clone();
        let layer = ConfigureLayer::new(async_configure(move |c: LambdaWorkerConfig| {
            let log = log2.clone();
            async move {
                log.lock().unwrap().push("configure");
                let log_td = log.clone();
                Ok::<_, BoxError>(Configured::new(c).with_teardown(async move {
                    log_td.lock().unwrap().push("teardown");
                }))
            }
        }));
        let log3 = log.clone();
        let mut svc =
            ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(move |_: Invocation| {
                    let log = log3.clone();
                    async move {
                        log.lock().unwrap().push("worker");
                        Err::<(), BoxError>("worker failed".into())
                    }
                }));
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(Invocation::new(Default::default(), Default::default()))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "worker failed");
        assert_eq!(*log.lock().unwrap(), ["configure", "worker", "teardown"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_teardown_is_abandoned_before_the_deadline() {
        let layer = ConfigureLayer::new(async_configure(|c: LambdaWorkerConfig| async move {
            Ok::<_, BoxError>(Configured::new(c).with_teardown(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }))
        }));
        let start = tokio::time::Instant::now();
        let inv = Invocation::new(Default::default(), context_in("r", Duration::from_secs(10)));
        run_through(layer, inv).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }
}
