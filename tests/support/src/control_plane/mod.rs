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
//! - AgentCore `GetAgentRuntimeEndpoint` and `InvokeAgentRuntime` for the agent runtimes
//!   of [`ControlPlaneOptions::agent_runtimes`]: each runtime session runs the container as
//!   a process of its own ([`agent_runtime`]).
//!
//! Each invocation goes to a Lambda Runtime API ([`RuntimeApi`](crate::RuntimeApi)) served to bootstrap
//! processes managed the way Lambda manages execution environments: the first invoke starts
//! a process (a cold start), an idle warm process takes the next one, another process starts
//! when all are busy, up to the function's concurrency (further invocations wait their turn),
//! and a process that exits is replaced on the next invoke. Every invocation gets the
//! function's timeout as its deadline. SigV4 signatures are not checked.
//!
//! An `Event` invocation answered with an error, or not answered by its deadline, is retried
//! twice, as Lambda retries asynchronous invocations. Lambda waits about one and then two
//! minutes; locally the waits are [`ControlPlaneOptions::retry_delays`] (1 s and 2 s by default).

pub mod agent_runtime;
mod agentcore_api;
mod aws;
mod function;
mod lambda_api;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::{net::TcpListener, task::AbortHandle};

use crate::http::{Body, read_body, reply, serve};
use crate::{Error, Result};

use agent_runtime::AgentRuntime;
pub use agent_runtime::{
    AgentRuntimeSpec, AgentRuntimeStats, SessionEnd, SessionRecord, agent_runtime_arn,
    runtime_endpoint_arn,
};
use aws::{assume_role, aws_error, form_value, xml};
use function::Function;
pub use function::{Attempt, FunctionSpec, FunctionStats, InvocationType, LATEST, function_arn};

/// The account id local ARNs use.
pub const ACCOUNT: &str = "000000000000";
/// The region local ARNs use.
pub const REGION: &str = "us-east-1";

struct Shared {
    functions: Vec<Arc<Function>>,
    runtimes: Vec<Arc<AgentRuntime>>,
    external_id: Option<String>,
    retry_delays: Vec<Duration>,
    tasks: Mutex<Vec<AbortHandle>>,
    requests: AtomicU64,
}

/// Splits what a request names into the function's name and its qualifier, if any:
/// `NAME`, `NAME:Q`, `ACCOUNT:function:NAME[:Q]` or the ARN, with or without `:Q`, as
/// Lambda accepts them. `None` for an ARN of another account or region.
fn split_id(id: &str) -> Option<(&str, Option<&str>)> {
    let named = match id.split_once(":function:") {
        Some((prefix, rest)) => {
            let ours = format!("arn:aws:lambda:{REGION}:{ACCOUNT}");
            (prefix == ours || prefix == ACCOUNT).then_some(rest)?
        }
        None => id,
    };
    Some(match named.split_once(':') {
        Some((name, q)) => (name, Some(q)),
        None => (named, None),
    })
}

impl Shared {
    /// The function `id` names, and the qualifier: the one in `id`, else `qualifier` (the
    /// `Qualifier` query parameter).
    fn function<'a>(
        &self,
        id: &'a str,
        qualifier: Option<&'a str>,
    ) -> Option<(&Arc<Function>, Option<&'a str>)> {
        let (name, q) = split_id(id)?;
        let f = self.functions.iter().find(|f| f.name == name)?;
        Some((f, q.or(qualifier)))
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
    /// The AgentCore agent runtimes served beside the functions.
    pub agent_runtimes: Vec<AgentRuntimeSpec>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            expect_external_id: None,
            retry_delays: vec![Duration::from_secs(1), Duration::from_secs(2)],
            agent_runtimes: Vec::new(),
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
            served.push(Function::start(spec).await?);
        }
        let shared = Arc::new(Shared {
            functions: served,
            runtimes: options
                .agent_runtimes
                .into_iter()
                .map(AgentRuntime::new)
                .collect(),
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
        for r in &shared.runtimes {
            // Reads the sessions' /ping, stops the sessions AgentCore would stop.
            let r = r.clone();
            shared.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    r.watch().await;
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

    /// What happened so far to the function `id` names: `NAME` (all its versions), or
    /// `NAME:N` / `NAME:$LATEST` (that version only; an ARN works too).
    pub fn stats(&self, id: &str) -> FunctionStats {
        let (f, q) = self
            .shared
            .function(id, None)
            .unwrap_or_else(|| panic!("no function named {id}"));
        f.stats(q).unwrap_or_else(|e| panic!("{e}"))
    }

    /// What happened so far to agent runtime `id`.
    pub fn agent_runtime_stats(&self, id: &str) -> AgentRuntimeStats {
        self.runtime(id).stats()
    }

    fn runtime(&self, id: &str) -> &AgentRuntime {
        self.shared
            .runtimes
            .iter()
            .find(|r| r.spec.id == id)
            .unwrap_or_else(|| panic!("no agent runtime {id}"))
    }

    /// Polls [`agent_runtime_stats`](Self::agent_runtime_stats) until `done` holds, or
    /// fails after `timeout` with the last stats.
    pub async fn wait_for_agent_runtime(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&AgentRuntimeStats) -> bool,
    ) -> Result<AgentRuntimeStats, AgentRuntimeStats> {
        poll_until(timeout, || self.agent_runtime_stats(id), done).await
    }

    fn named(&self, name: &str) -> Result<&Arc<Function>> {
        match self.shared.function(name, None) {
            Some((f, None)) => Ok(f),
            _ => Err(Error::NotFound(format!(
                "Function not found: {}",
                function_arn(name)
            ))),
        }
    }

    /// `PublishVersion`: snapshots the function's current code and configuration as a new
    /// version and returns its number (the last one's when nothing changed since).
    pub async fn publish_version(&self, name: &str) -> Result<String> {
        let env = self
            .named(name)?
            .publish()
            .await
            .map_err(|e| Error::io(format!("publishing a version of {name}"), e))?;
        Ok(env.version.clone())
    }

    /// Updates the function's `$LATEST` (what `update-function-code` and
    /// `update-function-configuration` do): the next invocation of `$LATEST` runs in a new
    /// execution environment with the changed spec; published versions are untouched.
    pub async fn update_function(
        &self,
        name: &str,
        change: impl FnOnce(&mut FunctionSpec),
    ) -> Result<()> {
        self.named(name)?
            .update(change)
            .await
            .map_err(|e| Error::io(format!("updating {name}"), e))
    }

    /// Polls [`stats`](Self::stats) until `done` holds, or fails after `timeout` with the
    /// last stats.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&FunctionStats) -> bool,
    ) -> Result<FunctionStats, FunctionStats> {
        poll_until(timeout, || self.stats(name), done).await
    }
}

/// Reads `read()` every 100 ms until `done` holds of it (`Ok`), or `timeout` passed (`Err`,
/// the last reading).
async fn poll_until<T>(
    timeout: Duration,
    read: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let until = Instant::now() + timeout;
    loop {
        let now = read();
        if done(&now) {
            return Ok(now);
        }
        if Instant::now() > until {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.server.abort();
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        for f in &self.shared.functions {
            f.stop();
        }
        for r in &self.shared.runtimes {
            r.stop();
        }
    }
}

/// Routes a request: STS at `/`, Lambda under `/2015-03-31/functions/` ([`lambda_api`]),
/// AgentCore under `/runtimes/` ([`agentcore_api`]).
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method == Method::POST && path == "/" {
        return sts(&shared, req, n).await;
    }
    if let Some(rest) = path.strip_prefix("/runtimes/") {
        return agentcore_api::route(&shared, req, rest).await;
    }
    match path.strip_prefix("/2015-03-31/functions/") {
        Some(rest) => lambda_api::route(&shared, req, rest).await,
        None => aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("the local control plane does not serve {method} {path}"),
        ),
    }
}

/// STS: `AssumeRole` only.
async fn sts(shared: &Shared, req: Request<Incoming>, n: u64) -> Response<Body> {
    let body = read_body(req).await;
    let form = String::from_utf8_lossy(&body);
    match form_value(&form, "Action").as_deref() {
        Some("AssumeRole") => assume_role(shared, &form, n),
        other => xml(
            StatusCode::BAD_REQUEST,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
                 <Message>the local control plane answers AssumeRole only, not {}\
                 </Message></Error></ErrorResponse>",
                other.unwrap_or("(no Action)")
            ),
        ),
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = reply(status, v.to_string());
    r.headers_mut()
        .insert("Content-Type", "application/json".parse().unwrap());
    r
}

#[cfg(test)]
mod tests {
    use super::{
        aws::{percent_decode, rfc3339},
        *,
    };

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
        let (status, _, body) = exchange(addr, head, headers, body).await;
        (status, body)
    }

    /// One request; (status, the answer's head, its body).
    async fn exchange(
        addr: SocketAddr,
        head: &str,
        headers: &str,
        body: &str,
    ) -> (u16, String, String) {
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
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    /// A bootstrap in Python speaking the Runtime API: each invocation takes `WORK_SECS`
    /// and answers `{"pid": …}` with what it was handed and its Lambda environment, or an
    /// error when the payload is `fail`.
    const PY_BOOTSTRAP: &str = r#"
import json, os, threading, time, urllib.request
base = "http://%s/2018-06-01/runtime/invocation" % os.environ["AWS_LAMBDA_RUNTIME_API"]
def serve():
    while True:
        with urllib.request.urlopen(base + "/next") as r:
            rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
            arn = r.headers["Lambda-Runtime-Invoked-Function-Arn"]
            payload = r.read()
        time.sleep(float(os.environ.get("WORK_SECS", "0")))
        if payload == b"fail":
            kind, body = "error", {"errorType": "Test.Failed", "errorMessage": "asked to fail"}
        else:
            kind, body = "response", {"pid": os.getpid(), "arn": arn, "payload": payload.decode(),
                "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "build": os.environ.get("BUILD")}
        req = urllib.request.Request("%s/%s/%s" % (base, rid, kind), json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req).read()
# As a managed instance's runtime does: that many loops at once.
loops = [threading.Thread(target=serve, daemon=True)
         for _ in range(int(os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY") or 1))]
for t in loops: t.start()
for t in loops: t.join()
"#;

    /// The script, runnable with `env_clear` (an absolute interpreter path in its shebang).
    fn py_bootstrap(dir: &std::path::Path) -> std::path::PathBuf {
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
        let dir = crate::TempDir::new("cp");
        let spec = FunctionSpec::new("py", py_bootstrap(dir.path()))
            .env("WORK_SECS", "1")
            .concurrency(2)
            .timeout(Duration::from_secs(10))
            .task_root(dir.path());
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
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_managed_instance_environment_takes_its_share_of_invocations_before_another_starts() {
        let dir = crate::TempDir::new("cp-lmi");
        let spec = FunctionSpec::new("py", py_bootstrap(dir.path()))
            .env("WORK_SECS", "1")
            .concurrency(2)
            .per_environment(3)
            .timeout(Duration::from_secs(10))
            .task_root(dir.path());
        let plane = ControlPlane::start(vec![spec], ControlPlaneOptions::default())
            .await
            .unwrap();
        let addr = plane.addr;
        let invoke = || request(addr, "POST /2015-03-31/functions/py/invocations", "");
        let pids = |answers: Vec<(u16, String)>| {
            let mut pids = std::collections::HashMap::<u64, usize>::new();
            for (status, body) in answers {
                assert_eq!(status, 200, "{body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                *pids.entry(v["pid"].as_u64().unwrap()).or_default() += 1;
            }
            let mut counts: Vec<usize> = pids.into_values().collect();
            counts.sort();
            counts
        };

        // Three at once: one process takes them all.
        let answers = futures_util::future::join_all((0..3).map(|_| invoke())).await;
        assert_eq!(pids(answers), vec![3]);
        let s = plane.stats("py");
        assert_eq!((s.processes_started, s.peak_processes), (1, 1), "{s:?}");
        // Five at once: a second process starts for the two the first has no room for.
        let answers = futures_util::future::join_all((0..5).map(|_| invoke())).await;
        assert_eq!(pids(answers), vec![2, 3]);
        assert_eq!(plane.stats("py").processes_started, 2);
        // GetFunction says how many invocations an environment takes.
        let (status, body) = request(addr, "GET /2015-03-31/functions/py", "").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["Configuration"]["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
                ["PerExecutionEnvironmentMaxConcurrency"],
            3,
            "{v}"
        );
        drop(plane);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_versions_that_run_in_their_own_environments() {
        let dir = crate::TempDir::new("cp-versions");
        let spec = FunctionSpec::new("py", py_bootstrap(dir.path()))
            .env("BUILD", "one")
            .concurrency(2)
            .timeout(Duration::from_secs(10))
            .task_root(dir.path());
        let plane = ControlPlane::start(vec![spec], ControlPlaneOptions::default())
            .await
            .unwrap();
        let addr = plane.addr;
        let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Apy";
        let publish = || request(addr, "POST /2015-03-31/functions/py/versions", "{}");
        let json = |body: &str| -> serde_json::Value {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };

        // PublishVersion: version 1, again 1 while nothing changed.
        let (status, body) = publish().await;
        assert_eq!(status, 201, "{body}");
        let v1 = json(&body);
        assert_eq!(v1["Version"], "1");
        assert_eq!(v1["FunctionArn"], format!("{}:1", function_arn("py")));
        assert_eq!(json(&publish().await.1)["Version"], "1");

        // UpdateFunctionConfiguration replaces $LATEST's environment; then version 2.
        let (status, body) = request(
            addr,
            "PUT /2015-03-31/functions/py/configuration",
            r#"{"Environment": {"Variables": {"BUILD": "two"}}}"#,
        )
        .await;
        assert_eq!(
            (status, json(&body)["Version"].clone()),
            (200, "$LATEST".into()),
            "{body}"
        );
        assert_eq!(json(&publish().await.1)["Version"], "2");

        // Each version runs its own snapshot in its own processes, with Lambda's view of it.
        let invoke = |target: String, payload: &'static str| async move {
            let (id, query) = target.split_once('?').unwrap_or((&target, ""));
            let (status, head, body) = exchange(
                addr,
                &format!("POST /2015-03-31/functions/{id}/invocations?{query}"),
                "",
                payload,
            )
            .await;
            assert_eq!(status, 200, "{target}: {body}");
            (head, json(&body))
        };
        let (head, one) = invoke(format!("{arn}%3A1"), "x").await;
        assert!(head.contains("x-amz-executed-version: 1"), "{head}");
        assert_eq!(
            (one["build"].as_str(), one["version"].as_str()),
            (Some("one"), Some("1"))
        );
        assert_eq!(one["arn"], format!("{}:1", function_arn("py")));
        let (head, latest) = invoke("py".into(), "x").await;
        assert!(head.contains("x-amz-executed-version: $LATEST"), "{head}");
        assert_eq!(
            (latest["build"].as_str(), latest["version"].as_str()),
            (Some("two"), Some("$LATEST"))
        );
        assert_eq!(latest["arn"], function_arn("py"));
        let (_, two) = invoke("py?Qualifier=2".into(), "x").await;
        assert_eq!(
            (two["build"].as_str(), two["version"].as_str()),
            (Some("two"), Some("2"))
        );
        let pids: std::collections::HashSet<_> = [&one, &latest, &two]
            .iter()
            .map(|v| v["pid"].as_u64())
            .collect();
        assert_eq!(
            pids.len(),
            3,
            "versions shared a process: {one} {latest} {two}"
        );

        // An Invoke without a payload hands the function `{}`, as Lambda does.
        let (_, empty) = invoke("py:2".into(), "").await;
        assert_eq!(empty["payload"], "{}");

        // GetFunction with a qualifier; unknown versions are ResourceNotFoundException.
        let (status, body) = request(addr, "GET /2015-03-31/functions/py:2", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            json(&body)["Configuration"]["FunctionArn"],
            format!("{}:2", function_arn("py"))
        );
        for missing in [
            "GET /2015-03-31/functions/py?Qualifier=7",
            "POST /2015-03-31/functions/py:7/invocations",
            "GET /2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A999999999999%3Afunction%3Apy",
        ] {
            let (status, head, body) = exchange(addr, missing, "", "").await;
            assert_eq!(status, 404, "{missing}: {body}");
            assert!(
                head.contains("ResourceNotFoundException"),
                "{missing}: {head}"
            );
        }
        let (_, body) = request(addr, "GET /2015-03-31/functions/py/versions", "").await;
        let listed: Vec<_> = json(&body)["Versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Version"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, ["$LATEST", "1", "2"]);

        // Stats per version; a deleted version is gone.
        let s1 = plane.stats("py:1");
        assert_eq!((s1.invokes, s1.processes_started), (1, 1), "{s1:?}");
        assert!(s1.attempts.iter().all(|a| a.version == "1"), "{s1:?}");
        assert_eq!(plane.stats("py").invokes, 4);
        let (status, _) = request(addr, "DELETE /2015-03-31/functions/py?Qualifier=1", "").await;
        assert_eq!(status, 204);
        let (status, _) = request(addr, "POST /2015-03-31/functions/py:1/invocations", "").await;
        assert_eq!(status, 404);
        drop(plane);
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

    #[tokio::test]
    async fn answers_agentcore_endpoint_lookups_like_aws_and_names_what_is_missing() {
        let options = ControlPlaneOptions {
            agent_runtimes: vec![AgentRuntimeSpec::new("agent-abc", "/nonexistent")],
            ..Default::default()
        };
        let plane = ControlPlane::start(Vec::new(), options).await.unwrap();
        let addr = plane.addr;
        let (status, body) = request(
            addr,
            "GET /runtimes/agent-abc/runtime-endpoints/DEFAULT/",
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "READY");
        assert_eq!(v["agentRuntimeArn"], agent_runtime_arn("agent-abc"));
        assert_eq!(
            v["agentRuntimeEndpointArn"],
            runtime_endpoint_arn("agent-abc")
        );
        for (head, missing) in [
            (
                "GET /runtimes/other/runtime-endpoints/DEFAULT/",
                "Agent runtime not found: arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/other",
            ),
            (
                "GET /runtimes/agent-abc/runtime-endpoints/v2/",
                "runtime/agent-abc/runtime-endpoint/v2",
            ),
            (
                "POST /runtimes/agent-abc/invocations?accountId=000000000000&qualifier=v2",
                "runtime/agent-abc/runtime-endpoint/v2",
            ),
        ] {
            let (status, head_lines, body) = exchange(addr, head, "", "{}").await;
            assert_eq!(status, 404, "{head}: {body}");
            assert!(
                head_lines.contains("x-amzn-errortype: ResourceNotFoundException"),
                "{head_lines}"
            );
            assert!(body.contains(missing), "{head}: {body}");
        }
        // A container that cannot start: the invocation fails with the reason.
        let arn = "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A000000000000%3Aruntime%2Fagent-abc";
        let (status, body) = request(
            addr,
            &format!("POST /runtimes/{arn}/invocations?qualifier=DEFAULT"),
            "{}",
        )
        .await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("the container could not start"), "{body}");
        let stats = plane.agent_runtime_stats("agent-abc");
        assert_eq!((stats.invokes, stats.sessions_started), (1, 0), "{stats:?}");
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
