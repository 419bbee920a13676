//! The deadline watchdog: plans the invocation's poll session on its timeline and makes
//! sure the invocation answers before the deadline, always.
//!
//! Once the configuration is final, *work time* = time left − shutdown deadline buffer.
//! Work time ≤ 1 s fails the invocation ("Lambda timeout is too short", with both numbers
//! and what to change); under 5 s logs a warning. Otherwise it plans the
//! [`Timeline`](crate::Timeline) ([`Invocation::timeline`]): stop polling at
//! `deadline − buffer`, give up on a worker that has not drained by
//! `shutdown_at + graceful timeout + 1 s`, and have everything inside done by
//! `cleanup_by` (`deadline − 500 ms`). The timeline holds the *absolute* deadline, so
//! time spent connecting never eats the buffer. The inner service is cut off at
//! `cleanup_by` with [`LambdaWorkerError::DeadlineExceeded`] (`tower::timeout` takes a
//! fixed duration; this needs an absolute instant).
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use temporal_lambda_worker_layers::{BoxError, DeadlineWatchdogLayer, Invocation};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let mut svc = ServiceBuilder::new()
//!     .layer(DeadlineWatchdogLayer::new())
//!     .service(service_fn(|inv: Invocation| async move {
//!         let t = inv.timeline();
//!         Ok::<_, BoxError>(t.deadline().instant().unwrap() - t.shutdown_at().instant().unwrap())
//!     }));
//! let mut context = lambda_runtime::Context::default();
//! let in_60s = SystemTime::now() + Duration::from_secs(60);
//! context.deadline = in_60s.duration_since(UNIX_EPOCH)?.as_millis() as u64;
//! let inv = Invocation::new(serde_json::Value::Null, context);
//! // The default buffer: graceful shutdown timeout (unset here: 0 s) + 2 s.
//! assert_eq!(svc.ready().await?.call(inv).await?, Duration::from_secs(2));
//! # Ok(()) }
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use pin_project::pin_project;

use tokio::time::Timeout;
use tower::{Layer, Service};

use crate::{BoxError, Invocation, LambdaWorkerError, step};

/// Work time at or below this fails the invocation.
pub const MIN_WORK_TIME: Duration = Duration::from_secs(1);
/// Work time below this logs a warning.
pub const WARN_WORK_TIME: Duration = Duration::from_secs(5);
/// Layer that schedules graceful shutdown and enforces the answer deadline. Place it
/// after the configure layer (it reads the buffer the callback may have set), closest
/// to the worker service.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineWatchdogLayer {
    _priv: (),
}

impl DeadlineWatchdogLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for DeadlineWatchdogLayer {
    type Service = DeadlineWatchdog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineWatchdog { inner }
    }
}

/// The service made by [`DeadlineWatchdogLayer`].
#[derive(Clone, Debug)]
pub struct DeadlineWatchdog<S> {
    inner: S,
}

impl<S> Service<Invocation> for DeadlineWatchdog<S>
where
    S: Service<Invocation>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut inv: Invocation) -> Self::Future {
        if let Err(error) = inv.enter(crate::invocation::Lifecycle::DeadlineWatchdog) {
            return ResponseFuture::new(Kind::Step {
                future: step::ResponseFuture::failed(error),
            });
        }
        let buffer = inv.config.effective_shutdown_deadline_buffer();
        let planned = inv
            .timeline()
            .planned(buffer, inv.config.graceful_shutdown_timeout());
        let (Some(remaining), Some(cleanup_by)) =
            (planned.remaining(), planned.cleanup_by().instant())
        else {
            return ResponseFuture::new(Kind::Step {
                future: step::ResponseFuture::inner(self.inner.call(inv)),
            });
        };
        let work = remaining.saturating_sub(buffer);
        if work <= MIN_WORK_TIME {
            let short = LambdaWorkerError::TimeoutTooShort { remaining, buffer };
            return ResponseFuture::new(Kind::Step {
                future: step::ResponseFuture::failed(short),
            });
        }
        if work < WARN_WORK_TIME {
            tracing::warn!(
                remaining_ms = remaining.as_millis() as u64,
                buffer_ms = buffer.as_millis() as u64,
                work_ms = work.as_millis() as u64,
                "only {:.1}s to poll before the shutdown buffer ({:.1}s): raise the function's \
                 timeout for useful invocations",
                work.as_secs_f64(),
                buffer.as_secs_f64()
            );
        }
        let inv = inv.with_timeline(planned);
        ResponseFuture::new(Kind::Bounded {
            future: tokio::time::timeout_at(cleanup_by, self.inner.call(inv)),
        })
    }
}

/// Response future of [`DeadlineWatchdog`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

impl<F> ResponseFuture<F> {
    fn new(kind: Kind<F>) -> Self {
        Self { kind }
    }
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    /// No deadline (the inner future as is), or failed before calling the inner service:
    /// what a [`Step`](crate::Step)'s future does.
    Step {
        #[pin]
        future: step::ResponseFuture<F>,
    },
    /// The inner future, cut off at the timeline's `cleanup_by`.
    Bounded {
        #[pin]
        future: Timeout<F>,
    },
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Step { future } => future.poll(cx),
            KindProj::Bounded { future } => match future.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(result)) => Poll::Ready(result.map_err(Into::into)),
                Poll::Ready(Err(_elapsed)) => {
                    Poll::Ready(Err(LambdaWorkerError::DeadlineExceeded.into()))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Moment,
        testing::{context_in, run_through},
        timeline::CLEANUP_BEFORE_DEADLINE,
    };
    use tokio::time::Instant;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn inv_with(
        remaining: Duration,
        graceful: Option<Duration>,
        buffer: Option<Duration>,
    ) -> Invocation {
        let mut inv = Invocation::new(Default::default(), context_in("r", remaining));
        inv.config.worker.graceful_shutdown_period = graceful;
        inv.config.shutdown_deadline_buffer = buffer;
        inv
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[tokio::test(start_paused = true)]
    async fn the_timeline_is_planned_as_deadline_minus_buffer() {
        let inv = run_through(
            DeadlineWatchdogLayer::new(),
            inv_with(S(60), Some(S(5)), None),
        )
        .await
        .unwrap();
        let t = inv.timeline();
        let at = |m: Moment| m.instant().expect("planned");
        let to_deadline = t.remaining().unwrap();
        assert!(
            to_deadline <= S(60) && to_deadline > S(59),
            "{to_deadline:?}"
        );
        assert_eq!(
            at(t.deadline()) - at(t.shutdown_at()),
            S(7),
            "default buffer = graceful 5s + 2s"
        );
        assert_eq!(
            at(t.drain_by()) - at(t.shutdown_at()),
            S(6),
            "graceful + 1s grace"
        );
        assert_eq!(
            at(t.deadline()) - at(t.cleanup_by()),
            CLEANUP_BEFORE_DEADLINE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drain_cap_never_passes_answer_by() {
        // Buffer smaller than graceful timeout: drain would end after the deadline.
        let inv = run_through(
            DeadlineWatchdogLayer::new(),
            inv_with(S(60), Some(S(30)), Some(S(3))),
        )
        .await
        .unwrap();
        let t = inv.timeline();
        assert_eq!(t.drain_by(), t.cleanup_by());
        assert!(t.cleanup_by() < t.deadline());
    }

    #[tokio::test(start_paused = true)]
    async fn work_time_of_one_second_or_less_is_an_error_with_both_numbers() {
        let err = run_through(
            DeadlineWatchdogLayer::new(),
            inv_with(Duration::from_millis(7_500), Some(S(5)), None),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Lambda timeout is too short"), "{msg}");
        assert!(msg.contains("shutdown deadline buffer is 7.0s"), "{msg}");
        assert!(
            msg.contains("7.5s remained") || msg.contains("7.4s remained"),
            "{msg}"
        );
        assert!(msg.contains("--timeout"), "{msg}");
        assert_eq!(
            err.downcast_ref::<LambdaWorkerError>()
                .unwrap()
                .error_type(),
            "TemporalLambdaWorker.TimeoutTooShort"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_time_just_over_one_second_is_allowed() {
        let inv = run_through(
            DeadlineWatchdogLayer::new(),
            inv_with(Duration::from_millis(8_600), Some(S(5)), None),
        )
        .await
        .unwrap();
        assert_ne!(inv.timeline().shutdown_at(), Moment::NEVER);
    }

    #[tokio::test]
    async fn no_deadline_means_no_shutdown_moment() {
        let inv = run_through(
            DeadlineWatchdogLayer::new(),
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap();
        assert_eq!(inv.timeline().shutdown_at(), Moment::NEVER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_inner_service_is_answered_before_the_deadline() {
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineWatchdogLayer::new())
            .service(service_fn(|_: Invocation| async {
                std::future::pending::<()>().await;
                Ok::<_, BoxError>(())
            }));
        let start = Instant::now();
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(inv_with(S(30), Some(S(5)), None))
            .await
            .unwrap_err();
        let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
        assert!(e.recycles_process());
        let elapsed = start.elapsed();
        assert!(elapsed < S(30) && elapsed >= S(29), "{elapsed:?}");
    }
}
