//! The functions a [`ControlPlane`](super::ControlPlane) serves, their versions, and their
//! execution environments: bootstrap processes started, reused and replaced the way Lambda
//! does, one Runtime API per version, and every attempt of every invocation.
//!
//! A function has `$LATEST` (its current code and configuration, which an update replaces)
//! and the versions published from it, each an immutable snapshot. Each of them runs in
//! execution environments of its own, as on Lambda: an invocation of `NAME:2` is never
//! served by a process of `$LATEST` or of version 1. An update retires `$LATEST`'s
//! environments: the invocations they hold finish, then they are stopped.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{Answer, Bootstrap, Error, Outcome, Result, RuntimeApi};

use super::{ACCOUNT, REGION};

/// A function the control plane serves.
#[derive(Clone, Debug, PartialEq)]
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
    /// Invocations one process takes at once: 1 on Lambda's default; on a Lambda Managed
    /// Instance, the capacity provider configuration's
    /// `PerExecutionEnvironmentMaxConcurrency`, given to the process as
    /// `AWS_LAMBDA_MAX_CONCURRENCY`.
    pub per_environment: usize,
    /// `LAMBDA_TASK_ROOT` and working directory of the processes.
    pub task_root: PathBuf,
    /// Where every process's stdout and stderr are appended (what CloudWatch Logs would
    /// get); `None`: inherited.
    pub log: Option<PathBuf>,
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
            per_environment: 1,
            task_root: std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir()),
            log: None,
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

    /// Lets each process take up to `n` invocations at once, as a Lambda Managed Instance's
    /// execution environment does (`AWS_LAMBDA_MAX_CONCURRENCY=n`); a new process starts
    /// only when those running hold `n` each.
    pub fn per_environment(mut self, n: usize) -> Self {
        self.per_environment = n.max(1);
        self
    }

    /// Sets the task root.
    pub fn task_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.task_root = dir.into();
        self
    }

    /// Appends every process's stdout and stderr to `file`.
    pub fn log_to(mut self, file: impl Into<PathBuf>) -> Self {
        self.log = Some(file.into());
        self
    }

    /// Sets the environment variable `key`, replacing its value if it is set (what
    /// `aws lambda update-function-configuration --environment` does to one variable).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
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

/// The version `$LATEST` names: the function's current, unpublished code.
pub const LATEST: &str = "$LATEST";

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
    /// The version that ran it: `$LATEST` or a published version's number (Lambda's
    /// `X-Amz-Executed-Version`).
    pub version: String,
    /// Whether the control plane had to start a new process for it (all were busy).
    pub cold_start: bool,
    /// The answer.
    pub answer: Answer,
}

/// What happened to one function, or to one of its versions, so far.
#[derive(Clone, Debug, Default)]
pub struct FunctionStats {
    /// `Invoke` calls received.
    pub invokes: u64,
    /// Processes started (cold starts).
    pub processes_started: usize,
    /// Most processes alive at once (added up over the versions).
    pub peak_processes: usize,
    /// Processes alive now.
    pub processes: usize,
    /// Invocations handed out and not answered yet, plus those waiting for a process.
    pub outstanding: usize,
    /// Every answered attempt, in the order answered.
    pub attempts: Vec<Attempt>,
}

/// The execution environments of one code and configuration snapshot: `$LATEST` as it
/// is between two updates, or one published version.
pub(super) struct Environments {
    pub(super) spec: FunctionSpec,
    /// `$LATEST` or the version's number.
    pub(super) version: String,
    pub(super) api: RuntimeApi,
    state: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    processes: Vec<Bootstrap>,
    started: usize,
    peak: usize,
    invokes: u64,
}

impl Environments {
    async fn start(spec: FunctionSpec, version: &str) -> std::io::Result<Arc<Self>> {
        let arn = match version {
            LATEST => spec.arn(),
            n => format!("{}:{n}", spec.arn()),
        };
        Ok(Arc::new(Self {
            api: RuntimeApi::start(&arn).await?,
            spec,
            version: version.to_owned(),
            state: Mutex::default(),
        }))
    }

    /// The qualified ARN (`$LATEST`: the unqualified one, as `GetFunction` gives it).
    pub(super) fn arn(&self) -> String {
        match self.version.as_str() {
            LATEST => self.spec.arn(),
            n => format!("{}:{n}", self.spec.arn()),
        }
    }

    /// Invocations handed out and not answered, plus those waiting for a process.
    fn busy(&self) -> usize {
        self.api.in_flight() + self.api.queued()
    }

    /// Reaps exited processes and starts new ones while invocations outnumber them, up to
    /// the concurrency limit. Returns whether it started one.
    pub(super) fn scale(&self) -> bool {
        self.scale_locked(&mut self.state.lock().unwrap())
    }

    fn scale_locked(&self, st: &mut Pool) -> bool {
        let name = &self.spec.name;
        st.processes.retain_mut(|p| match p.exited() {
            Some(code) => {
                tracing::info!(function = %name, version = %self.version, pid = p.pid(), ?code, "process exited");
                false
            }
            None => true,
        });
        let wanted = self
            .busy()
            .div_ceil(self.spec.per_environment)
            .min(self.spec.concurrency);
        let mut started = false;
        while st.processes.len() < wanted {
            match self.spawn() {
                Ok(p) => {
                    tracing::info!(function = %name, version = %self.version, pid = p.pid(), "cold start: process started");
                    st.processes.push(p);
                    st.started += 1;
                    started = true;
                }
                Err(e) => {
                    tracing::error!(
                        function = %name,
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

    /// One execution environment: the bootstrap with Lambda's variables for this version
    /// (`AWS_LAMBDA_FUNCTION_VERSION` is the version's number or `$LATEST`, as on Lambda).
    fn spawn(&self) -> std::io::Result<Bootstrap> {
        let stream = format!("2026/12/02/[{}]local", self.version);
        let per_environment = self.spec.per_environment.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("AWS_LAMBDA_FUNCTION_VERSION", &self.version),
            ("AWS_LAMBDA_LOG_STREAM_NAME", &stream),
        ];
        if self.spec.per_environment > 1 {
            env.push(("AWS_LAMBDA_MAX_CONCURRENCY", &per_environment));
        }
        env.extend(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut cmd = Bootstrap::command(
            &self.spec.binary,
            &self.api.address(),
            &self.spec.name,
            &self.spec.task_root,
            &env,
            None,
        )?;
        if let Some(log) = &self.spec.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        Bootstrap::from_command(cmd)
    }

    fn stop(&self) {
        self.state.lock().unwrap().processes.clear();
    }

    fn add_stats(&self, into: &mut FunctionStats) {
        let st = self.state.lock().unwrap();
        into.invokes += st.invokes;
        into.processes_started += st.started;
        into.peak_processes += st.peak;
        into.processes += st.processes.len();
        into.outstanding += self.busy();
    }

    /// `GetFunction`'s `Configuration` (and `PublishVersion`'s answer).
    pub(super) fn configuration(&self) -> serde_json::Value {
        let mut configuration = serde_json::json!({
            "FunctionName": self.spec.name,
            "FunctionArn": self.arn(),
            "Runtime": "provided.al2023",
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/lambda-local"),
            "Handler": "bootstrap",
            "Timeout": self.spec.timeout.as_secs(),
            "MemorySize": 512,
            "Version": self.version,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": [std::env::consts::ARCH.replace("aarch64", "arm64")],
        });
        if self.spec.per_environment > 1 {
            configuration["CapacityProviderConfig"] = serde_json::json!({
                "LambdaManagedInstancesCapacityProviderConfig": {
                    "CapacityProviderArn":
                        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:capacity-provider:local"),
                    "PerExecutionEnvironmentMaxConcurrency": self.spec.per_environment,
                }
            });
        }
        configuration
    }
}

/// A function: `$LATEST`, its published versions, and what every invocation did.
pub(super) struct Function {
    pub(super) name: String,
    latest: Mutex<Arc<Environments>>,
    /// `$LATEST`'s environments from before an update, until their invocations end.
    retired: Mutex<Vec<Arc<Environments>>>,
    /// Version `n` at index `n - 1`; `None` once deleted.
    versions: Mutex<Vec<Option<Arc<Environments>>>>,
    /// Held while publishing, so two publishes get two numbers.
    publishing: tokio::sync::Mutex<()>,
    invokes: AtomicU64,
    attempts: Mutex<Vec<Attempt>>,
}

/// What an invocation or a lookup names: the function and, if given, a qualifier.
/// One invocation the control plane was asked for.
pub(super) struct Invocation {
    /// What the qualifier named when it came in.
    pub(super) env: Arc<Environments>,
    pub(super) qualifier: Option<String>,
    /// The ARN the caller named (with its qualifier, if it had one).
    pub(super) invoked_arn: String,
    pub(super) payload: Bytes,
    pub(super) invocation_type: InvocationType,
    /// Lambda's waits before each retry of an `Event` invocation.
    pub(super) retry_delays: Vec<Duration>,
}

pub(super) type Qualifier<'a> = Option<&'a str>;

impl Function {
    pub(super) async fn start(spec: FunctionSpec) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            name: spec.name.clone(),
            latest: Mutex::new(Environments::start(spec, LATEST).await?),
            retired: Mutex::default(),
            versions: Mutex::default(),
            publishing: tokio::sync::Mutex::default(),
            invokes: AtomicU64::new(0),
            attempts: Mutex::default(),
        }))
    }

    /// The environments `qualifier` names: none or `$LATEST` → the current code, `N` →
    /// published version N. Lambda's `ResourceNotFoundException` message otherwise (an
    /// unknown or deleted version; aliases are not modelled).
    pub(super) fn resolve(&self, qualifier: Qualifier) -> Result<Arc<Environments>> {
        let latest = self.latest.lock().unwrap().clone();
        match qualifier {
            None | Some(LATEST) => Ok(latest),
            Some(q) => q
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.versions.lock().unwrap().get(i).cloned().flatten())
                .ok_or_else(|| {
                    Error::NotFound(format!("Function not found: {}:{q}", latest.spec.arn()))
                }),
        }
    }

    /// Every set of environments, retired ones included.
    fn all(&self) -> Vec<Arc<Environments>> {
        let mut all = vec![self.latest.lock().unwrap().clone()];
        all.extend(self.versions.lock().unwrap().iter().flatten().cloned());
        all.extend(self.retired.lock().unwrap().iter().cloned());
        all
    }

    /// Scales every version's environments; stops retired ones once idle.
    pub(super) fn scale(&self) {
        for env in self.all() {
            env.scale();
        }
        self.retired.lock().unwrap().retain(|env| {
            let done = env.busy() == 0;
            if done {
                tracing::info!(function = %self.name, "an update retired $LATEST's execution environments: stopped");
                env.stop();
            }
            !done
        });
    }

    /// `UpdateFunctionConfiguration` (or, for the binary, `UpdateFunctionCode`): `$LATEST`
    /// gets the changed spec and new execution environments; published versions keep theirs.
    pub(super) async fn update(
        &self,
        change: impl FnOnce(&mut FunctionSpec),
    ) -> std::io::Result<()> {
        let mut spec = self.latest.lock().unwrap().spec.clone();
        change(&mut spec);
        spec.name = self.name.clone();
        let fresh = Environments::start(spec, LATEST).await?;
        let old = std::mem::replace(&mut *self.latest.lock().unwrap(), fresh);
        self.retired.lock().unwrap().push(old);
        Ok(())
    }

    /// `PublishVersion`: a snapshot of `$LATEST` as the next version number, or the last
    /// version when `$LATEST` has not changed since it was published (as Lambda does).
    pub(super) async fn publish(&self) -> std::io::Result<Arc<Environments>> {
        let _one_at_a_time = self.publishing.lock().await;
        let spec = self.latest.lock().unwrap().spec.clone();
        let last = self.versions.lock().unwrap().last().cloned().flatten();
        if let Some(last) = last.filter(|v| v.spec == spec) {
            return Ok(last);
        }
        let n = self.versions.lock().unwrap().len() + 1;
        let env = Environments::start(spec, &n.to_string()).await?;
        self.versions.lock().unwrap().push(Some(env.clone()));
        tracing::info!(function = %self.name, version = %env.version, "published version");
        Ok(env)
    }

    /// `DeleteFunction` with a version as qualifier: its processes stop and it can no
    /// longer be invoked.
    pub(super) fn delete_version(&self, qualifier: &str) -> Result<()> {
        let env = self.resolve(Some(qualifier))?;
        if env.version == LATEST {
            return Err(Error::NotFound(
                "the local control plane deletes published versions only".into(),
            ));
        }
        let i: usize = env.version.parse().expect("a published version's number");
        self.versions.lock().unwrap()[i - 1] = None;
        env.stop();
        Ok(())
    }

    /// `ListVersionsByFunction`: `$LATEST`, then each published version.
    pub(super) fn list_versions(&self) -> Vec<serde_json::Value> {
        let mut out = vec![self.latest.lock().unwrap().configuration()];
        out.extend(
            self.versions
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .map(|v| v.configuration()),
        );
        out
    }

    /// Runs one invocation (see [`Invocation`]), with Lambda's retries when it is an
    /// `Event`. Each retry goes to what the qualifier names then (after an update:
    /// `$LATEST`'s new code).
    pub(super) async fn run(self: Arc<Self>, inv: Invocation) -> Answer {
        let invoke = self.invokes.fetch_add(1, Ordering::Relaxed) + 1;
        let attempts = match inv.invocation_type {
            InvocationType::Event => inv.retry_delays.len() + 1,
            InvocationType::RequestResponse => 1,
        };
        let name = &self.name;
        let mut env = inv.env.clone();
        let mut attempt = 0;
        loop {
            if attempt > 0 {
                env = self.resolve(inv.qualifier.as_deref()).unwrap_or(env);
            }
            let (answer, request_id) = self.attempt(&env, &inv, invoke, attempt).await;
            let version = &env.version;
            let failure = match &answer.outcome {
                Outcome::Response(_) => return answer,
                Outcome::Error {
                    error_type,
                    error_message,
                } => format!("{error_type}: {error_message}"),
                Outcome::NoAnswer => timed_out(env.spec.timeout),
            };
            attempt += 1;
            if attempt >= attempts {
                tracing::error!(function = %name, %version, invoke, %request_id, error = %failure, attempts, "invocation failed; no retries left");
                return answer;
            }
            let delay = inv.retry_delays[attempt - 1];
            tracing::warn!(function = %name, %version, invoke, %request_id, error = %failure, retry_in = ?delay, "invocation failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt of invocation number `invoke` on `env`, recorded; its answer and
    /// request id.
    async fn attempt(
        &self,
        env: &Environments,
        inv: &Invocation,
        invoke: u64,
        attempt: usize,
    ) -> (Answer, String) {
        let (name, version) = (&self.name, env.version.clone());
        // Queued and scaled under one lock, so the background scaler cannot start the
        // process this invocation needs in between.
        let (pending, cold_start) = {
            let mut st = env.state.lock().unwrap();
            st.invokes += u64::from(attempt == 0);
            let pending = env
                .api
                .submit_invoked(&inv.payload, env.spec.timeout, &inv.invoked_arn);
            (pending, env.scale_locked(&mut st))
        };
        let request_id = pending.request_id().to_owned();
        tracing::info!(function = %name, %version, invoke, attempt, %request_id, cold_start, "invocation");
        let started = Instant::now();
        let answer = pending.answer().await;
        let took = started.elapsed().as_secs_f64();
        self.attempts.lock().unwrap().push(Attempt {
            invoke,
            attempt: attempt as u32,
            invocation_type: inv.invocation_type,
            version: version.clone(),
            cold_start,
            answer: answer.clone(),
        });
        if let Outcome::Response(_) = &answer.outcome {
            tracing::info!(function = %name, %version, invoke, %request_id, took, slack = answer.slack(), "answered");
        }
        (answer, request_id)
    }

    /// The function's stats (`qualifier` `None`), or those of the version it names.
    pub(super) fn stats(&self, qualifier: Qualifier) -> Result<FunctionStats> {
        let mut stats = FunctionStats::default();
        let version = match qualifier {
            None => {
                for env in self.all() {
                    env.add_stats(&mut stats);
                }
                stats.invokes = self.invokes.load(Ordering::Relaxed);
                None
            }
            Some(q) => {
                let env = self.resolve(Some(q))?;
                let version = env.version.clone();
                let mut envs = vec![env];
                if version == LATEST {
                    // `$LATEST` across updates: its retired environments too.
                    envs.extend(self.retired.lock().unwrap().iter().cloned());
                }
                for env in envs {
                    env.add_stats(&mut stats);
                }
                Some(version)
            }
        };
        stats.attempts = self
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| version.as_ref().is_none_or(|v| &a.version == v))
            .cloned()
            .collect();
        Ok(stats)
    }

    pub(super) fn stop(&self) {
        for env in self.all() {
            env.stop();
        }
    }
}

/// Lambda's message for an invocation not answered by its deadline.
pub(super) fn timed_out(timeout: Duration) -> String {
    format!("Task timed out after {:.2} seconds", timeout.as_secs_f64())
}
