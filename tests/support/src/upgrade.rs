//! Shipping a second build through the serverless loop, as `docs/deploy.md` does it on AWS:
//! each build a published Lambda version, registered as its own Worker Deployment Version by
//! its qualified ARN ([`run_published`]); and the same with the unqualified ARN, where a
//! PINNED workflow of the first build is stranded ([`run_unqualified`]).
//!
//! The bootstrap must register `WhichBuildWorkflow` (the `hello` example does): its result,
//! `BUILD on Lambda version N`, says which build and which Lambda version ran its last
//! activity. The build is the bootstrap's `HELLO_BUILD_ID`, changed between the two builds
//! with an update of the function's configuration, as a deploy would change its code.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{Error, FunctionSpec, Result, ServerlessLoop, control_plane::function_arn};

/// The function the scenario deploys.
pub const FUNCTION: &str = "upgrade";
/// The Worker Deployment.
pub const DEPLOYMENT: &str = "upgrade-app";
/// The task queue.
pub const TASK_QUEUE: &str = "upgrade-task-queue";
/// The workflow type; its input says whether it waits for the `proceed` signal.
pub const WORKFLOW: &str = "WhichBuildWorkflow";
const EXTERNAL_ID: &str = "upgrade-external-id";
/// How many workflows are started during the 50 % ramp: all on one build by chance has a
/// probability of 2 in 2^12.
const RAMPED: usize = 12;
/// How long the unqualified scenario waits for the stranded workflow.
pub const STRANDED_FOR: Duration = Duration::from_secs(30);

/// Where and how the scenario runs.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The bootstrap (registers `WhichBuildWorkflow`, reads `HELLO_BUILD_ID`).
    pub bootstrap: PathBuf,
    /// The function's task root.
    pub task_root: PathBuf,
    /// Where the bootstrap processes' output goes.
    pub log: PathBuf,
    /// The function's timeout.
    pub timeout: Duration,
}

impl Scenario {
    fn spec(&self) -> FunctionSpec {
        FunctionSpec::new(FUNCTION, &self.bootstrap)
            .env("TEMPORAL_TASK_QUEUE", TASK_QUEUE)
            .env("HELLO_DEPLOYMENT_NAME", DEPLOYMENT)
            .env("HELLO_BUILD_ID", "build-1")
            .env("RUST_LOG", "info")
            .timeout(self.timeout)
            .concurrency(2)
            .task_root(&self.task_root)
            .log_to(&self.log)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What a workflow's result is when build `build` on Lambda version `version` ran it.
pub fn ran_on(build: &str, version: &str) -> String {
    format!("{build} on Lambda version {version}")
}

struct Run<'a> {
    lp: ServerlessLoop,
    say: &'a mut dyn FnMut(String),
    timeout: Duration,
}

impl Run<'_> {
    /// Ramps 50 % of new workflows to build-2 and checks that [`RAMPED`] new workflows went
    /// to both builds (`one`, `two`: what each build's workflows answer).
    async fn check_ramp(&mut self, one: &str, two: &str) -> Result<()> {
        self.lp
            .server
            .set_ramping_version(DEPLOYMENT, "build-2", 50.0)
            .await?;
        (self.say)(format!(
            "ramping 50 % of new workflows to build-2; starting {RAMPED}"
        ));
        let ids: Vec<String> = (0..RAMPED).map(|i| format!("ramp-{i}")).collect();
        for id in &ids {
            self.start(id, false).await?;
        }
        let mut seen = BTreeSet::new();
        for id in &ids {
            let got = self.result(id).await?;
            if got != one && got != two {
                return Err(Error::workflow(
                    id,
                    format!("ran as {got:?}, expected build-1 or build-2"),
                ));
            }
            seen.insert(got);
        }
        if seen.len() != 2 {
            return Err(Error::Check(format!(
                "the 50 % ramp sent all {RAMPED} new workflows to one build: {seen:?}"
            )));
        }
        (self.say)(format!(
            "  ok  the ramp sent new workflows to both builds: {seen:?}"
        ));
        Ok(())
    }

    async fn start(&mut self, id: &str, wait_for_signal: bool) -> Result<()> {
        let input = wait_for_signal.to_string();
        self.lp
            .server
            .start_workflow(WORKFLOW, TASK_QUEUE, id, Some(&input))
            .await
    }

    /// Waits for a workflow's result, within a bound that covers a few invocations.
    async fn result(&self, id: &str) -> Result<String> {
        let bound = self.timeout * 4;
        let v = tokio::time::timeout(bound, self.lp.server.workflow_result(id))
            .await
            .map_err(|_| Error::timeout(format!("the result of workflow {id}"), bound))??;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::workflow(id, format!("unexpected result {v}")))
    }

    /// Checks that workflow `id` completed with `want`.
    async fn expect(&mut self, id: &str, want: &str, why: &str) -> Result<()> {
        let got = self.result(id).await?;
        if got != want {
            return Err(Error::workflow(
                id,
                format!("({why}) ran as {got:?}, expected {want:?}"),
            ));
        }
        (self.say)(format!("  ok  {id}: {got} ({why})"));
        Ok(())
    }

    /// A waiting workflow of the current build: started, its first task done, waiting for
    /// the signal.
    async fn start_waiting(&mut self, id: &str) -> Result<()> {
        self.start(id, true).await?;
        self.lp.server.wait_first_task(id, self.timeout * 3).await
    }

    /// `update-function-configuration` with the new build id, then (when `publish`) a
    /// published version; the ARN to register.
    async fn deploy(&mut self, build: &str, publish: bool) -> Result<String> {
        let plane = &self.lp.plane;
        plane
            .update_function(FUNCTION, |spec| spec.set_env("HELLO_BUILD_ID", build))
            .await?;
        if !publish {
            return Ok(function_arn(FUNCTION));
        }
        let version = plane.publish_version(FUNCTION).await?;
        Ok(format!("{}:{version}", function_arn(FUNCTION)))
    }

    async fn register(&mut self, build: &str, arn: &str) -> Result<()> {
        self.lp.register(DEPLOYMENT, build, arn, TASK_QUEUE).await?;
        (self.say)(format!("{DEPLOYMENT}/{build} registered, backed by {arn}"));
        Ok(())
    }

    async fn make_current(&mut self, build: &str) -> Result<()> {
        self.lp.make_current(DEPLOYMENT, build).await?;
        (self.say)(format!("{DEPLOYMENT}/{build} is the current version"));
        Ok(())
    }
}

async fn launch<'a>(scenario: &Scenario, say: &'a mut dyn FnMut(String)) -> Result<Run<'a>> {
    say(format!(
        "starting the control plane (function {FUNCTION}, timeout {}s) and the dev server…",
        scenario.timeout.as_secs()
    ));
    let lp = ServerlessLoop::launch(scenario.spec(), EXTERNAL_ID).await?;
    Ok(Run {
        lp,
        say,
        timeout: scenario.timeout,
    })
}

/// The upgrade done right: build-1 and build-2 each a published Lambda version registered
/// by its qualified ARN. Checks that new workflows run on build-2 once it is current, that
/// PINNED workflows of build-1 signalled after the upgrade complete on build-1's Lambda
/// version, that an AUTO_UPGRADE one completes on build-2, that a 50 % ramp sends new
/// workflows to both builds, and that a rollback sends new ones to build-1 again. Each
/// check is reported through `say`; the first that fails is the error.
pub async fn run_published(scenario: &Scenario, say: &mut dyn FnMut(String)) -> Result<()> {
    let mut run = launch(scenario, say).await?;
    let one = ran_on("build-1", "1");
    let two = ran_on("build-2", "2");

    let arn1 = run.deploy("build-1", true).await?;
    run.register("build-1", &arn1).await?;
    run.make_current("build-1").await?;
    for id in ["pinned-1", "pinned-2", "auto-1"] {
        run.start_waiting(id).await?;
    }
    run.lp.server.set_auto_upgrade("auto-1").await?;
    (run.say)("pinned-1, pinned-2 (PINNED) and auto-1 (AUTO_UPGRADE) wait on build-1".into());

    let arn2 = run.deploy("build-2", true).await?;
    run.register("build-2", &arn2).await?;
    run.check_ramp(&one, &two).await?;

    run.make_current("build-2").await?;
    run.start("new-1", false).await?;
    run.expect("new-1", &two, "new, build-2 current").await?;
    for id in ["pinned-1", "pinned-2", "auto-1"] {
        run.lp.server.signal(id, "proceed").await?;
    }
    run.expect(
        "pinned-1",
        &one,
        "PINNED to build-1, signalled after the upgrade",
    )
    .await?;
    run.expect(
        "pinned-2",
        &one,
        "PINNED to build-1, signalled after the upgrade",
    )
    .await?;
    run.expect("auto-1", &two, "AUTO_UPGRADE, moved to build-2")
        .await?;

    run.make_current("build-1").await?;
    run.start("rollback-1", false).await?;
    run.expect("rollback-1", &one, "new, after the rollback to build-1")
        .await?;
    let log = scenario.log_text();
    if log.contains("runs unpublished code") {
        return Err(Error::Check(
            "a published version's bootstrap warned about unpublished code".into(),
        ));
    }
    Ok(())
}

/// What [`run_unqualified`] observed.
#[derive(Debug)]
pub struct Stranded {
    /// The stranded workflow's status after [`STRANDED_FOR`].
    pub status: String,
    /// Invocations of the function while the workflow waited.
    pub invocations: u64,
    /// Bootstrap processes started over the whole run.
    pub processes: usize,
    /// The bootstrap's warning about unpublished code, as logged.
    pub warning: String,
}

/// The upgrade as the old guide did it: both builds registered with the unqualified ARN.
/// A PINNED workflow of build-1 signalled after build-2 was deployed is invoked on `$LATEST`,
/// which now polls as build-2: it is still running after [`STRANDED_FOR`] while the server
/// keeps invoking the function. Returns what a user would see: the workflow's status, the
/// invocations, and the warning the bootstrap logs about unpublished code. An error when
/// the workflow completed (nothing was stranded) or the bootstrap did not warn.
pub async fn run_unqualified(scenario: &Scenario, say: &mut dyn FnMut(String)) -> Result<Stranded> {
    let mut run = launch(scenario, say).await?;
    let arn = function_arn(FUNCTION);
    run.register("build-1", &arn).await?;
    run.make_current("build-1").await?;
    run.start_waiting("pinned-1").await?;
    (run.say)("pinned-1 (PINNED) waits on build-1".into());
    run.deploy("build-2", false).await?;
    run.register("build-2", &arn).await?;
    run.make_current("build-2").await?;
    run.start("new-1", false).await?;
    run.expect(
        "new-1",
        &ran_on("build-2", "$LATEST"),
        "new, build-2 current",
    )
    .await?;
    let before = run.lp.plane.stats(FUNCTION).invokes;
    run.lp.server.signal("pinned-1", "proceed").await?;
    (run.say)(format!(
        "signalled pinned-1; waiting {}s for it",
        STRANDED_FOR.as_secs()
    ));
    tokio::time::sleep(STRANDED_FOR).await;
    let status = run.lp.server.workflow_status("pinned-1").await?;
    let invocations = run.lp.plane.stats(FUNCTION).invokes - before;
    if !status.contains("RUNNING") {
        return Err(Error::workflow(
            "pinned-1",
            format!("was not stranded: {status} after {STRANDED_FOR:?}"),
        ));
    }
    let log = scenario.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("runs unpublished code"))
        .ok_or_else(|| {
            Error::Check("the bootstrap never warned that it runs unpublished code".into())
        })?
        .to_owned();
    Ok(Stranded {
        status,
        invocations,
        processes: run.lp.plane.stats(FUNCTION).processes_started,
        warning,
    })
}

/// A fresh directory for one scenario run: the task root, with the log beside it.
pub fn scenario_in(dir: &Path, bootstrap: &Path, timeout: Duration) -> Scenario {
    Scenario {
        bootstrap: bootstrap.to_owned(),
        task_root: dir.to_owned(),
        log: dir.join("bootstrap.log"),
        timeout,
    }
}
