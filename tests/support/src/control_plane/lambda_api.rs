//! The Lambda operations the control plane serves (`/2015-03-31/functions/…`), one
//! handler each: [`route`] reads which function and operation a request names, and hands
//! it to its handler.

use std::{sync::Arc, time::Duration};

use hyper::{Method, Request, Response, StatusCode, body::Incoming};

use super::{
    Shared,
    aws::{aws_error, form_value, percent_decode},
    function::{Environments, Function, Invocation, InvocationType, function_arn, timed_out},
    json,
};
use crate::{
    Outcome,
    http::{Body, read_body, reply},
};

/// A Lambda call: the function it names (with the qualifier, if any) and what it asks.
struct Call {
    function: Arc<Function>,
    /// The qualifier given (in the ARN or as `Qualifier`).
    q: Option<String>,
    /// The environments it resolves to.
    env: Arc<Environments>,
    /// The function as the request named it.
    id: String,
    req: Request<Incoming>,
}

/// Routes `req` (its path already stripped of `/2015-03-31/functions/`, as `rest`) to its
/// operation's handler.
pub(super) async fn route(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let (id, operation) = match rest.trim_end_matches('/').split_once('/') {
        Some((id, op)) => (percent_decode(id), op.to_owned()),
        None => (percent_decode(rest.trim_end_matches('/')), String::new()),
    };
    let call = match call(shared, req, id) {
        Ok(call) => call,
        Err(response) => return *response,
    };
    match (method, operation.as_str()) {
        (Method::GET, "") => get_function(&call),
        (Method::GET, "configuration") => json(StatusCode::OK, call.env.configuration()),
        (Method::DELETE, "") => delete_version(&call),
        (Method::POST, "versions") => publish_version(call).await,
        (Method::GET, "versions") => json(
            StatusCode::OK,
            serde_json::json!({ "Versions": call.function.list_versions() }),
        ),
        (Method::PUT, "configuration") => update_configuration(call).await,
        (Method::POST, "invocations") => invoke(shared, call).await,
        (method, _) => aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("the local control plane does not serve {method} {path}"),
        ),
    }
}

/// The call `req` makes on the function `id` names, or Lambda's answer when there is no
/// such function (or version).
fn call(shared: &Shared, req: Request<Incoming>, id: String) -> Result<Call, Box<Response<Body>>> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let qualifier = form_value(&query, "Qualifier");
    let not_found = |what: &str| {
        aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {what}"),
        )
    };
    let Some((function, q)) = shared.function(&id, qualifier.as_deref()) else {
        return Err(Box::new(not_found(&id)));
    };
    let (function, q) = (function.clone(), q.map(str::to_owned));
    let env = function.resolve(q.as_deref()).map_err(|e| {
        Box::new(aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &e.to_string(),
        ))
    })?;
    Ok(Call {
        function,
        q,
        env,
        id,
        req,
    })
}

impl Call {
    /// The error of an operation that takes the function's bare name, when a qualifier was
    /// given.
    fn unqualified(&self, operation: &str) -> Option<Response<Body>> {
        self.q.as_ref().map(|_| {
            aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!(
                    "{operation} takes the function's name without a qualifier, not {}",
                    self.id
                ),
            )
        })
    }
}

/// GetFunction.
fn get_function(call: &Call) -> Response<Body> {
    json(
        StatusCode::OK,
        serde_json::json!({
            "Configuration": call.env.configuration(),
            "Code": { "RepositoryType": "S3", "Location": "" }
        }),
    )
}

/// DeleteFunction with a version as the qualifier (published versions only).
fn delete_version(call: &Call) -> Response<Body> {
    let Some(v) = call.q.as_deref() else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "the local control plane deletes published versions only: give a Qualifier",
        );
    };
    match call.function.delete_version(v) {
        Ok(()) => reply(StatusCode::NO_CONTENT, ""),
        Err(e) => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &e.to_string(),
        ),
    }
}

/// PublishVersion.
async fn publish_version(call: Call) -> Response<Body> {
    if let Some(r) = call.unqualified("versions") {
        return r;
    }
    match call.function.publish().await {
        Ok(v) => json(StatusCode::CREATED, v.configuration()),
        Err(e) => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &e.to_string(),
        ),
    }
}

/// UpdateFunctionConfiguration: `Environment.Variables` (replaced whole, as on Lambda) and
/// `Timeout`.
async fn update_configuration(call: Call) -> Response<Body> {
    if let Some(r) = call.unqualified("configuration") {
        return r;
    }
    let body = read_body(call.req).await;
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &format!("could not parse request body into json: {e}"),
            );
        }
    };
    let vars = v["Environment"]["Variables"].as_object().cloned();
    let timeout = v["Timeout"].as_u64();
    let changed = call
        .function
        .update(|spec| {
            if let Some(vars) = vars {
                spec.env = vars
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
            }
            if let Some(secs) = timeout {
                spec.timeout = Duration::from_secs(secs);
            }
        })
        .await;
    let function = &call.function;
    match changed.and_then(|()| function.resolve(None).map_err(std::io::Error::other)) {
        Ok(latest) => json(StatusCode::OK, latest.configuration()),
        Err(e) => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &e.to_string(),
        ),
    }
}

/// Invoke: `Event` runs in the background (202), `RequestResponse` (the default) waits for
/// the answer, `DryRun` answers 204.
async fn invoke(shared: &Arc<Shared>, call: Call) -> Response<Body> {
    let Call {
        function,
        q,
        env,
        req,
        ..
    } = call;
    let kind = req
        .headers()
        .get("X-Amz-Invocation-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let mut payload = read_body(req).await;
    if payload.is_empty() {
        // Lambda hands a function `{}` when the Invoke call carries no payload (as the
        // Worker Controller's does), not an empty body: "When you invoke a function with no
        // payload the Lambda service passes {} (an empty json object) to your handler",
        // AWS's own aws/aws-lambda-dotnet pull request 834, which made its test tool do the
        // same. awslambdaric fails an empty body with `Runtime.UnmarshalError`, and Temporal
        // documents its Python worker as working with the Worker Controller on Lambda.
        payload = bytes::Bytes::from_static(b"{}");
    }
    // Lambda passes the ARN the caller named, with its qualifier if it had one.
    let invoked_arn = match &q {
        Some(q) => format!("{}:{q}", function_arn(&function.name)),
        None => function_arn(&function.name),
    };
    let (timeout, executed) = (env.spec.timeout, env.version.clone());
    let invocation = |invocation_type| Invocation {
        env,
        qualifier: q,
        invoked_arn,
        payload,
        invocation_type,
        retry_delays: shared.retry_delays.clone(),
    };
    match kind.as_str() {
        "Event" => {
            let inv = invocation(InvocationType::Event);
            shared.spawn(async move {
                function.run(inv).await;
            });
            reply(StatusCode::ACCEPTED, "")
        }
        "RequestResponse" => {
            let answer = function
                .run(invocation(InvocationType::RequestResponse))
                .await;
            invoke_answer(answer.outcome, timeout, &executed)
        }
        "DryRun" => reply(StatusCode::NO_CONTENT, ""),
        other => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("unknown X-Amz-Invocation-Type {other}"),
        ),
    }
}

/// A `RequestResponse` invocation's answer, as Lambda gives it: 200 with the function's
/// answer, `X-Amz-Function-Error` when it is an error, `X-Amz-Executed-Version` always.
fn invoke_answer(outcome: Outcome, timeout: Duration, executed: &str) -> Response<Body> {
    let error = |error_type: &str, message: &str| {
        serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string()
    };
    let (body, failed) = match outcome {
        Outcome::Response(v) => (v.to_string(), false),
        Outcome::Error {
            error_type,
            error_message,
        } => (error(&error_type, &error_message), true),
        Outcome::NoAnswer => (error("Sandbox.Timedout", &timed_out(timeout)), true),
    };
    let mut r = reply(StatusCode::OK, body);
    r.headers_mut()
        .insert("X-Amz-Executed-Version", executed.parse().unwrap());
    if failed {
        r.headers_mut()
            .insert("X-Amz-Function-Error", "Unhandled".parse().unwrap());
    }
    r
}
