//! Amazon Bedrock AgentCore Runtime, locally: an agent runtime whose sessions each run the
//! container as a process of their own, as AgentCore runs one microVM per runtime session.
//!
//! - A session is named by the invocation's `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id`
//!   (one is made up when the invocation has none, as AgentCore does). The Worker
//!   Controller sends a new one with every invocation, so each of its invocations gets a
//!   session, and a process, of its own.
//! - A new session starts the container on a free 127.0.0.1 port (`PORT`; AgentCore's
//!   containers serve 8080, which a machine running several cannot give each) with the
//!   variables AgentCore sets, waits for its `GET /ping`, then sends it the invocation
//!   (`POST /invocations`, the session header, the body as given) and answers with the
//!   container's answer.
//! - Every 100 ms each session's `/ping` is read. A session whose container says `Healthy`
//!   (not `HealthyBusy`) for the runtime's idle session timeout, or that has lived its
//!   maximum lifetime, is stopped (SIGTERM, then SIGKILL 5 s later), as AgentCore stops
//!   it; so is one whose process exited.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};

use super::{ACCOUNT, REGION};
use crate::{Bootstrap, Error, Result, dev_server::free_port};

/// The header that names a runtime session.
pub const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";
/// The runtime endpoint every agent runtime has (the one the local control plane serves).
pub const DEFAULT_ENDPOINT: &str = "DEFAULT";
/// How long a session may wait for its container to answer `/ping` after it starts.
const STARTUP: Duration = Duration::from_secs(30);
/// How long an invocation may wait for the container's answer.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `/ping` may take: the sessions wait for each other's (a container that hangs
/// must not hold the others' invocations).
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stopped session's process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The ARN of agent runtime `id`, in the control plane's account and region.
pub fn agent_runtime_arn(id: &str) -> String {
    format!("arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{id}")
}

/// The ARN of agent runtime `id`'s `DEFAULT` endpoint: what a Worker Deployment Version's
/// `--aws-agentcore-endpoint-arn` names.
pub fn runtime_endpoint_arn(id: &str) -> String {
    format!(
        "{}/runtime-endpoint/{DEFAULT_ENDPOINT}",
        agent_runtime_arn(id)
    )
}

/// An agent runtime the control plane serves: its id and container.
#[derive(Clone, Debug)]
pub struct AgentRuntimeSpec {
    /// The runtime's id (`NAME-suffix` in AWS), the last part of its ARN.
    pub id: String,
    /// The container's entrypoint: the server binary (or an interpreter, with `args`).
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables of the container (the runtime's `environmentVariables`).
    pub env: Vec<(String, String)>,
    /// How long a session whose container says `Healthy` lives on (AgentCore's
    /// `idleRuntimeSessionTimeout`, 900 s by default).
    pub idle_session_timeout: Duration,
    /// How long a session lives at most (AgentCore's `maxLifetime`, 8 h by default).
    pub max_lifetime: Duration,
    /// Where the containers' stdout and stderr go (appended, every session's); if `None`,
    /// this process's (discarded with `TLW_QUIET_BOOTSTRAP` set, as a bootstrap's).
    pub log: Option<PathBuf>,
}

impl AgentRuntimeSpec {
    /// Runtime `id` whose container runs `binary`, with AgentCore's default session limits.
    pub fn new(id: &str, binary: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            binary: binary.into(),
            args: Vec::new(),
            env: Vec::new(),
            idle_session_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(8 * 3600),
            log: None,
        }
    }

    /// Adds an argument of the entrypoint.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds a variable of the container.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the idle session timeout.
    pub fn idle_session_timeout(mut self, timeout: Duration) -> Self {
        self.idle_session_timeout = timeout;
        self
    }

    /// Sets the maximum lifetime of a session.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Appends the containers' output to `file`.
    pub fn log_to(mut self, file: impl Into<PathBuf>) -> Self {
        self.log = Some(file.into());
        self
    }

    /// The runtime's ARN.
    pub fn arn(&self) -> String {
        agent_runtime_arn(&self.id)
    }
}

/// What happened so far to an agent runtime.
#[derive(Clone, Debug, Default)]
pub struct AgentRuntimeStats {
    /// `InvokeAgentRuntime` calls that named it.
    pub invokes: usize,
    /// Sessions started (a container process each).
    pub sessions_started: usize,
    /// Each invocation's answer: the container's status and body, or the control plane's
    /// error.
    pub answers: Vec<(u16, String)>,
    /// The `/ping` statuses the sessions went through, in order, each change once per
    /// session (`Healthy`, `HealthyBusy`).
    pub pings: Vec<String>,
    /// The `/ping` answers that had no `status` of AgentCore's, or no JSON.
    pub bad_pings: Vec<String>,
    /// When each invocation arrived (wall clock: comparable with the server's history
    /// events).
    pub invoked_at: Vec<std::time::SystemTime>,
    /// Each ended session, in the order they ended: why, and what it used.
    pub sessions: Vec<SessionRecord>,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionEnd {
    /// It said `Healthy` for the runtime's idle session timeout, and was stopped.
    #[default]
    Idle,
    /// It reached the runtime's maximum lifetime, and was stopped.
    Lifetime,
    /// Its process exited by itself.
    Exited,
}

/// What one session's container used, from `/proc` every 100 ms, as AgentCore bills it:
/// CPU while used, memory for the session's whole life.
#[derive(Clone, Debug, Default)]
pub struct SessionRecord {
    /// Why it ended.
    pub ended: SessionEnd,
    /// From the invocation that started it to its stop (the process's end).
    pub life: Duration,
    /// How long its `/ping` said `HealthyBusy`.
    pub busy: Duration,
    /// Its container's peak resident memory (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    /// Resident memory over its life (`VmRSS` sampled every 100 ms), in KiB·s.
    pub rss_kib_secs: f64,
    /// Its container's CPU time (user + system), as last read.
    pub cpu: Duration,
}

/// A running session: its container.
struct Session {
    process: Bootstrap,
    port: u16,
    started: Instant,
    /// When the container last said `HealthyBusy` or was last invoked.
    active: Instant,
    /// Its last `/ping` status.
    status: Option<String>,
    /// When it was last sampled.
    sampled: Instant,
    record: SessionRecord,
}

impl Session {
    /// Reads the container's `/proc` figures: resident memory over the time since the last
    /// reading, its peak, its CPU time.
    fn sample(&mut self) {
        let pid = self.process.pid();
        let now = Instant::now();
        let dt = now.duration_since(self.sampled).as_secs_f64();
        self.sampled = now;
        let r = &mut self.record;
        if let Some(rss) = crate::bench::status_kib(pid, "VmRSS") {
            r.rss_kib_secs += rss as f64 * dt;
        }
        if let Some(peak) = crate::bench::status_kib(pid, "VmHWM") {
            r.peak_rss_kib = r.peak_rss_kib.max(peak);
        }
        if let Some(cpu) = cpu_time(pid) {
            r.cpu = cpu;
        }
        if self.status.as_deref() == Some("HealthyBusy") {
            r.busy += Duration::from_secs_f64(dt);
        }
    }
}

/// A process's CPU time (user + system) from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// An agent runtime, served.
pub(crate) struct AgentRuntime {
    pub(crate) spec: AgentRuntimeSpec,
    sessions: tokio::sync::Mutex<HashMap<String, Session>>,
    stats: Mutex<AgentRuntimeStats>,
    next_session: std::sync::atomic::AtomicU64,
}

impl AgentRuntime {
    pub(crate) fn new(spec: AgentRuntimeSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            sessions: tokio::sync::Mutex::default(),
            stats: Mutex::default(),
            next_session: Default::default(),
        })
    }

    pub(crate) fn stats(&self) -> AgentRuntimeStats {
        self.stats.lock().unwrap().clone()
    }

    /// `InvokeAgentRuntime` in session `session` (a new one if `None`): the container's
    /// status and body.
    pub(crate) async fn invoke(&self, session: Option<String>, body: Bytes) -> (StatusCode, Bytes) {
        {
            let mut stats = self.stats.lock().unwrap();
            stats.invokes += 1;
            stats.invoked_at.push(std::time::SystemTime::now());
        }
        let session = session.unwrap_or_else(|| {
            let n = self
                .next_session
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{:08x}-0000-4000-8000-local{n:07}", std::process::id())
        });
        let answer = match self.session_port(&session).await {
            Ok(port) => forward(port, &session, body).await,
            Err(e) => Err(e),
        };
        let (status, body) = answer.unwrap_or_else(|e| {
            let error = serde_json::json!({ "message": e.to_string() }).to_string();
            (StatusCode::INTERNAL_SERVER_ERROR, Bytes::from(error))
        });
        self.stats
            .lock()
            .unwrap()
            .answers
            .push((status.as_u16(), String::from_utf8_lossy(&body).into_owned()));
        (status, body)
    }

    /// The port of session `id`'s container, started (and awaited) if the session is new.
    async fn session_port(&self, id: &str) -> Result<u16> {
        if let Some(s) = self.sessions.lock().await.get_mut(id) {
            s.active = Instant::now();
            return Ok(s.port);
        }
        // Started without the lock: other sessions' invocations and pings go on meanwhile.
        let port = free_port();
        let process = self
            .container(port)
            .and_then(Bootstrap::from_command)
            .map_err(|e| Error::io("the container could not start", e))?;
        let started = Instant::now();
        let mut process = process;
        while ping(port).await.is_err() {
            if process.exited().is_some() {
                return Err(Error::Invocation(
                    "the container exited before it answered GET /ping".into(),
                ));
            }
            if started.elapsed() > STARTUP {
                return Err(Error::timeout(
                    "the container's answer to GET /ping on its port",
                    STARTUP,
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stats.lock().unwrap().sessions_started += 1;
        let session = Session {
            process,
            port,
            started,
            active: Instant::now(),
            status: None,
            sampled: started,
            record: SessionRecord::default(),
        };
        self.sessions.lock().await.insert(id.to_owned(), session);
        Ok(port)
    }

    /// The container's command: the spec's variables over what AgentCore sets.
    fn container(&self, port: u16) -> std::io::Result<Command> {
        let mut cmd = Command::new(&self.spec.binary);
        cmd.args(&self.spec.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("HOME", std::env::temp_dir())
            .stdin(Stdio::null());
        // Appended: every session's container writes to the one log.
        let append = |log| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
        };
        crate::bootstrap::output_to(&mut cmd, self.spec.log.as_ref().map(append).transpose()?)?;
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Reads every session's `/ping` and stops the sessions AgentCore would stop.
    pub(crate) async fn watch(&self) {
        let mut sessions = self.sessions.lock().await;
        let mut stopped = Vec::new();
        for (id, s) in sessions.iter_mut() {
            if s.process.exited().is_some() {
                stopped.push((id.clone(), SessionEnd::Exited));
                continue;
            }
            s.sample();
            match ping(s.port).await {
                Ok(status) => self.saw(s, status),
                Err(bad) => self.stats.lock().unwrap().bad_pings.push(bad.to_string()),
            }
            if s.started.elapsed() >= self.spec.max_lifetime {
                stopped.push((id.clone(), SessionEnd::Lifetime));
            } else if s.active.elapsed() >= self.spec.idle_session_timeout {
                stopped.push((id.clone(), SessionEnd::Idle));
            }
        }
        for (id, why) in stopped {
            let Some(mut s) = sessions.remove(&id) else {
                continue;
            };
            s.sample();
            s.record.life = s.started.elapsed();
            s.record.ended = why;
            self.stats.lock().unwrap().sessions.push(s.record.clone());
            if why != SessionEnd::Exited {
                let _ = s.process.signal("TERM");
                tokio::task::spawn_blocking(move || {
                    s.process.wait_exit(STOP_GRACE);
                    drop(s);
                });
            }
        }
    }

    /// Session `s` said `status` on `/ping`.
    fn saw(&self, s: &mut Session, status: String) {
        if status == "HealthyBusy" {
            s.active = Instant::now();
        }
        if s.status.as_ref() != Some(&status) {
            self.stats.lock().unwrap().pings.push(status.clone());
            s.status = Some(status);
        }
    }

    /// Kills every session's container.
    pub(crate) fn stop(&self) {
        if let Ok(mut sessions) = self.sessions.try_lock() {
            sessions.clear();
        }
    }
}

/// One HTTP/1.1 request to a container on `port`, answered within `timeout`: the status
/// and body.
async fn request(
    port: u16,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes)> {
    let cut = |e: hyper::Error| Error::Invocation(format!("the container's answer was cut: {e}"));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| Error::io("reaching the container", e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(cut)?;
    tokio::spawn(conn);
    let answer = tokio::time::timeout(timeout, sender.send_request(req))
        .await
        .map_err(|_| Error::timeout("the container's answer", timeout))?
        .map_err(cut)?;
    let status = answer.status();
    let body = answer.into_body().collect().await.map_err(cut)?.to_bytes();
    Ok((status, body))
}

/// `GET /ping`: the container's status (`Healthy`, `HealthyBusy`), or what was wrong.
async fn ping(port: u16) -> Result<String> {
    let req = Request::get("/ping")
        .header("host", "localhost")
        .body(Full::default())
        .unwrap();
    let (status, body) = request(port, req, PING_TIMEOUT).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match value["status"].as_str() {
        Some(s @ ("Healthy" | "HealthyBusy")) if status == StatusCode::OK => Ok(s.to_owned()),
        _ => Err(Error::Unexpected {
            expected: "200 with `Healthy` or `HealthyBusy` from GET /ping".into(),
            got: format!("{status} {text}"),
        }),
    }
}

/// `POST /invocations` to the container on `port`, in session `session`.
async fn forward(port: u16, session: &str, body: Bytes) -> Result<(StatusCode, Bytes)> {
    let req = Request::post("/invocations")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header(SESSION_HEADER, session)
        .body(Full::new(body))
        .unwrap();
    request(port, req, INVOKE_TIMEOUT).await
}
