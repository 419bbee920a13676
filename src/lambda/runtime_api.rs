//! The Lambda Runtime API's invocation protocol, spoken by this crate: `next`, then an
//! answer to `…/response` or `…/error`.
//!
//! `lambda_runtime` 1.5 panics inside its run loop when a `next` answer lacks
//! `Lambda-Runtime-Aws-Request-Id` or `Lambda-Runtime-Deadline-Ms` (its maintainers keep
//! it so, aws/aws-lambda-rust-runtime#322), and third-party emulators do send such
//! answers. So the loop is ours: a malformed answer becomes an error answer naming the
//! header, or, without a request id to answer, one log line and a Runtime API failure.
//! Its types (`Context`, `Config`, `LambdaEvent`, `Diagnostic`) and HTTP client stay
//! `lambda_runtime`'s.

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use lambda_runtime::{Config, Context, Diagnostic, LambdaEvent};
use lambda_runtime_api_client::{Client, body::Body, build_request};

use super::{HostError, environment::LambdaEnvironment};
use crate::{BoxError, error_type};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
/// Echoed back on the answer, so the Runtime API can refuse a stale one.
const INVOCATION_ID: &str = "lambda-runtime-invocation-id";
/// How long to wait before asking `next` again after a 204 (no invocation yet).
const NO_CONTENT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The Runtime API's base URI from `AWS_LAMBDA_RUNTIME_API`: `host:port` as Lambda sets
/// it, or a whole URI with a scheme and a path, as `cargo lambda watch` sets it
/// (`http://[::]:9000/.rt/NAME`).
pub(crate) fn runtime_api_uri(value: &str) -> Result<http::Uri, http::uri::InvalidUri> {
    if value.contains("://") {
        value.parse()
    } else {
        format!("http://{value}").parse()
    }
}

/// One invocation handed out by `next`: where its answer goes, and its event (the body
/// parsed once), or why it could not be read (answered as that error).
#[derive(Debug)]
pub(crate) struct Next {
    pub(crate) to: AnswerTo,
    pub(crate) event: Result<LambdaEvent<serde_json::Value>, HostError>,
}

/// Where an invocation's answer goes.
#[derive(Debug, Clone)]
pub(crate) struct AnswerTo {
    pub(crate) request_id: String,
    /// Echoed back, so the Runtime API can refuse a stale answer.
    invocation_id: Option<String>,
}

/// A client of the Runtime API at `AWS_LAMBDA_RUNTIME_API`.
pub(crate) struct RuntimeApi {
    client: Client,
    config: Arc<Config>,
}

impl RuntimeApi {
    /// A client of the Runtime API `env` names.
    pub(crate) fn new(env: &LambdaEnvironment) -> Result<Self, BoxError> {
        Ok(Self {
            client: Client::builder()
                .with_endpoint(env.runtime_api.clone())
                .build()?,
            config: Arc::new(env.function.clone()),
        })
    }

    /// Waits for the next invocation. An error is a failed request, an answer other than
    /// 200, or one without a request id (nothing to answer): the caller retries.
    pub(crate) async fn next(&self) -> Result<Next, BoxError> {
        loop {
            let request = build_request()
                .method(Method::GET)
                .uri(NEXT)
                .body(Body::empty())?;
            let response = self.client.call(request).await?;
            // `cargo lambda watch` answers 204 while it holds no invocation (Lambda never
            // does: it holds the request open); ask again.
            if response.status() == StatusCode::NO_CONTENT {
                tokio::time::sleep(NO_CONTENT_PAUSE).await;
                continue;
            }
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            if parts.status != StatusCode::OK {
                return Err(format!(
                    "the Runtime API answered `next` with {}: {}",
                    parts.status,
                    String::from_utf8_lossy(&body).trim()
                )
                .into());
            }
            return read_next(&parts.headers, &self.config, &body);
        }
    }

    /// Posts `answer` for `next`: the response as JSON, or the diagnostic. A refusal (the
    /// invocation timed out, say) is logged and is not an error; a failed request is.
    pub(crate) async fn answer(
        &self,
        to: &AnswerTo,
        answer: Result<Vec<u8>, Diagnostic>,
    ) -> Result<(), BoxError> {
        let id = &to.request_id;
        let mut request = build_request().method(Method::POST);
        let body = match answer {
            Ok(json) => {
                request = request.uri(format!("/2018-06-01/runtime/invocation/{id}/response"));
                json
            }
            Err(diagnostic) => {
                request = request
                    .uri(format!("/2018-06-01/runtime/invocation/{id}/error"))
                    .header("lambda-runtime-function-error-type", "unhandled");
                serde_json::to_vec(&diagnostic)?
            }
        };
        if let Some(invocation_id) = &to.invocation_id {
            request = request.header(INVOCATION_ID, invocation_id);
        }
        let response = self.client.call(request.body(Body::from(body))?).await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await?.to_bytes();
            tracing::error!(
                request_id = %id,
                %status,
                "the Runtime API refused this invocation's answer ({}); it was late (past \
                 its deadline) or too large",
                String::from_utf8_lossy(&body).trim()
            );
        }
        Ok(())
    }
}

/// Reads a `next` answer: a missing request id is an error (it cannot be answered), any
/// other problem is the invocation's error to answer.
fn read_next(headers: &HeaderMap, config: &Arc<Config>, body: &[u8]) -> Result<Next, BoxError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(request_id) = text(REQUEST_ID).filter(|id| !id.trim().is_empty()) else {
        return Err(format!(
            "the Runtime API handed out an invocation without a Lambda-Runtime-Aws-Request-Id \
             header, so it cannot be answered; Lambda always sends one, so this is a local \
             emulator's defect (headers: {})",
            header_names(headers)
        )
        .into());
    };
    let deadline = headers.get(DEADLINE_MS).map(|v| {
        let ms = v.to_str().ok().and_then(|t| t.parse::<u64>().ok());
        ms.ok_or_else(|| String::from_utf8_lossy(v.as_bytes()).into_owned())
    });
    let context = match deadline {
        Some(Ok(_)) => Context::new(request_id, config.clone(), headers)
            .map_err(|e| format!("the Runtime API's invocation headers are malformed: {e}")),
        Some(Err(value)) => Err(format!(
            "the Runtime API's Lambda-Runtime-Deadline-Ms header is {value:?}, not a time in \
             milliseconds since the epoch"
        )),
        None => Err(format!(
            "the Runtime API handed out this invocation without a Lambda-Runtime-Deadline-Ms \
             header, so the worker cannot know when to stop; Lambda always sends one, so this \
             is a local emulator's defect (headers: {})",
            header_names(headers)
        )),
    };
    Ok(Next {
        to: AnswerTo {
            request_id: request_id.to_owned(),
            invocation_id: text(INVOCATION_ID).map(str::to_owned),
        },
        event: context
            .map(|context| LambdaEvent::new(payload(body), context))
            .map_err(HostError::InvalidInvocation),
    })
}

/// The payload of a body: any body is accepted. Temporal's Worker Controller invokes the
/// function with an *empty* one (`null`), and a body that is not JSON becomes a JSON
/// string.
pub(crate) fn payload(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
        }
    })
}

/// The header names of an answer, for a message (values may carry identities).
fn header_names(headers: &HeaderMap) -> String {
    let names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
    names.join(", ")
}

/// Posts `/runtime/init/error` to the Runtime API at `uri`; a failure to report is logged.
pub(crate) async fn init_error(uri: http::Uri, message: &str) {
    let client = lambda_runtime_api_client::PooledClient::builder()
        .with_endpoint(uri)
        .build();
    let body = serde_json::to_vec(&Diagnostic {
        error_type: error_type::INVALID_LAMBDA_ENVIRONMENT.to_owned(),
        error_message: message.to_owned(),
    })
    .expect("a diagnostic serializes");
    let request = build_request()
        .method(Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(body.into());
    let sent = match request {
        Ok(r) => tokio::time::timeout(Duration::from_secs(2), client.call(r))
            .await
            .map_err(|_| "no answer within 2s".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        tracing::warn!("could not report the init error to the Lambda Runtime API: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    fn read(pairs: &[(&'static str, &str)]) -> Result<Next, BoxError> {
        read_next(&headers(pairs), &Arc::default(), b"")
    }

    #[test]
    fn the_runtime_api_address_is_host_port_or_a_whole_uri() {
        let lambda = runtime_api_uri("127.0.0.1:9001").unwrap();
        assert_eq!(lambda.to_string(), "http://127.0.0.1:9001/");
        // What `cargo lambda watch` 1.9 sets.
        let watch = runtime_api_uri("http://[::]:45677/.rt/_").unwrap();
        assert_eq!(watch.authority().unwrap().as_str(), "[::]:45677");
        assert_eq!(watch.path(), "/.rt/_");
        assert!(runtime_api_uri("a b").is_err());
    }

    #[test]
    fn a_well_formed_answer_gives_its_context() {
        let next = read(&[
            (REQUEST_ID, "id-1"),
            (DEADLINE_MS, "1700000000000"),
            (INVOCATION_ID, "inv-1"),
        ])
        .unwrap();
        assert_eq!(next.to.request_id, "id-1");
        assert_eq!(next.to.invocation_id.as_deref(), Some("inv-1"));
        let context = next.event.unwrap().context;
        assert_eq!(context.request_id, "id-1");
        assert_eq!(context.deadline, 1_700_000_000_000);
    }

    #[test]
    fn a_missing_or_broken_deadline_is_the_invocations_error_naming_the_header() {
        let next = read(&[(REQUEST_ID, "id-2")]).unwrap();
        let e = next.event.unwrap_err();
        assert_eq!(e.error_type(), error_type::INVALID_INVOCATION);
        let e = e.to_string();
        assert!(
            e.contains("without a Lambda-Runtime-Deadline-Ms header"),
            "{e}"
        );
        assert!(e.contains("lambda-runtime-aws-request-id"), "{e}");
        let next = read(&[(REQUEST_ID, "id-3"), (DEADLINE_MS, "soon")]).unwrap();
        let e = next.event.unwrap_err().to_string();
        assert!(e.contains("Lambda-Runtime-Deadline-Ms header is"), "{e}");
    }

    #[test]
    fn an_answer_without_a_request_id_cannot_be_answered() {
        for pairs in [&[(DEADLINE_MS, "1700000000000")][..], &[(REQUEST_ID, " ")]] {
            let e = read(pairs).err().unwrap().to_string();
            assert!(
                e.contains("without a Lambda-Runtime-Aws-Request-Id header"),
                "{e}"
            );
        }
    }

    #[test]
    fn any_body_is_parsed_once_into_json() {
        use serde_json::json;
        assert_eq!(payload(b"{}"), json!({}));
        assert_eq!(payload(b"[1, 2]"), json!([1, 2]));
        assert_eq!(payload(b"null"), json!(null));
        assert_eq!(payload(b""), json!(null));
        assert_eq!(payload(b"  \n"), json!(null));
        assert_eq!(payload(b"hello"), json!("hello"));
        assert_eq!(payload(b"{broken"), json!("{broken"));
    }
}
