//! The serverless loop: the real dev server's Worker Controller invokes the `hello` function
//! through the local control plane (STS AssumeRole, Lambda GetFunction and Invoke), which
//! runs the bootstrap processes. No worker is started by hand and no invocation is made by
//! the test.

use std::time::Duration;

use temporal_lambda_local::{
    ControlPlane, DevServer, FunctionSpec, FunctionStats, Outcome, ServerlessLoop, upgrade,
};

use crate::{TempDir, hello_binary};

const EXTERNAL_ID: &str = "loop-external-id";
/// 10 s: with the 7 s default buffer, each invocation polls for about 3 s.
const TIMEOUT: Duration = Duration::from_secs(10);

struct Loop {
    // Dropped in this order: the processes stop before their task root is removed.
    plane: ControlPlane,
    server: DevServer,
    name: &'static str,
    _root: TempDir,
}

impl Loop {
    /// The loop for function `name`: the hello bootstrap polling `tq-{name}` as deployment
    /// `dep-{name}`, version `build-1` current, and the registering invocation over;
    /// `function` sets the rest of the function's configuration.
    async fn start(
        name: &'static str,
        function: impl FnOnce(FunctionSpec) -> FunctionSpec,
    ) -> Self {
        let root = TempDir::new(name);
        let spec = function(
            FunctionSpec::new(name, hello_binary())
                .env("TEMPORAL_TASK_QUEUE", &format!("tq-{name}"))
                .env("HELLO_DEPLOYMENT_NAME", &format!("dep-{name}"))
                .timeout(TIMEOUT)
                .task_root(root.path()),
        );
        let ServerlessLoop { plane, server, .. } = ServerlessLoop::start(
            spec,
            &format!("dep-{name}"),
            "build-1",
            EXTERNAL_ID,
            &format!("tq-{name}"),
        )
        .await
        .unwrap();
        assert_eq!(plane.stats(name).processes_started, 1);
        let this = Self {
            plane,
            server,
            name,
            _root: root,
        };
        this.idle().await;
        this
    }

    /// Waits until no invocation is running or waiting: no worker polls now.
    async fn idle(&self) -> FunctionStats {
        self.plane
            .wait_for(self.name, TIMEOUT * 3, |s| s.outstanding == 0)
            .await
            .unwrap_or_else(|s| panic!("invocations still running: {s:?}"))
    }

    async fn run_workflow(&self, id: &str) {
        let who = format!("loop {id}");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            self.server
                .execute_hello(&format!("tq-{}", self.name), id, &who),
        )
        .await
        .unwrap_or_else(|_| panic!("workflow {id} did not complete: {:?}", self.stats()))
        .unwrap_or_else(|e| panic!("workflow {id} failed: {e}"));
        assert!(out.contains(&format!("Hello, {who}!")), "{out}");
    }

    fn stats(&self) -> FunctionStats {
        self.plane.stats(self.name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_invokes_the_function_for_waiting_tasks() {
    let lp = Loop::start("loop", |f| f.concurrency(2)).await;

    // (a) No worker is polling; starting a workflow makes the server invoke the function.
    let before = lp.idle().await;
    lp.run_workflow("wf-loop-a").await;
    let after_a = lp.stats();
    assert!(
        after_a.invokes > before.invokes,
        "no new invoke: {after_a:?}"
    );

    // (b) Once that invocation ended, a new workflow triggers a new invoke, served by the
    // warm process on its cached connection.
    let before = lp.idle().await;
    lp.run_workflow("wf-loop-b").await;
    let after_b = lp.idle().await;
    assert!(
        after_b.invokes > before.invokes,
        "no new invoke: {after_b:?}"
    );
    assert_eq!(after_b.processes_started, 1, "not served warm: {after_b:?}");
    let warm: Vec<_> = after_b.attempts.iter().skip(1).collect();
    assert!(!warm.is_empty());
    for a in warm {
        assert!(!a.cold_start);
        assert_eq!(
            a.answer.response()["connection_reused"],
            true,
            "a warm invocation reconnected: {a:?}"
        );
    }

    // (c) Ten workflows at once all complete, within the concurrency limit of 2.
    let ids: Vec<String> = (0..10).map(|i| format!("wf-loop-c{i}")).collect();
    let runs = ids.iter().map(|id| lp.run_workflow(id));
    futures::future::join_all(runs).await;
    let after_c = lp.idle().await;
    assert!(after_c.peak_processes <= 2, "{after_c:?}");
    for a in &after_c.attempts {
        assert!(
            matches!(a.answer.outcome, Outcome::Response(_)),
            "an invocation failed: {a:?}"
        );
        assert!(a.answer.slack() > 0.0, "answered late: {a:?}");
    }
}

/// A Lambda Managed Instance: one execution environment taking up to four invocations at
/// once (`AWS_LAMBDA_MAX_CONCURRENCY=4`), invoked by the Worker Controller as tasks wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_managed_instance_environment_serves_the_servers_invocations_four_at_a_time() {
    let lp = Loop::start("loop-lmi", |f| f.concurrency(1).per_environment(4)).await;
    let before = lp.idle().await.attempts.len();
    let ids: Vec<String> = (0..20).map(|i| format!("wf-lmi-{i}")).collect();
    futures::future::join_all(ids.iter().map(|id| lp.run_workflow(id))).await;
    let after = lp.idle().await;
    assert_eq!(after.processes_started, 1, "one environment: {after:?}");
    let attempts = &after.attempts[before..];
    for a in attempts {
        let body = a.answer.response();
        assert!(a.answer.slack() > 0.0, "answered late: {a:?}");
        assert_eq!(
            body["identity"],
            format!(
                "{}@{}",
                a.answer.request_id,
                FunctionSpec::new("loop-lmi", "").arn()
            ),
            "{body}"
        );
    }
    // The server's invocations overlapped in the one process.
    let most_at_once = attempts
        .iter()
        .map(|a| {
            attempts
                .iter()
                .filter(|b| b.answer.handed_out <= a.answer.handed_out)
                .filter(|b| b.answer.answered_at > a.answer.handed_out)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        (2..=4).contains(&most_at_once),
        "{most_at_once} invocations at once in one environment: {attempts:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_answered_with_an_error_is_retried() {
    let dir = TempDir::new("flaky-config");
    let file = dir.path().join("temporal.toml");
    let good = "[profile.default]\n"; // the address comes from TEMPORAL_ADDRESS
    std::fs::write(&file, good).unwrap();
    let file_s = file.to_str().unwrap().to_owned();
    let lp = Loop::start("flaky", |f| f.env("TEMPORAL_CONFIG_FILE", &file_s)).await;
    let seen = lp.idle().await.attempts.len();

    // The function now fails at config loading; once the test sees that error answer it
    // repairs the file, and the control plane's retry completes the workflow.
    std::fs::write(&file, "[profile.default\naddress = ").unwrap();
    let repair = async {
        let s = lp
            .plane
            .wait_for("flaky", Duration::from_secs(60), |s| {
                s.attempts[seen..]
                    .iter()
                    .any(|a| matches!(a.answer.outcome, Outcome::Error { .. }))
            })
            .await
            .unwrap_or_else(|s| panic!("no error answer: {s:?}"));
        std::fs::write(&file, good).unwrap();
        s
    };
    let ((), failed) = tokio::join!(lp.run_workflow("wf-flaky"), repair);
    let failed = failed.attempts[seen..]
        .iter()
        .find(|a| matches!(a.answer.outcome, Outcome::Error { .. }))
        .unwrap()
        .clone();
    let (error_type, message) = failed.answer.error();
    assert_eq!(error_type, "TemporalLambdaWorker.ConfigError", "{message}");
    assert!(message.contains(&file_s), "{message}");

    let after = lp.idle().await;
    let retried = after.attempts.iter().find(|a| {
        a.invoke == failed.invoke
            && a.attempt > failed.attempt
            && matches!(a.answer.outcome, Outcome::Response(_))
    });
    assert!(
        retried.is_some(),
        "the failed invoke was not retried: {after:?}"
    );
    assert_eq!(after.processes_started, 1, "{after:?}");
}

/// What `lambda-local` runs before any workflow: the loop for `name`, with `env` for the
/// bootstrap; the error it stops with, if any.
async fn start_error(name: &'static str, env: &[(&str, &str)]) -> Option<String> {
    let root = TempDir::new(name);
    let mut spec = FunctionSpec::new(name, hello_binary())
        .env("TEMPORAL_TASK_QUEUE", &format!("tq-{name}"))
        .env("HELLO_DEPLOYMENT_NAME", &format!("dep-{name}"))
        .timeout(TIMEOUT)
        .task_root(root.path());
    for (k, v) in env {
        spec = spec.env(k, v);
    }
    ServerlessLoop::start(
        spec,
        &format!("dep-{name}"),
        "build-1",
        EXTERNAL_ID,
        &format!("tq-{name}"),
    )
    .await
    .err()
    .map(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_version_creation_invocation_stops_the_loop_with_its_error() {
    let e = start_error(
        "loop-fails",
        &[("TEMPORAL_CONFIG_FILE", "/nonexistent.toml")],
    )
    .await
    .expect("the loop started although every invocation fails");
    assert!(e.contains("version-creation invocation"), "{e}");
    assert!(e.contains("TemporalLambdaWorker.ConfigError"), "{e}");
    assert!(e.contains("/nonexistent.toml"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_polling_as_another_version_stops_the_loop_naming_it() {
    let e = start_error("loop-other", &[("HELLO_BUILD_ID", "build-2")])
        .await
        .expect("the loop started although the bootstrap polls as build-2");
    assert!(
        e.contains("no worker of dep-loop-other/build-1 polled task queue tq-loop-other"),
        "{e}"
    );
}

/// The upgrade scenario (`lambda-local --upgrade`): each build a published Lambda version,
/// registered by its qualified ARN; new, PINNED, AUTO_UPGRADE, ramped and rolled-back
/// workflows each run on the build they must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_build_ships_as_its_own_lambda_version() {
    let dir = TempDir::new("upgrade-published");
    let scenario = upgrade::scenario_in(dir.path(), &hello_binary(), TIMEOUT);
    let mut said = Vec::new();
    let ran = upgrade::run_published(&scenario, &mut |line| said.push(line)).await;
    let log = std::fs::read_to_string(&scenario.log).unwrap_or_default();
    ran.unwrap_or_else(|e| {
        panic!(
            "{e}\nscenario:\n{}\nbootstrap log tail:\n{}",
            said.join("\n"),
            tail(&log)
        )
    });
    let checked = said
        .iter()
        .filter(|l| l.trim_start().starts_with("ok "))
        .count();
    assert_eq!(checked, 6, "{said:#?}");
}

/// The same upgrade with the unqualified ARN: the PINNED workflow of build-1 is stranded,
/// and the bootstrap's log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unqualified_arn_strands_pinned_workflows_and_the_log_says_why() {
    let dir = TempDir::new("upgrade-unqualified");
    let scenario = upgrade::scenario_in(dir.path(), &hello_binary(), TIMEOUT);
    let mut said = Vec::new();
    let stranded = upgrade::run_unqualified(&scenario, &mut |line| said.push(line))
        .await
        .unwrap_or_else(|e| panic!("{e}\nscenario:\n{}", said.join("\n")));
    assert!(stranded.status.contains("RUNNING"), "{stranded:?}");
    assert!(
        stranded.invocations >= 1,
        "the server did not invoke the function: {stranded:?}"
    );
    for part in [
        "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
        "upgrade-app/build-1",
        "publish-version",
        "TEMPORAL_ALLOW_UNPUBLISHED_CODE=1",
    ] {
        assert!(
            stranded.warning.contains(part),
            "{part}: {}",
            stranded.warning
        );
    }
    // Once per process: each process that served invocations warned once, not per invocation.
    let log = std::fs::read_to_string(&scenario.log).unwrap();
    let warnings = log.matches("runs unpublished code").count();
    let summaries = log.matches("invocation summary").count();
    assert!(
        warnings >= 1 && warnings < summaries,
        "{warnings} warnings for {summaries} invocations"
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<_> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
