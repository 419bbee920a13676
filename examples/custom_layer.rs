//! The default stack built by hand with `ServiceBuilder`, with a layer of our own
//! inserted before the configure step: it reads the Temporal API key from a file named
//! by `API_KEY_FILE` (a secret mounted or fetched at init) and caches it across warm
//! invocations, so the key never sits in the function's environment variables.
use std::sync::{Arc, OnceLock};

use temporal_lambda_worker::*;
use tower::ServiceBuilder;

#[derive(Clone, Default)]
struct ApiKeyFromFile {
    cached: Arc<OnceLock<String>>,
}

impl InvocationStep for ApiKeyFromFile {
    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        let Ok(path) = std::env::var("API_KEY_FILE") else {
            return Ok(());
        };
        if self.cached.get().is_none() {
            let key = std::fs::read_to_string(&path).map_err(|e| LambdaWorkerError::Config {
                path: Some(path.clone().into()),
                message: format!("API_KEY_FILE names this file, but it cannot be read: {e}"),
            })?;
            let _ = self.cached.set(key.trim().to_owned());
        }
        inv.config.connection.api_key = self.cached.get().cloned();
        Ok(())
    }
}

fn configure(config: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    if config.worker.task_queue.is_empty() {
        config.worker.task_queue = "hello-task-queue".into();
    }
    // Register workflows and activities here, as in the `hello` example.
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let version = WorkerDeploymentVersion::builder()
        .deployment_name("hello-app")
        .build_id("build-1")
        .build();
    let stack = ServiceBuilder::new()
        .layer(LoadConfigLayer::new())
        .layer(StepLayer::from_step(ApiKeyFromFile::default()))
        .layer(LambdaDefaultsLayer::new())
        .layer(ConfigureLayer::new(configure))
        .layer(DisableEagerActivitiesLayer::new())
        .layer(WorkerVersioningLayer::new(version))
        .layer(WorkerIdentityLayer::new())
        .layer(DeadlineWatchdogLayer::new())
        .service(WorkerService::new(TemporalBackend::new()));
    serve(stack).await
}
