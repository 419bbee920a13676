//! The one way a layer's future fails before it called its inner service: the error,
//! handed out on the first poll.

use std::task::Poll;

use crate::{BoxError, LambdaWorkerError};

/// An error handed out once, on the first poll.
#[derive(Debug)]
pub(crate) struct Failed(Option<LambdaWorkerError>);

impl Failed {
    pub(crate) fn new(error: LambdaWorkerError) -> Self {
        Self(Some(error))
    }

    /// The error, as a future's output.
    pub(crate) fn poll<R>(&mut self) -> Poll<Result<R, BoxError>> {
        Poll::Ready(Err(self
            .0
            .take()
            .expect("ResponseFuture polled after completion")
            .into()))
    }
}
