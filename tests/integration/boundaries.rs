//! Invocation boundaries (issue 33): every task the server hands out around a worker's
//! shutdown or a version's promotion is served at once. Through the real dev server's
//! Worker Controller and the local control plane, as `serverless_loop.rs`.

use std::time::Duration;

use temporal_lambda_worker_testkit::{FunctionSpec, ServerlessLoop, control_plane::function_arn};

use crate::{TempDir, hello_binary};

const EXTERNAL_ID: &str = "boundary-external-id";

/// Stall 1: a workflow started right after its version is made current. The partitions
/// learn the new routing asynchronously, and a task added before they do brings no
/// invocation; only a worker still polling takes it. The version-creation invocation
/// stays polling until its version is routed to (`rollout.rs`), however long the deploy
/// takes between `create-version` and `set-current-version` (here longer than the idle
/// exit's 2 s window, after which it used to leave).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_started_as_its_version_becomes_current_is_served_at_once() {
    let name = "boundary-rollout";
    let (tq, dep) = (format!("tq-{name}"), format!("dep-{name}"));
    let root = TempDir::new(name);
    let spec = FunctionSpec::new(name, hello_binary())
        .env("TEMPORAL_TASK_QUEUE", &tq)
        .env("HELLO_DEPLOYMENT_NAME", &dep)
        .timeout(Duration::from_secs(30))
        .task_root(root.path());
    let lp = ServerlessLoop::launch(spec, EXTERNAL_ID).await.unwrap();
    lp.register(&dep, "build-1", &function_arn(name), &tq)
        .await
        .unwrap();
    // The deploy's next command comes a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    lp.make_current(&dep, "build-1").await.unwrap();
    let answered_before = lp.plane.stats(name).attempts.len();
    lp.server
        .start_hello(&tq, "wf-rollout-1", "rollout")
        .await
        .unwrap();
    let waited = lp
        .server
        .first_task_wait("wf-rollout-1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        answered_before,
        0,
        "the version-creation invocation left before its version was current (the first \
         workflow then waited {waited:?}): {:?}",
        lp.plane.stats(name)
    );
    assert!(
        waited <= Duration::from_secs(1),
        "the first workflow after the version became current waited {waited:?} for a worker"
    );
}
