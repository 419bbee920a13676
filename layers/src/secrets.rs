//! The Temporal API key from a secret, not from the function's environment variables:
//! [`ApiKeySecretLayer`] and the [`SecretResolver`] you give it (their docs are the
//! whole story, and travel with them where they are re-exported).

use std::{
    fmt,
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use crate::{BoxError, Environment, Invocation, LambdaWorkerError};

/// The variable naming a file that holds the API key.
pub const API_KEY_FILE_VAR: &str = "TEMPORAL_API_KEY_FILE";
/// The variable naming a secret (an ARN) that [`SecretResolver`] turns into the API key.
pub const API_KEY_SECRET_ARN_VAR: &str = "TEMPORAL_API_KEY_SECRET_ARN";

/// Turns a secret's id (an ARN, or any id your store uses) into its value. Implement it
/// with your secret store; it reads its own settings from the stack's [`Environment`], so
/// a test gives them with a `StaticEnvironment`:
///
/// ```
/// use temporal_lambda_worker_layers::{
///     ApiKeySecretLayer, BoxError, Environment, SecretResolver, StaticEnvironment,
///     testing::{invocation_in, run_through},
/// };
/// use futures_util::future::BoxFuture;
///
/// /// Reads secrets from a store whose address is `MY_STORE_URL` (a real one would call it).
/// struct MyStore;
/// impl SecretResolver for MyStore {
///     fn resolve(
///         &self,
///         secret_id: &str,
///         env: &dyn Environment,
///     ) -> BoxFuture<'static, Result<String, BoxError>> {
///         let store = env.var("MY_STORE_URL");
///         let id = secret_id.to_owned();
///         Box::pin(async move {
///             let store = store.ok_or("MY_STORE_URL is not set")?;
///             Ok(format!("key-of-{id}-from-{store}"))
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = StaticEnvironment::new()
///     .with_var("TEMPORAL_API_KEY_SECRET_ARN", "temporal-key")
///     .with_var("MY_STORE_URL", "http://127.0.0.1:2773");
/// let layer = ApiKeySecretLayer::with_environment(MyStore, env);
/// let inv = run_through(layer, invocation_in(std::time::Duration::from_secs(60)))
///     .await
///     .unwrap();
/// assert_eq!(
///     inv.config.connection.api_key.as_deref(),
///     Some("key-of-temporal-key-from-http://127.0.0.1:2773")
/// );
/// # }
/// ```
pub trait SecretResolver: Send + Sync + 'static {
    /// The secret's value. `env` is the stack's environment (the one `LoadConfigLayer` was
    /// made with, or the layer's own): read your store's settings there. The error should
    /// say what failed, never the value; it is answered as
    /// `TemporalLambdaWorker.SecretError`, naming the secret's id and this resolver.
    fn resolve(
        &self,
        secret_id: &str,
        env: &dyn Environment,
    ) -> BoxFuture<'static, Result<String, BoxError>>;
}

/// For stacks that only read the key from a file: any ARN is an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSecretResolver;

impl SecretResolver for NoSecretResolver {
    fn resolve(
        &self,
        _: &str,
        _: &dyn Environment,
    ) -> BoxFuture<'static, Result<String, BoxError>> {
        Box::pin(async {
            Err(
                "this function has no secret resolver: build the stack with \
                 ApiKeySecretLayer::new(your_resolver), or use TEMPORAL_API_KEY_FILE"
                    .into(),
            )
        })
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    Secret(String),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(p) => format!("{API_KEY_FILE_VAR}={}", p.display()),
            Source::Secret(arn) => format!("{API_KEY_SECRET_ARN_VAR}={arn}"),
        }
    }
}

struct Cached {
    source: Source,
    key: String,
    fetched: Instant,
}

struct Shared<R> {
    resolver: R,
    /// `None`: the stack's environment ([`Invocation::environment`]).
    environment: Option<Arc<dyn Environment>>,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl<R: SecretResolver> Shared<R> {
    fn source(&self, stack: &dyn Environment) -> Option<Source> {
        let env = self.environment.as_deref().unwrap_or(stack);
        let set = |k| env.var(k).filter(|v| !v.trim().is_empty());
        set(API_KEY_FILE_VAR)
            .map(|p| Source::File(p.into()))
            .or_else(|| set(API_KEY_SECRET_ARN_VAR).map(Source::Secret))
    }

    async fn fetch(
        &self,
        source: &Source,
        stack: &dyn Environment,
    ) -> Result<String, LambdaWorkerError> {
        let key = match source {
            Source::File(path) => {
                std::fs::read_to_string(path).map_err(|e| LambdaWorkerError::Config {
                    path: Some(path.clone()),
                    message: format!(
                        "{API_KEY_FILE_VAR} names this file, but it cannot be read: {e}"
                    ),
                })?
            }
            Source::Secret(arn) => {
                let env = self.environment.as_deref().unwrap_or(stack);
                self.resolver.resolve(arn, env).await.map_err(|source| {
                    LambdaWorkerError::Secret {
                        secret_id: arn.clone(),
                        resolver: std::any::type_name::<R>(),
                        source,
                    }
                })?
            }
        };
        let key = key.trim().to_owned();
        if key.is_empty() {
            return Err(LambdaWorkerError::Config {
                path: match source {
                    Source::File(p) => Some(p.clone()),
                    Source::Secret(_) => None,
                },
                message: format!("{} holds an empty API key", source.describe()),
            });
        }
        Ok(key)
    }

    /// The key for the current source: cached (unless older than `max_age`), or fetched
    /// and cached.
    async fn key(
        &self,
        source: Source,
        max_age: Option<Duration>,
        stack: &dyn Environment,
    ) -> Result<String, LambdaWorkerError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.source == source
            && max_age.is_none_or(|age| c.fetched.elapsed() < age)
        {
            return Ok(c.key.clone());
        }
        let key = self.fetch(&source, stack).await?;
        *cache = Some(Cached {
            source,
            key: key.clone(),
            fetched: Instant::now(),
        });
        Ok(key)
    }
}

/// Sets `config.connection.api_key` before the worker connects, from the first of:
///
/// 1. `TEMPORAL_API_KEY_FILE`: a file holding the key (a mounted secret, or one written by
///    an init step); surrounding whitespace is trimmed;
/// 2. `TEMPORAL_API_KEY_SECRET_ARN`: a secret resolved by your [`SecretResolver`] (AWS
///    Secrets Manager through the SDK or the Parameters and Secrets Lambda extension, SSM,
///    Vault, …).
///
/// With neither set, the invocation passes through unchanged (`TEMPORAL_API_KEY` or the
/// config file still apply). The key is fetched on the first invocation and cached for
/// the life of the process, so warm invocations pay nothing and the cached connection's
/// fingerprint stays the same; [`ApiKeySecretLayer::max_age`] re-fetches it after a while
/// for rotated keys. A failed fetch is not cached, and the next invocation tries again: a
/// resolver's failure fails that invocation with `TemporalLambdaWorker.SecretError`
/// (naming the secret's id and the resolver), an unreadable file with
/// `TemporalLambdaWorker.ConfigError` (naming the variable and the file). The key never
/// appears in errors, logs or `Debug` output.
///
/// Put it after [`LoadConfigLayer`](crate::LoadConfigLayer) (which builds the connection
/// options) and before the configure callback:
///
/// ```
/// use temporal_lambda_worker_layers::{
///     ApiKeySecretLayer, BoxError, Environment, LoadConfigLayer, SecretResolver,
/// };
/// use futures_util::future::BoxFuture;
/// use tower::ServiceBuilder;
///
/// /// Resolves a secret ARN; a real one would call Secrets Manager.
/// struct MySecrets;
/// impl SecretResolver for MySecrets {
///     fn resolve(
///         &self,
///         arn: &str,
///         _env: &dyn Environment,
///     ) -> BoxFuture<'static, Result<String, BoxError>> {
///         let arn = arn.to_owned();
///         Box::pin(async move { Ok(format!("key-for-{arn}")) })
///     }
/// }
///
/// let stack = ServiceBuilder::new()
///     .layer(LoadConfigLayer::new())
///     .layer(ApiKeySecretLayer::new(MySecrets));
/// # let _ = stack;
/// ```
pub struct ApiKeySecretLayer<R> {
    shared: Arc<Shared<R>>,
    max_age: Option<Duration>,
}

impl<R> Clone for ApiKeySecretLayer<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            max_age: self.max_age,
        }
    }
}

impl<R> fmt::Debug for ApiKeySecretLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.shared.cache.try_lock().map(|c| c.is_some()).ok();
        f.debug_struct("ApiKeySecretLayer")
            .field("max_age", &self.max_age)
            .field("key_cached", &cached)
            .finish_non_exhaustive()
    }
}

impl ApiKeySecretLayer<NoSecretResolver> {
    /// Reads the key from `TEMPORAL_API_KEY_FILE` only.
    pub fn from_file() -> Self {
        Self::new(NoSecretResolver)
    }
}

impl<R: SecretResolver> ApiKeySecretLayer<R> {
    /// Resolves `TEMPORAL_API_KEY_SECRET_ARN` with `resolver` (a file still wins); reads
    /// the variables from the stack's environment ([`Invocation::environment`]: the one
    /// `LoadConfigLayer` was made with).
    pub fn new(resolver: R) -> Self {
        Self::reading(resolver, None)
    }

    /// Reads the variables from `environment` instead of the stack's (for tests of this
    /// layer alone).
    pub fn with_environment(resolver: R, environment: impl Environment) -> Self {
        Self::reading(resolver, Some(Arc::new(environment)))
    }

    fn reading(resolver: R, environment: Option<Arc<dyn Environment>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                resolver,
                environment,
                cache: tokio::sync::Mutex::new(None),
            }),
            max_age: None,
        }
    }

    /// Re-fetches the key once it is older than `age` (for rotated keys).
    pub fn max_age(self, age: Duration) -> Self {
        Self {
            max_age: Some(age),
            ..self
        }
    }
}

impl<S, R> Layer<S> for ApiKeySecretLayer<R> {
    type Service = ApiKeySecret<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeySecret {
            inner,
            shared: self.shared.clone(),
            max_age: self.max_age,
        }
    }
}

/// The future of [`ApiKeySecret`]: boxed, as its work is async and its type is not worth naming.
pub type ResponseFuture<R> = BoxFuture<'static, Result<R, BoxError>>;

/// The service made by [`ApiKeySecretLayer`].
pub struct ApiKeySecret<S, R> {
    inner: S,
    shared: Arc<Shared<R>>,
    max_age: Option<Duration>,
}

/// Never shows the key: the inner service and the cache's lifetime only.
impl<S: fmt::Debug, R> fmt::Debug for ApiKeySecret<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("inner", &self.inner)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, R> Clone for ApiKeySecret<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            max_age: self.max_age,
        }
    }
}

impl<S, R> Service<Invocation> for ApiKeySecret<S, R>
where
    S: Service<Invocation> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: SecretResolver,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut invocation: Invocation) -> Self::Future {
        // The readied service runs this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let max_age = self.max_age;
        Box::pin(async move {
            invocation.enter(crate::invocation::Lifecycle::ApiKeySecret)?;
            if let Some(source) = shared.source(invocation.environment()) {
                let key = shared
                    .key(source, max_age, invocation.environment())
                    .await?;
                invocation.config.connection.api_key = Some(key);
            }
            inner.call(invocation).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use temporal_lambda_local::TempDir;

    use super::*;
    use crate::{
        StaticEnvironment,
        testing::{context, run_through},
    };

    fn invocation() -> Invocation {
        Invocation::new(serde_json::Value::Null, context("r", 0))
    }

    /// Counts calls; answers `secret-for-{arn}`, or an error for ARNs containing "missing".
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);
    impl SecretResolver for Counting {
        fn resolve(
            &self,
            arn: &str,
            _: &dyn Environment,
        ) -> BoxFuture<'static, Result<String, BoxError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let arn = arn.to_owned();
            Box::pin(async move {
                if arn.contains("missing") {
                    Err(format!("ResourceNotFoundException: {arn}").into())
                } else {
                    Ok(format!("  secret-for-{arn}\n"))
                }
            })
        }
    }

    fn key_of(inv: &Invocation) -> Option<&str> {
        inv.config.connection.api_key.as_deref()
    }

    #[tokio::test]
    async fn without_its_own_environment_it_reads_the_stacks_from_load_config() {
        let dir = TempDir::new("secrets-1");
        let file = dir.path().join("api-key");
        std::fs::write(&file, "stack-key\n").unwrap();
        let env = StaticEnvironment::new()
            .with_var(API_KEY_FILE_VAR, file.to_str().unwrap())
            .with_var("TEMPORAL_ADDRESS", "127.0.0.1:7233");
        // One environment, given once: to LoadConfigLayer, which hands it down.
        let stack = tower::ServiceBuilder::new()
            .layer(crate::LoadConfigLayer::with_environment(env))
            .layer(ApiKeySecretLayer::from_file())
            .service(tower::service_fn(|inv: Invocation| async move {
                Ok::<_, BoxError>(inv)
            }));
        let inv = tower::ServiceExt::oneshot(stack, invocation())
            .await
            .unwrap();
        assert_eq!(key_of(&inv), Some("stack-key"));
        assert_eq!(
            inv.environment().var(API_KEY_FILE_VAR).as_deref(),
            file.to_str()
        );
    }

    #[tokio::test]
    async fn reads_the_file_once_and_serves_warm_invocations_from_the_cache() {
        let dir = TempDir::new("secrets-2");
        let file = dir.path().join("api-key");
        std::fs::write(&file, "file-key\n").unwrap();
        let env = StaticEnvironment::new().with_var(API_KEY_FILE_VAR, file.to_str().unwrap());
        let layer = ApiKeySecretLayer::with_environment(Counting::default(), env);
        let first = run_through(layer.clone(), invocation()).await.unwrap();
        assert_eq!(key_of(&first), Some("file-key"));
        // Warm invocation: the file is gone, the cached key is still used.
        std::fs::remove_file(&file).unwrap();
        let second = run_through(layer, invocation()).await.unwrap();
        assert_eq!(key_of(&second), Some("file-key"));
    }

    #[tokio::test]
    async fn resolves_the_secret_arn_once_across_invocations() {
        let resolver = Counting::default();
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:temporal";
        let env = StaticEnvironment::new().with_var(API_KEY_SECRET_ARN_VAR, arn);
        let layer = ApiKeySecretLayer::with_environment(resolver.clone(), env);
        for _ in 0..3 {
            let inv = run_through(layer.clone(), invocation()).await.unwrap();
            assert_eq!(key_of(&inv), Some(format!("secret-for-{arn}").as_str()));
        }
        assert_eq!(resolver.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refetches_after_max_age() {
        let resolver = Counting::default();
        let env = StaticEnvironment::new().with_var(API_KEY_SECRET_ARN_VAR, "arn:x");
        let layer =
            ApiKeySecretLayer::with_environment(resolver.clone(), env).max_age(Duration::ZERO);
        for _ in 0..2 {
            run_through(layer.clone(), invocation()).await.unwrap();
        }
        assert_eq!(resolver.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_file_wins_over_the_secret_arn() {
        let dir = TempDir::new("secrets-3");
        let file = dir.path().join("k");
        std::fs::write(&file, "from-file").unwrap();
        let resolver = Counting::default();
        let env = StaticEnvironment::new()
            .with_var(API_KEY_FILE_VAR, file.to_str().unwrap())
            .with_var(API_KEY_SECRET_ARN_VAR, "arn:x");
        let layer = ApiKeySecretLayer::with_environment(resolver.clone(), env);
        let inv = run_through(layer, invocation()).await.unwrap();
        assert_eq!(key_of(&inv), Some("from-file"));
        assert_eq!(resolver.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn without_a_source_the_key_is_left_alone() {
        let layer =
            ApiKeySecretLayer::with_environment(Counting::default(), StaticEnvironment::new());
        let mut inv = invocation();
        inv.config.connection.api_key = Some("from-env".into());
        let inv = run_through(layer, inv).await.unwrap();
        assert_eq!(key_of(&inv), Some("from-env"));
    }

    fn config_error(e: BoxError) -> (Option<PathBuf>, String) {
        match *e
            .downcast::<LambdaWorkerError>()
            .expect("a LambdaWorkerError")
        {
            ref err @ LambdaWorkerError::Config { ref path, .. } => (path.clone(), err.to_string()),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error_naming_the_variable_and_the_file() {
        let env = StaticEnvironment::new().with_var(API_KEY_FILE_VAR, "/nonexistent/api-key");
        let layer = ApiKeySecretLayer::with_environment(Counting::default(), env);
        let (path, msg) = config_error(run_through(layer, invocation()).await.unwrap_err());
        assert_eq!(path, Some(PathBuf::from("/nonexistent/api-key")));
        assert!(
            msg.contains("TEMPORAL_API_KEY_FILE names this file"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_failed_resolve_is_not_cached_and_an_empty_key_is_refused() {
        let resolver = Counting::default();
        let env = StaticEnvironment::new().with_var(API_KEY_SECRET_ARN_VAR, "arn:missing");
        let layer = ApiKeySecretLayer::with_environment(resolver.clone(), env);
        for _ in 0..2 {
            let e = run_through(layer.clone(), invocation()).await.unwrap_err();
            let e = *e
                .downcast::<LambdaWorkerError>()
                .expect("a LambdaWorkerError");
            assert_eq!(e.error_type(), crate::error_type::SECRET);
            let msg = e.to_string();
            assert!(
                msg.starts_with("the API key's secret arn:missing (TEMPORAL_API_KEY_SECRET_ARN)"),
                "{msg}"
            );
            assert!(msg.contains("secrets::tests::Counting"), "{msg}");
            assert!(
                msg.contains("ResourceNotFoundException: arn:missing"),
                "{msg}"
            );
            assert!(!msg.contains("TEMPORAL_* environment variables"), "{msg}");
        }
        assert_eq!(resolver.0.load(Ordering::SeqCst), 2, "failures are retried");

        let dir = TempDir::new("secrets-4");
        let file = dir.path().join("k");
        std::fs::write(&file, " \n").unwrap();
        let env = StaticEnvironment::new().with_var(API_KEY_FILE_VAR, file.to_str().unwrap());
        let layer = ApiKeySecretLayer::with_environment(Counting::default(), env);
        let (_, msg) = config_error(run_through(layer, invocation()).await.unwrap_err());
        assert!(msg.contains("holds an empty API key"), "{msg}");
    }

    #[tokio::test]
    async fn the_key_never_shows_in_debug_output() {
        let env = StaticEnvironment::new().with_var(API_KEY_SECRET_ARN_VAR, "arn:x");
        let layer = ApiKeySecretLayer::with_environment(Counting::default(), env);
        let inv = run_through(layer.clone(), invocation()).await.unwrap();
        let shown = format!("{layer:?} {:?}", inv.config);
        assert!(!shown.contains("secret-for"), "{shown}");
        assert!(shown.contains("key_cached: Some(true)"), "{shown}");
    }
}
