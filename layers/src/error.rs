//! The errors an invocation can fail with, each worded so a person knows what to change.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

/// Boxed error type used by every service in the stack (as in `tower`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every `errorType` an invocation is answered with, defined here once: the Lambda
/// Runtime API, CloudWatch and your alarms see these names. [`ALL`](error_type::ALL) lists
/// them (the README's list is checked against it); a rule of your own answers with its
/// own ([`LambdaWorkerError::custom`]).
pub mod error_type {
    /// [`LambdaWorkerError::Config`](super::LambdaWorkerError::Config).
    pub const CONFIG: &str = "TemporalLambdaWorker.ConfigError";
    /// [`LambdaWorkerError::MissingTaskQueue`](super::LambdaWorkerError::MissingTaskQueue).
    pub const MISSING_TASK_QUEUE: &str = "TemporalLambdaWorker.MissingTaskQueue";
    /// [`LambdaWorkerError::InvalidVersion`](super::LambdaWorkerError::InvalidVersion).
    pub const INVALID_VERSION: &str = "TemporalLambdaWorker.InvalidVersion";
    /// [`LambdaWorkerError::TimeoutTooShort`](super::LambdaWorkerError::TimeoutTooShort).
    pub const TIMEOUT_TOO_SHORT: &str = "TemporalLambdaWorker.TimeoutTooShort";
    /// [`LambdaWorkerError::ConfigureFailed`](super::LambdaWorkerError::ConfigureFailed).
    pub const CONFIGURE_FAILED: &str = "TemporalLambdaWorker.ConfigureFailed";
    /// [`LambdaWorkerError::ConfigurePanicked`](super::LambdaWorkerError::ConfigurePanicked).
    pub const CONFIGURE_PANICKED: &str = "TemporalLambdaWorker.ConfigurePanicked";
    /// [`LambdaWorkerError::Connect`](super::LambdaWorkerError::Connect).
    pub const CONNECT: &str = "TemporalLambdaWorker.ConnectError";
    /// [`LambdaWorkerError::ServerUnreachable`](super::LambdaWorkerError::ServerUnreachable).
    pub const SERVER_UNREACHABLE: &str = "TemporalLambdaWorker.ServerUnreachable";
    /// [`LambdaWorkerError::Worker`](super::LambdaWorkerError::Worker).
    pub const WORKER: &str = "TemporalLambdaWorker.WorkerError";
    /// [`LambdaWorkerError::Namespace`](super::LambdaWorkerError::Namespace).
    pub const NAMESPACE: &str = "TemporalLambdaWorker.NamespaceError";
    /// [`LambdaWorkerError::Secret`](super::LambdaWorkerError::Secret).
    pub const SECRET: &str = "TemporalLambdaWorker.SecretError";
    /// [`LambdaWorkerError::NothingRegistered`](super::LambdaWorkerError::NothingRegistered).
    pub const NOTHING_REGISTERED: &str = "TemporalLambdaWorker.NothingRegistered";
    /// [`LambdaWorkerError::DrainTimeout`](super::LambdaWorkerError::DrainTimeout): the
    /// process is recycled after the answer.
    pub const DRAIN_TIMEOUT: &str = "TemporalLambdaWorker.DrainTimeout";
    /// [`LambdaWorkerError::DeadlineExceeded`](super::LambdaWorkerError::DeadlineExceeded):
    /// the process is recycled after the answer.
    pub const DEADLINE_EXCEEDED: &str = "TemporalLambdaWorker.DeadlineExceeded";
    /// [`LambdaWorkerError::InvalidDeadline`](super::LambdaWorkerError::InvalidDeadline).
    pub const INVALID_DEADLINE: &str = "TemporalLambdaWorker.InvalidDeadline";
    /// [`LambdaWorkerError::LayerOrder`](super::LambdaWorkerError::LayerOrder).
    pub const LAYER_ORDER: &str = "TemporalLambdaWorker.LayerOrder";
    /// The stack panicked: the host answers with this, then recycles the process.
    pub const PANIC: &str = "TemporalLambdaWorker.Panic";
    /// The host could not read the invocation it was handed (a header missing or
    /// malformed: a local emulator's defect).
    pub const INVALID_INVOCATION: &str = "TemporalLambdaWorker.InvalidInvocation";
    /// The host's environment is broken (a Lambda variable missing or invalid): reported
    /// as the init error, and the process exits.
    pub const INVALID_LAMBDA_ENVIRONMENT: &str = "TemporalLambdaWorker.InvalidLambdaEnvironment";
    /// An error of a layer of your own that is not a
    /// [`LambdaWorkerError`](super::LambdaWorkerError), or a response that does not
    /// serialize.
    pub const OTHER: &str = "TemporalLambdaWorker.Error";

    /// Every `errorType` above.
    pub const ALL: &[&str] = &[
        CONFIG,
        MISSING_TASK_QUEUE,
        INVALID_VERSION,
        TIMEOUT_TOO_SHORT,
        CONFIGURE_FAILED,
        CONFIGURE_PANICKED,
        CONNECT,
        SERVER_UNREACHABLE,
        WORKER,
        NAMESPACE,
        SECRET,
        NOTHING_REGISTERED,
        DRAIN_TIMEOUT,
        DEADLINE_EXCEEDED,
        INVALID_DEADLINE,
        LAYER_ORDER,
        PANIC,
        INVALID_INVOCATION,
        INVALID_LAMBDA_ENVIRONMENT,
        OTHER,
    ];

    /// The failure type of an activity handed back because it could not finish before
    /// the drain's end (`TEMPORAL_LONGEST_ACTIVITY_SECS`): retried, unless its retry
    /// policy lists this type as non-retryable.
    pub const ACTIVITY_DEFERRED: &str = "TemporalLambdaWorker.ActivityDeferred";
    /// The failure type of a task handed back at an invocation boundary (a poll's task
    /// that arrived with nobody left to run it).
    pub const TASK_HANDED_BACK: &str = "TemporalLambdaWorker.TaskHandedBack";
}

/// Why an invocation failed.
///
/// Every variant's `Display` says what went wrong *and* what to change. The Lambda
/// adapter reports it through the Runtime API's error endpoint with [`error_type`]
/// as the `errorType`.
///
/// [`error_type`]: LambdaWorkerError::error_type
#[derive(Debug)]
#[non_exhaustive]
pub enum LambdaWorkerError {
    /// The Temporal client configuration (TOML file or `TEMPORAL_*` variables) is unusable.
    Config {
        /// The file involved, when the problem is in (or about) a file.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
    /// No task queue was set.
    MissingTaskQueue,
    /// The Worker Deployment Version or versioning behaviour is unusable.
    InvalidVersion(String),
    /// The invocation leaves too little time to poll before the shutdown buffer.
    TimeoutTooShort {
        /// Time left until the Lambda deadline when the invocation started.
        remaining: Duration,
        /// The shutdown deadline buffer in force.
        buffer: Duration,
    },
    /// The user's configure callback returned an error.
    ConfigureFailed(BoxError),
    /// The [`SecretResolver`](crate::SecretResolver) failed to resolve the API key's secret.
    Secret {
        /// The secret's id (`TEMPORAL_API_KEY_SECRET_ARN`), never its value.
        secret_id: String,
        /// The resolver's type.
        resolver: &'static str,
        /// Why it failed.
        source: BoxError,
    },
    /// The worker registers no workflow and no activity: it could serve nothing.
    NothingRegistered,
    /// The user's configure callback panicked.
    ConfigurePanicked(String),
    /// Connecting to Temporal or creating the worker failed.
    Connect {
        /// The server address that was tried.
        target: String,
        /// Why it failed.
        source: BoxError,
        /// What kind of failure it is (it picks what the message says to change).
        problem: ConnectProblem,
    },
    /// The server stopped answering while the worker polled (a warm invocation's cached
    /// connection to a server that went away, or a server that died mid-session). The
    /// cached connection is dropped, so the next invocation reconnects.
    ServerUnreachable {
        /// The server address.
        target: String,
        /// What the connection check saw.
        source: BoxError,
        /// What kind of failure it is.
        problem: ConnectProblem,
    },
    /// The worker stopped with an error while polling.
    Worker(BoxError),
    /// The worker's namespace could not be described when it started (it does not exist,
    /// or the credentials may not see it).
    Namespace {
        /// The namespace.
        namespace: String,
        /// The server's answer.
        source: BoxError,
    },
    /// The worker did not finish its graceful shutdown in time; the process is recycled.
    DrainTimeout {
        /// The graceful shutdown timeout that was configured.
        graceful_shutdown_timeout: Duration,
    },
    /// The invocation was still running when it had to answer; the process is recycled.
    DeadlineExceeded,
    /// The Runtime API sent a deadline that cannot be real and is not a timeout in
    /// milliseconds either (`cargo lambda watch`'s `600000` is read as one), and
    /// `TEMPORAL_LOCAL_TIMEOUT_SECS` does not say how long to poll instead.
    InvalidDeadline {
        /// The `Lambda-Runtime-Deadline-Ms` value received.
        sent_ms: u64,
    },
    /// Two lifecycle layers of a hand-built stack are in the wrong order (`layer` ran
    /// after `after`, which must come after it): the config would silently be wrong.
    LayerOrder {
        /// The layer that ran too late.
        layer: &'static str,
        /// The layer that ran before it but belongs after it.
        after: &'static str,
    },
    /// A rule of your own failed the invocation: answered with your `errorType` and your
    /// message, as they are ([`LambdaWorkerError::custom`]).
    Custom {
        /// The `errorType` reported to the Runtime API.
        error_type: String,
        /// The message.
        message: String,
    },
}

impl LambdaWorkerError {
    /// A failure of your own rule, answered with `error_type` (say
    /// `"MyCompany.NamespaceNotAllowed"`) and `message` as they are.
    pub fn custom(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Custom {
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    /// The `errorType` reported to the Lambda Runtime API (one of [`error_type::ALL`], or
    /// yours for [`Custom`](Self::Custom)).
    pub fn error_type(&self) -> &str {
        use error_type as t;
        match self {
            Self::Custom { error_type, .. } => error_type,
            Self::LayerOrder { .. } => t::LAYER_ORDER,
            Self::Config { .. } => t::CONFIG,
            Self::MissingTaskQueue => t::MISSING_TASK_QUEUE,
            Self::InvalidVersion(_) => t::INVALID_VERSION,
            Self::TimeoutTooShort { .. } => t::TIMEOUT_TOO_SHORT,
            Self::ConfigureFailed(_) => t::CONFIGURE_FAILED,
            Self::ConfigurePanicked(_) => t::CONFIGURE_PANICKED,
            Self::Connect { .. } => t::CONNECT,
            Self::ServerUnreachable { .. } => t::SERVER_UNREACHABLE,
            Self::Worker(_) => t::WORKER,
            Self::Namespace { .. } => t::NAMESPACE,
            Self::Secret { .. } => t::SECRET,
            Self::NothingRegistered => t::NOTHING_REGISTERED,
            Self::DrainTimeout { .. } => t::DRAIN_TIMEOUT,
            Self::DeadlineExceeded => t::DEADLINE_EXCEEDED,
            Self::InvalidDeadline { .. } => t::INVALID_DEADLINE,
        }
    }

    /// True when the process is in an unknown state after this error (a worker that
    /// would not drain is still running): answer, then exit so Lambda starts a fresh one.
    pub fn recycles_process(&self) -> bool {
        matches!(self, Self::DrainTimeout { .. } | Self::DeadlineExceeded)
    }
}

/// What kind of connection failure a [`LambdaWorkerError::Connect`] or
/// [`LambdaWorkerError::ServerUnreachable`] is; it picks what the message says to change.
/// The backend tells it from the error's types (a TLS alert, an I/O error's kind, a gRPC
/// status code, a name that does not resolve), never from its text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectProblem {
    /// TLS is on, but the endpoint answers in plaintext.
    NotTls,
    /// The server's TLS certificate was not accepted.
    Certificate,
    /// The server refused the credentials (`Unauthenticated`, `PermissionDenied`).
    Credentials,
    /// Nothing accepts connections at the address.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// Anything else.
    #[default]
    Other,
}

impl ConnectProblem {
    /// What to change.
    pub fn hint(self) -> &'static str {
        match self {
            Self::NotTls => {
                "The server did not answer TLS: TLS is on (TEMPORAL_TLS, TLS settings in the \
                 config file, or an API key, which turns TLS on) but the endpoint speaks \
                 plaintext. Turn TLS off for a plaintext server (a local dev server), or use the \
                 TLS endpoint"
            }
            Self::Certificate => {
                "The server's TLS certificate was not accepted: check \
                 TEMPORAL_TLS_SERVER_CA_CERT* and TEMPORAL_TLS_SERVER_NAME (the name must match \
                 the certificate)"
            }
            Self::Credentials => {
                "The server refused the credentials: check the API key (TEMPORAL_API_KEY or your \
                 secret) or the client certificate and key, and that they are for this namespace"
            }
            Self::Refused => {
                "Nothing accepts connections at that address: check TEMPORAL_ADDRESS / the \
                 config file's address and port, and that the server is running"
            }
            Self::Dns => {
                "The host name does not resolve: check TEMPORAL_ADDRESS / the config file's \
                 address, and DNS from the function's VPC"
            }
            Self::Other => {
                "Check TEMPORAL_ADDRESS / the config file's address, network access from the \
                 function (VPC, security groups, NAT), and TLS / API key settings"
            }
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl fmt::Display for LambdaWorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { path, message } => config_message(f, path.as_deref(), message),
            Self::MissingTaskQueue => f.write_str(
                "no task queue is configured: set `config.worker.task_queue` in your configure \
                 callback, or set the TEMPORAL_TASK_QUEUE environment variable on the function",
            ),
            Self::InvalidVersion(msg) => write!(f, "invalid worker deployment version: {msg}"),
            Self::TimeoutTooShort { remaining, buffer } => timeout_message(f, *remaining, *buffer),
            Self::ConfigureFailed(e) => write!(f, "the configure callback failed: {e}"),
            Self::Secret {
                secret_id,
                resolver,
                source,
            } => secret_message(f, secret_id, resolver, source),
            Self::NothingRegistered => f.write_str(
                "the worker registers no workflow and no activity, so it could serve nothing: \
                 register them on `config.worker` in your configure callback \
                 (`register_workflow::<W>()`, `register_activities(…)`)",
            ),
            Self::ConfigurePanicked(msg) => write!(
                f,
                "the configure callback panicked: {msg}. Fix the callback; this invocation did \
                 not start a worker"
            ),
            Self::Connect {
                target,
                source,
                problem,
            } => write!(
                f,
                "could not start a worker against Temporal at {target}: {source}. {}",
                problem.hint()
            ),
            Self::ServerUnreachable {
                target,
                source,
                problem,
            } => unreachable_message(f, target, source, *problem),
            Self::Worker(e) => write!(f, "the Temporal worker stopped with an error: {e}"),
            Self::Namespace { namespace, source } => write!(
                f,
                "the namespace {namespace} was not found or could not be described: {source}. \
                 Check TEMPORAL_NAMESPACE / the config file's namespace"
            ),
            Self::DrainTimeout {
                graceful_shutdown_timeout,
            } => drain_message(f, *graceful_shutdown_timeout),
            Self::DeadlineExceeded => f.write_str(
                "the invocation had not finished shortly before its deadline and was answered \
                 early; the process will be recycled. Shorten shutdown hooks and teardown, or \
                 raise `shutdown_deadline_buffer`",
            ),
            Self::Custom { message, .. } => f.write_str(message),
            Self::LayerOrder { layer, after } => layer_order_message(f, layer, after),
            Self::InvalidDeadline { sent_ms } => deadline_message(f, *sent_ms),
        }
    }
}

fn config_message(f: &mut fmt::Formatter<'_>, path: Option<&Path>, message: &str) -> fmt::Result {
    match path {
        Some(path) => write!(
            f,
            "Temporal client config file {}: {message}. Fix the file, or point \
             TEMPORAL_CONFIG_FILE at a valid one",
            path.display()
        ),
        None => write!(
            f,
            "Temporal client configuration: {message}. Check the TEMPORAL_* environment \
             variables of the function"
        ),
    }
}

fn unreachable_message(
    f: &mut fmt::Formatter<'_>,
    target: &str,
    source: &BoxError,
    problem: ConnectProblem,
) -> fmt::Result {
    write!(
        f,
        "the Temporal server at {target} stopped answering while the worker polled: {source}. \
         The worker was stopped and the cached connection dropped; the next invocation \
         reconnects. {}",
        problem.hint()
    )
}

fn secret_message(
    f: &mut fmt::Formatter<'_>,
    secret_id: &str,
    resolver: &str,
    source: &BoxError,
) -> fmt::Result {
    write!(
        f,
        "the API key's secret {secret_id} (TEMPORAL_API_KEY_SECRET_ARN) could not be resolved \
         by {resolver}: {source}. Check the secret's id, that the function's role may read it, \
         and the resolver's own settings"
    )
}

fn timeout_message(
    f: &mut fmt::Formatter<'_>,
    remaining: Duration,
    buffer: Duration,
) -> fmt::Result {
    let work = remaining.saturating_sub(buffer);
    let needed = (buffer + Duration::from_secs(10)).as_secs();
    write!(
        f,
        "Lambda timeout is too short: {} remained before the invocation deadline and the \
         shutdown deadline buffer is {}, which leaves {} to poll for tasks (more than 1.0s is \
         required). Raise the function's timeout to at least {needed}s (aws lambda \
         update-function-configuration --timeout {needed}), or lower \
         `shutdown_deadline_buffer` / `graceful_shutdown_period` in your configure callback",
        secs(remaining),
        secs(buffer),
        secs(work),
    )
}

fn drain_message(f: &mut fmt::Formatter<'_>, graceful_shutdown_timeout: Duration) -> fmt::Result {
    write!(
        f,
        "the worker did not finish within its graceful shutdown timeout ({}) — most often an \
         activity that ignored cancellation, or a server slow to answer the worker's last calls \
         (a line before this one names those). The process will be recycled. Make long activities heartbeat and honour cancellation, or raise \
         `graceful_shutdown_period`, `shutdown_deadline_buffer` and the function's timeout \
         together",
        secs(graceful_shutdown_timeout)
    )
}

fn layer_order_message(f: &mut fmt::Formatter<'_>, layer: &str, after: &str) -> fmt::Result {
    write!(
        f,
        "{layer} runs after {after} in this stack, so {after}'s work would be undone or done on \
         an incomplete config. Put them in this order, outermost first: LoadConfigLayer, \
         ApiKeySecretLayer (optional) and your connection layers, LambdaDefaultsLayer, \
         ConfigureLayer, then DisableEagerActivitiesLayer, WorkerVersioningLayer, \
         WorkerIdentityLayer, DeadlineWatchdogLayer, the WorkerService"
    )
}

fn deadline_message(f: &mut fmt::Formatter<'_>, sent_ms: u64) -> fmt::Result {
    write!(
        f,
        "the Lambda Runtime API sent Lambda-Runtime-Deadline-Ms: {sent_ms}, which is neither a \
         deadline nor a timeout in milliseconds (it is {} after 1970-01-01, more than a day): a \
         local emulator sent it (`cargo lambda watch` sends its timeout there, which is read \
         as one). Set TEMPORAL_LOCAL_TIMEOUT_SECS on the process (for example \
         TEMPORAL_LOCAL_TIMEOUT_SECS=60) to poll as if the function's timeout were that long; \
         deadlines from AWS Lambda never need it",
        secs(Duration::from_millis(sent_ms))
    )
}

impl std::error::Error for LambdaWorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ConfigureFailed(e)
            | Self::Worker(e)
            | Self::Connect { source: e, .. }
            | Self::ServerUnreachable { source: e, .. }
            | Self::Namespace { source: e, .. }
            | Self::Secret { source: e, .. } => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Text of a panic payload, for error messages.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_say_what_to_change_by_their_kind() {
        let connect = |problem| {
            LambdaWorkerError::Connect {
                target: "https://127.0.0.1:7233/".into(),
                source: "the connection failed".into(),
                problem,
            }
            .to_string()
        };
        for (problem, says) in [
            (ConnectProblem::NotTls, "The server did not answer TLS"),
            (ConnectProblem::Certificate, "certificate was not accepted"),
            (ConnectProblem::Credentials, "refused the credentials"),
            (ConnectProblem::Refused, "Nothing accepts connections"),
            (ConnectProblem::Dns, "does not resolve"),
            (ConnectProblem::Other, "network access from the function"),
        ] {
            let e = connect(problem);
            assert!(e.ends_with(problem.hint()), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn every_variant_answers_with_a_listed_error_type() {
        let d = Duration::from_secs(1);
        let every = [
            LambdaWorkerError::Config {
                path: None,
                message: "m".into(),
            },
            LambdaWorkerError::MissingTaskQueue,
            LambdaWorkerError::InvalidVersion("v".into()),
            LambdaWorkerError::TimeoutTooShort {
                remaining: d,
                buffer: d,
            },
            LambdaWorkerError::ConfigureFailed("e".into()),
            LambdaWorkerError::ConfigurePanicked("p".into()),
            LambdaWorkerError::Connect {
                target: "t".into(),
                source: "e".into(),
                problem: ConnectProblem::Other,
            },
            LambdaWorkerError::ServerUnreachable {
                target: "t".into(),
                source: "e".into(),
                problem: ConnectProblem::Refused,
            },
            LambdaWorkerError::Worker("e".into()),
            LambdaWorkerError::Namespace {
                namespace: "n".into(),
                source: "e".into(),
            },
            LambdaWorkerError::Secret {
                secret_id: "s".into(),
                resolver: "r",
                source: "e".into(),
            },
            LambdaWorkerError::NothingRegistered,
            LambdaWorkerError::DrainTimeout {
                graceful_shutdown_timeout: d,
            },
            LambdaWorkerError::DeadlineExceeded,
            LambdaWorkerError::InvalidDeadline { sent_ms: 1 },
            LambdaWorkerError::LayerOrder {
                layer: "a",
                after: "b",
            },
        ];
        let mut types: Vec<&str> = every.iter().map(LambdaWorkerError::error_type).collect();
        types.dedup();
        assert_eq!(types.len(), every.len(), "one errorType per variant");
        for t in types {
            assert!(
                error_type::ALL.contains(&t),
                "{t} is not in error_type::ALL"
            );
        }
        let custom = LambdaWorkerError::custom("Mine.Rule", "no");
        assert_eq!(custom.error_type(), "Mine.Rule");
    }

    #[test]
    fn a_namespace_that_cannot_be_described_points_at_the_namespace_setting() {
        let e = LambdaWorkerError::Namespace {
            namespace: "nope".into(),
            source: "NotFound: Namespace nope is not found".into(),
        };
        assert_eq!(e.error_type(), error_type::NAMESPACE);
        let e = e.to_string();
        assert!(
            e.ends_with("Check TEMPORAL_NAMESPACE / the config file's namespace"),
            "{e}"
        );
        let e = LambdaWorkerError::Worker("poll failed".into()).to_string();
        assert_eq!(e, "the Temporal worker stopped with an error: poll failed");
    }
}
