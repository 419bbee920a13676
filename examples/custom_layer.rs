//! The default stack with the layer a production function adds: the Temporal API key from
//! AWS Secrets Manager (never in the function's environment variables), fetched once and
//! cached across warm invocations, added with `WorkerStack::layer`.
//!
//! Environment: `TEMPORAL_API_KEY_SECRET_ARN` names the secret (or `TEMPORAL_API_KEY_FILE`
//! a file holding the key). The secret is read through the AWS Parameters and Secrets
//! Lambda Extension (add its Lambda layer to the function; it serves on localhost:2773 and
//! takes the function's session token), so the bootstrap needs no AWS SDK.
use futures_util::future::BoxFuture;
use temporal_lambda_worker::{layers::*, *};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Resolves secrets through the Parameters and Secrets Lambda Extension; its port and the
/// session token come from the stack's environment (on Lambda, the function's).
struct SecretsExtension;

impl SecretResolver for SecretsExtension {
    fn resolve(
        &self,
        secret_arn: &str,
        env: &dyn Environment,
    ) -> BoxFuture<'static, Result<String, BoxError>> {
        let port: u16 = env
            .var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(2773);
        let token = env.var("AWS_SESSION_TOKEN");
        let arn: String = secret_arn
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        Box::pin(async move {
            let token = token.ok_or("AWS_SESSION_TOKEN is not set (not running on Lambda?)")?;
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| {
                    format!(
                        "the Parameters and Secrets extension is not listening on port {port} \
                         (is its Lambda layer added to the function?): {e}"
                    )
                })?;
            let request = format!(
                "GET /secretsmanager/get?secretId={arn} HTTP/1.0\r\nHost: localhost\r\n\
                 X-Aws-Parameters-Secrets-Token: {token}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
            if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                let status = head.lines().next().unwrap_or_default();
                return Err(format!("the extension answered {status}: {body}").into());
            }
            let value: serde_json::Value = serde_json::from_str(body)?;
            value["SecretString"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "the secret has no SecretString (a binary secret?)".into())
        })
    }
}

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "hello-task-queue".into();
    }
    // The `hello` example's workflows and activities (a worker that registers nothing is
    // refused: TemporalLambdaWorker.NothingRegistered).
    hello_workflows::register(&mut config.worker)?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let version = WorkerDeploymentVersion::builder()
        .deployment_name("hello-app")
        .build_id("build-1")
        .build();
    // The key's layer where connection settings are kept: right after LoadConfigLayer.
    // (Wrapped around the whole stack instead, the key would be rebuilt away by
    // LoadConfigLayer: that order fails every invocation with LayerOrder.)
    let stack = WorkerStack::new(version, configure)
        .layer(ApiKeySecretLayer::new(SecretsExtension))
        .build();
    serve(stack).await
}
