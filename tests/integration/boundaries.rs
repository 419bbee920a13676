//! Invocation boundaries (issue 33): every task the server hands out around a worker's
//! shutdown or a version's promotion is served at once. Through the real dev server's
//! Worker Controller and the local control plane, as `serverless_loop.rs`.

use std::time::Duration;

use temporal_lambda_local::{FunctionSpec, ServerlessLoop, control_plane::function_arn};

use crate::{
    TempDir,
    edges::{HelloSetup, json_lines, read},
    hello_binary,
};

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

/// Graceful poll shutdown, on (`frontend.enableCancelWorkerPollsOnShutdown`) or off: the
/// wire's closing depends on it, and the bootstrap says at its first invocation, once per
/// process, which mode the namespace is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_invocation_says_how_the_namespace_ends_polls_at_shutdown() {
    const GRACEFUL: &[&str] = &[
        "--dynamic-config-value",
        "frontend.enableCancelWorkerPollsOnShutdown=true",
    ];
    for (tag, args, says) in [
        (
            "mode-off",
            &[][..],
            "does not let polls complete at shutdown",
        ),
        ("mode-on", GRACEFUL, "lets polls complete at shutdown"),
    ] {
        let setup =
            HelloSetup::start_with(tag, &[("TEMPORAL_IDLE_SHUTDOWN_SECS", "0.5")], args).await;
        setup
            .api
            .invoke(b"", Duration::from_secs(20))
            .await
            .response();
        let text = read(&setup.log);
        let lines: Vec<_> = text
            .lines()
            .filter(|l| l.contains("the namespace") && l.contains("polls complete at shutdown"))
            .collect();
        assert_eq!(lines.len(), 1, "{tag}: {text}");
        assert!(lines[0].contains(says), "{tag}: {}", lines[0]);
    }
}

/// Stall 2 under load: `HelloWorkflow`s queued at once, drained by one process through
/// short invocations (2 s of polling each), so many workflows' next tasks are queued on the
/// sticky queue of a worker as it stops. None waits for its sticky schedule-to-start
/// timeout: the wire drains the sticky queue before unloading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_waits_on_the_sticky_queue_of_a_worker_that_stopped() {
    const WORKFLOWS: usize = 120;
    let setup = HelloSetup::start("sticky-load", &[("TEMPORAL_IDLE_SHUTDOWN_SECS", "off")]).await;
    let ids: Vec<String> = (0..WORKFLOWS).map(|i| format!("wf-sticky-{i}")).collect();
    temporal_lambda_local::bench::start_hellos(&setup.server, "tq-sticky-load", &ids, "Sticky")
        .await;
    let running = "TaskQueue='tq-sticky-load' AND ExecutionStatus='Running'";
    let mut invocations = 0;
    while setup.server.count_workflows(running).await.unwrap() > 0 {
        assert!(
            invocations < 30,
            "{WORKFLOWS} workflows not drained in 30 invocations"
        );
        setup
            .api
            .invoke(b"", Duration::from_secs(9))
            .await
            .response();
        invocations += 1;
    }
    let mut by_kind = std::collections::BTreeMap::new();
    for id in &ids {
        let history = setup.server.history(id).await.unwrap();
        temporal_lambda_local::bench::timeouts(&history, &mut by_kind);
    }
    let sticky: usize = by_kind
        .iter()
        .filter(|(kind, _)| kind.contains("SCHEDULE_TO_START") && kind.contains("STICKY"))
        .map(|(_, n)| n)
        .sum();
    let summaries = json_lines(&read(&setup.log), "invocation summary").len();
    assert_eq!(
        sticky, 0,
        "sticky schedule-to-start timeouts over {summaries} invocations: {by_kind:?}"
    );
}

/// Stall 3 on the sticky side: `HelloWorkflow`s queued and left waiting 6 s, so that
/// matching forwards the workers' sticky polls to the normal queue's backlog (older than
/// `matching.backlogNegligibleAge`, 5 s) and records the task it finds there as started
/// under the forwarded poll. One process drains them through four 9 s invocations at once.
/// A sticky queue's unload (`ShutdownWorker`) cancels its forwarded polls, and one cut
/// while its task's start is being recorded leaves the task started and delivered to
/// nobody until its start-to-close timeout (temporalio/temporal#11733). None is: closing
/// lets such a poll come back, or settle, before the unload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_is_started_under_a_sticky_poll_the_unload_cuts() {
    const WORKFLOWS: usize = 200;
    const AT_ONCE: usize = 4;
    let setup = HelloSetup::start(
        "forwarded",
        &[
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
        ],
    )
    .await;
    let ids: Vec<String> = (0..WORKFLOWS)
        .map(|i| format!("wf-forwarded-{i}"))
        .collect();
    temporal_lambda_local::bench::start_hellos(&setup.server, "tq-forwarded", &ids, "Forwarded")
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let running = "TaskQueue='tq-forwarded' AND ExecutionStatus='Running'";
    let mut rounds = 0;
    while setup.server.count_workflows(running).await.unwrap() > 0 {
        assert!(
            rounds < 15,
            "{WORKFLOWS} workflows not drained in 15 rounds"
        );
        let answers = futures::future::join_all(
            (0..AT_ONCE).map(|_| setup.api.invoke(b"", Duration::from_secs(9))),
        )
        .await;
        for answer in answers {
            answer.response();
        }
        rounds += 1;
    }
    let mut by_kind = std::collections::BTreeMap::new();
    for id in &ids {
        let history = setup.server.history(id).await.unwrap();
        temporal_lambda_local::bench::timeouts(&history, &mut by_kind);
    }
    assert!(
        by_kind.is_empty(),
        "workflow-task and activity timeouts over {rounds} rounds of {AT_ONCE} invocations: \
         {by_kind:?}"
    );
}

/// A workflow whose worker left (the idle exit) resumes on a later invocation: its next
/// workflow task, scheduled on the gone worker's sticky queue, goes to the normal queue
/// (the wire unloaded the sticky queue: `StickyWorkerUnavailable`), where the server still
/// times it out after the sticky schedule-to-start timeout (temporal 1.32
/// `transfer_queue_active_task_executor.go`: the sticky timeout stays the task's TTL). The
/// next invocation comes when the Worker Controller's signal, Lambda and a cold start
/// allow, here 2.5 s after the timer fired: the task is served then, with no timeout in
/// the workflow's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_resumed_by_a_later_invocation_has_no_workflow_task_timeout() {
    let setup = HelloSetup::start("reroute", &[("TEMPORAL_IDLE_SHUTDOWN_SECS", "0.5")]).await;
    setup
        .server
        .start_workflow("TimerWorkflow", "tq-reroute", "wf-reroute", Some("1000"))
        .await
        .unwrap();
    // The first task: the timer starts; the worker leaves before it fires.
    setup
        .api
        .invoke(b"", Duration::from_secs(20))
        .await
        .response();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    setup
        .api
        .invoke(b"", Duration::from_secs(20))
        .await
        .response();
    let result = setup.server.workflow_result("wf-reroute").await.unwrap();
    assert!(result.to_string().contains("Hello"), "{result}");
    let history = setup.server.history("wf-reroute").await.unwrap();
    let mut timeouts = std::collections::BTreeMap::new();
    temporal_lambda_local::bench::timeouts(&history, &mut timeouts);
    assert!(timeouts.is_empty(), "{timeouts:?}: {history}");
}

/// A server slow to answer `ShutdownWorker` (seen on a saturated dev server: over 4 s, the
/// sticky queue's unload and the worker's polls ended first). The SDK awaits its own
/// `ShutdownWorker`, with no deadline, before anything else of its shutdown, and with
/// graceful poll shutdown waits for the polls that call would have ended: the worker did
/// not stop within its graceful shutdown timeout, and the process exited as poisoned. The
/// wire bounds both waits; the invocation is answered and the process goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_slow_to_answer_shutdown_worker_does_not_end_the_process() {
    const GRACEFUL: &[&str] = &[
        "--dynamic-config-value",
        "frontend.enableCancelWorkerPollsOnShutdown=true",
    ];
    for (tag, args) in [("slow-unload-off", &[][..]), ("slow-unload-on", GRACEFUL)] {
        let proxy = temporal_lambda_local::SlowRpc::start("ShutdownWorker", Duration::from_secs(9))
            .await
            .unwrap();
        let mut setup = HelloSetup::start_through(
            tag,
            &[("TEMPORAL_IDLE_SHUTDOWN_SECS", "off")],
            args,
            Some(&proxy),
        )
        .await;
        // The registering invocation was the first; this is the second.
        let answer = setup.api.invoke(b"", Duration::from_secs(9)).await;
        let text = read(&setup.log);
        assert!(
            matches!(answer.outcome, temporal_lambda_local::Outcome::Response(_)),
            "{tag}: {:?}\n{text}",
            answer.outcome
        );
        assert!(!text.contains("DrainTimeout"), "{tag}: {text}");
        assert_eq!(setup.bootstrap.exited(), None, "{tag}: {text}");
    }
}

/// Seen under a stream of starts (`benches/RESULTS.md`, "A server slow to answer at the
/// worker's shutdown"): a worker whose session ended while the server had not answered its
/// `DescribeNamespace` (sdk-core's `validate`, before it polls) waited seconds for it. The
/// wait is bounded; the worker then ends with that error, and the invocation must end as a
/// stop, not as a failed worker: nothing was polled, and an error would have Lambda retry
/// the event and the next invocation reconnect, more load on a server already behind.
#[tokio::test]
async fn a_worker_the_server_does_not_let_start_before_its_shutdown_ends_as_a_stop() {
    // The registering invocation's worker starts; every later one waits 6 s for it.
    let proxy =
        temporal_lambda_local::SlowRpc::start_after("DescribeNamespace", Duration::from_secs(6), 1)
            .await
            .unwrap();
    let mut setup = HelloSetup::start_through(
        "slow-start",
        &[("TEMPORAL_IDLE_SHUTDOWN_SECS", "off")],
        &[],
        Some(&proxy),
    )
    .await;
    for invocation in ["second", "third"] {
        // 2 s to poll before the 7 s shutdown buffer: the session ends before the worker
        // could start.
        let answer = setup.api.invoke(b"", Duration::from_secs(9)).await;
        let text = read(&setup.log);
        assert!(
            matches!(answer.outcome, temporal_lambda_local::Outcome::Response(_)),
            "{invocation}: {:?}\n{text}",
            answer.outcome
        );
        assert!(
            text.contains("ended before it started polling"),
            "{invocation}: {text}"
        );
        assert_eq!(setup.bootstrap.exited(), None, "{invocation}: {text}");
    }
}
