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

mod aws;
mod function;

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

use crate::{
    Outcome, RuntimeApi,
    http::{Body, read_body, reply, serve},
};

use aws::{assume_role, aws_error, form_value, percent_decode, xml};
use function::Function;
pub use function::{Attempt, FunctionSpec, FunctionStats, InvocationType, function_arn};

/// The account id local ARNs use.
pub const ACCOUNT: &str = "000000000000";
/// The region local ARNs use.
pub const REGION: &str = "us-east-1";

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
    use super::{aws::rfc3339, *};

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
