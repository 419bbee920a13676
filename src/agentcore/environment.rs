//! What the AgentCore host reads of its environment, once, at start.

use std::time::Duration;

use crate::{BoxError, Environment};

/// The port AgentCore's HTTP contract serves on (8080 when unset).
pub const PORT_VAR: &str = "PORT";
/// The runtime's ARN, for the worker identity (`session@ARN`); AgentCore does not pass it
/// to the container, so set it yourself (say in `create-agent-runtime`'s environment).
pub const RUNTIME_ARN_VAR: &str = "TEMPORAL_AGENTCORE_RUNTIME_ARN";
/// How long one invocation's session may poll at most, in seconds (900 when unset).
pub const SESSION_SECS_VAR: &str = "TEMPORAL_AGENTCORE_SESSION_SECS";

/// AgentCore's default idle-session timeout, 15 minutes: the default bound of a session.
const DEFAULT_SESSION: Duration = Duration::from_secs(900);
/// AgentCore's maximum session lifetime, 8 hours: no session is bounded beyond it.
const MAX_SESSION: Duration = Duration::from_secs(8 * 3600);

#[derive(Debug, Clone)]
pub(crate) struct AgentCoreEnvironment {
    pub(crate) port: u16,
    pub(crate) runtime_arn: String,
    pub(crate) session: Duration,
}

impl AgentCoreEnvironment {
    pub(crate) fn read(env: &dyn Environment) -> Result<Self, BoxError> {
        let set = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
        let port = match set(PORT_VAR) {
            None => 8080,
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| format!("{PORT_VAR} is {p:?}, not a port number"))?,
        };
        let session = match set(SESSION_SECS_VAR) {
            None => DEFAULT_SESSION,
            Some(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 10.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    format!(
                        "{SESSION_SECS_VAR} is {s:?}, not a number of seconds of at least 10 \
                         (AgentCore keeps a session at most 8 hours)"
                    )
                })?
                .min(MAX_SESSION),
        };
        Ok(Self {
            port,
            runtime_arn: set(RUNTIME_ARN_VAR).unwrap_or_else(|| "agentcore-runtime".to_owned()),
            session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticEnvironment;

    #[test]
    fn the_port_the_arn_and_the_session_bound_are_read_and_checked() {
        let read = AgentCoreEnvironment::read(&StaticEnvironment::new()).unwrap();
        assert_eq!((read.port, read.session), (8080, DEFAULT_SESSION));
        let env = StaticEnvironment::new()
            .with_var(PORT_VAR, "9090")
            .with_var(
                RUNTIME_ARN_VAR,
                "arn:aws:bedrock-agentcore:us-east-1:1:runtime/a",
            )
            .with_var(SESSION_SECS_VAR, "86400");
        let read = AgentCoreEnvironment::read(&env).unwrap();
        assert_eq!(read.port, 9090);
        assert_eq!(
            read.runtime_arn,
            "arn:aws:bedrock-agentcore:us-east-1:1:runtime/a"
        );
        assert_eq!(
            read.session, MAX_SESSION,
            "never beyond AgentCore's 8 hours"
        );
        let bad = StaticEnvironment::new().with_var(PORT_VAR, "http");
        let e = AgentCoreEnvironment::read(&bad).unwrap_err().to_string();
        assert!(e.contains("PORT is \"http\""), "{e}");
        let short = StaticEnvironment::new().with_var(SESSION_SECS_VAR, "1");
        assert!(AgentCoreEnvironment::read(&short).is_err());
    }
}
