//! The cost of each layer of the stack, and of the whole default stack, over a no-op core
//! service (no network): criterion micro-benchmarks, one invocation per iteration.
//! Run: `cargo bench --bench layers` (add a filter, e.g. `-- deadline`, for one layer;
//! `--features otel` adds the `OtelLayer`).
use std::{
    future::{Ready, ready},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use temporal_lambda_worker::{layers::*, *};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn, util::ServiceFn};

type Noop = ServiceFn<fn(Invocation) -> Ready<Result<usize, BoxError>>>;

fn noop() -> Noop {
    service_fn(|inv: Invocation| ready(Ok(inv.config.worker.task_queue.len())))
}

/// An invocation 60 s from its deadline, with a task queue set (as configure would).
fn invocation() -> Invocation {
    let mut ctx = lambda_runtime::Context::default();
    ctx.request_id = "bench".into();
    ctx.invoked_function_arn = "arn:aws:lambda:us-east-1:0:function:bench".into();
    ctx.deadline = (SystemTime::now() + Duration::from_secs(60))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut inv = Invocation::new(serde_json::Value::Null, ctx);
    inv.config.worker.task_queue = "tq".into();
    inv
}

fn version() -> WorkerDeploymentVersion {
    WorkerDeploymentVersion::builder()
        .deployment_name("b")
        .build_id("1")
        .build()
}

fn configure(c: &mut LambdaWorkerConfig) -> Result<(), BoxError> {
    c.worker.task_queue = "tq".into();
    Ok(())
}

fn bench<S>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, svc: S)
where
    S: Service<Invocation> + Clone,
    S::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            invocation,
            |inv| {
                let svc = svc.clone();
                async move { svc.oneshot(inv).await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });
}

fn one<L: Layer<Noop>>(layer: L) -> L::Service {
    layer.layer(noop())
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = || StaticEnvironment::new().with_var("TEMPORAL_ADDRESS", "127.0.0.1:7233");
    bench(c, &rt, "no-op core alone", noop());
    bench(
        c,
        &rt,
        "LoadConfigLayer",
        one(LoadConfigLayer::with_environment(env())),
    );
    bench(
        c,
        &rt,
        "LambdaDefaultsLayer",
        one(LambdaDefaultsLayer::new()),
    );
    bench(
        c,
        &rt,
        "ConfigureLayer",
        one(ConfigureLayer::new(configure)),
    );
    bench(
        c,
        &rt,
        "DisableEagerActivitiesLayer",
        one(DisableEagerActivitiesLayer::new()),
    );
    bench(
        c,
        &rt,
        "WorkerVersioningLayer",
        one(WorkerVersioningLayer::new(version())),
    );
    bench(
        c,
        &rt,
        "WorkerIdentityLayer",
        one(WorkerIdentityLayer::new()),
    );
    bench(
        c,
        &rt,
        "DeadlineWatchdogLayer",
        one(DeadlineWatchdogLayer::new()),
    );
    bench(
        c,
        &rt,
        "default stack (7 layers)",
        ServiceBuilder::new()
            .layer(LoadConfigLayer::with_environment(env()))
            .layer(LambdaDefaultsLayer::new())
            .layer(ConfigureLayer::new(configure))
            .layer(DisableEagerActivitiesLayer::new())
            .layer(WorkerVersioningLayer::new(version()))
            .layer(WorkerIdentityLayer::new())
            .layer(DeadlineWatchdogLayer::new())
            .service(noop()),
    );
    #[cfg(feature = "otel")]
    {
        // Span, metrics and tracing applied, and the end-of-invocation flush, here to
        // in-memory exporters: the layer's own cost, without a collector's round trip.
        let telemetry = rt.block_on(async {
            otel::Telemetry::with_exporters(
                &otel::OtelOptions::new(),
                &env(),
                opentelemetry_sdk::trace::InMemorySpanExporter::default(),
                opentelemetry_sdk::metrics::InMemoryMetricExporter::default(),
            )
        });
        bench(
            c,
            &rt,
            "OtelLayer (flush to in-memory exporters)",
            one(otel::OtelLayer::with_environment(telemetry, env())),
        );
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
