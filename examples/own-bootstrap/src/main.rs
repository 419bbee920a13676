//! The bootstrap of a crate of your own: the Lambda defaults, Lambda-correct logs, and the
//! workflow and activity of `src/lib.rs`. Build it with `cargo lambda build --release --arm64`.

use own_bootstrap::configure;
use temporal_lambda_worker::{BoxError, WorkerDeploymentVersion, logging, run_worker};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let version = WorkerDeploymentVersion::builder()
        .deployment_name("shop")
        .build_id("build-1")
        .build();
    run_worker(version, configure).await
}
