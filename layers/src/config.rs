//! The per-invocation configuration that flows down the stack.

use std::{
    fmt,
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::BoxFuture;
use temporalio_client::{ClientOptions, ConnectionOptions, TlsOptions};
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::worker::{
    VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion,
};
use temporalio_sdk::WorkerOptions;

use crate::BoxError;

/// The address used when neither a config file nor `TEMPORAL_ADDRESS` names one.
pub const DEFAULT_ADDRESS: &str = "http://localhost:7233";
/// The namespace used when neither a config file nor `TEMPORAL_NAMESPACE` names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// How much longer than the graceful shutdown timeout the default buffer is.
pub const BUFFER_OVER_GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(2);

/// A shutdown hook: runs once after the worker stopped.
pub type ShutdownHook = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// Everything one invocation's worker is built from. A fresh one is made for every
/// invocation (nothing leaks between invocations); the layers fill it in and the user's
/// configure callback changes what it needs.
///
/// `Debug` never prints the API key or TLS material.
pub struct LambdaWorkerConfig {
    /// How to connect to Temporal (address, API key, TLS, gRPC metadata, identity…),
    /// pre-filled from Temporal's envconfig (config file + `TEMPORAL_*` variables).
    pub connection: ConnectionOptions,
    /// Client options (namespace, data converter…), pre-filled from envconfig.
    pub client: ClientOptions,
    /// Worker options: task queue, registrations and tuning, pre-filled with the Lambda
    /// defaults and `TEMPORAL_TASK_QUEUE`. Register workflows and activities here.
    pub worker: WorkerOptions,
    /// How long before the invocation deadline graceful shutdown begins. `None` means
    /// graceful shutdown timeout + 2 s (7 s with the defaults).
    pub shutdown_deadline_buffer: Option<Duration>,
    /// Begin the graceful shutdown once no task has been in flight for this long (counted
    /// from polling start or from the last task's end), instead of polling until the
    /// shutdown buffer; never extends past `deadline − buffer`. `LoadConfigLayer` sets it
    /// from `TEMPORAL_IDLE_SHUTDOWN_SECS` (decimal seconds; `off` or `0`: `None`), and to
    /// 2 s ([`DEFAULT_IDLE_SHUTDOWN`](crate::DEFAULT_IDLE_SHUTDOWN)) when that is unset;
    /// configure may change it. `None`: poll until `deadline − buffer`.
    pub idle_shutdown: Option<Duration>,
    /// With the idle exit on, begin the graceful shutdown sooner, after this long with no
    /// task in flight, once the worker has settled: it has had a task, none of the
    /// workflows it ran waits on an activity, a child workflow, a Nexus operation, a signal
    /// or cancellation of another workflow, or a timer due within `idle_shutdown` (waited
    /// for until a second after it is due), and no stream of tasks it did not ask for is
    /// reaching it (two within `idle_shutdown`). `LoadConfigLayer` sets it from
    /// `TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS` (decimal seconds; `off` or `0`: `None`), and
    /// to [`DEFAULT_IDLE_SHUTDOWN_SETTLED`](crate::DEFAULT_IDLE_SHUTDOWN_SETTLED) when that
    /// is unset; configure may change it. `None`: always wait the whole `idle_shutdown`.
    /// The policy and its measurements: [Idle exit](https://github.com/temporal-lambda-worker/temporal-lambda-worker/blob/main/docs/operations.md#idle-exit-temporal_idle_shutdown_secs-temporal_idle_shutdown_settled_secs).
    pub idle_shutdown_settled: Option<Duration>,
    /// The longest an activity of this worker is expected to run. When set, an activity
    /// task that could not finish before the worker's drain ends (shutdown moment +
    /// graceful shutdown timeout) is not run in this invocation. It is handed back (failed
    /// retryably, as a benign `TemporalLambdaWorker.ActivityDeferred` failure, with its
    /// next retry after this worker stopped polling) so the next invocation runs it,
    /// instead of being cancelled at the end of the drain and retried only after its
    /// timeout. With the idle exit on, the invocation stops polling (workflow tasks too)
    /// at the hand-back and the retry comes 1 s later; with it off, polling goes on until
    /// the shutdown moment and the retry comes 1 s after it.
    ///
    /// Each hand-back uses one attempt of the activity's retry policy, so an activity the
    /// server would not retry (on the last attempt its policy allows, with
    /// `TemporalLambdaWorker.ActivityDeferred` among its non-retryable error types, or a
    /// local activity) is never handed back: it runs, with a warning.
    ///
    /// `None` (the default): every activity task is run. From
    /// `TEMPORAL_LONGEST_ACTIVITY_SECS` (decimal seconds) when set; configure may change
    /// it.
    pub longest_activity: Option<Duration>,
    /// The versioning behaviour given to workflows of this worker: `Pinned` (the
    /// default) or `AutoUpgrade`. The Rust SDK has no per-workflow behaviour, so this is
    /// the worker-wide default; `Unspecified` is rejected.
    pub versioning_behavior: VersioningBehavior,
    /// Warn (once per process) when the invocation runs code that is not a published
    /// Lambda version (`$LATEST`, or an alias): a Worker Deployment Version registered
    /// with such an ARN runs whatever code is deployed there next. `LoadConfigLayer` turns
    /// it off when `TEMPORAL_ALLOW_UNPUBLISHED_CODE` is `1` or `true` (development);
    /// configure may change it. On by default.
    pub warn_unpublished_code: bool,
    /// The config file Temporal's client configuration was read from, if any.
    pub config_file: Option<PathBuf>,
    /// TLS was explicitly turned off (`TEMPORAL_TLS=false`, or `tls.disabled = true` in the
    /// profile). Only then does an API key go out without TLS, with one warning; otherwise
    /// an API key always turns TLS on (see [`LambdaWorkerConfig::secure_connection`]).
    pub tls_disabled: bool,
    /// Where the SDK records its worker metrics (`None`: nowhere). The SDK runtime is
    /// made once per process with the meter of the first invocation that starts a worker,
    /// and made again only when a later invocation brings a different one; set the same
    /// `Arc` every time (the `otel` feature's `apply_metrics` does).
    pub metrics: Option<Arc<dyn CoreMeter>>,
    shutdown_hooks: ShutdownHooks,
    /// The invocation this config is built for ([`invocation`](Self::invocation)).
    invocation: Arc<InvocationInfo>,
}

/// The invocation a config is being built for, as the configure callback reads it
/// ([`LambdaWorkerConfig::invocation`]): the same for the sync and the async callback.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InvocationInfo {
    /// The Lambda context: request id, deadline (epoch milliseconds), invoked function ARN
    /// (with its qualifier), X-Ray trace id, the function's name, version and memory.
    pub context: lambda_runtime::Context,
    /// The invocation's payload, parsed once (the Worker Controller sends `{}`; a body
    /// that is not JSON is a JSON string, an empty one `null`).
    pub payload: serde_json::Value,
    /// The moments that bound the invocation: its deadline and when it must answer (the
    /// watchdog, after configure, plans when polling stops).
    pub timeline: crate::Timeline,
}

impl Default for InvocationInfo {
    fn default() -> Self {
        let context = lambda_runtime::Context::default();
        Self {
            timeline: crate::Timeline::from_context(&context),
            context,
            payload: serde_json::Value::Null,
        }
    }
}

/// The shutdown hooks of one config, shared with [`ConfigureLayer`](crate::ConfigureLayer),
/// which runs them after the inner service answered: a hook added by any layer, the
/// configure callback or a layer below it runs.
#[derive(Clone, Default)]
pub(crate) struct ShutdownHooks(Arc<Mutex<Vec<ShutdownHook>>>);

impl ShutdownHooks {
    fn push(&self, hook: ShutdownHook) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(hook);
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    /// Takes the hooks added so far, in order.
    pub(crate) fn take(&self) -> Vec<ShutdownHook> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Default for LambdaWorkerConfig {
    /// A blank config: default address and namespace, no task queue, SDK worker defaults.
    /// The stack's layers fill it in.
    fn default() -> Self {
        let placeholder = WorkerDeploymentVersion::builder()
            .deployment_name("")
            .build_id("")
            .build();
        Self {
            connection: ConnectionOptions::new(
                temporalio_client::Url::parse(DEFAULT_ADDRESS).expect("default address is a URL"),
            )
            .build(),
            client: ClientOptions::new(DEFAULT_NAMESPACE).build(),
            // Setting deployment options here avoids the SDK hashing the executable.
            worker: WorkerOptions::new("")
                .deployment_options(WorkerDeploymentOptions::new(placeholder).build())
                .build(),
            shutdown_deadline_buffer: None,
            idle_shutdown: None,
            idle_shutdown_settled: None,
            longest_activity: None,
            versioning_behavior: VersioningBehavior::Pinned,
            warn_unpublished_code: true,
            config_file: None,
            tls_disabled: false,
            metrics: None,
            shutdown_hooks: ShutdownHooks::default(),
            invocation: Arc::default(),
        }
    }
}

impl LambdaWorkerConfig {
    /// The graceful shutdown timeout in force (zero when unset).
    pub fn graceful_shutdown_timeout(&self) -> Duration {
        self.worker.graceful_shutdown_period.unwrap_or_default()
    }

    /// The shutdown deadline buffer in force: the one set, else graceful shutdown timeout + 2 s.
    pub fn effective_shutdown_deadline_buffer(&self) -> Duration {
        self.shutdown_deadline_buffer
            .unwrap_or_else(|| self.graceful_shutdown_timeout() + BUFFER_OVER_GRACEFUL_SHUTDOWN)
    }

    /// Adds a hook that runs after the worker stopped, in the order added, before the
    /// configure teardown. An error or a panic is logged and the next hook still runs.
    /// [`ConfigureLayer`](crate::ConfigureLayer) runs them once configure succeeded,
    /// whether a worker started or not (no task queue, no connection), so whatever
    /// configure opened is closed either way.
    pub fn add_shutdown_hook<F, E>(&mut self, hook: F) -> &mut Self
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
        E: Into<BoxError>,
    {
        self.shutdown_hooks.push(Box::new(move || {
            Box::pin(async move { hook().map_err(Into::into) })
        }));
        self
    }

    /// Adds an async hook that runs after the worker stopped, in the order added. Hooks
    /// share the time left until the timeline's `cleanup_by` (deadline − 500 ms); one that
    /// overruns it is abandoned, and the hooks after it are skipped.
    pub fn add_async_shutdown_hook<F, Fut, E>(&mut self, hook: F) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.shutdown_hooks.push(Box::new(move || {
            Box::pin(async move { hook().await.map_err(Into::into) })
        }));
        self
    }

    /// Applies the transport rule to the final connection options; the worker service
    /// calls it after every layer and the configure callback ran, so the rule holds
    /// wherever the key was set (environment, profile, `ApiKeySecretLayer`, your layer,
    /// configure):
    ///
    /// - an API key turns TLS on (default TLS settings when none are set), unless TLS was
    ///   explicitly disabled ([`tls_disabled`](Self::tls_disabled)); then the key goes out
    ///   without TLS and one warning says so, naming both;
    /// - with TLS on, an `http://` address becomes `https://` (the transport would
    ///   otherwise connect in plaintext and send the key in the clear).
    ///
    /// This is the rule Temporal's own envconfig loader applies to keys it loads.
    pub fn secure_connection(&mut self) {
        let c = &mut self.connection;
        if c.tls_options.is_none() && c.api_key.is_some() {
            if self.tls_disabled {
                tracing::warn!(
                    address = %c.target,
                    "an API key is set but TLS is explicitly disabled (TEMPORAL_TLS=false or \
                     the profile's tls.disabled = true): the key is sent in plaintext. Remove \
                     the TLS override unless this is a trusted local server"
                );
                return;
            }
            c.tls_options = Some(TlsOptions::default());
        }
        if c.tls_options.is_some() && c.target.scheme() == "http" {
            c.target
                .set_scheme("https")
                .expect("http and https are both special schemes");
        }
    }

    /// Number of shutdown hooks registered.
    pub fn shutdown_hook_count(&self) -> usize {
        self.shutdown_hooks.len()
    }

    /// The invocation this config is built for: its Lambda context (request id,
    /// deadline, invoked ARN), payload and timeline. `ConfigureLayer` sets it before your
    /// callback runs; a config made outside a stack has an empty one.
    ///
    /// ```
    /// use temporal_lambda_worker_layers::{
    ///     BoxError, ConfigureLayer, LambdaWorkerConfig, testing::{invocation_in, run_through},
    /// };
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // One task queue per tenant, named in the invocation's payload.
    /// let layer = ConfigureLayer::new(|config: &mut LambdaWorkerConfig| {
    ///     let inv = config.invocation();
    ///     let tenant = inv.payload["tenant"].as_str().unwrap_or("shared").to_owned();
    ///     tracing::info!(request_id = %inv.context.request_id, tenant, "configuring");
    ///     config.worker.task_queue = format!("orders-{tenant}");
    ///     Ok::<_, BoxError>(())
    /// });
    /// let mut inv = invocation_in(std::time::Duration::from_secs(60));
    /// inv.payload = serde_json::json!({ "tenant": "acme" });
    /// let inv = run_through(layer, inv).await.unwrap();
    /// assert_eq!(inv.config.worker.task_queue, "orders-acme");
    /// # }
    /// ```
    pub fn invocation(&self) -> &InvocationInfo {
        &self.invocation
    }

    /// Sets the invocation this config is built for (`ConfigureLayer`).
    pub(crate) fn set_invocation(&mut self, invocation: InvocationInfo) {
        self.invocation = Arc::new(invocation);
    }

    /// The hooks, shared: `ConfigureLayer` runs what they hold once the inner service
    /// answered.
    pub(crate) fn shutdown_hooks(&self) -> ShutdownHooks {
        self.shutdown_hooks.clone()
    }
}

impl fmt::Debug for LambdaWorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.connection;
        let set = |b: bool| if b { "<set>" } else { "<unset>" };
        f.debug_struct("LambdaWorkerConfig")
            .field("address", &c.target.as_str())
            .field("namespace", &self.client.namespace)
            .field("identity", &c.identity)
            .field("api_key", &set(c.api_key.is_some()))
            .field("tls", &set(c.tls_options.is_some()))
            .field("tls_disabled", &self.tls_disabled)
            .field(
                "grpc_metadata_keys",
                &c.headers.as_ref().map(|h| {
                    let mut keys: Vec<_> = h.keys().collect();
                    keys.sort();
                    keys
                }),
            )
            .field("config_file", &self.config_file)
            .field("task_queue", &self.worker.task_queue)
            .field(
                "client_identity_override",
                &self.worker.client_identity_override,
            )
            .field("max_cached_workflows", &self.worker.max_cached_workflows)
            .field(
                "workflow_task_poller_behavior",
                &self.worker.workflow_task_poller_behavior,
            )
            .field(
                "activity_task_poller_behavior",
                &self.worker.activity_task_poller_behavior,
            )
            .field(
                "graceful_shutdown_period",
                &self.worker.graceful_shutdown_period,
            )
            .field(
                "shutdown_deadline_buffer",
                &self.effective_shutdown_deadline_buffer(),
            )
            .field("idle_shutdown", &self.idle_shutdown)
            .field("idle_shutdown_settled", &self.idle_shutdown_settled)
            .field("longest_activity", &self.longest_activity)
            .field("versioning_behavior", &self.versioning_behavior)
            .field("warn_unpublished_code", &self.warn_unpublished_code)
            .field("metrics", &set(self.metrics.is_some()))
            .field("shutdown_hooks", &self.shutdown_hooks.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address: &str, key: Option<&str>) -> LambdaWorkerConfig {
        let mut c = LambdaWorkerConfig::default();
        c.connection.target = temporalio_client::Url::parse(address).unwrap();
        c.connection.api_key = key.map(str::to_owned);
        c
    }

    #[test]
    fn an_api_key_turns_tls_on_and_http_into_https() {
        let mut c = config("http://ns.tmprl.cloud:7233", Some("k"));
        c.secure_connection();
        assert!(c.connection.tls_options.is_some());
        assert_eq!(c.connection.target.as_str(), "https://ns.tmprl.cloud:7233/");
    }

    #[test]
    fn without_a_key_or_tls_the_connection_stays_plaintext() {
        let mut c = config("http://127.0.0.1:7233", None);
        c.secure_connection();
        assert!(c.connection.tls_options.is_none());
        assert_eq!(c.connection.target.as_str(), "http://127.0.0.1:7233/");
    }

    #[test]
    fn tls_set_without_a_key_still_makes_the_address_https() {
        let mut c = config("http://ns.tmprl.cloud:7233", None);
        c.connection.tls_options = Some(TlsOptions::default());
        c.secure_connection();
        assert_eq!(c.connection.target.as_str(), "https://ns.tmprl.cloud:7233/");
    }

    #[test]
    fn explicitly_disabled_tls_stays_off_with_a_key() {
        let mut c = config("http://127.0.0.1:7233", Some("k"));
        c.tls_disabled = true;
        c.secure_connection();
        assert!(c.connection.tls_options.is_none());
        assert_eq!(c.connection.target.as_str(), "http://127.0.0.1:7233/");
    }
}
