//! The errors an invocation can fail with, each worded so a person knows what to change.

use std::{fmt, path::PathBuf, time::Duration};

/// Boxed error type used by every service in the stack (as in `tower`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// The user's configure callback panicked.
    ConfigurePanicked(String),
    /// Connecting to Temporal or creating the worker failed.
    Connect {
        /// The server address that was tried.
        target: String,
        /// Why it failed.
        source: BoxError,
    },
    /// The server stopped answering while the worker polled (a warm invocation's cached
    /// connection to a server that went away, or a server that died mid-session). The
    /// cached connection is dropped, so the next invocation reconnects.
    ServerUnreachable {
        /// The server address.
        target: String,
        /// What the connection check saw.
        source: BoxError,
    },
    /// The worker stopped with an error while polling.
    Worker(BoxError),
    /// The worker did not finish its graceful shutdown in time; the process is recycled.
    DrainTimeout {
        /// The graceful shutdown timeout that was configured.
        graceful_shutdown_timeout: Duration,
    },
    /// The invocation was still running when it had to answer; the process is recycled.
    DeadlineExceeded,
    /// The Runtime API sent a deadline that cannot be real (a local emulator, such as
    /// `cargo lambda watch`, sends its timeout in milliseconds instead of an epoch time),
    /// and `TEMPORAL_LOCAL_TIMEOUT_SECS` does not say how long to poll instead.
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

    /// The `errorType` reported to the Lambda Runtime API.
    pub fn error_type(&self) -> &str {
        match self {
            Self::Custom { error_type, .. } => error_type,
            Self::LayerOrder { .. } => "TemporalLambdaWorker.LayerOrder",
            Self::Config { .. } => "TemporalLambdaWorker.ConfigError",
            Self::MissingTaskQueue => "TemporalLambdaWorker.MissingTaskQueue",
            Self::InvalidVersion(_) => "TemporalLambdaWorker.InvalidVersion",
            Self::TimeoutTooShort { .. } => "TemporalLambdaWorker.TimeoutTooShort",
            Self::ConfigureFailed(_) => "TemporalLambdaWorker.ConfigureFailed",
            Self::ConfigurePanicked(_) => "TemporalLambdaWorker.ConfigurePanicked",
            Self::Connect { .. } => "TemporalLambdaWorker.ConnectError",
            Self::ServerUnreachable { .. } => "TemporalLambdaWorker.ServerUnreachable",
            Self::Worker(_) => "TemporalLambdaWorker.WorkerError",
            Self::DrainTimeout { .. } => "TemporalLambdaWorker.DrainTimeout",
            Self::DeadlineExceeded => "TemporalLambdaWorker.DeadlineExceeded",
            Self::InvalidDeadline { .. } => "TemporalLambdaWorker.InvalidDeadline",
        }
    }

    /// True when the process is in an unknown state after this error (a worker that
    /// would not drain is still running): answer, then exit so Lambda starts a fresh one.
    pub fn recycles_process(&self) -> bool {
        matches!(self, Self::DrainTimeout { .. } | Self::DeadlineExceeded)
    }
}

/// What to change, judged from the connection error's text.
fn connect_hint(source: &str) -> &'static str {
    let has = |needle: &str| source.contains(needle);
    if has("InvalidContentType") || has("WrongVersion") || has("CorruptMessage") {
        "The server did not answer TLS: TLS is on (TEMPORAL_TLS, TLS settings in the config \
         file, or an API key, which turns TLS on) but the endpoint speaks plaintext. Turn TLS \
         off for a plaintext server (a local dev server), or use the TLS endpoint"
    } else if has("UnknownIssuer") || has("certificate") || has("Certificate") {
        "The server's TLS certificate was not accepted: check TEMPORAL_TLS_SERVER_CA_CERT* and \
         TEMPORAL_TLS_SERVER_NAME (the name must match the certificate)"
    } else if has("Unauthenticated") || has("PermissionDenied") || has("unauthorized") {
        "The server refused the credentials: check the API key (TEMPORAL_API_KEY or your \
         secret) or the client certificate and key, and that they are for this namespace"
    } else if has("ConnectionRefused") || has("Connection refused") {
        "Nothing accepts connections at that address: check TEMPORAL_ADDRESS / the config \
         file's address and port, and that the server is running"
    } else if has("dns error") || has("failed to lookup") {
        "The host name does not resolve: check TEMPORAL_ADDRESS / the config file's address, \
         and DNS from the function's VPC"
    } else {
        "Check TEMPORAL_ADDRESS / the config file's address, network access from the function \
         (VPC, security groups, NAT), and TLS / API key settings"
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl fmt::Display for LambdaWorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config {
                path: Some(path),
                message,
            } => write!(
                f,
                "Temporal client config file {}: {message}. Fix the file, or point \
                 TEMPORAL_CONFIG_FILE at a valid one",
                path.display()
            ),
            Self::Config {
                path: None,
                message,
            } => write!(
                f,
                "Temporal client configuration: {message}. Check the TEMPORAL_* environment \
                 variables of the function"
            ),
            Self::MissingTaskQueue => f.write_str(
                "no task queue is configured: set `config.worker.task_queue` in your configure \
                 callback, or set the TEMPORAL_TASK_QUEUE environment variable on the function",
            ),
            Self::InvalidVersion(msg) => write!(f, "invalid worker deployment version: {msg}"),
            Self::TimeoutTooShort { remaining, buffer } => {
                let work = remaining.saturating_sub(*buffer);
                let needed = (*buffer + Duration::from_secs(10)).as_secs();
                write!(
                    f,
                    "Lambda timeout is too short: {} remained before the invocation deadline and \
                     the shutdown deadline buffer is {}, which leaves {} to poll for tasks (more \
                     than 1.0s is required). Raise the function's timeout to at least {needed}s \
                     (aws lambda update-function-configuration --timeout {needed}), or lower \
                     `shutdown_deadline_buffer` / `graceful_shutdown_period` in your configure callback",
                    secs(*remaining),
                    secs(*buffer),
                    secs(work),
                )
            }
            Self::ConfigureFailed(e) => write!(f, "the configure callback failed: {e}"),
            Self::ConfigurePanicked(msg) => write!(
                f,
                "the configure callback panicked: {msg}. Fix the callback; this invocation did \
                 not start a worker"
            ),
            Self::Connect { target, source } => {
                let source = source.to_string();
                write!(
                    f,
                    "could not start a worker against Temporal at {target}: {source}. {}",
                    connect_hint(&source)
                )
            }
            Self::ServerUnreachable { target, source } => {
                let source = source.to_string();
                write!(
                    f,
                    "the Temporal server at {target} stopped answering while the worker polled: \
                     {source}. The worker was stopped and the cached connection dropped; the \
                     next invocation reconnects. {}",
                    connect_hint(&source)
                )
            }
            Self::Worker(e) => {
                let e = e.to_string();
                write!(f, "the Temporal worker stopped with an error: {e}")?;
                if e.contains("namespace") && e.contains("not found") {
                    f.write_str(". Check TEMPORAL_NAMESPACE / the config file's namespace")?;
                }
                Ok(())
            }
            Self::DrainTimeout {
                graceful_shutdown_timeout,
            } => write!(
                f,
                "the worker did not finish within its graceful shutdown timeout ({}) — an \
                 activity ignored cancellation. The process will be recycled. Make long \
                 activities heartbeat and honour cancellation, or raise \
                 `graceful_shutdown_period`, `shutdown_deadline_buffer` and the function's \
                 timeout together",
                secs(*graceful_shutdown_timeout)
            ),
            Self::DeadlineExceeded => f.write_str(
                "the invocation had not finished shortly before its deadline and was answered \
                 early; the process will be recycled. Shorten shutdown hooks and teardown, or \
                 raise `shutdown_deadline_buffer`",
            ),
            Self::Custom { message, .. } => f.write_str(message),
            Self::LayerOrder { layer, after } => write!(
                f,
                "{layer} runs after {after} in this stack, so {after}'s work would be undone or \
                 done on an incomplete config. Put them in this order, outermost first: \
                 LoadConfigLayer, ApiKeySecretLayer (optional) and your connection layers, \
                 LambdaDefaultsLayer, ConfigureLayer, then DisableEagerActivitiesLayer, \
                 WorkerVersioningLayer, WorkerIdentityLayer, DeadlineWatchdogLayer, the \
                 WorkerService"
            ),
            Self::InvalidDeadline { sent_ms } => write!(
                f,
                "the Lambda Runtime API sent Lambda-Runtime-Deadline-Ms: {sent_ms}, which is \
                 not a deadline (it is {} after 1970-01-01): a local emulator such as `cargo \
                 lambda watch` sends its timeout there. Set TEMPORAL_LOCAL_TIMEOUT_SECS on the \
                 process (for example TEMPORAL_LOCAL_TIMEOUT_SECS=60) to poll as if the \
                 function's timeout were that long; deadlines from AWS Lambda never need it",
                secs(Duration::from_millis(*sent_ms))
            ),
        }
    }
}

impl std::error::Error for LambdaWorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ConfigureFailed(e)
            | Self::Worker(e)
            | Self::Connect { source: e, .. }
            | Self::ServerUnreachable { source: e, .. } => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Text of a panic payload, for error messages.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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

    fn connect(source: &str) -> String {
        LambdaWorkerError::Connect {
            target: "https://127.0.0.1:7233/".into(),
            source: source.into(),
        }
        .to_string()
    }

    #[test]
    fn connect_errors_say_what_to_change() {
        // Texts as the backend words them (seen against the dev server and a closed port).
        let tls = connect(
            "the connection failed: transport error: received corrupt message of type \
             InvalidContentType",
        );
        assert!(tls.contains("The server did not answer TLS"), "{tls}");
        let refused = connect(
            "the connection failed: transport error: tcp connect error: Connection refused (os \
             error 111)",
        );
        assert!(refused.contains("Nothing accepts connections"), "{refused}");
        let denied = connect(
            "the server answered the first call (GetSystemInfo) with Unauthenticated: Request \
             unauthorized",
        );
        assert!(denied.contains("refused the credentials"), "{denied}");
        let other = connect("something else");
        assert!(
            other.contains("network access from the function"),
            "{other}"
        );
    }

    #[test]
    fn a_missing_namespace_points_at_the_namespace_setting() {
        let e = LambdaWorkerError::Worker(
            "worker validation failed: namespace nope was not found or otherwise could not be \
             described"
                .into(),
        )
        .to_string();
        assert!(
            e.ends_with("Check TEMPORAL_NAMESPACE / the config file's namespace"),
            "{e}"
        );
        let e = LambdaWorkerError::Worker("poll failed".into()).to_string();
        assert_eq!(e, "the Temporal worker stopped with an error: poll failed");
    }
}
