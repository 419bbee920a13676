//! The `temporal` CLI client of a [`DevServer`]: deployments and their versions,
//! workflows (started, signalled, awaited), histories and lists, each one CLI command
//! against the server's address, run without blocking the async runtime.

use std::time::{Duration, Instant};

use super::{DevServer, event_is};
use crate::{Error, Result};

impl DevServer {
    /// Runs a `temporal` CLI command without blocking the async runtime; stdout on success,
    /// stdout and stderr on failure.
    pub async fn cli_async(&self, args: &[&str]) -> Result<String> {
        // A caller that stops waiting (a timeout) ends the CLI process too.
        let out = tokio::process::Command::from(self.command(args))
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::io(format!("running `temporal {}`", command_of(args)), e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Cli {
                command: command_of(args),
                output: stdout + &String::from_utf8_lossy(&out.stderr),
            })
        }
    }

    /// [`cli_async`](Self::cli_async) with `-o json` added, its output parsed.
    pub async fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.cli_async(&args).await?;
        serde_json::from_str(&out).map_err(|e| Error::Unexpected {
            expected: format!("JSON from `temporal {}` ({e})", command_of(&args)),
            got: out,
        })
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
    ) -> Result<()> {
        let compute = [
            "lambda-function-arn",
            function_arn,
            "lambda-assume-role-arn",
            role_arn,
            "lambda-assume-role-external-id",
            external_id,
        ];
        self.create_version(deployment, build_id, &compute).await
    }

    /// Creates deployment `deployment` (if new) and its version `build_id` backed by the
    /// AgentCore runtime endpoint `endpoint_arn`, which the server invokes through role
    /// `role_arn` with `external_id`. The Worker Controller invokes it once right away.
    pub async fn create_agentcore_version(
        &self,
        deployment: &str,
        build_id: &str,
        endpoint_arn: &str,
        role_arn: &str,
        external_id: &str,
    ) -> Result<()> {
        let compute = [
            "agentcore-endpoint-arn",
            endpoint_arn,
            "agentcore-assume-role-arn",
            role_arn,
            "agentcore-assume-role-external-id",
            external_id,
        ];
        self.create_version(deployment, build_id, &compute).await
    }

    /// `create-version` with the compute provider's options, given as `--aws-NAME VALUE`
    /// pairs (`compute`: name, value, name, value…), after creating the deployment if new.
    async fn create_version(
        &self,
        deployment: &str,
        build_id: &str,
        compute: &[&str],
    ) -> Result<()> {
        if let Err(e) = self
            .cli_throttled(&["worker", "deployment", "create", "--name", deployment])
            .await
            && !e.already_exists()
        {
            return Err(e);
        }
        let options: Vec<String> = compute
            .chunks(2)
            .flat_map(|pair| [format!("--aws-{}", pair[0]), pair[1].to_owned()])
            .collect();
        let mut args = vec![
            "worker",
            "deployment",
            "create-version",
            "--deployment-name",
            deployment,
            "--build-id",
            build_id,
        ];
        args.extend(options.iter().map(String::as_str));
        self.cli_throttled(&args).await.map(drop)
    }

    /// A deployment change with the CLI, tried again while the server throttles the
    /// deployment's changes ("too many requests issued to Worker Deployment …. Please try
    /// again later", as a deploy script would), for up to [`THROTTLED_FOR`].
    async fn cli_throttled(&self, args: &[&str]) -> Result<String> {
        let start = Instant::now();
        loop {
            match self.cli_async(args).await {
                Err(e) if e.is_throttled() && start.elapsed() < THROTTLED_FOR => {
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
    ) -> Result<()> {
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
    pub async fn start_hello(&self, task_queue: &str, workflow_id: &str, name: &str) -> Result<()> {
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
    ) -> Result<String> {
        self.hello("execute", task_queue, workflow_id, name).await
    }

    async fn hello(
        &self,
        verb: &str,
        task_queue: &str,
        workflow_id: &str,
        name: &str,
    ) -> Result<String> {
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
    ) -> Result<String> {
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
    ) -> Result<String> {
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
    ) -> Result<()> {
        self.workflow("start", workflow_type, task_queue, workflow_id, input)
            .await
            .map(drop)
    }

    /// Waits for the result of `workflow_id` (`temporal workflow result -o json`): the
    /// workflow's return value.
    pub async fn workflow_result(&self, workflow_id: &str) -> Result<serde_json::Value> {
        let v = self
            .cli_json(&["workflow", "result", "--workflow-id", workflow_id])
            .await?;
        if v["status"]
            .as_str()
            .is_some_and(|s| !s.contains("COMPLETED"))
        {
            return Err(Error::workflow(
                workflow_id,
                format!("did not complete: {v}"),
            ));
        }
        Ok(v["result"].clone())
    }

    /// Sends `signal` (no input) to `workflow_id`.
    pub async fn signal(&self, workflow_id: &str, signal: &str) -> Result<()> {
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
    pub async fn set_auto_upgrade(&self, workflow_id: &str) -> Result<()> {
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
    ) -> Result<()> {
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
    pub async fn wait_first_task(&self, workflow_id: &str, timeout: Duration) -> Result<()> {
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
                return Err(Error::timeout(
                    format!("a completed workflow task of {workflow_id}"),
                    timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How long `workflow_id`'s first workflow task waited for a worker: from its
    /// `WorkflowTaskScheduled` to its `WorkflowTaskStarted` (the server's event times).
    /// Waits up to `timeout` for the task to start.
    pub async fn first_task_wait(&self, workflow_id: &str, timeout: Duration) -> Result<Duration> {
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
                return Err(Error::timeout(
                    format!("the first workflow task of {workflow_id} to start"),
                    timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many workflows match `query` (`temporal workflow count`).
    pub async fn count_workflows(&self, query: &str) -> Result<usize> {
        let out = self
            .cli_async(&["workflow", "count", "--query", query])
            .await?;
        out.split_whitespace()
            .find_map(|w| w.parse().ok())
            .ok_or_else(|| Error::Unexpected {
                expected: "a count from `temporal workflow count`".into(),
                got: out,
            })
    }

    /// Every workflow matching `query`, as `temporal workflow list -o json` prints it
    /// (`execution.workflowId`, `status`, `startTime`, `closeTime`, …).
    pub async fn list_workflows(&self, query: &str) -> Result<Vec<serde_json::Value>> {
        match self
            .cli_json(&["workflow", "list", "--query", query, "--limit", "100000"])
            .await?
        {
            serde_json::Value::Array(workflows) => Ok(workflows),
            other => Err(Error::Unexpected {
                expected: "a list from `temporal workflow list`".into(),
                got: other.to_string(),
            }),
        }
    }

    /// The history of `workflow_id`, as `temporal workflow show -o json` prints it
    /// (`events[]`).
    pub async fn history(&self, workflow_id: &str) -> Result<serde_json::Value> {
        self.cli_json(&["workflow", "show", "--workflow-id", workflow_id])
            .await
    }

    /// The status of `workflow_id` (`temporal workflow describe`), such as
    /// `WORKFLOW_EXECUTION_STATUS_RUNNING`.
    pub async fn workflow_status(&self, workflow_id: &str) -> Result<String> {
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
    ) -> Result<Vec<String>> {
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
    ) -> Result<()> {
        let (answer, set) = tokio::join!(
            api.invoke(b"", Duration::from_secs(12)),
            self.set_current_version(deployment, build_id, Duration::from_secs(10))
        );
        set?;
        match answer.outcome {
            crate::Outcome::Response(_) => Ok(()),
            other => Err(Error::Invocation(format!(
                "the registering invocation failed: {other:?}"
            ))),
        }
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

/// A CLI command's first two words (`workflow start`), which name it in errors.
fn command_of(args: &[&str]) -> String {
    args[..args.len().min(2)].join(" ")
}

/// How long a throttled deployment change is tried again.
const THROTTLED_FOR: Duration = Duration::from_secs(15);
