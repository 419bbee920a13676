//! The functions a [`ControlPlane`](super::ControlPlane) serves, and their execution
//! environments: bootstrap processes started, reused and replaced the way Lambda does, one
//! Runtime API per function, and every attempt of every invocation.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{Answer, Bootstrap, Outcome, RuntimeApi};

use super::{ACCOUNT, REGION};

/// A function the control plane serves.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    /// The function name; its ARN is `arn:aws:lambda:us-east-1:000000000000:function:{name}`.
    pub name: String,
    /// The bootstrap executable.
    pub binary: PathBuf,
    /// Extra environment for the bootstrap, besides the `AWS_LAMBDA_*` variables.
    pub env: Vec<(String, String)>,
    /// The function's timeout: every invocation's deadline is this long after it starts.
    pub timeout: Duration,
    /// At most this many processes (execution environments) at once.
    pub concurrency: usize,
    /// `LAMBDA_TASK_ROOT` and working directory of the processes.
    pub task_root: PathBuf,
}

impl FunctionSpec {
    /// A function named `name` running `binary`, with a 15 s timeout and concurrency 1, in
    /// the current directory.
    pub fn new(name: &str, binary: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            binary: binary.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(15),
            concurrency: 1,
            task_root: std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir()),
        }
    }

    /// Adds an environment variable for the bootstrap.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the concurrency limit.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the task root.
    pub fn task_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.task_root = dir.into();
        self
    }

    /// The function's ARN.
    pub fn arn(&self) -> String {
        function_arn(&self.name)
    }
}

/// `arn:aws:lambda:us-east-1:000000000000:function:{name}`.
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// How an invocation came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationType {
    /// Asynchronous: accepted with 202, retried on error.
    Event,
    /// Synchronous: the caller waits for the answer.
    RequestResponse,
}

/// One attempt of one invocation, once answered (or timed out).
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Which `Invoke` call this belongs to (1, 2, … per function).
    pub invoke: u64,
    /// 0 for the first attempt, 1 and 2 for the retries.
    pub attempt: u32,
    /// How it was invoked.
    pub invocation_type: InvocationType,
    /// Whether the control plane had to start a new process for it (all were busy).
    pub cold_start: bool,
    /// The answer.
    pub answer: Answer,
}

/// What happened to one function so far.
#[derive(Clone, Debug, Default)]
pub struct FunctionStats {
    /// `Invoke` calls received.
    pub invokes: u64,
    /// Processes started (cold starts).
    pub processes_started: usize,
    /// Most processes alive at once.
    pub peak_processes: usize,
    /// Processes alive now.
    pub processes: usize,
    /// Invocations handed out and not answered yet, plus those waiting for a process.
    pub outstanding: usize,
    /// Every answered attempt, in the order answered.
    pub attempts: Vec<Attempt>,
}

pub(super) struct Function {
    pub(super) spec: FunctionSpec,
    pub(super) arn: String,
    pub(super) api: RuntimeApi,
    pub(super) invokes: AtomicU64,
    pub(super) state: Mutex<FunctionState>,
}

#[derive(Default)]
pub(super) struct FunctionState {
    pub(super) processes: Vec<Bootstrap>,
    pub(super) started: usize,
    pub(super) peak: usize,
    pub(super) attempts: Vec<Attempt>,
}

impl Function {
    /// Reaps exited processes and starts new ones while invocations outnumber them, up to
    /// the concurrency limit. Returns whether it started one.
    pub(super) fn scale(&self) -> bool {
        self.scale_locked(&mut self.state.lock().unwrap())
    }

    pub(super) fn scale_locked(&self, st: &mut FunctionState) -> bool {
        st.processes.retain_mut(|p| match p.exited() {
            Some(code) => {
                tracing::info!(function = %self.spec.name, pid = p.pid(), ?code, "process exited");
                false
            }
            None => true,
        });
        let wanted = (self.api.in_flight() + self.api.queued()).min(self.spec.concurrency);
        let mut started = false;
        while st.processes.len() < wanted {
            let env: Vec<(&str, &str)> = self
                .spec
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match Bootstrap::start(
                &self.spec.binary,
                &self.api.address(),
                &self.spec.name,
                &self.spec.task_root,
                &env,
            ) {
                Ok(p) => {
                    tracing::info!(function = %self.spec.name, pid = p.pid(), "cold start: process started");
                    st.processes.push(p);
                    st.started += 1;
                    started = true;
                }
                Err(e) => {
                    tracing::error!(
                        function = %self.spec.name,
                        binary = %self.spec.binary.display(),
                        error = %e,
                        "cannot start the bootstrap"
                    );
                    break;
                }
            }
        }
        st.peak = st.peak.max(st.processes.len());
        started
    }

    /// Runs one invocation, with Lambda's retries when it is an `Event`.
    pub(super) async fn run(
        self: Arc<Self>,
        payload: Bytes,
        invocation_type: InvocationType,
        retry_delays: Vec<Duration>,
    ) -> Answer {
        let invoke = self.invokes.fetch_add(1, Ordering::Relaxed) + 1;
        let attempts = match invocation_type {
            InvocationType::Event => retry_delays.len() + 1,
            InvocationType::RequestResponse => 1,
        };
        let mut attempt = 0;
        loop {
            // Queued and scaled under one lock, so the background scaler cannot start the
            // process this invocation needs in between.
            let (pending, cold_start) = {
                let mut st = self.state.lock().unwrap();
                let pending = self.api.submit(&payload, self.spec.timeout);
                (pending, self.scale_locked(&mut st))
            };
            let request_id = pending.request_id().to_owned();
            tracing::info!(function = %self.spec.name, invoke, attempt, %request_id, cold_start, "invocation");
            let started = Instant::now();
            let answer = pending.answer().await;
            let took = started.elapsed().as_secs_f64();
            self.state.lock().unwrap().attempts.push(Attempt {
                invoke,
                attempt: attempt as u32,
                invocation_type,
                cold_start,
                answer: answer.clone(),
            });
            let failure = match &answer.outcome {
                Outcome::Response(_) => {
                    tracing::info!(function = %self.spec.name, invoke, %request_id, took, slack = answer.slack(), "answered");
                    return answer;
                }
                Outcome::Error {
                    error_type,
                    error_message,
                } => format!("{error_type}: {error_message}"),
                Outcome::NoAnswer => self.timed_out(),
            };
            attempt += 1;
            if attempt >= attempts {
                tracing::error!(function = %self.spec.name, invoke, %request_id, error = %failure, attempts, "invocation failed; no retries left");
                return answer;
            }
            let delay = retry_delays[attempt - 1];
            tracing::warn!(function = %self.spec.name, invoke, %request_id, error = %failure, retry_in = ?delay, "invocation failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Lambda's message for an invocation not answered by its deadline.
    pub(super) fn timed_out(&self) -> String {
        format!(
            "Task timed out after {:.2} seconds",
            self.spec.timeout.as_secs_f64()
        )
    }

    pub(super) fn stats(&self) -> FunctionStats {
        let st = self.state.lock().unwrap();
        FunctionStats {
            invokes: self.invokes.load(Ordering::Relaxed),
            processes_started: st.started,
            peak_processes: st.peak,
            processes: st.processes.len(),
            outstanding: self.api.in_flight() + self.api.queued(),
            attempts: st.attempts.clone(),
        }
    }

    pub(super) fn configuration(&self) -> serde_json::Value {
        serde_json::json!({
            "Configuration": {
                "FunctionName": self.spec.name,
                "FunctionArn": self.arn,
                "Runtime": "provided.al2023",
                "Role": format!("arn:aws:iam::{ACCOUNT}:role/lambda-local"),
                "Handler": "bootstrap",
                "Timeout": self.spec.timeout.as_secs(),
                "MemorySize": 512,
                "Version": "$LATEST",
                "State": "Active",
                "LastUpdateStatus": "Successful",
                "PackageType": "Zip",
                "Architectures": [std::env::consts::ARCH.replace("aarch64", "arm64")],
            },
            "Code": { "RepositoryType": "S3", "Location": "" }
        })
    }
}
