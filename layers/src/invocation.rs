//! The request type that flows through the stack.

use lambda_runtime::Context;
use tokio::time::Instant;

use crate::LambdaWorkerConfig;

/// One Lambda invocation on its way down the stack: the Lambda event and context, plus
/// the per-invocation [`LambdaWorkerConfig`] the layers fill in.
#[derive(Debug)]
pub struct Invocation {
    /// The invocation's payload. Temporal's Worker Controller sends an empty one; the
    /// work is whatever the worker polls, so nothing in the stack reads it.
    pub payload: serde_json::Value,
    /// The Lambda context: request id, deadline, function ARN, trace id.
    pub context: Context,
    /// The configuration being built for this invocation's worker.
    pub config: LambdaWorkerConfig,
    /// When to stop polling and when the answer is due; set by
    /// [`DeadlineWatchdogLayer`](crate::DeadlineWatchdogLayer). `None` runs the worker
    /// until it stops by itself.
    pub schedule: Option<ShutdownSchedule>,
}

impl Invocation {
    /// A fresh invocation with a blank config.
    pub fn new(payload: serde_json::Value, context: Context) -> Self {
        Self {
            payload,
            context,
            config: LambdaWorkerConfig::default(),
            schedule: None,
        }
    }
}

/// The moments that bound one invocation's poll session, all derived from the absolute
/// Lambda deadline (so time spent connecting never eats the buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownSchedule {
    /// The Lambda invocation deadline.
    pub deadline: Instant,
    /// Stop polling and begin graceful shutdown: deadline − shutdown buffer.
    pub shutdown_at: Instant,
    /// Give up on a worker that has not drained: shutdown_at + graceful timeout + 1 s,
    /// and never later than `answer_by`.
    pub drain_by: Instant,
    /// Everything inside the watchdog (worker, hooks) must be done by then.
    pub answer_by: Instant,
}
