//! The cost of the stack's layers: one invocation through every lifecycle layer over a
//! no-op core service (no network), per invocation. Prints numbers; asserts nothing.
//! Run: `cargo bench --bench layers`.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use temporal_lambda_worker::*;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn invocation() -> Invocation {
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = "bench".into();
    ctx.invoked_function_arn = "arn:aws:lambda:us-east-1:0:function:bench".into();
    ctx.deadline = (SystemTime::now() + Duration::from_secs(60))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Invocation::new(serde_json::Value::Null, ctx)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let version = WorkerDeploymentVersion::builder()
        .deployment_name("b")
        .build_id("1")
        .build();
    let mut svc = ServiceBuilder::new()
        .layer(LoadConfigLayer::with_environment(StaticEnvironment::new()))
        .layer(LambdaDefaultsLayer::new())
        .layer(ConfigureLayer::new(|c: &mut LambdaWorkerConfig| {
            c.worker.task_queue = "tq".into();
            Ok::<_, BoxError>(())
        }))
        .layer(DisableEagerActivitiesLayer::new())
        .layer(WorkerVersioningLayer::new(version))
        .layer(WorkerIdentityLayer::new())
        .layer(DeadlineWatchdogLayer::new())
        .service(service_fn(|inv: Invocation| async move {
            Ok::<_, BoxError>(inv.config.worker.task_queue.len())
        }));
    let mut samples = Vec::new();
    rt.block_on(async {
        for _ in 0..2_000 {
            let inv = invocation();
            let t = Instant::now();
            let n = svc.ready().await.unwrap().call(inv).await.unwrap();
            samples.push(t.elapsed());
            assert_eq!(n, 2);
        }
    });
    samples.sort();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "stack overhead per invocation (7 layers, no-op core, {} runs):",
        samples.len()
    );
    println!(
        "  median {:?}  p95 {:?}  max {:?}",
        pct(50),
        pct(95),
        samples[samples.len() - 1]
    );
}
