//! Loads Temporal's client configuration (envconfig) into a fresh config.
//!
//! The TOML profile file is resolved in this order:
//! 1. `TEMPORAL_CONFIG_FILE`, if set — it must exist (you asked for it);
//! 2. `temporal.toml` in `$LAMBDA_TASK_ROOT` (typically `/var/task`);
//! 3. `temporal.toml` in the current working directory.
//!
//! No file at the two default locations is fine: then only the environment variables
//! (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`,
//! `TEMPORAL_PROFILE`, `TEMPORAL_GRPC_META_*`, …) are used, with Temporal's names and
//! precedence. A malformed file is an error naming the file, never a silent fallback.
//! `TEMPORAL_TASK_QUEUE`, when set, pre-fills the task queue (the configure callback,
//! which runs later, wins).
//!
//! The environment is injected ([`Environment`]), so the rules are testable without
//! touching the process environment.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use temporalio_client::{ClientOptions, ConnectionOptions};
use temporalio_common::envconfig::{
    DataSource, LoadClientConfigProfileOptions, load_client_config_profile,
};

use crate::{
    Environment, Invocation, InvocationStep, LambdaWorkerError, ProcessEnvironment, Step,
    StepLayer, config::DEFAULT_NAMESPACE, invocation::Lifecycle,
};

/// The variable that sets the idle exit: decimal seconds with no task in flight, or `off`.
pub const IDLE_SHUTDOWN_VAR: &str = "TEMPORAL_IDLE_SHUTDOWN_SECS";
/// The variable that sets the settled idle exit
/// ([`LambdaWorkerConfig::idle_shutdown_settled`](crate::LambdaWorkerConfig::idle_shutdown_settled)):
/// decimal seconds, or `off`.
pub const IDLE_SHUTDOWN_SETTLED_VAR: &str = "TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS";
/// The settled idle exit when `TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS` is unset, chosen from
/// the workload suite of `benches/idle_exit` ([the measurements](https://github.com/temporal-lambda-worker/temporal-lambda-worker/blob/main/benches/RESULTS.md)).
pub const DEFAULT_IDLE_SHUTDOWN_SETTLED: std::time::Duration =
    std::time::Duration::from_millis(500);
/// `1` or `true`: no warning about unpublished code
/// ([`LambdaWorkerConfig::warn_unpublished_code`](crate::LambdaWorkerConfig::warn_unpublished_code)).
pub const ALLOW_UNPUBLISHED_CODE_VAR: &str = "TEMPORAL_ALLOW_UNPUBLISHED_CODE";
/// The idle exit when `TEMPORAL_IDLE_SHUTDOWN_SECS` is unset: measured through the Worker
/// Controller loop (`benches/idle_exit`), it bills 3–4 times less than polling until the
/// shutdown buffer, with no latency cost.
pub const DEFAULT_IDLE_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(2);
/// The variable giving the longest an activity is expected to run (decimal seconds), for
/// deadline-aware activity admission (`LambdaWorkerConfig::longest_activity`).
pub const LONGEST_ACTIVITY_VAR: &str = "TEMPORAL_LONGEST_ACTIVITY_SECS";

/// The file name looked for in `$LAMBDA_TASK_ROOT` and the working directory.
pub(crate) const CONFIG_FILE_NAME: &str = "temporal.toml";

/// Finds the config file by the resolution order above; `Ok(None)` when there is none.
pub(crate) fn resolve_config_file(
    env: &dyn Environment,
    exists: impl Fn(&Path) -> bool,
) -> Result<Option<PathBuf>, LambdaWorkerError> {
    if let Some(named) = env.var("TEMPORAL_CONFIG_FILE").filter(|p| !p.is_empty()) {
        let mut path = PathBuf::from(named);
        if path.is_relative()
            && let Some(cwd) = env.current_dir()
        {
            path = cwd.join(path);
        }
        if !exists(&path) {
            return Err(LambdaWorkerError::Config {
                path: Some(path),
                message: "TEMPORAL_CONFIG_FILE names this file, but it does not exist (is it \
                          packaged in the deployment zip?)"
                    .into(),
            });
        }
        return Ok(Some(path));
    }
    let candidates = [
        env.var("LAMBDA_TASK_ROOT")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        env.current_dir(),
    ];
    Ok(candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join(CONFIG_FILE_NAME))
        .find(|p| exists(p)))
}

/// What [`load_client_config`] produces.
pub(crate) struct LoadedClientConfig {
    /// Connection options.
    pub(crate) connection: ConnectionOptions,
    /// Client options.
    pub(crate) client: ClientOptions,
    /// The file read, if any.
    pub(crate) file: Option<PathBuf>,
    /// TLS explicitly disabled by `TEMPORAL_TLS=false` or the profile's `tls.disabled`.
    pub(crate) tls_disabled: bool,
}

/// Resolves, reads and parses the client configuration.
pub(crate) fn load_client_config(
    env: &dyn Environment,
) -> Result<LoadedClientConfig, LambdaWorkerError> {
    let file = resolve_config_file(env, Path::is_file)?;
    let config_error = |message: String| LambdaWorkerError::Config {
        path: file.clone(),
        message,
    };
    let data = match &file {
        Some(path) => Some(std::fs::read(path).map_err(|e| LambdaWorkerError::Config {
            path: Some(path.clone()),
            message: format!("cannot be read: {e}"),
        })?),
        None => None,
    };
    let options = LoadClientConfigProfileOptions::builder()
        .disable_file(data.is_none())
        .maybe_config_source(data.map(DataSource::Data))
        .build();
    let vars = env.vars();
    let profile = load_client_config_profile(options, Some(&vars))
        .map_err(|e| config_error(format!("is not valid: {e}")))?;
    let tls_disabled = profile.tls.as_ref().and_then(|t| t.disabled) == Some(true);
    let namespace = profile
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let connection = ConnectionOptions::try_from(profile)
        .map_err(|e| config_error(format!("gives unusable connection settings: {e}")))?;
    Ok(LoadedClientConfig {
        connection,
        client: ClientOptions::new(namespace).build(),
        file,
        tls_disabled,
    })
}

/// Fills the connection and client options from envconfig, and the task queue from
/// `TEMPORAL_TASK_QUEUE`.
#[derive(Clone)]
pub struct LoadConfigStep {
    env: Arc<dyn Environment>,
}

impl std::fmt::Debug for LoadConfigStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfigStep").finish_non_exhaustive()
    }
}

impl LoadConfigStep {
    /// `value`, the value of `var`, as a positive decimal number of seconds (`None` when
    /// unset or blank); otherwise a ConfigError naming the variable and saying what to do
    /// (`unset`).
    fn seconds(
        var: &str,
        value: Option<String>,
        unset: &str,
    ) -> Result<Option<std::time::Duration>, LambdaWorkerError> {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let secs = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| LambdaWorkerError::Config {
                path: None,
                message: format!(
                    "{var} is {value:?}, not a positive number of seconds (for example 2 or \
                     0.5); {unset}"
                ),
            })?;
        Ok(Some(std::time::Duration::from_secs_f64(secs)))
    }

    /// `var` as decimal seconds; `off` or `0`: `None`; unset: `default`.
    fn seconds_or_off(
        &self,
        var: &str,
        default: std::time::Duration,
        off: &str,
    ) -> Result<Option<std::time::Duration>, LambdaWorkerError> {
        match self.env.var(var) {
            Some(v) if matches!(v.trim(), "off" | "0") => Ok(None),
            value => Ok(Some(Self::seconds(var, value, off)?.unwrap_or(default))),
        }
    }
}

impl InvocationStep for LoadConfigStep {
    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        inv.enter(Lifecycle::LoadConfig)?;
        let loaded = load_client_config(self.env.as_ref())?;
        inv.config.connection = loaded.connection;
        inv.config.client = loaded.client;
        inv.config.config_file = loaded.file;
        inv.config.tls_disabled = loaded.tls_disabled;
        inv.config.idle_shutdown = self.seconds_or_off(
            IDLE_SHUTDOWN_VAR,
            DEFAULT_IDLE_SHUTDOWN,
            "set it to off to poll until the shutdown buffer",
        )?;
        inv.config.idle_shutdown_settled = self.seconds_or_off(
            IDLE_SHUTDOWN_SETTLED_VAR,
            DEFAULT_IDLE_SHUTDOWN_SETTLED,
            "set it to off to always wait the whole idle exit",
        )?;
        if let Some(longest) = Self::seconds(
            LONGEST_ACTIVITY_VAR,
            self.env.var(LONGEST_ACTIVITY_VAR),
            "unset it to run every activity task the worker polls",
        )? {
            inv.config.longest_activity = Some(longest);
        }
        inv.config.warn_unpublished_code = match self.env.var(ALLOW_UNPUBLISHED_CODE_VAR) {
            None => true,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => false,
                "" | "0" | "false" => true,
                _ => {
                    return Err(LambdaWorkerError::Config {
                        path: None,
                        message: format!(
                            "{ALLOW_UNPUBLISHED_CODE_VAR} is {v:?}: set it to 1 or true to \
                             run unpublished code ($LATEST) without a warning, or unset it"
                        ),
                    });
                }
            },
        };
        if let Some(queue) = self
            .env
            .var("TEMPORAL_TASK_QUEUE")
            .filter(|q| !q.is_empty())
        {
            inv.config.worker.task_queue = queue;
        }
        inv.set_environment(self.env.clone());
        Ok(())
    }
}

/// Layer that loads the client configuration. Place it first.
pub type LoadConfigLayer = StepLayer<LoadConfigStep>;

/// The service [`LoadConfigLayer`] makes: [`LoadConfigStep`] applied, then the inner service.
pub type LoadConfig<S> = Step<S, LoadConfigStep>;

impl StepLayer<LoadConfigStep> {
    /// Reads the real process environment.
    pub fn new() -> Self {
        Self::with_environment(ProcessEnvironment)
    }
    /// Reads the given environment instead (tests, embedding).
    pub fn with_environment(env: impl Environment) -> Self {
        StepLayer::from_step(LoadConfigStep { env: Arc::new(env) })
    }
}

impl Default for StepLayer<LoadConfigStep> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use temporal_lambda_local::TempDir;

    use super::*;
    use crate::{StaticEnvironment, testing::run_through};

    fn load(env: StaticEnvironment) -> Result<Invocation, crate::BoxError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(run_through(
            LoadConfigLayer::with_environment(env),
            Invocation::new(Default::default(), Default::default()),
        ))
    }

    fn config_error(err: crate::BoxError) -> (Option<PathBuf>, String) {
        let text = err.to_string();
        match *err.downcast::<LambdaWorkerError>().unwrap() {
            LambdaWorkerError::Config { path, .. } => (path, text),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const TOML_A: &str = "[profile.default]\naddress = \"a.example:7233\"\nnamespace = \"ns-a\"\n";
    const TOML_B: &str = "[profile.default]\naddress = \"b.example:7233\"\nnamespace = \"ns-b\"\n";

    #[test]
    fn no_file_anywhere_uses_environment_only() {
        let dir = TempDir::new("load-config-1");
        let inv = load(
            StaticEnvironment::new()
                .with_var("LAMBDA_TASK_ROOT", dir.path().to_str().unwrap())
                .with_current_dir(dir.path())
                .with_var("TEMPORAL_ADDRESS", "env.example:7233")
                .with_var("TEMPORAL_NAMESPACE", "env-ns"),
        )
        .unwrap();
        assert_eq!(
            inv.config.connection.target.as_str(),
            "http://env.example:7233/"
        );
        assert_eq!(inv.config.client.namespace, "env-ns");
        assert_eq!(inv.config.config_file, None);
    }

    #[test]
    fn defaults_without_file_or_variables() {
        let inv = load(StaticEnvironment::new()).unwrap();
        assert_eq!(
            inv.config.connection.target.as_str(),
            "http://localhost:7233/"
        );
        assert_eq!(inv.config.client.namespace, "default");
        assert!(inv.config.connection.api_key.is_none());
    }

    #[test]
    fn resolution_order_named_then_task_root_then_cwd() {
        let named = TempDir::new("load-config-2");
        let root = TempDir::new("load-config-3");
        let cwd = TempDir::new("load-config-4");
        named.write("custom.toml", TOML_A);
        root.write(CONFIG_FILE_NAME, TOML_B);
        cwd.write(
            CONFIG_FILE_NAME,
            "[profile.default]\nnamespace = \"ns-cwd\"\n",
        );
        let env = || {
            StaticEnvironment::new()
                .with_var("LAMBDA_TASK_ROOT", root.path().to_str().unwrap())
                .with_current_dir(cwd.path())
        };
        let named_path = named.path().join("custom.toml");
        let inv =
            load(env().with_var("TEMPORAL_CONFIG_FILE", named_path.to_str().unwrap())).unwrap();
        assert_eq!(inv.config.client.namespace, "ns-a");
        assert_eq!(
            inv.config.config_file.as_deref(),
            Some(named_path.as_path())
        );

        let inv = load(env()).unwrap();
        assert_eq!(inv.config.client.namespace, "ns-b");
        assert_eq!(
            inv.config.connection.target.as_str(),
            "http://b.example:7233/"
        );

        std::fs::remove_file(root.path().join(CONFIG_FILE_NAME)).unwrap();
        let inv = load(env()).unwrap();
        assert_eq!(inv.config.client.namespace, "ns-cwd");
    }

    #[test]
    fn environment_overrides_the_file() {
        let root = TempDir::new("load-config-5");
        root.write(CONFIG_FILE_NAME, TOML_A);
        let inv = load(
            StaticEnvironment::new()
                .with_var("LAMBDA_TASK_ROOT", root.path().to_str().unwrap())
                .with_var("TEMPORAL_NAMESPACE", "from-env")
                .with_var("TEMPORAL_GRPC_META_X_TEAM", "payments"),
        )
        .unwrap();
        assert_eq!(inv.config.client.namespace, "from-env");
        assert_eq!(
            inv.config.connection.target.as_str(),
            "http://a.example:7233/"
        );
        assert_eq!(
            inv.config
                .connection
                .headers
                .as_ref()
                .unwrap()
                .get("x-team")
                .map(String::as_str),
            Some("payments")
        );
    }

    #[test]
    fn profile_is_chosen_by_temporal_profile() {
        let root = TempDir::new("load-config-6");
        let text = toml::to_string(&toml::toml! {
            [profile.default]
            namespace = "dflt"
            [profile.prod]
            namespace = "prod-ns"
        })
        .unwrap();
        root.write(CONFIG_FILE_NAME, &text);
        let env = StaticEnvironment::new()
            .with_var("LAMBDA_TASK_ROOT", root.path().to_str().unwrap())
            .with_var("TEMPORAL_PROFILE", "prod");
        assert_eq!(load(env).unwrap().config.client.namespace, "prod-ns");
    }

    #[test]
    fn a_named_file_that_does_not_exist_is_an_error_naming_it() {
        let dir = TempDir::new("load-config-7");
        let missing = dir.path().join("nope.toml");
        let (path, text) = config_error(
            load(
                StaticEnvironment::new()
                    .with_var("TEMPORAL_CONFIG_FILE", missing.to_str().unwrap()),
            )
            .unwrap_err(),
        );
        assert_eq!(path.as_deref(), Some(missing.as_path()));
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains("nope.toml"), "{text}");
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let root = TempDir::new("load-config-8");
        root.write(CONFIG_FILE_NAME, "[profile.default\naddress = ");
        let file = root.path().join(CONFIG_FILE_NAME);
        let (path, text) = config_error(
            load(
                StaticEnvironment::new()
                    .with_var("LAMBDA_TASK_ROOT", root.path().to_str().unwrap()),
            )
            .unwrap_err(),
        );
        assert_eq!(path.as_deref(), Some(file.as_path()));
        assert!(text.contains(file.to_str().unwrap()), "{text}");
        assert!(text.contains("not valid"), "{text}");
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let root = TempDir::new("load-config-9");
        // A directory where the file should be: exists but cannot be read as a file.
        std::fs::create_dir(root.path().join("cfg.toml")).unwrap();
        let named = root.path().join("cfg.toml");
        let err = load(
            StaticEnvironment::new().with_var("TEMPORAL_CONFIG_FILE", named.to_str().unwrap()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cfg.toml"), "{err}");
    }

    #[test]
    fn a_missing_profile_is_an_error() {
        let root = TempDir::new("load-config-10");
        root.write(CONFIG_FILE_NAME, TOML_A);
        let (_, text) = config_error(
            load(
                StaticEnvironment::new()
                    .with_var("LAMBDA_TASK_ROOT", root.path().to_str().unwrap())
                    .with_var("TEMPORAL_PROFILE", "staging"),
            )
            .unwrap_err(),
        );
        assert!(text.contains("staging"), "{text}");
    }

    #[test]
    fn the_idle_exit_comes_from_the_environment_and_a_bad_value_is_named() {
        let inv = load(StaticEnvironment::new().with_var(IDLE_SHUTDOWN_VAR, "2.5")).unwrap();
        assert_eq!(
            inv.config.idle_shutdown,
            Some(std::time::Duration::from_millis(2500))
        );
        // Unset: the default; `off` or 0: polling until the shutdown buffer.
        assert_eq!(
            load(StaticEnvironment::new()).unwrap().config.idle_shutdown,
            Some(DEFAULT_IDLE_SHUTDOWN)
        );
        assert_eq!(DEFAULT_IDLE_SHUTDOWN, std::time::Duration::from_secs(2));
        for off in ["off", "0", " off "] {
            let inv = load(StaticEnvironment::new().with_var(IDLE_SHUTDOWN_VAR, off)).unwrap();
            assert_eq!(inv.config.idle_shutdown, None, "{off:?}");
        }
        let (_, text) = config_error(
            load(StaticEnvironment::new().with_var(IDLE_SHUTDOWN_VAR, "soon")).unwrap_err(),
        );
        assert!(
            text.contains("TEMPORAL_IDLE_SHUTDOWN_SECS is \"soon\""),
            "{text}"
        );
    }

    #[test]
    fn the_settled_idle_exit_comes_from_the_environment_and_a_bad_value_is_named() {
        let settled =
            |env: StaticEnvironment| load(env).map(|inv| inv.config.idle_shutdown_settled);
        let var = |v: &str| StaticEnvironment::new().with_var(IDLE_SHUTDOWN_SETTLED_VAR, v);
        assert_eq!(
            settled(var("0.5")).unwrap(),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(
            settled(StaticEnvironment::new()).unwrap(),
            Some(DEFAULT_IDLE_SHUTDOWN_SETTLED)
        );
        for off in ["off", "0"] {
            assert_eq!(settled(var(off)).unwrap(), None, "{off:?}");
        }
        let (_, text) = config_error(settled(var("-1")).unwrap_err());
        assert!(
            text.contains("TEMPORAL_IDLE_SHUTDOWN_SETTLED_SECS is \"-1\"")
                && text.contains("off to always wait the whole idle exit"),
            "{text}"
        );
    }

    #[test]
    fn the_longest_activity_comes_from_the_environment_and_a_bad_value_is_named() {
        let warns = |env: StaticEnvironment| load(env).map(|inv| inv.config.warn_unpublished_code);
        assert!(warns(StaticEnvironment::new()).unwrap());
        for (value, warn) in [("1", false), ("TRUE", false), ("0", true), ("false", true)] {
            let env = StaticEnvironment::new().with_var(ALLOW_UNPUBLISHED_CODE_VAR, value);
            assert_eq!(warns(env).unwrap(), warn, "{value}");
        }
        let env = StaticEnvironment::new().with_var(ALLOW_UNPUBLISHED_CODE_VAR, "yes please");
        let text = warns(env).unwrap_err().to_string();
        assert!(
            text.contains("TEMPORAL_ALLOW_UNPUBLISHED_CODE is \"yes please\""),
            "{text}"
        );

        let inv = load(StaticEnvironment::new().with_var(LONGEST_ACTIVITY_VAR, "90")).unwrap();
        assert_eq!(
            inv.config.longest_activity,
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            load(StaticEnvironment::new())
                .unwrap()
                .config
                .longest_activity,
            None
        );
        let (_, text) = config_error(
            load(StaticEnvironment::new().with_var(LONGEST_ACTIVITY_VAR, "-1")).unwrap_err(),
        );
        assert!(
            text.contains("TEMPORAL_LONGEST_ACTIVITY_SECS is \"-1\"")
                && text.contains("run every activity task"),
            "{text}"
        );
    }

    #[test]
    fn task_queue_comes_from_the_environment() {
        let inv = load(StaticEnvironment::new().with_var("TEMPORAL_TASK_QUEUE", "tq-env")).unwrap();
        assert_eq!(inv.config.worker.task_queue, "tq-env");
        let inv = load(StaticEnvironment::new()).unwrap();
        assert_eq!(inv.config.worker.task_queue, "");
    }

    #[test]
    fn api_key_is_loaded_but_never_in_debug_output() {
        let inv = load(
            StaticEnvironment::new()
                .with_var("TEMPORAL_API_KEY", "sekrit-key-123")
                .with_var("TEMPORAL_ADDRESS", "ns.tmprl.cloud:7233"),
        )
        .unwrap();
        assert_eq!(
            inv.config.connection.api_key.as_deref(),
            Some("sekrit-key-123")
        );
        assert!(
            inv.config.connection.tls_options.is_some(),
            "an API key turns TLS on"
        );
        let debug = format!("{:?} {:?}", inv.config, inv);
        assert!(!debug.contains("sekrit"), "{debug}");
        assert!(debug.contains("api_key: \"<set>\""), "{debug}");
    }

    #[test]
    fn tls_client_key_and_cert_are_loaded_but_never_in_debug_output() {
        let key = "-----BEGIN PRIVATE KEY-----\nc2Vrcml0LXRscy1rZXk=\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nY2VydC1ib2R5\n-----END CERTIFICATE-----\n";
        let inv = load(
            StaticEnvironment::new()
                .with_var("TEMPORAL_ADDRESS", "ns.tmprl.cloud:7233")
                .with_var("TEMPORAL_TLS_CLIENT_KEY_DATA", key)
                .with_var("TEMPORAL_TLS_CLIENT_CERT_DATA", cert),
        )
        .unwrap();
        let tls = inv
            .config
            .connection
            .tls_options
            .as_ref()
            .expect("client key and cert turn TLS on");
        let client = tls
            .client_tls_options
            .as_ref()
            .expect("the client key pair");
        assert_eq!(client.client_private_key, key.as_bytes());
        let debug = format!("{:?} {:?}", inv.config, inv);
        for secret in ["c2Vrcml0LXRscy1rZXk", "PRIVATE KEY", "Y2VydC1ib2R5"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("tls: \"<set>\""), "{debug}");
    }
}
