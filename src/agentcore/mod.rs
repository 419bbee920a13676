//! The AgentCore Runtime host: the same stack served over Amazon Bedrock AgentCore
//! Runtime's HTTP contract instead of the Lambda Runtime API (issue 36).
//!
//! Temporal's Worker Controller invokes an AgentCore runtime (`InvokeAgentRuntime`, body
//! `{"deploymentName": …, "buildId": …}`) when tasks wait, and gives the call about 5 s:
//! AgentCore has no asynchronous invoke. So `POST /invocations` answers at once and runs
//! the poll session in the background, and `GET /ping` says `HealthyBusy` while a session
//! polls or drains (AgentCore keeps a busy session alive) and `Healthy` otherwise, with
//! `time_of_last_update` moving only when the status changes.
//!
//! What bounds a session: there is no Lambda deadline. AgentCore stops a session after
//! its idle timeout (15 minutes by default, `idleRuntimeSessionTimeout`) without work,
//! and after its maximum lifetime (8 hours) in any case. Each invocation's session is given
//! a deadline of `TEMPORAL_AGENTCORE_SESSION_SECS` (900 s by default) from its start: the
//! idle exit usually ends it much sooner, and the Worker Controller invokes again for
//! tasks that wait. Every other rule is the stack's, as on Lambda: identity (the session
//! id, or a request id, `@` the runtime's ARN), the versioning check (the body's
//! `deploymentName`/`buildId` against the worker's), the idle exit, activity admission,
//! the OTel flush.
//!
//! Switching host is one line of `main`: `agentcore::serve(stack)` for `serve(stack)`, or
//! `agentcore::run_worker(version, configure)` for `run_worker(version, configure)`.

mod environment;
mod http;

use std::sync::Arc;

use environment::AgentCoreEnvironment;
pub use environment::{PORT_VAR, RUNTIME_ARN_VAR, SESSION_SECS_VAR};
use http::Host;

use crate::{
    BoxError, ConfigureCallback, Environment, InvocationService, ProcessEnvironment, StopSignal,
    WorkerDeploymentVersion, WorkerStack,
};

/// Serves AgentCore invocations with the default stack (see [`serve`]).
pub async fn run_worker<C: ConfigureCallback>(
    version: WorkerDeploymentVersion,
    configure: C,
) -> Result<(), BoxError> {
    serve(WorkerStack::new(version, configure).build()).await
}

/// Serves `stack` over AgentCore Runtime's HTTP contract on `0.0.0.0:$PORT` (8080 when
/// unset), until SIGTERM: then every polling session begins its graceful shutdown, the
/// server waits for them to end, and returns `Ok`. A session that poisons the process (a
/// panic, a worker that would not drain) ends the server once the others answered, with
/// that error: return it from `main`.
pub async fn serve<S>(stack: S) -> Result<(), BoxError>
where
    S: InvocationService,
{
    serve_in(stack, &ProcessEnvironment).await
}

/// [`serve`] in `env`.
async fn serve_in<S>(stack: S, env: &dyn Environment) -> Result<(), BoxError>
where
    S: InvocationService,
{
    let env = AgentCoreEnvironment::read(env)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", env.port))
        .await
        .map_err(|e| format!("cannot listen on 0.0.0.0:{} ({PORT_VAR}): {e}", env.port))?;
    tracing::info!(
        port = env.port,
        runtime = %env.runtime_arn,
        session_secs = env.session.as_secs(),
        "serving AgentCore Runtime invocations"
    );
    let (trigger, stop) = StopSignal::new();
    let host = Arc::new(Host::new(stack, stop, env));
    tokio::select! {
        ended = http::accept(listener, host.clone()) => ended,
        name = crate::lambda::stop_requested() => {
            tracing::info!(
                signal = name,
                sessions = host.sessions(),
                "{name}: stopping every session"
            );
            trigger.stop();
            host.idle().await;
            Ok(())
        }
        why = host.poisoned() => Err(format!(
            "exiting so AgentCore starts a fresh session: {why}"
        ).into()),
    }
}
