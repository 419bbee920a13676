//! Why the host answered an invocation with an error: [`HostError`], its `errorType`
//! (every name is in [`error_type`](crate::error_type)), whether it recycles the process,
//! and the one conversion into the `Diagnostic` the Runtime API is sent.

use std::fmt;

use lambda_runtime::Diagnostic;

use crate::{BoxError, LambdaWorkerError, error_type};

/// An invocation's failure, as the host answers it.
#[derive(Debug)]
pub(crate) enum HostError {
    /// The stack failed. Its error type is tower's `BoxError`, because a layer of your own
    /// may fail with any error: the host looks into it here, once, for a
    /// [`LambdaWorkerError`]'s `errorType`.
    Stack(BoxError),
    /// A rule the host applies before the stack failed (the Runtime API's deadline).
    Rule(LambdaWorkerError),
    /// The stack panicked (the message is the panic's): the worker's state is unknown.
    Panicked(String),
    /// The Runtime API's invocation could not be read (a header missing or malformed).
    InvalidInvocation(String),
    /// The stack's response does not serialize to JSON.
    Unserializable(serde_json::Error),
}

impl HostError {
    /// The `errorType` answered.
    pub(crate) fn error_type(&self) -> &str {
        match self {
            Self::Stack(e) => stack_error_type(e),
            Self::Rule(e) => e.error_type(),
            Self::Panicked(_) => error_type::PANIC,
            Self::InvalidInvocation(_) => error_type::INVALID_INVOCATION,
            Self::Unserializable(_) => error_type::OTHER,
        }
    }

    /// Why the process must be recycled once this was answered, if it must: a panic, or
    /// a worker that did not stop ([`LambdaWorkerError::recycles_process`]).
    pub(crate) fn recycles(&self) -> Option<String> {
        let recycles = match self {
            Self::Panicked(_) => true,
            Self::Stack(e) => e
                .downcast_ref::<LambdaWorkerError>()
                .is_some_and(LambdaWorkerError::recycles_process),
            Self::Rule(e) => e.recycles_process(),
            Self::InvalidInvocation(_) | Self::Unserializable(_) => false,
        };
        recycles.then(|| self.to_string())
    }
}

/// The `errorType` of an error from the stack: a [`LambdaWorkerError`]'s (yours, for
/// [`LambdaWorkerError::custom`]), else [`error_type::OTHER`].
pub(crate) fn stack_error_type(error: &BoxError) -> &str {
    error
        .downcast_ref::<LambdaWorkerError>()
        .map_or(error_type::OTHER, LambdaWorkerError::error_type)
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stack(e) => e.fmt(f),
            Self::Rule(e) => e.fmt(f),
            Self::Panicked(message) => write!(
                f,
                "the stack panicked: {message}; exiting so Lambda starts a fresh process"
            ),
            Self::InvalidInvocation(message) => f.write_str(message),
            Self::Unserializable(e) => {
                write!(f, "the stack's response does not serialize to JSON: {e}")
            }
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Stack(e) => Some(e.as_ref()),
            Self::Rule(e) => Some(e),
            Self::Unserializable(e) => Some(e),
            Self::Panicked(_) | Self::InvalidInvocation(_) => None,
        }
    }
}

impl From<&HostError> for Diagnostic {
    fn from(error: &HostError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// The `Diagnostic` answered for an error from the stack (the OTel layer records it on the
/// invocation's span; [`testing::error_type`](crate::testing::error_type) reads it).
pub(crate) fn stack_diagnostic(error: &BoxError) -> Diagnostic {
    Diagnostic {
        error_type: stack_error_type(error).to_owned(),
        error_message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_type_and_the_recycling_ones_say_why() {
        let stack = HostError::Stack(LambdaWorkerError::MissingTaskQueue.into());
        let d = Diagnostic::from(&stack);
        assert_eq!(d.error_type, error_type::MISSING_TASK_QUEUE);
        assert!(d.error_message.contains("TEMPORAL_TASK_QUEUE"), "{d:?}");
        assert_eq!(stack.recycles(), None);

        let other = HostError::Stack("custom layer said no".into());
        assert_eq!(other.error_type(), error_type::OTHER);
        assert_eq!(other.to_string(), "custom layer said no");

        let drained = HostError::Stack(LambdaWorkerError::DeadlineExceeded.into());
        assert!(drained.recycles().unwrap().contains("answered early"));

        let panicked = HostError::Panicked("boom".into());
        assert_eq!(panicked.error_type(), error_type::PANIC);
        assert_eq!(
            panicked.recycles().as_deref(),
            Some("the stack panicked: boom; exiting so Lambda starts a fresh process")
        );

        let rule = HostError::Rule(LambdaWorkerError::InvalidDeadline { sent_ms: 600_000 });
        assert_eq!(rule.error_type(), error_type::INVALID_DEADLINE);
        assert_eq!(rule.recycles(), None);

        let bad = HostError::InvalidInvocation("no deadline header".into());
        assert_eq!(bad.error_type(), error_type::INVALID_INVOCATION);
        assert_eq!(bad.recycles(), None);
    }
}
