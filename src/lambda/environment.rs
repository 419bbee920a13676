//! The Lambda environment the host runs in, read once through the injected
//! [`Environment`] and checked: a variable missing or invalid is named, with what to do.

use std::fmt;

use lambda_runtime::Config;

use super::deadline::LOCAL_TIMEOUT_VAR;
use super::runtime_api::runtime_api_uri;
use crate::Environment;

/// The variables every Lambda function has (`lambda_runtime` panics on a missing one).
pub(crate) const LAMBDA_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// How many invocations one execution environment of a Lambda Managed Instance takes at
/// once; unset on Lambda's default (one invocation at a time per environment).
pub(crate) const MAX_CONCURRENCY_VAR: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// What the host reads of its environment, once, at start.
#[derive(Debug)]
pub(crate) struct LambdaEnvironment {
    /// The Runtime API's base URI.
    pub(crate) runtime_api: http::Uri,
    /// The function, as `lambda_runtime`'s `Context` carries it.
    pub(crate) function: Config,
    /// How many invocations to serve at once ([`MAX_CONCURRENCY_VAR`], else 1).
    pub(crate) loops: usize,
    /// `TEMPORAL_LOCAL_TIMEOUT_SECS`: how long to poll when the deadline a local emulator
    /// sends is not real.
    pub(crate) local_timeout: Option<String>,
}

/// A Lambda environment the host cannot run in. Reported as the init error, then the
/// process exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokenEnvironment {
    /// What is wrong and what to do.
    pub(crate) message: String,
    /// Where to report it, when that much is known.
    pub(crate) runtime_api: Option<http::Uri>,
}

impl fmt::Display for BrokenEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrokenEnvironment {}

impl LambdaEnvironment {
    /// Reads and checks the host's variables from `env`.
    pub(crate) fn read(env: &dyn Environment) -> Result<Self, BrokenEnvironment> {
        let var = |name: &str| env.var(name).unwrap_or_default();
        let runtime_api = runtime_api_uri(&var("AWS_LAMBDA_RUNTIME_API")).ok();
        let broken = |message: String| BrokenEnvironment {
            message: format!("the Lambda environment is broken: {message}"),
            runtime_api: runtime_api.clone(),
        };
        let value = var(MAX_CONCURRENCY_VAR);
        let loops = max_concurrency(&value).ok_or_else(|| {
            broken(format!(
                "{MAX_CONCURRENCY_VAR} is {:?}, not a whole number of invocations. Lambda \
                 sets it for a function on a capacity provider (Lambda Managed Instances); \
                 unset it, or set a number, elsewhere",
                value.trim()
            ))
        })?;
        for name in LAMBDA_VARIABLES {
            if let Some(problem) = problem(name, &var(name)) {
                return Err(broken(format!(
                    "{name} {problem}. Lambda sets {} for every function; outside Lambda (an \
                     emulator, a test) set them yourself",
                    LAMBDA_VARIABLES.join(", ")
                )));
            }
        }
        Ok(Self {
            runtime_api: runtime_api.expect("checked above"),
            function: Config {
                function_name: var("AWS_LAMBDA_FUNCTION_NAME"),
                memory: var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                    .parse()
                    .expect("checked above"),
                version: var("AWS_LAMBDA_FUNCTION_VERSION"),
                log_stream: var("AWS_LAMBDA_LOG_STREAM_NAME"),
                log_group: var("AWS_LAMBDA_LOG_GROUP_NAME"),
            },
            loops,
            local_timeout: env.var(LOCAL_TIMEOUT_VAR),
        })
    }
}

/// What is wrong with the Lambda variable `name` set to `value`, if anything.
fn problem(name: &str, value: &str) -> Option<String> {
    if value.trim().is_empty() {
        Some("is not set".to_owned())
    } else if name == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" && value.parse::<i32>().is_err() {
        Some(format!("is {value:?}, not a number of megabytes"))
    } else if name == "AWS_LAMBDA_RUNTIME_API" && runtime_api_uri(value).is_err() {
        Some(format!("is {value:?}, not a host:port"))
    } else {
        None
    }
}

/// How many invocations to serve at once for [`MAX_CONCURRENCY_VAR`] = `value`: 1 when it
/// is empty or at most 1 (as `lambda_runtime` does); `None` when it is not a whole number.
fn max_concurrency(value: &str) -> Option<usize> {
    let value = value.trim();
    if value.is_empty() {
        return Some(1);
    }
    let n = value.parse::<u32>().ok()?;
    Some(usize::try_from(n.max(1)).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticEnvironment;

    fn lambda_env() -> StaticEnvironment {
        StaticEnvironment::new()
            .with_var("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
            .with_var("AWS_LAMBDA_FUNCTION_NAME", "f")
            .with_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .with_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    }

    #[test]
    fn the_environment_is_read_once_with_everything_the_host_needs() {
        let env = lambda_env()
            .with_var("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/f")
            .with_var(LOCAL_TIMEOUT_VAR, "60");
        let read = LambdaEnvironment::read(&env).unwrap();
        assert_eq!(read.runtime_api.to_string(), "http://127.0.0.1:9001/");
        assert_eq!(read.function.function_name, "f");
        assert_eq!(read.function.memory, 512);
        assert_eq!(read.function.version, "$LATEST");
        assert_eq!(read.function.log_group, "/aws/lambda/f");
        assert_eq!(read.loops, 1);
        assert_eq!(read.local_timeout.as_deref(), Some("60"));
    }

    #[test]
    fn the_managed_instance_concurrency_is_read_and_a_bad_value_named() {
        for (value, loops) in [("", 1), ("0", 1), ("1", 1), ("4", 4), (" 16 ", 16)] {
            let env = lambda_env().with_var(MAX_CONCURRENCY_VAR, value);
            assert_eq!(
                LambdaEnvironment::read(&env).unwrap().loops,
                loops,
                "{value:?}"
            );
        }
        for bad in ["four", "-2", "2.5"] {
            let env = lambda_env().with_var(MAX_CONCURRENCY_VAR, bad);
            let e = LambdaEnvironment::read(&env).unwrap_err().message;
            assert!(
                e.starts_with(&format!(
                    "the Lambda environment is broken: {MAX_CONCURRENCY_VAR} is \"{bad}\", not a \
                     whole number"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn the_lambda_environment_check_names_the_broken_variable() {
        for name in LAMBDA_VARIABLES {
            let env = lambda_env().with_var(name, "");
            let e = LambdaEnvironment::read(&env).unwrap_err();
            assert!(e.message.contains(&format!("{name} is not set")), "{e}");
            // Reported to the Runtime API when its address is known.
            assert_eq!(e.runtime_api.is_some(), name != "AWS_LAMBDA_RUNTIME_API");
        }
        let env = lambda_env().with_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots");
        let e = LambdaEnvironment::read(&env).unwrap_err().message;
        assert!(
            e.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is \"lots\", not a number"),
            "{e}"
        );
        let env = lambda_env().with_var("AWS_LAMBDA_RUNTIME_API", "a b");
        let e = LambdaEnvironment::read(&env).unwrap_err().message;
        assert!(e.contains("AWS_LAMBDA_RUNTIME_API is \"a b\""), "{e}");
    }
}
