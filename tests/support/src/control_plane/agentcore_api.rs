//! The AgentCore operations the control plane serves (`/runtimes/…`), as the Worker
//! Controller calls them: `GetAgentRuntimeEndpoint`
//! (`GET /runtimes/{id}/runtime-endpoints/{endpoint}/`) and `InvokeAgentRuntime`
//! (`POST /runtimes/{id}/invocations?accountId=…&qualifier=…`, the id or the runtime's
//! URL-encoded ARN). A runtime or endpoint that does not exist answers AWS's
//! `ResourceNotFoundException`.

use std::sync::Arc;

use hyper::{Method, Request, Response, StatusCode, body::Incoming};

use super::{
    Shared,
    agent_runtime::{
        AgentRuntime, DEFAULT_ENDPOINT, SESSION_HEADER, agent_runtime_arn, runtime_endpoint_arn,
    },
    aws::{aws_error, form_value, percent_decode},
    json,
};
use crate::http::{Body, read_body, reply};

/// Routes `req` (its path stripped of `/runtimes/`, as `rest`) to its operation.
pub(super) async fn route(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let (id, operation) = rest.split_once('/').unwrap_or((rest, ""));
    let id = percent_decode(id);
    // An ARN names the runtime as well as its id does.
    let id = id
        .rsplit_once(":runtime/")
        .map_or(id.as_str(), |(_, id)| id);
    let Some(runtime) = shared.runtimes.iter().find(|r| r.spec.id == id) else {
        return not_found(&format!(
            "Agent runtime not found: {}",
            agent_runtime_arn(id)
        ));
    };
    let operation = operation.trim_end_matches('/');
    match (method, operation.split_once('/')) {
        (Method::GET, Some(("runtime-endpoints", endpoint))) => get_endpoint(runtime, endpoint),
        (Method::POST, None) if operation == "invocations" => invoke(runtime, req).await,
        (method, _) => aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("the local control plane does not serve {method} {path}"),
        ),
    }
}

fn not_found(message: &str) -> Response<Body> {
    aws_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

/// `GetAgentRuntimeEndpoint`: the `DEFAULT` endpoint, ready.
fn get_endpoint(runtime: &AgentRuntime, endpoint: &str) -> Response<Body> {
    let id = &runtime.spec.id;
    if endpoint != DEFAULT_ENDPOINT {
        return not_found(&format!(
            "Agent runtime endpoint not found: {}/runtime-endpoint/{endpoint}",
            agent_runtime_arn(id)
        ));
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "agentRuntimeEndpointArn": runtime_endpoint_arn(id),
            "agentRuntimeArn": agent_runtime_arn(id),
            "name": DEFAULT_ENDPOINT,
            "id": DEFAULT_ENDPOINT,
            "status": "READY",
            "liveVersion": "1",
            "createdAt": "2026-12-01T00:00:00Z",
            "lastUpdatedAt": "2026-12-01T00:00:00Z",
        }),
    )
}

/// `InvokeAgentRuntime`: the invocation, run in its session's container; its answer.
async fn invoke(runtime: &AgentRuntime, req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_owned();
    if let Some(q) = form_value(&query, "qualifier").filter(|q| q != DEFAULT_ENDPOINT) {
        return not_found(&format!(
            "Agent runtime endpoint not found: {}/runtime-endpoint/{q}",
            runtime.spec.arn()
        ));
    }
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = runtime.invoke(session.clone(), read_body(req).await).await;
    let mut response = reply(status, body);
    let headers = response.headers_mut();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(session) = session.and_then(|s| s.parse().ok()) {
        headers.insert(SESSION_HEADER, session);
    }
    response
}
