//! What to export to and as: [`OtelOptions`], resolved against the environment into
//! [`ResolvedOtelOptions`].

use std::time::Duration;

use crate::Environment;

/// The collector endpoint when neither the options nor `OTEL_EXPORTER_OTLP_ENDPOINT` name
/// one: the ADOT Lambda layer's collector.
pub const DEFAULT_COLLECTOR_ENDPOINT: &str = "http://localhost:4317";
/// The service name when neither the options, `OTEL_SERVICE_NAME` nor
/// `AWS_LAMBDA_FUNCTION_NAME` give one.
pub const DEFAULT_SERVICE_NAME: &str = "temporal-lambda-worker";
/// How often metrics are exported while a worker polls (they are also flushed at the end
/// of every invocation).
pub const DEFAULT_METRIC_PERIODICITY: Duration = Duration::from_secs(10);
/// The longest the end-of-invocation flush may take.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// What to export to and as. Every field is optional; see the module docs for the
/// resolution orders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtelOptions {
    /// The OTLP/gRPC endpoint, e.g. `http://localhost:4317`.
    pub collector_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
    /// How often metrics are exported while a worker polls.
    pub metric_periodicity: Option<Duration>,
    /// The longest the end-of-invocation flush may take (default 1 s). It runs after the
    /// worker stopped, inside the shutdown buffer, and never later than 200 ms before
    /// the deadline.
    pub flush_timeout: Option<Duration>,
}

impl OtelOptions {
    /// No options set: everything comes from the environment or the defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the collector endpoint.
    pub fn collector_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.collector_endpoint = Some(endpoint.into());
        self
    }
    /// Sets the service name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }
    /// Sets the metric export period.
    pub fn metric_periodicity(mut self, period: Duration) -> Self {
        self.metric_periodicity = Some(period);
        self
    }
    /// Sets the flush timeout.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = Some(timeout);
        self
    }

    /// Fills every unset field from `env`, then from the defaults.
    pub fn resolve(&self, env: &dyn Environment) -> ResolvedOtelOptions {
        let var = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        ResolvedOtelOptions {
            collector_endpoint: self
                .collector_endpoint
                .clone()
                .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_else(|| DEFAULT_COLLECTOR_ENDPOINT.to_owned()),
            service_name: self
                .service_name
                .clone()
                .or_else(|| var("OTEL_SERVICE_NAME"))
                .or_else(|| var("AWS_LAMBDA_FUNCTION_NAME"))
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            metric_periodicity: self
                .metric_periodicity
                .unwrap_or(DEFAULT_METRIC_PERIODICITY),
            flush_timeout: self.flush_timeout.unwrap_or(DEFAULT_FLUSH_TIMEOUT),
        }
    }
}

/// [`OtelOptions`] with every value decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedOtelOptions {
    /// The OTLP/gRPC endpoint.
    pub collector_endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The metric export period.
    pub metric_periodicity: Duration,
    /// The longest the end-of-invocation flush may take.
    pub flush_timeout: Duration,
}
