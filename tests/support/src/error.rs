//! The testkit's one error type: what went wrong in the local loop, by kind, each with
//! the words that say what to look at.

use std::{fmt, io, time::Duration};

/// What went wrong in the local loop.
///
/// Each kind carries what its message needs; [`Error::is_throttled`] and
/// [`Error::already_exists`] answer the two questions callers ask of a failed CLI
/// command, so nobody matches on a message's text.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A program, a file or a socket could not be used; `doing` says what for.
    Io {
        /// What failed, or what the loop was doing when it failed.
        doing: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A `temporal` CLI command exited with an error.
    Cli {
        /// The command's first words (`workflow start`, `worker deployment create`, …).
        command: String,
        /// What it printed: stdout, then stderr.
        output: String,
    },
    /// An answer (the CLI's, a container's, a server's) was not what the loop reads.
    Unexpected {
        /// What was expected ("JSON from `workflow show`", …).
        expected: String,
        /// What came.
        got: String,
    },
    /// What the loop waited for did not happen in time.
    Timeout {
        /// What it waited for, with what it saw last.
        waiting_for: String,
        /// How long it waited.
        after: Duration,
    },
    /// A workflow did not end, or not with the result it should have.
    Workflow {
        /// The workflow's id.
        workflow_id: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An invocation (of a function, of an agent runtime) failed or was not answered, or a
    /// version's worker did not poll as the loop expected; the message says what to check.
    Invocation(String),
    /// A check of a scenario (an upgrade's, a ramp's) failed: what it saw.
    Check(String),
    /// A request named a function, version or agent runtime the local control plane does
    /// not have, or asked for what it does not do.
    NotFound(String),
    /// `lambda-local` was given a command line it cannot run (`--help` says how).
    Usage(String),
}

/// The testkit's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] while `doing`.
    pub fn io(doing: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            doing: doing.into(),
            source,
        }
    }

    /// An [`Error::Workflow`] of `workflow_id`.
    pub fn workflow(workflow_id: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Workflow {
            workflow_id: workflow_id.into(),
            problem: problem.into(),
        }
    }

    /// An [`Error::Timeout`].
    pub fn timeout(waiting_for: impl Into<String>, after: Duration) -> Self {
        Self::Timeout {
            waiting_for: waiting_for.into(),
            after,
        }
    }

    /// Whether the server refused a CLI command for now: "too many requests issued to
    /// Worker Deployment … Please try again later".
    pub fn is_throttled(&self) -> bool {
        self.cli_said("try again later")
    }

    /// Whether a CLI command failed because what it creates exists already.
    pub fn already_exists(&self) -> bool {
        self.cli_said("already exists")
    }

    fn cli_said(&self, words: &str) -> bool {
        matches!(self, Self::Cli { output, .. } if output.contains(words))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { doing, source } => write!(f, "{doing}: {source}"),
            Self::Cli { command, output } => {
                write!(f, "`temporal {command}` failed: {}", output.trim_end())
            }
            Self::Unexpected { expected, got } => write!(f, "expected {expected}, got: {got}"),
            Self::Timeout { waiting_for, after } => {
                write!(f, "{waiting_for}: nothing within {after:?}")
            }
            Self::Workflow {
                workflow_id,
                problem,
            } => write!(f, "workflow {workflow_id}: {problem}"),
            Self::Invocation(m) | Self::Check(m) | Self::NotFound(m) | Self::Usage(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_failure_is_asked_about_by_kind_and_says_its_command() {
        let e = Error::Cli {
            command: "worker deployment create".into(),
            output: "Error: too many requests issued to Worker Deployment x. Please try again \
                     later\n"
                .into(),
        };
        assert!(e.is_throttled());
        assert!(!e.already_exists());
        assert_eq!(
            e.to_string(),
            "`temporal worker deployment create` failed: Error: too many requests issued to \
             Worker Deployment x. Please try again later"
        );
        // The same words in another kind of error are not a CLI's answer.
        assert!(!Error::Invocation("try again later".into()).is_throttled());
    }

    #[test]
    fn an_io_error_keeps_its_source() {
        let e = Error::io("starting `temporal`", io::ErrorKind::NotFound.into());
        assert_eq!(e.to_string(), "starting `temporal`: entity not found");
        assert!(std::error::Error::source(&e).is_some());
    }
}
