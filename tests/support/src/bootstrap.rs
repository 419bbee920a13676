//! A Lambda bootstrap run as its own process, with the environment AWS gives it.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
};

/// A running bootstrap process, killed by PID when dropped.
pub struct Bootstrap {
    child: Child,
}

impl Bootstrap {
    /// Starts `binary` against the Runtime API at `runtime_api`, with `AWS_LAMBDA_*`
    /// variables for `function_name`, `LAMBDA_TASK_ROOT` = `task_root`, and `extra` variables.
    pub fn start(
        binary: &Path,
        runtime_api: &str,
        function_name: &str,
        task_root: &Path,
        extra: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        Self::spawn(binary, runtime_api, function_name, task_root, extra, None)
    }

    /// [`Bootstrap::start`], with stdout and stderr written to `log` (what CloudWatch
    /// Logs would get), for tests that read them.
    pub fn start_logging_to(
        binary: &Path,
        runtime_api: &str,
        function_name: &str,
        task_root: &Path,
        extra: &[(&str, &str)],
        log: &Path,
    ) -> std::io::Result<Self> {
        Self::spawn(
            binary,
            runtime_api,
            function_name,
            task_root,
            extra,
            Some(log),
        )
    }

    fn spawn(
        binary: &Path,
        runtime_api: &str,
        function_name: &str,
        task_root: &Path,
        extra: &[(&str, &str)],
        log: Option<&Path>,
    ) -> std::io::Result<Self> {
        Self::from_command(Self::command(
            binary,
            runtime_api,
            function_name,
            task_root,
            extra,
            log,
        )?)
    }

    /// The command [`Bootstrap::start`] (`log: None`) or [`Bootstrap::start_logging_to`]
    /// runs, for a test that changes it (removes a variable Lambda always sets, say)
    /// before [`Bootstrap::from_command`].
    pub fn command(
        binary: &Path,
        runtime_api: &str,
        function_name: &str,
        task_root: &Path,
        extra: &[(&str, &str)],
        log: Option<&Path>,
    ) -> std::io::Result<Command> {
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/25/[$LATEST]local")
            .env("LAMBDA_TASK_ROOT", task_root)
            // The rest of what Lambda sets for a custom runtime (the function's ARN says
            // which region: the control plane's).
            .env("AWS_REGION", crate::control_plane::REGION)
            .env("AWS_DEFAULT_REGION", crate::control_plane::REGION)
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("LAMBDA_RUNTIME_DIR", "/var/runtime")
            .env("_HANDLER", "bootstrap")
            .env("TZ", ":UTC")
            .env("LANG", "en_US.UTF-8")
            .current_dir(task_root)
            .stdin(Stdio::null());
        output_to(&mut cmd, log.map(std::fs::File::create).transpose()?)?;
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Runs `cmd`, killed by PID when dropped.
    pub fn from_command(mut cmd: Command) -> std::io::Result<Self> {
        Ok(Self {
            child: cmd.spawn()?,
        })
    }

    /// Sends the process a signal by PID (`kill -SIGNAL pid`), as Lambda sends SIGTERM.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{signal} failed")))
        }
    }

    /// Waits up to `timeout` for the process to exit; `Some(exit code)` (`None` inside
    /// when a signal ended it) if it did.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<Option<i32>> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Some(code) = self.exited() {
                return Some(code);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(exit code)` once the process has exited.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `cmd`'s stdout and stderr to `log` when given; else nowhere when
/// `TLW_QUIET_BOOTSTRAP` is set (the test command's quiet runs); else where the caller's go.
pub(crate) fn output_to(cmd: &mut Command, log: Option<std::fs::File>) -> std::io::Result<()> {
    if let Some(file) = log {
        cmd.stdout(file.try_clone()?).stderr(file);
    } else if std::env::var_os("TLW_QUIET_BOOTSTRAP").is_some() {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_gets_every_variable_lambda_sets_and_only_those_given() {
        let root = std::env::temp_dir();
        let cmd = Bootstrap::command(
            Path::new("/bin/true"),
            "127.0.0.1:9001",
            "orders",
            &root,
            &[("TEMPORAL_TASK_QUEUE", "orders")],
            None,
        )
        .unwrap();
        let env: std::collections::HashMap<_, _> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert_eq!(env["AWS_REGION"], "us-east-1");
        assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "orders");
        assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/orders");
        assert_eq!(env["_HANDLER"], "bootstrap");
        assert_eq!(env["TEMPORAL_TASK_QUEUE"], "orders");
        for name in [
            "AWS_LAMBDA_RUNTIME_API",
            "AWS_LAMBDA_FUNCTION_VERSION",
            "LAMBDA_TASK_ROOT",
        ] {
            assert!(env.contains_key(name), "{name}");
        }
    }
}
