//! [`WorkerStack`]: the one way to build the worker stack.

use tower::{
    Layer, Service, ServiceBuilder,
    layer::util::{Identity, Stack},
};

use crate::{
    BoxError, ConfigureCallback, Environment, Invocation, ProcessEnvironment,
    WorkerDeploymentVersion, WorkerReport, WorkerService,
    backend::{TemporalBackend, WorkerBackend},
    layers::*,
};

/// What a host ([`serve`](crate::serve), [`agentcore::serve`](crate::agentcore::serve))
/// serves: a `Service<Invocation>` cloned for each invocation, whose errors are
/// [`BoxError`]s and whose answer is serialized as the invocation's JSON. Every such
/// service is one (a bound to write, not a trait to implement), [`WorkerStack::build`]'s
/// included.
pub trait InvocationService:
    Service<
        Invocation,
        Error = BoxError,
        Future: Send + 'static,
        Response: serde::Serialize + Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> InvocationService for S where
    S: Service<
            Invocation,
            Error = BoxError,
            Future: Send + 'static,
            Response: serde::Serialize + Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The part of the stack below your layers: everything after [`LoadConfigLayer`], boxed, so
/// a layer of yours has a type to wrap.
pub type BelowConnection = tower::util::BoxCloneSyncService<Invocation, WorkerReport, BoxError>;

/// Builds the stack [`run_worker`](crate::run_worker) serves, with or without layers, a
/// backend or an environment of your own: over the real Temporal backend and the process
/// environment unless [`backend`](Self::backend) and [`environment`](Self::environment) say
/// otherwise.
///
/// The built-in layers always run in this order, around a [`WorkerService`]:
/// [`LoadConfigLayer`] → *your layers* → [`LambdaDefaultsLayer`] → [`ConfigureLayer`] →
/// [`DisableEagerActivitiesLayer`] → [`WorkerVersioningLayer`] → [`WorkerIdentityLayer`] →
/// [`DeadlineWatchdogLayer`] → [`WorkerService`]. Your layers go where the connection
/// settings are loaded and not yet used: an auth or secrets layer, or any rule of your own
/// about the invocation. A concern around everything (metrics, tracing) wraps the built
/// stack instead, as `otel::run_worker` does with its `OtelLayer`.
///
/// ```
/// use temporal_lambda_worker::{layers::*, testing::FakeBackend, *};
///
/// # fn configure(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> { Ok(()) }
/// let version = WorkerDeploymentVersion::builder()
///     .deployment_name("my-app")
///     .build_id("build-1")
///     .build();
/// // Production: the real backend and the process environment.
/// let production = WorkerStack::new(version.clone(), configure)
///     .layer(ApiKeySecretLayer::from_file()) // TEMPORAL_API_KEY_FILE
///     .build();
/// // A test: a fake backend and a fixed environment.
/// let under_test = WorkerStack::new(version, configure)
///     .backend(FakeBackend::new())
///     .environment(StaticEnvironment::new().with_var("TEMPORAL_TASK_QUEUE", "tq"))
///     .build();
/// # let _ = (production, under_test);
/// ```
#[derive(Clone, Debug)]
pub struct WorkerStack<C, B = TemporalBackend, E = ProcessEnvironment, L = Identity> {
    version: WorkerDeploymentVersion,
    configure: C,
    backend: B,
    environment: E,
    layers: L,
}

impl<C: ConfigureCallback> WorkerStack<C> {
    /// The stack for workers of `version`, configured by `configure`.
    pub fn new(version: WorkerDeploymentVersion, configure: C) -> Self {
        Self {
            version,
            configure,
            backend: TemporalBackend::new(),
            environment: ProcessEnvironment,
            layers: Identity::new(),
        }
    }
}

impl<C, B, E, L> WorkerStack<C, B, E, L> {
    /// Adds a layer of your own right after [`LoadConfigLayer`], where the connection
    /// settings it sets are final (LoadConfigLayer builds them from scratch) and before the
    /// Lambda defaults and the configure callback. Layers added first run first, as with
    /// `tower::ServiceBuilder`.
    pub fn layer<T>(self, layer: T) -> WorkerStack<C, B, E, Stack<T, L>> {
        WorkerStack {
            version: self.version,
            configure: self.configure,
            backend: self.backend,
            environment: self.environment,
            layers: Stack::new(layer, self.layers),
        }
    }

    /// Runs the workers on `backend` (a test's fake, say) instead of a Temporal server.
    pub fn backend<T: WorkerBackend>(self, backend: T) -> WorkerStack<C, T, E, L> {
        WorkerStack {
            version: self.version,
            configure: self.configure,
            backend,
            environment: self.environment,
            layers: self.layers,
        }
    }

    /// Reads the configuration from `environment` instead of the process's variables.
    pub fn environment<T: Environment>(self, environment: T) -> WorkerStack<C, B, T, L> {
        WorkerStack {
            version: self.version,
            configure: self.configure,
            backend: self.backend,
            environment,
            layers: self.layers,
        }
    }

    /// The stack, ready for [`serve`](crate::serve) (or a test's `oneshot`).
    pub fn build(
        self,
    ) -> impl Service<
        Invocation,
        Response = WorkerReport,
        Error = BoxError,
        Future = impl Send + use<C, B, E, L>,
    > + Clone
    + Send
    + 'static
    where
        C: ConfigureCallback,
        B: WorkerBackend,
        E: Environment,
        L: Layer<BelowConnection> + Send + 'static,
        L::Service: Service<Invocation, Response = WorkerReport> + Clone + Send + 'static,
        <L::Service as Service<Invocation>>::Error: Into<BoxError>,
        <L::Service as Service<Invocation>>::Future: Send + 'static,
    {
        let below = ServiceBuilder::new()
            .layer(LambdaDefaultsLayer::new())
            .layer(ConfigureLayer::new(self.configure))
            .layer(DisableEagerActivitiesLayer::new())
            .layer(WorkerVersioningLayer::new(self.version))
            .layer(WorkerIdentityLayer::new())
            .layer(DeadlineWatchdogLayer::new())
            .service(WorkerService::new(self.backend));
        ServiceBuilder::new()
            .layer(LoadConfigLayer::with_environment(self.environment))
            .map_err(Into::<BoxError>::into)
            .layer(self.layers)
            .service(BelowConnection::new(below))
    }
}
