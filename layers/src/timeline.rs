//! One invocation's timeline: every moment that bounds it, read once from the Lambda
//! deadline when the [`Invocation`](crate::Invocation) is made, and planned by the
//! [`DeadlineWatchdogLayer`](crate::DeadlineWatchdogLayer) once the configuration is final.
//!
//! ```text
//! received ─ polling ─ shutdown_at ─ drain ─ cancel_at ─ drain_by ─ hooks ─ cleanup_by ─ teardown ─ answer_by ─ deadline
//!                      deadline − buffer     + graceful  + 1 s                − 0.5 s                 − 0.2 s
//! ```
//!
//! Every layer reads the same [`Timeline`] ([`Invocation::timeline`](crate::Invocation::timeline)).
//! Without a deadline (a test, a stack run outside Lambda) every moment is
//! [`Moment::NEVER`]: waiting for it never ends and nothing is cut off, so no caller
//! needs a case of its own.
//!
//! ```
//! use std::time::Duration;
//! use temporal_lambda_worker_layers::{Moment, Timeline};
//! use tokio::time::Instant;
//!
//! let deadline = Instant::now() + Duration::from_secs(60);
//! let t = Timeline::until(deadline).planned(Duration::from_secs(7), Duration::from_secs(5));
//! assert_eq!(t.shutdown_at(), Moment::at(deadline - Duration::from_secs(7)));
//! assert_eq!(t.drain_by(), Moment::at(deadline - Duration::from_secs(1))); // + 5 s + 1 s
//! assert_eq!(Timeline::unbounded().answer_by(), Moment::NEVER);
//! ```

use std::{
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lambda_runtime::Context;
use tokio::time::Instant;

/// The worker and the shutdown hooks must be done this long before the deadline.
pub const CLEANUP_BEFORE_DEADLINE: Duration = Duration::from_millis(500);
/// The configure teardown and the telemetry flush must be done this long before the
/// deadline (what is left is for posting the answer to the Runtime API).
pub const ANSWER_BEFORE_DEADLINE: Duration = Duration::from_millis(200);
/// How much longer than the graceful shutdown timeout a drain may take before the
/// worker is abandoned.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// A moment on an invocation's timeline, or [`NEVER`](Self::NEVER) when the invocation
/// has no deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(Order);

/// `At` sorts before `Never`: every instant is earlier than never.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Order {
    At(Instant),
    Never,
}

impl Moment {
    /// The moment that never comes.
    pub const NEVER: Moment = Moment(Order::Never);

    /// The moment at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(Order::At(instant))
    }

    /// The instant, `None` for [`NEVER`](Self::NEVER).
    pub fn instant(self) -> Option<Instant> {
        match self.0 {
            Order::At(i) => Some(i),
            Order::Never => None,
        }
    }

    /// How long until the moment from now (zero once it passed); `None` for never.
    pub fn left(self) -> Option<Duration> {
        self.instant()
            .map(|i| i.saturating_duration_since(Instant::now()))
    }

    /// The earlier of `instant` and this moment (`instant` itself for never).
    pub fn cap(self, instant: Instant) -> Instant {
        self.instant().map_or(instant, |i| i.min(instant))
    }

    /// Resolves when the moment comes (never, for [`NEVER`](Self::NEVER)).
    pub async fn reached(self) {
        match self.0 {
            Order::At(i) => tokio::time::sleep_until(i).await,
            Order::Never => std::future::pending().await,
        }
    }

    /// Runs `future` until it ends (`Some` of its output) or the moment comes (`None`,
    /// and the future is dropped).
    pub async fn cut<F: Future>(self, future: F) -> Option<F::Output> {
        match self.0 {
            Order::At(i) => tokio::time::timeout_at(i, future).await.ok(),
            Order::Never => Some(future.await),
        }
    }

    /// This moment, `by` earlier.
    fn earlier(self, by: Duration) -> Self {
        match self.0 {
            Order::At(i) => Self::at(i.checked_sub(by).unwrap_or(i)),
            Order::Never => Self::NEVER,
        }
    }

    /// This moment, `by` later.
    fn later(self, by: Duration) -> Self {
        match self.0 {
            Order::At(i) => Self::at(i + by),
            Order::Never => Self::NEVER,
        }
    }
}

/// The moments that bound one invocation. Built once from the Lambda deadline
/// ([`from_context`](Self::from_context)); the shutdown moment and the drain's end are
/// [`NEVER`](Moment::NEVER) until [`planned`](Self::planned) with the final shutdown
/// buffer and graceful shutdown timeout (the deadline watchdog does it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    received_at: Instant,
    deadline: Moment,
    shutdown_at: Moment,
    cancel_at: Moment,
    drain_by: Moment,
    cleanup_by: Moment,
    answer_by: Moment,
}

impl Timeline {
    /// The timeline of a Lambda context: its wall-clock deadline (epoch milliseconds; 0
    /// for none) converted to a monotonic instant, once, now.
    pub fn from_context(context: &Context) -> Self {
        if context.deadline == 0 {
            return Self::unbounded();
        }
        let deadline = UNIX_EPOCH + Duration::from_millis(context.deadline);
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self::until(Instant::now() + left)
    }

    /// The timeline of an invocation due at `deadline`, received now, not yet planned.
    pub fn until(deadline: Instant) -> Self {
        Self::bounded_by(Moment::at(deadline))
    }

    /// The timeline of an invocation without a deadline: every moment is never.
    pub fn unbounded() -> Self {
        Self::bounded_by(Moment::NEVER)
    }

    fn bounded_by(deadline: Moment) -> Self {
        Self {
            received_at: Instant::now(),
            deadline,
            shutdown_at: Moment::NEVER,
            cancel_at: Moment::NEVER,
            drain_by: Moment::NEVER,
            cleanup_by: deadline.earlier(CLEANUP_BEFORE_DEADLINE),
            answer_by: deadline.earlier(ANSWER_BEFORE_DEADLINE),
        }
    }

    /// This timeline with its poll session planned: stop polling at `deadline − buffer`;
    /// the tasks still running are cancelled at `shutdown_at + graceful`; give up on a
    /// worker that has not drained by `shutdown_at + graceful + 1 s`. None of them later
    /// than `cleanup_by` (deadline − 500 ms, or − `buffer` when that is less). Planning an
    /// unbounded timeline leaves it unbounded.
    pub fn planned(self, buffer: Duration, graceful_shutdown_timeout: Duration) -> Self {
        let cleanup_by = self.deadline.earlier(CLEANUP_BEFORE_DEADLINE.min(buffer));
        let shutdown_at = self.deadline.earlier(buffer);
        let drain_by = shutdown_at
            .later(graceful_shutdown_timeout + DRAIN_GRACE)
            .min(cleanup_by);
        Self {
            shutdown_at,
            cancel_at: shutdown_at.later(graceful_shutdown_timeout).min(drain_by),
            drain_by,
            cleanup_by,
            ..self
        }
    }

    /// When the invocation entered the stack (it was handed out).
    pub fn received_at(&self) -> Instant {
        self.received_at
    }

    /// The Lambda invocation deadline.
    pub fn deadline(&self) -> Moment {
        self.deadline
    }

    /// Stop polling and begin the graceful shutdown: deadline − shutdown buffer.
    pub fn shutdown_at(&self) -> Moment {
        self.shutdown_at
    }

    /// The graceful shutdown timeout has run from the shutdown moment: the SDK cancels the
    /// tasks still running (an activity that cannot end by then is better handed back).
    pub fn cancel_at(&self) -> Moment {
        self.cancel_at
    }

    /// Give up on a worker that has not drained (the process is then recycled).
    pub fn drain_by(&self) -> Moment {
        self.drain_by
    }

    /// The worker and the shutdown hooks are done by then; the deadline watchdog cuts
    /// off what is not.
    pub fn cleanup_by(&self) -> Moment {
        self.cleanup_by
    }

    /// The configure teardown and the telemetry flush are done by then; what is left is
    /// for posting the answer.
    pub fn answer_by(&self) -> Moment {
        self.answer_by
    }

    /// Time left until the deadline; `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.left()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[tokio::test(start_paused = true)]
    async fn a_planned_timeline_is_the_deadline_minus_the_buffer_then_the_drain() {
        let deadline = Instant::now() + S(60);
        let t = Timeline::until(deadline).planned(S(7), S(5));
        assert_eq!(t.deadline(), Moment::at(deadline));
        assert_eq!(t.shutdown_at(), Moment::at(deadline - S(7)));
        assert_eq!(t.cancel_at(), Moment::at(deadline - S(2)), "graceful 5 s");
        assert_eq!(
            t.drain_by(),
            Moment::at(deadline - S(1)),
            "graceful 5 s + 1 s"
        );
        assert_eq!(
            t.cleanup_by(),
            Moment::at(deadline - CLEANUP_BEFORE_DEADLINE)
        );
        assert_eq!(t.answer_by(), Moment::at(deadline - ANSWER_BEFORE_DEADLINE));
        assert!(t.shutdown_at() < t.cancel_at() && t.cancel_at() < t.drain_by());
        assert!(t.drain_by() < t.cleanup_by());
        assert!(t.cleanup_by() < t.answer_by() && t.answer_by() < t.deadline());
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_never_ends_after_cleanup_by_and_a_small_buffer_shrinks_cleanup() {
        let deadline = Instant::now() + S(60);
        // A graceful timeout longer than the buffer: the drain would end past the deadline.
        let t = Timeline::until(deadline).planned(S(3), S(30));
        assert_eq!(t.drain_by(), t.cleanup_by());
        assert_eq!(t.cancel_at(), t.drain_by());
        let t = Timeline::until(deadline).planned(Duration::from_millis(300), S(0));
        assert_eq!(
            t.cleanup_by(),
            Moment::at(deadline - Duration::from_millis(300))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbounded_timeline_never_ends_and_never_cuts_off() {
        let t = Timeline::unbounded().planned(S(7), S(5));
        let moments = [t.deadline(), t.shutdown_at(), t.cancel_at(), t.drain_by()];
        for m in moments.into_iter().chain([t.cleanup_by(), t.answer_by()]) {
            assert_eq!(m, Moment::NEVER);
            assert_eq!(m.left(), None);
        }
        assert!(Moment::at(Instant::now()) < Moment::NEVER);
        let soon = Instant::now() + S(1);
        assert_eq!(Moment::NEVER.cap(soon), soon);
        assert_eq!(Moment::at(soon + S(1)).cap(soon), soon);
        assert_eq!(Moment::at(soon - S(1)).cap(soon), soon - S(1));
        assert_eq!(t.cleanup_by().cut(async { 7 }).await, Some(7));
        let waited = tokio::time::timeout(S(3600), t.shutdown_at().reached()).await;
        assert!(waited.is_err(), "never came");
    }

    #[tokio::test(start_paused = true)]
    async fn a_moment_cuts_off_what_outlasts_it_and_is_reached_on_time() {
        let start = Instant::now();
        let m = Moment::at(start + S(2));
        assert_eq!(m.cut(std::future::pending::<()>()).await, None);
        assert_eq!(start.elapsed(), S(2));
        assert_eq!(m.left(), Some(Duration::ZERO));
        Moment::at(start + S(5)).reached().await;
        assert_eq!(start.elapsed(), S(5));
    }

    #[test]
    fn a_context_without_a_deadline_is_unbounded_and_one_with_is_read_once() {
        let t = Timeline::from_context(&Context::default());
        assert_eq!(t.deadline(), Moment::NEVER);
        let mut c = Context::default();
        let in_60s = SystemTime::now() + S(60);
        c.deadline = in_60s.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = Timeline::from_context(&c).remaining().unwrap();
        assert!(left > S(59) && left <= S(60), "{left:?}");
    }
}
