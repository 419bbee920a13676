//! The whole serverless loop on one machine: a dev server whose Worker Controller invokes a
//! function (or an AgentCore agent runtime) served by a [`ControlPlane`], with Worker
//! Deployment Versions backed by it.

use std::time::Duration;

use crate::{
    AgentRuntimeSpec, ControlPlane, ControlPlaneOptions, DevServer, Error, FunctionSpec, Result,
    control_plane::runtime_endpoint_arn, dev_server::free_port,
};

/// The role ARN the local versions name (the control plane accepts any).
pub const LOCAL_INVOKER_ROLE: &str = "arn:aws:iam::000000000000:role/temporal-invoker";

/// A running loop. Dropping it kills the function's processes, then the server.
pub struct ServerlessLoop {
    /// The local AWS endpoint and the function's processes.
    pub plane: ControlPlane,
    /// The Temporal dev server, Worker Controller on.
    pub server: DevServer,
    /// The function's name (the agent runtime's id, in a loop of
    /// [`launch_agentcore`](Self::launch_agentcore)).
    pub function: String,
    /// The external id the versions' compute config carries.
    pub external_id: String,
    /// The function's timeout (the agent runtime's idle session timeout).
    pub timeout: Duration,
}

impl ServerlessLoop {
    /// Starts the control plane serving `spec` (with `TEMPORAL_ADDRESS` added, pointing at
    /// the server), then the dev server with its Worker Controller pointed at the plane. No
    /// version exists yet: [`register`](Self::register) creates one.
    pub async fn launch(spec: FunctionSpec, external_id: &str) -> Result<Self> {
        Self::launch_with(spec, external_id, Vec::new()).await
    }

    /// [`launch`](Self::launch), with more `temporal server start-dev` arguments
    /// ([`DevServer::start_with_worker_controller`]).
    pub async fn launch_with(
        spec: FunctionSpec,
        external_id: &str,
        server_args: Vec<String>,
    ) -> Result<Self> {
        let port = free_port();
        let (function, timeout) = (spec.name.clone(), spec.timeout);
        let spec = spec.env("TEMPORAL_ADDRESS", &format!("127.0.0.1:{port}"));
        let options = ControlPlaneOptions::default();
        Self::launch_plane(
            vec![spec],
            options,
            (function, timeout),
            external_id,
            server_args,
            port,
        )
        .await
    }

    /// The loop on AgentCore Runtime: the control plane serves agent runtime `spec` (with
    /// `TEMPORAL_ADDRESS` added) instead of a function. No version exists yet:
    /// [`register_agent_runtime`](Self::register_agent_runtime) creates one.
    pub async fn launch_agentcore(spec: AgentRuntimeSpec, external_id: &str) -> Result<Self> {
        let port = free_port();
        let (id, timeout) = (spec.id.clone(), spec.idle_session_timeout);
        let spec = spec.env("TEMPORAL_ADDRESS", &format!("127.0.0.1:{port}"));
        let options = ControlPlaneOptions {
            agent_runtimes: vec![spec],
            ..Default::default()
        };
        Self::launch_plane(
            Vec::new(),
            options,
            (id, timeout),
            external_id,
            Vec::new(),
            port,
        )
        .await
    }

    async fn launch_plane(
        functions: Vec<FunctionSpec>,
        options: ControlPlaneOptions,
        (function, timeout): (String, Duration),
        external_id: &str,
        server_args: Vec<String>,
        port: u16,
    ) -> Result<Self> {
        let options = ControlPlaneOptions {
            expect_external_id: Some(external_id.into()),
            ..options
        };
        let plane = ControlPlane::start(functions, options)
            .await
            .map_err(|e| Error::io("starting the local control plane", e))?;
        let url = plane.endpoint_url();
        let server = tokio::task::spawn_blocking(move || {
            DevServer::start_with_worker_controller(port, &url, &server_args)
        })
        .await
        .map_err(|e| Error::io("starting the dev server", std::io::Error::other(e)))?;
        Ok(Self {
            plane,
            server,
            function,
            external_id: external_id.to_owned(),
            timeout,
        })
    }

    /// [`launch`](Self::launch), then version `deployment`/`build_id` backed by the
    /// function's unqualified ARN, registered and made current.
    ///
    /// Fails with the reason when that first invocation answers an error (the bootstrap's
    /// `errorType` and message), or when no worker of that version polled `task_queue`
    /// (the bootstrap polls as another deployment, build id or task queue).
    pub async fn start(
        spec: FunctionSpec,
        deployment: &str,
        build_id: &str,
        external_id: &str,
        task_queue: &str,
    ) -> Result<Self> {
        Self::launch(spec, external_id)
            .await?
            .registered(deployment, build_id, task_queue)
            .await
    }

    /// Registers version `deployment`/`build_id`, backed by the function's unqualified
    /// ARN, and makes it current: what [`start`](Self::start) does after launching.
    pub async fn registered(
        self,
        deployment: &str,
        build_id: &str,
        task_queue: &str,
    ) -> Result<Self> {
        let arn = crate::control_plane::function_arn(&self.function);
        self.register(deployment, build_id, &arn, task_queue)
            .await?;
        self.make_current(deployment, build_id).await?;
        Ok(self)
    }

    /// Creates version `deployment`/`build_id` backed by `function_arn` (the function's
    /// ARN, with a version qualifier or without) and waits for the invocation the server
    /// makes right away, until its worker has registered `task_queue` with the version —
    /// as a deploy script's next command (`set-current-version`, `set-ramping-version`)
    /// would, while that worker still polls (it polls on until the version is routed to:
    /// see ARCHITECTURE.md, "Invocation boundaries").
    ///
    /// Fails with the reason when that invocation answers an error or is not answered, or
    /// when no worker of that version polled `task_queue`.
    pub async fn register(
        &self,
        deployment: &str,
        build_id: &str,
        function_arn: &str,
        task_queue: &str,
    ) -> Result<()> {
        let arn = function_arn;
        let seen = self.plane.stats(arn);
        self.server
            .create_lambda_version(
                deployment,
                build_id,
                arn,
                LOCAL_INVOKER_ROLE,
                &self.external_id,
            )
            .await?;
        self.plane
            .wait_for(arn, INVOKED_WITHIN, |s| s.invokes > seen.invokes)
            .await
            .map_err(|s| {
                Error::timeout(format!("an invocation of {arn} ({s:?})"), INVOKED_WITHIN)
            })?;
        let until = tokio::time::Instant::now() + self.timeout + Duration::from_secs(30);
        let mut polled = Vec::new();
        loop {
            let stats = self.plane.stats(arn);
            if let Some(attempt) = stats.attempts.get(seen.attempts.len()) {
                // Answered before its worker registered the task queue: an error, or a
                // worker of another version or task queue (checked below).
                check_answer(arn, &attempt.answer.outcome)?;
            }
            polled = self
                .server
                .version_task_queues(deployment, build_id)
                .await
                .unwrap_or(polled);
            let answered = stats.attempts.len() > seen.attempts.len();
            if polled.iter().any(|q| q == task_queue) || answered {
                break;
            }
            if tokio::time::Instant::now() > until {
                return Err(Error::Invocation(format!(
                    "the version-creation invocation of {arn} never answered: {stats:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !polled.iter().any(|q| q == task_queue) {
            return Err(Error::Invocation(format!(
                "no worker of {deployment}/{build_id} polled task queue {task_queue} (the \
                 version has {polled:?}): the bootstrap polls as another deployment, build id \
                 or task queue; its log line `worker polling task_queue=… deployment=… \
                 build_id=…` says which (see docs/local-loop.md, troubleshooting)"
            )));
        }
        Ok(())
    }

    /// Creates version `deployment`/`build_id` backed by the agent runtime's `DEFAULT`
    /// endpoint, and waits for the invocation the server makes right away and for that
    /// session's worker to register `task_queue` with the version (the container answers
    /// the invocation at once and polls in the background).
    ///
    /// Fails when the server never invokes the runtime, or when no worker of that version
    /// polled `task_queue` within 15 s (the container's log says why: its `this invocation
    /// is for version …` line when it is another build).
    pub async fn register_agent_runtime(
        &self,
        deployment: &str,
        build_id: &str,
        task_queue: &str,
    ) -> Result<()> {
        let id = &self.function;
        let seen = self.plane.agent_runtime_stats(id).invokes;
        self.server
            .create_agentcore_version(
                deployment,
                build_id,
                &runtime_endpoint_arn(id),
                LOCAL_INVOKER_ROLE,
                &self.external_id,
            )
            .await?;
        self.plane
            .wait_for_agent_runtime(id, INVOKED_WITHIN, |s| s.invokes > seen)
            .await
            .map_err(|s| {
                Error::timeout(
                    format!("an invocation of agent runtime {id} ({s:?})"),
                    INVOKED_WITHIN,
                )
            })?;
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut polled = Vec::new();
        while tokio::time::Instant::now() < until {
            polled = self
                .server
                .version_task_queues(deployment, build_id)
                .await
                .unwrap_or(polled);
            if polled.iter().any(|q| q == task_queue) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Invocation(format!(
            "no worker of {deployment}/{build_id} polled task queue {task_queue} (the version \
             has {polled:?}): the container polls as another deployment, build id or task \
             queue, or its session failed; its log says which: {:?}",
            self.plane.agent_runtime_stats(id)
        )))
    }

    /// Makes `deployment`/`build_id` the current version.
    pub async fn make_current(&self, deployment: &str, build_id: &str) -> Result<()> {
        self.server
            .set_current_version(deployment, build_id, Duration::from_secs(30))
            .await
            .map_err(|e| {
                Error::Invocation(format!(
                    "could not make {deployment}/{build_id} current (did the bootstrap poll as \
                     that version? see docs/local-loop.md, troubleshooting): {e}"
                ))
            })
    }
}

/// An error unless `outcome` is a response of the version-creation invocation of `arn`.
fn check_answer(arn: &str, outcome: &crate::Outcome) -> Result<()> {
    match outcome {
        crate::Outcome::Response(_) => Ok(()),
        crate::Outcome::Error {
            error_type,
            error_message,
        } => Err(Error::Invocation(format!(
            "the version-creation invocation of {arn} failed: {error_type}: {error_message}"
        ))),
        other => Err(Error::Invocation(format!(
            "the version-creation invocation of {arn} was not answered: {other:?}"
        ))),
    }
}

/// How long the loop waits for the server to invoke a new version's function or runtime.
const INVOKED_WITHIN: Duration = Duration::from_secs(30);
