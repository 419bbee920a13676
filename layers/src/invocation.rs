//! The request type that flows through the stack.

use std::{fmt, sync::Arc};

use lambda_runtime::Context;
use tokio::sync::watch;

use crate::{Environment, LambdaWorkerConfig, ProcessEnvironment, Timeline};

/// One Lambda invocation on its way down the stack: the Lambda event and context, plus
/// the per-invocation [`LambdaWorkerConfig`] the layers fill in.
pub struct Invocation {
    /// The invocation's payload. Temporal's Worker Controller sends an empty one; the
    /// work is whatever the worker polls, so nothing in the stack reads it.
    pub payload: serde_json::Value,
    /// The Lambda context: request id, deadline, function ARN, trace id.
    pub context: Context,
    /// The configuration being built for this invocation's worker. Boxed: every layer
    /// moves the invocation on to the next, and the config is three quarters of it
    /// ([measured](https://github.com/temporal-lambda-worker/temporal-lambda-worker/blob/main/benches/RESULTS.md)). Fields read and write through the
    /// box as they are (`inv.config.worker.task_queue`), and `&mut inv.config` coerces to
    /// `&mut LambdaWorkerConfig`.
    pub config: Box<LambdaWorkerConfig>,
    /// Fires when the process is told to stop (SIGTERM): a polling worker begins its
    /// graceful shutdown at once. The Lambda adapter (`serve`) sets it; the default never
    /// fires.
    pub stop: StopSignal,
    /// Every moment that bounds the invocation ([`timeline`](Self::timeline)).
    timeline: Timeline,
    /// The latest lifecycle stage passed, and the layer that passed it (the order check).
    stage: Option<(Stage, &'static str)>,
    /// The environment the stack reads ([`environment`](Self::environment)).
    env: Arc<dyn Environment>,
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("payload", &self.payload)
            .field("context", &self.context)
            .field("config", &self.config)
            .field("timeline", &self.timeline)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl Invocation {
    /// A fresh invocation with a blank config, received now. Its [`timeline`](Self::timeline)
    /// is read from `context`'s deadline here, once: changing `context.deadline` later
    /// changes nothing.
    pub fn new(payload: serde_json::Value, context: Context) -> Self {
        Self {
            timeline: Timeline::from_context(&context),
            payload,
            context,
            config: Box::default(),
            stop: StopSignal::default(),
            stage: None,
            env: Arc::new(ProcessEnvironment),
        }
    }

    /// The environment the stack reads its settings from: the one
    /// [`LoadConfigLayer`](crate::LoadConfigLayer) was made with, from that layer down (the
    /// process environment above it, or until [`with_environment`](Self::with_environment)).
    /// A rule of your own reads its settings here, so a test of the whole stack gives the
    /// environment once:
    ///
    /// ```
    /// # use temporal_lambda_worker_layers::{*, testing::*};
    /// # use std::time::Duration;
    /// let inv = invocation_in(Duration::from_secs(60))
    ///     .with_environment(StaticEnvironment::new().with_var("TEAM", "payments"));
    /// assert_eq!(inv.environment().var("TEAM").as_deref(), Some("payments"));
    /// ```
    pub fn environment(&self) -> &dyn Environment {
        self.env.as_ref()
    }

    /// This invocation, reading `env` from now on (tests; `LoadConfigLayer` sets its own).
    pub fn with_environment(mut self, env: impl Environment) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// The moments that bound this invocation, the same for every layer: the deadline,
    /// when the answer is due and, once the [`DeadlineWatchdogLayer`] planned it, when
    /// polling stops and the drain ends. Without a deadline every moment is
    /// [`Moment::NEVER`](crate::Moment::NEVER).
    ///
    /// [`DeadlineWatchdogLayer`]: crate::DeadlineWatchdogLayer
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// This invocation with `timeline` instead of the one read from its context (a test
    /// of a service below the watchdog gives it a planned one).
    pub fn with_timeline(mut self, timeline: Timeline) -> Self {
        self.timeline = timeline;
        self
    }

    /// Sets the environment the layers below read (`LoadConfigLayer`).
    pub(crate) fn set_environment(&mut self, env: Arc<dyn Environment>) {
        self.env = env;
    }

    /// The layer-order check, the one place it is made. Records that `layer` runs now;
    /// fails when a layer of a later stage already ran (a misordered hand-built stack),
    /// or, for `LoadConfigLayer`, which builds the connection options from scratch, when a
    /// layer above it already set some (an API key a layer of your own set there would be
    /// lost without a word).
    pub(crate) fn enter(&mut self, layer: Lifecycle) -> Result<(), crate::LambdaWorkerError> {
        let (stage, layer) = (layer.stage(), layer.name());
        if let Some((seen, after)) = self.stage
            && seen > stage
        {
            return Err(crate::LambdaWorkerError::LayerOrder { layer, after });
        }
        let c = &self.config.connection;
        if stage == Stage::Load
            && (c.api_key.is_some() || c.tls_options.is_some() || c.headers.is_some())
        {
            return Err(crate::LambdaWorkerError::LayerOrder {
                layer,
                after: "a layer that set connection settings (an API key, TLS or headers; \
                        insert such a layer with WorkerStack::layer, or below \
                        LoadConfigLayer)",
            });
        }
        if self.stage.is_none_or(|(seen, _)| stage >= seen) {
            self.stage = Some((stage, layer));
        }
        Ok(())
    }
}

/// The built-in lifecycle layers, each with its name and its stage: the order check and
/// its message read both from here, so neither can drift from the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    LoadConfig,
    ApiKeySecret,
    LambdaDefaults,
    Configure,
    DisableEagerActivities,
    WorkerVersioning,
    WorkerIdentity,
    DeadlineWatchdog,
}

impl Lifecycle {
    /// Every built-in layer, outermost first: the documented order (the order message's
    /// test reads it).
    #[cfg(test)]
    pub(crate) const ORDER: [Self; 8] = [
        Self::LoadConfig,
        Self::ApiKeySecret,
        Self::LambdaDefaults,
        Self::Configure,
        Self::DisableEagerActivities,
        Self::WorkerVersioning,
        Self::WorkerIdentity,
        Self::DeadlineWatchdog,
    ];

    /// The layer's type name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::LoadConfig => "LoadConfigLayer",
            Self::ApiKeySecret => "ApiKeySecretLayer",
            Self::LambdaDefaults => "LambdaDefaultsLayer",
            Self::Configure => "ConfigureLayer",
            Self::DisableEagerActivities => "DisableEagerActivitiesLayer",
            Self::WorkerVersioning => "WorkerVersioningLayer",
            Self::WorkerIdentity => "WorkerIdentityLayer",
            Self::DeadlineWatchdog => "DeadlineWatchdogLayer",
        }
    }

    /// Where it belongs.
    pub(crate) fn stage(self) -> Stage {
        match self {
            Self::LoadConfig => Stage::Load,
            Self::ApiKeySecret => Stage::Connection,
            Self::LambdaDefaults => Stage::Defaults,
            Self::Configure => Stage::Configure,
            Self::DisableEagerActivities
            | Self::WorkerVersioning
            | Self::WorkerIdentity
            | Self::DeadlineWatchdog => Stage::Enforce,
        }
    }
}

/// Where a built-in layer belongs: each must run after every layer of an earlier stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// `LoadConfigLayer`: builds the connection options from scratch.
    Load,
    /// `ApiKeySecretLayer` (and your connection layers): change the loaded options.
    Connection,
    /// `LambdaDefaultsLayer`: pre-fills what configure may override.
    Defaults,
    /// `ConfigureLayer`: the user's callback.
    Configure,
    /// Eager activities off, versioning, identity, deadline: after configure.
    Enforce,
}

/// Tells running invocations to stop early (the process got SIGTERM). Cheap to clone; the
/// default one never fires.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Option<watch::Receiver<bool>>);

/// Fires a [`StopSignal`] (and every clone of it).
#[derive(Debug)]
pub struct StopTrigger(watch::Sender<bool>);

impl StopSignal {
    /// A signal and the trigger that fires it.
    pub fn new() -> (StopTrigger, StopSignal) {
        let (tx, rx) = watch::channel(false);
        (StopTrigger(tx), StopSignal(Some(rx)))
    }

    /// Whether it fired.
    pub fn is_stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once it fired (never, for the default signal or a dropped trigger).
    pub async fn stopped(&self) {
        match &self.0 {
            Some(rx) => {
                let mut rx = rx.clone();
                if rx.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl StopTrigger {
    /// Fires the signal.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stop_signal_fires_for_every_clone_and_the_default_never_does() {
        let (trigger, signal) = StopSignal::new();
        let clone = signal.clone();
        assert!(!signal.is_stopped());
        let waiting = tokio::spawn(async move { clone.stopped().await });
        trigger.stop();
        waiting.await.unwrap();
        assert!(signal.is_stopped());
        signal.stopped().await;
        let never = StopSignal::default();
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(3600), never.stopped())
                .await
                .is_err()
        );
    }

    #[test]
    fn the_order_message_names_the_layers_in_their_stages_order() {
        let message = crate::LambdaWorkerError::LayerOrder {
            layer: Lifecycle::LambdaDefaults.name(),
            after: Lifecycle::Configure.name(),
        }
        .to_string();
        let order = message.split_once("outermost first: ").unwrap().1;
        let at: Vec<usize> = Lifecycle::ORDER
            .iter()
            .map(|l| {
                order
                    .find(l.name())
                    .unwrap_or_else(|| panic!("{}", l.name()))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{order}");
        let stages: Vec<Stage> = Lifecycle::ORDER.iter().map(|l| l.stage()).collect();
        assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{stages:?}");
    }
}
