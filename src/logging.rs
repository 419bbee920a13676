//! Logs the way Lambda (and CloudWatch Logs) expects them, in one line:
//!
//! ```no_run
//! temporal_lambda_worker::logging::init();
//! ```
//!
//! It follows `lambda_runtime`'s own tracing support and the same environment variables,
//! Lambda's advanced logging controls:
//!
//! - `AWS_LAMBDA_LOG_FORMAT=JSON`: one JSON object per line (`timestamp`, `level`,
//!   `fields.message`, the event's other fields, the span), which CloudWatch Logs Insights
//!   queries by field; otherwise plain text without timestamps (CloudWatch adds them);
//! - `AWS_LAMBDA_LOG_LEVEL` (`TRACE` … `ERROR`, `FATAL`), else `RUST_LOG` (any
//!   `EnvFilter` directives), else `INFO`. At `INFO` and above the Temporal SDK's own
//!   chatter (`temporalio_sdk_core`, `temporalio_client`) is kept to warnings;
//! - no ANSI colour unless stdout is a terminal (CloudWatch would show `^[[31m…`);
//! - each failure once: an invocation's error is logged by this crate, with its
//!   `error_type` and `request_id`.
//!
//! To add layers of your own (the `otel` feature's `Telemetry::tracing_layer`, say), use
//! [`layer`] in your own `tracing_subscriber::registry()`.

use std::io::IsTerminal;

use tracing_subscriber::{
    EnvFilter, Layer, layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt,
};

use crate::{Environment, ProcessEnvironment};

/// Installs [`layer`] as the process's global subscriber. Call it first thing in `main`;
/// a second call (or another subscriber already installed) leaves the first in place.
pub fn init() {
    let _ = tracing_subscriber::registry().with(layer()).try_init();
}

/// The Lambda-correct log layer, read from the process environment, to add to a
/// `tracing_subscriber::registry()` of your own.
pub fn layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    layer_for(
        &ProcessEnvironment,
        std::io::stdout().is_terminal(),
        std::io::stdout,
    )
}

/// How logs are written, from the environment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogSettings {
    pub(crate) json: bool,
    pub(crate) filter: String,
}

impl LogSettings {
    pub(crate) fn from_env(env: &dyn Environment) -> Self {
        let json = env
            .var("AWS_LAMBDA_LOG_FORMAT")
            .is_some_and(|f| f.eq_ignore_ascii_case("json"));
        // The SDK's own chatter, and the OTel exporters' messages (a failed flush logs one
        // warning of ours naming the endpoint).
        let quiet_sdk = ",temporalio_sdk_core=warn,temporalio_client=warn,\
                         opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";
        let filter = match env.var("AWS_LAMBDA_LOG_LEVEL").filter(|l| !l.is_empty()) {
            Some(level) => match level.to_ascii_lowercase().as_str() {
                "trace" => "trace".to_owned(),
                "debug" => "debug".to_owned(),
                "warn" => format!("warn{quiet_sdk}"),
                "error" | "fatal" => "error".to_owned(),
                _ => format!("info{quiet_sdk}"),
            },
            None => env
                .var("RUST_LOG")
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("info{quiet_sdk}")),
        };
        Self { json, filter }
    }
}

pub(crate) fn layer_for<S, W>(
    env: &dyn Environment,
    terminal: bool,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let settings = LogSettings::from_env(env);
    let filter = EnvFilter::builder().parse_lossy(&settings.filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(writer);
    if settings.json {
        fmt.json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.without_time()
            .with_ansi(terminal)
            .with_filter(filter)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StaticEnvironment, log_capture::LogBuffer};

    /// What `f` logs through the layer made for `env`.
    fn logged(env: StaticEnvironment, terminal: bool, f: impl FnOnce()) -> String {
        let buf = LogBuffer::default();
        let subscriber =
            tracing_subscriber::registry().with(layer_for(&env, terminal, buf.clone()));
        tracing::subscriber::with_default(subscriber, f);
        buf.text()
    }

    #[test]
    fn plain_text_has_no_colour_unless_stdout_is_a_terminal() {
        let text = logged(StaticEnvironment::new(), false, || {
            tracing::error!(error_type = "X", "it broke")
        });
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.starts_with("ERROR it broke"), "{text:?}");
        let text = logged(StaticEnvironment::new(), true, || {
            tracing::error!("it broke")
        });
        assert!(text.contains('\u{1b}'), "{text:?}");
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let env = StaticEnvironment::new().with_var("AWS_LAMBDA_LOG_FORMAT", "JSON");
        let text = logged(env, true, || {
            tracing::info!(tasks = 3, "invocation summary");
            tracing::warn!("second");
        });
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["fields"]["message"], "invocation summary");
        assert_eq!(first["fields"]["tasks"], 3);
        assert!(first["timestamp"].is_string(), "{first}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }

    #[test]
    fn the_level_comes_from_aws_lambda_log_level_then_rust_log() {
        let env = StaticEnvironment::new()
            .with_var("AWS_LAMBDA_LOG_LEVEL", "WARN")
            .with_var("RUST_LOG", "debug");
        let text = logged(env, false, || {
            tracing::info!("hidden");
            tracing::warn!("shown");
        });
        assert_eq!(text.trim(), "WARN shown");
        let text = logged(
            StaticEnvironment::new().with_var("RUST_LOG", "debug"),
            false,
            || tracing::debug!("shown"),
        );
        assert_eq!(text.trim(), "DEBUG shown");
        let text = logged(StaticEnvironment::new(), false, || {
            tracing::debug!("hidden")
        });
        assert_eq!(text, "");
        assert_eq!(
            LogSettings::from_env(&StaticEnvironment::new()).filter,
            "info,temporalio_sdk_core=warn,temporalio_client=warn,\
             opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off"
        );
    }
}
