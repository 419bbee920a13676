//! A local Lambda control plane: the AWS endpoint Temporal's Worker Controller talks to.
//!
//! Point the dev server at it with `AWS_ENDPOINT_URL` (see
//! [`DevServer::start_with_worker_controller`](crate::DevServer::start_with_worker_controller))
//! and it answers, on 127.0.0.1:
//!
//! - STS `AssumeRole` (`POST /`, form body): credentials in the STS XML shape when the request
//!   carries an `ExternalId` (matching [`ControlPlaneOptions::expect_external_id`] if set), and an
//!   `AccessDenied` error otherwise — the server checks that the role's trust policy enforces
//!   the external id by asking once without it.
//! - Lambda `GetFunction` (`GET /2015-03-31/functions/{arn-or-name}`).
//! - Lambda `Invoke` (`POST /2015-03-31/functions/{arn-or-name}/invocations`): `Event`
//!   invocations are accepted with 202 and run in the background; `RequestResponse` (the
//!   default, as in AWS) waits for the answer; `DryRun` answers 204.
//!
//! Each invocation goes to a Lambda Runtime API ([`RuntimeApi`]) served to bootstrap
//! processes managed the way Lambda manages execution environments: the first invoke starts
//! a process (a cold start), an idle warm process takes the next one, another process starts
//! when all are busy, up to the function's concurrency (further invocations wait their turn),
//! and a process that exits is replaced on the next invoke. Every invocation gets the
//! function's timeout as its deadline. SigV4 signatures are not checked.
//!
//! An `Event` invocation answered with an error, or not answered by its deadline, is retried
//! twice, as Lambda retries asynchronous invocations. Lambda waits about one and then two
//! minutes; locally the waits are [`ControlPlaneOptions::retry_delays`] (1 s and 2 s by default).

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::{net::TcpListener, task::AbortHandle};

use crate::{
    Answer, Bootstrap, Outcome, RuntimeApi,
    http::{Body, read_body, reply, serve},
};

/// The account id local ARNs use.
pub const ACCOUNT: &str = "000000000000";
/// The region local ARNs use.
pub const REGION: &str = "us-east-1";

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

struct Function {
    spec: FunctionSpec,
    arn: String,
    api: RuntimeApi,
    invokes: AtomicU64,
    state: Mutex<FunctionState>,
}

#[derive(Default)]
struct FunctionState {
    processes: Vec<Bootstrap>,
    started: usize,
    peak: usize,
    attempts: Vec<Attempt>,
}

impl Function {
    /// Reaps exited processes and starts new ones while invocations outnumber them, up to
    /// the concurrency limit. Returns whether it started one.
    fn scale(&self) -> bool {
        self.scale_locked(&mut self.state.lock().unwrap())
    }

    fn scale_locked(&self, st: &mut FunctionState) -> bool {
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
    async fn run(
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
    fn timed_out(&self) -> String {
        format!(
            "Task timed out after {:.2} seconds",
            self.spec.timeout.as_secs_f64()
        )
    }

    fn stats(&self) -> FunctionStats {
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

    fn configuration(&self) -> serde_json::Value {
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

struct Shared {
    functions: Vec<Arc<Function>>,
    external_id: Option<String>,
    retry_delays: Vec<Duration>,
    tasks: Mutex<Vec<AbortHandle>>,
    requests: AtomicU64,
}

impl Shared {
    fn function(&self, id: &str) -> Option<&Arc<Function>> {
        self.functions.iter().find(|f| {
            f.spec.name == id
                || f.arn == id
                || id.strip_prefix(&f.arn).is_some_and(|q| q.starts_with(':'))
        })
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap();
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(fut).abort_handle());
    }
}

/// The control plane. Dropping it stops serving and kills its processes.
pub struct ControlPlane {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// Options of a [`ControlPlane`].
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// The external id `AssumeRole` must carry (any non-empty one if `None`).
    pub expect_external_id: Option<String>,
    /// Waits before each retry of a failed `Event` invocation; Lambda retries twice.
    pub retry_delays: Vec<Duration>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            expect_external_id: None,
            retry_delays: vec![Duration::from_secs(1), Duration::from_secs(2)],
        }
    }
}

impl ControlPlane {
    /// Serves `functions` on a free 127.0.0.1 port.
    pub async fn start(
        functions: Vec<FunctionSpec>,
        options: ControlPlaneOptions,
    ) -> std::io::Result<Self> {
        Self::bind("127.0.0.1:0", functions, options).await
    }

    /// Serves `functions` on `addr`.
    pub async fn bind(
        addr: &str,
        functions: Vec<FunctionSpec>,
        options: ControlPlaneOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut served = Vec::new();
        for spec in functions {
            let arn = spec.arn();
            served.push(Arc::new(Function {
                api: RuntimeApi::start(&arn).await?,
                arn,
                spec,
                invokes: AtomicU64::new(0),
                state: Mutex::default(),
            }));
        }
        let shared = Arc::new(Shared {
            functions: served,
            external_id: options.expect_external_id,
            retry_delays: options.retry_delays,
            tasks: Mutex::default(),
            requests: AtomicU64::new(0),
        });
        for f in &shared.functions {
            // Replaces processes that exit while invocations wait for one.
            let f = f.clone();
            shared.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    f.scale();
                }
            });
        }
        let sh = shared.clone();
        let server = serve(listener, "aws", move |req| handle(sh.clone(), req));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// The value for `AWS_ENDPOINT_URL`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What happened so far to the function named `name`.
    pub fn stats(&self, name: &str) -> FunctionStats {
        self.shared
            .function(name)
            .unwrap_or_else(|| panic!("no function named {name}"))
            .stats()
    }

    /// Polls [`stats`](Self::stats) until `done` holds, or fails after `timeout` with the
    /// last stats.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&FunctionStats) -> bool,
    ) -> Result<FunctionStats, FunctionStats> {
        let until = Instant::now() + timeout;
        loop {
            let stats = self.stats(name);
            if done(&stats) {
                return Ok(stats);
            }
            if Instant::now() > until {
                return Err(stats);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.server.abort();
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        for f in &self.shared.functions {
            f.state.lock().unwrap().processes.clear();
        }
    }
}

fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    let mut r = reply(
        status,
        serde_json::json!({ "Type": "User", "message": message }).to_string(),
    );
    r.headers_mut()
        .insert("x-amzn-ErrorType", error_type.parse().unwrap());
    r
}

fn xml(status: StatusCode, body: String) -> Response<Body> {
    let mut r = reply(status, body);
    r.headers_mut()
        .insert("Content-Type", "text/xml".parse().unwrap());
    r
}

/// Decodes `application/x-www-form-urlencoded` and percent-encoded path segments.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn assume_role(shared: &Shared, form: &str, n: u64) -> Response<Body> {
    let role = form_value(form, "RoleArn").unwrap_or_default();
    let session = form_value(form, "RoleSessionName").unwrap_or_else(|| "session".into());
    let denied = |why: &str| {
        // Expected once per version: the server checks that a request without the external
        // id is refused, i.e. that the trust policy enforces it.
        tracing::debug!(%role, why, "AssumeRole denied");
        xml(
            StatusCode::FORBIDDEN,
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                 <Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized \
                 to perform: sts:AssumeRole on resource: {role} ({why})</Message></Error>\
                 <RequestId>local-{n}</RequestId></ErrorResponse>"
            ),
        )
    };
    match (form_value(form, "ExternalId"), &shared.external_id) {
        (None, _) => return denied("the trust policy requires sts:ExternalId"),
        (Some(got), Some(want)) if &got != want => return denied("wrong sts:ExternalId"),
        _ => {}
    }
    let role_name = role.rsplit('/').next().unwrap_or("role");
    let expiration = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    xml(
        StatusCode::OK,
        format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleResult><Credentials><AccessKeyId>ASIALOCAL{n:011}</AccessKeyId>\
             <SecretAccessKey>local-secret</SecretAccessKey><SessionToken>local-token-{n}\
             </SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser>\
             <AssumedRoleId>AROALOCAL:{session}</AssumedRoleId><Arn>arn:aws:sts::{ACCOUNT}:\
             assumed-role/{role_name}/{session}</Arn></AssumedRoleUser></AssumeRoleResult>\
             <ResponseMetadata><RequestId>local-{n}</RequestId></ResponseMetadata>\
             </AssumeRoleResponse>",
            rfc3339(expiration)
        ),
    )
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method == Method::POST && path == "/" {
        let body = read_body(req).await;
        let form = String::from_utf8_lossy(&body);
        return match form_value(&form, "Action").as_deref() {
            Some("AssumeRole") => assume_role(&shared, &form, n),
            other => xml(
                StatusCode::BAD_REQUEST,
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
                     <Message>the local control plane answers AssumeRole only, not {}\
                     </Message></Error></ErrorResponse>",
                    other.unwrap_or("(no Action)")
                ),
            ),
        };
    }
    let Some(rest) = path.strip_prefix("/2015-03-31/functions/") else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("the local control plane does not serve {method} {path}"),
        );
    };
    let (id, invocations) = match rest.strip_suffix("/invocations") {
        Some(id) => (percent_decode(id), true),
        None => (percent_decode(rest.trim_end_matches('/')), false),
    };
    let Some(function) = shared.function(&id).cloned() else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {id}"),
        );
    };
    match (method, invocations) {
        (Method::GET, false) => {
            let mut r = reply(StatusCode::OK, function.configuration().to_string());
            r.headers_mut()
                .insert("Content-Type", "application/json".parse().unwrap());
            r
        }
        (Method::POST, true) => {
            let kind = req
                .headers()
                .get("X-Amz-Invocation-Type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("RequestResponse")
                .to_owned();
            let payload = read_body(req).await;
            let delays = shared.retry_delays.clone();
            match kind.as_str() {
                "Event" => {
                    shared.spawn(async move {
                        function.run(payload, InvocationType::Event, delays).await;
                    });
                    reply(StatusCode::ACCEPTED, "")
                }
                "RequestResponse" => {
                    let answer = function
                        .clone()
                        .run(payload, InvocationType::RequestResponse, delays)
                        .await;
                    let (body, error) = match answer.outcome {
                        Outcome::Response(v) => (v.to_string(), false),
                        Outcome::Error {
                            error_type,
                            error_message,
                        } => (
                            serde_json::json!({"errorType": error_type, "errorMessage": error_message})
                                .to_string(),
                            true,
                        ),
                        Outcome::NoAnswer => (
                            serde_json::json!({"errorType": "Sandbox.Timedout", "errorMessage": function.timed_out()})
                                .to_string(),
                            true,
                        ),
                    };
                    let mut r = reply(StatusCode::OK, body);
                    r.headers_mut()
                        .insert("X-Amz-Executed-Version", "$LATEST".parse().unwrap());
                    if error {
                        r.headers_mut()
                            .insert("X-Amz-Function-Error", "Unhandled".parse().unwrap());
                    }
                    r
                }
                "DryRun" => reply(StatusCode::NO_CONTENT, ""),
                other => aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValueException",
                    &format!("unknown X-Amz-Invocation-Type {other}"),
                ),
            }
        }
        (method, _) => aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("the local control plane does not serve {method} {path}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms_and_paths() {
        let form = "Action=AssumeRole&ExternalId=E&RoleArn=arn%3Aaws%3Aiam%3A%3A000000000000%3Arole%2FR&RoleSessionName=managed-workers-aws";
        assert_eq!(
            form_value(form, "RoleArn").as_deref(),
            Some("arn:aws:iam::000000000000:role/R")
        );
        assert_eq!(form_value(form, "ExternalId").as_deref(), Some("E"));
        assert_eq!(form_value(form, "Missing"), None);
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }

    /// One HTTP/1.1 request over a fresh connection; (status, body).
    async fn request(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
        request_with(addr, head, "", body).await
    }

    /// [`request`] with extra header lines (each ending in `\r\n`).
    async fn request_with(
        addr: SocketAddr,
        head: &str,
        headers: &str,
        body: &str,
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{head} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    /// A bootstrap in Python speaking the Runtime API: each invocation takes `WORK_SECS`
    /// and answers `{"pid": …}`, or an error when the payload is `fail`.
    const PY_BOOTSTRAP: &str = r#"
import json, os, time, urllib.request
base = "http://%s/2018-06-01/runtime/invocation" % os.environ["AWS_LAMBDA_RUNTIME_API"]
while True:
    with urllib.request.urlopen(base + "/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        payload = r.read()
    time.sleep(float(os.environ.get("WORK_SECS", "0")))
    if payload == b"fail":
        kind, body = "error", {"errorType": "Test.Failed", "errorMessage": "asked to fail"}
    else:
        kind, body = "response", {"pid": os.getpid()}
    req = urllib.request.Request("%s/%s/%s" % (base, rid, kind), json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req).read()
"#;

    /// The script, runnable with `env_clear` (an absolute interpreter path in its shebang).
    fn py_bootstrap(dir: &std::path::Path) -> PathBuf {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        let python = String::from_utf8(out.stdout).unwrap();
        let path = dir.join("bootstrap");
        std::fs::write(&path, format!("#!{}\n{PY_BOOTSTRAP}", python.trim())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_processes_like_lambda_within_the_concurrency_limit() {
        let dir = std::env::temp_dir().join(format!("tlw-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = FunctionSpec::new("py", py_bootstrap(&dir))
            .env("WORK_SECS", "1")
            .concurrency(2)
            .timeout(Duration::from_secs(10))
            .task_root(&dir);
        let plane = ControlPlane::start(
            vec![spec],
            ControlPlaneOptions {
                retry_delays: vec![Duration::from_millis(100), Duration::from_millis(100)],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let addr = plane.addr;
        let invoke =
            |body: &'static str| request(addr, "POST /2015-03-31/functions/py/invocations", body);

        // Three synchronous invocations at once: two cold starts, the third waits for a
        // warm process.
        let (a, b, c) = tokio::join!(invoke(""), invoke(""), invoke(""));
        let mut pids = std::collections::HashSet::new();
        for (status, body) in [a, b, c] {
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            pids.insert(v["pid"].as_u64().unwrap());
        }
        assert_eq!(pids.len(), 2, "two processes served the three invocations");
        let s = plane.stats("py");
        assert_eq!((s.processes_started, s.peak_processes), (2, 2), "{s:?}");
        assert_eq!(s.attempts.iter().filter(|a| a.cold_start).count(), 2);

        // A warm process takes the next one.
        let (status, _) = invoke("").await;
        assert_eq!(status, 200);
        assert_eq!(plane.stats("py").processes_started, 2);

        // An Event invocation answered with an error: accepted at once, tried three times.
        let (status, _) = request_with(
            addr,
            "POST /2015-03-31/functions/py/invocations",
            "X-Amz-Invocation-Type: Event\r\n",
            "fail",
        )
        .await;
        assert_eq!(status, 202);
        let s = plane
            .wait_for("py", Duration::from_secs(20), |s| {
                s.attempts
                    .iter()
                    .filter(|a| a.invocation_type == InvocationType::Event)
                    .count()
                    == 3
            })
            .await
            .unwrap_or_else(|s| panic!("not retried twice: {s:?}"));
        let event: Vec<_> = s
            .attempts
            .iter()
            .filter(|a| a.invocation_type == InvocationType::Event)
            .collect();
        assert_eq!(
            event.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(event.iter().all(|a| a.answer.error().0 == "Test.Failed"));

        // A synchronous error answer carries Lambda's function-error body.
        let (status, body) = invoke("fail").await;
        assert_eq!(status, 200);
        assert!(body.contains("asked to fail"), "{body}");
        drop(plane);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn answers_sts_and_get_function_like_aws() {
        let plane = ControlPlane::start(
            vec![FunctionSpec::new("f", "/nonexistent").timeout(Duration::from_secs(42))],
            ControlPlaneOptions {
                expect_external_id: Some("E".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let addr = plane.addr;
        let role = "RoleArn=arn%3Aaws%3Aiam%3A%3A000000000000%3Arole%2FR&RoleSessionName=s";
        let (status, body) = request(
            addr,
            "POST /",
            &format!("Action=AssumeRole&ExternalId=E&{role}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<SessionToken>"), "{body}");
        assert!(body.contains("assumed-role/R/s"), "{body}");
        for form in [
            format!("Action=AssumeRole&{role}"),
            format!("Action=AssumeRole&ExternalId=other&{role}"),
        ] {
            let (status, body) = request(addr, "POST /", &form).await;
            assert_eq!(status, 403, "{form}");
            assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        }

        let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af";
        let (status, body) = request(addr, &format!("GET /2015-03-31/functions/{arn}"), "").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Configuration"]["FunctionArn"], function_arn("f"));
        assert_eq!(v["Configuration"]["Timeout"], 42);
        let (status, body) = request(addr, "GET /2015-03-31/functions/g", "").await;
        assert_eq!(status, 404);
        assert!(body.contains("Function not found: g"), "{body}");
        assert_eq!(plane.stats("f").invokes, 0);
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
