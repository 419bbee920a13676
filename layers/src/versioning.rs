//! Worker Deployment Versioning: always on, with the function's deployment version.
//!
//! Goes after the configure callback. It rejects an empty deployment name or build id
//! and an `Unspecified` versioning behaviour (with versioning on and no behaviour, the
//! Rust SDK's workflow tasks never complete).
//!
//! It also warns, once per process, when the invocation runs code that is not a published
//! Lambda version: `$LATEST` (the function invoked by its unqualified ARN) or an alias.
//! A Worker Deployment Version registered with such an ARN runs whatever code is
//! deployed there next, so after the next deploy the server's invocations for this
//! version run a build that polls as another one, and PINNED workflows wait forever.
//! [`LambdaWorkerConfig::warn_unpublished_code`](crate::LambdaWorkerConfig::warn_unpublished_code)
//! turns it off.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use temporalio_common::worker::{
    VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion,
};

use crate::{
    Invocation, InvocationStep, LambdaWorkerError, Step, StepLayer, invocation::Lifecycle,
};

/// Puts the worker on a Worker Deployment Version with versioning turned on.
#[derive(Clone, Debug)]
pub struct WorkerVersioningStep {
    version: WorkerDeploymentVersion,
    /// Shared by every clone of the stack: the unpublished-code warning was logged.
    warned: Arc<AtomicBool>,
}

/// The warning for an invocation that runs code other than a published Lambda version
/// (`function_version` `$LATEST`, or invoked through an alias), polling as `version`;
/// `None` for a published version invoked by its number.
pub(crate) fn unpublished_code_warning(
    function_version: &str,
    invoked_function_arn: &str,
    version: &WorkerDeploymentVersion,
) -> Option<String> {
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
    let qualifier = invoked_function_arn.split(':').nth(7);
    let what = match qualifier {
        _ if function_version == "$LATEST" => format!(
            "this invocation runs unpublished code (AWS_LAMBDA_FUNCTION_VERSION=$LATEST, \
             invoked as {invoked_function_arn})"
        ),
        Some(q) if !q.is_empty() && !q.bytes().all(|b| b.is_ascii_digit()) => format!(
            "this invocation came through the alias {q:?} (Lambda version \
             {function_version}), which can be moved to other code"
        ),
        _ => return None,
    };
    Some(format!(
        "{what}: a Worker Deployment Version registered with this ARN runs whatever code is \
         deployed there next, so after the next deploy the server's invocations for \
         {deployment}/{build} run a build that polls as another version, and its PINNED \
         workflows wait forever. Publish each build as a Lambda version (aws lambda \
         publish-version) and register it with its qualified ARN (…:function:NAME:N) in \
         `temporal worker deployment create-version` (docs/deploy.md, \"Shipping a new \
         build\"); set TEMPORAL_ALLOW_UNPUBLISHED_CODE=1 to silence this in development",
        deployment = version.deployment_name,
        build = version.build_id,
    ))
}

/// An invocation whose payload names the version it was made for (AgentCore's
/// `InvokeAgentRuntime` body from the Worker Controller: `{"deploymentName": …,
/// "buildId": …}`) must be for `version`: a worker of another version would poll for
/// nothing while the task that brought the invocation waits. Lambda's payload names none.
fn invoked_for(
    payload: &serde_json::Value,
    version: &WorkerDeploymentVersion,
) -> Result<(), LambdaWorkerError> {
    let named = |key: &str| payload.get(key).and_then(serde_json::Value::as_str);
    let (Some(deployment), Some(build)) = (named("deploymentName"), named("buildId")) else {
        return Ok(());
    };
    if deployment == version.deployment_name && build == version.build_id {
        return Ok(());
    }
    Err(LambdaWorkerError::InvalidVersion(format!(
        "this invocation is for version {deployment}/{build} (its deploymentName and \
         buildId), but this build polls as {}/{}. Deploy the build of {deployment}/{build} \
         behind this endpoint, or register this build's own version with `temporal worker \
         deployment create-version`",
        version.deployment_name, version.build_id
    )))
}

impl InvocationStep for WorkerVersioningStep {
    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
        inv.enter(Lifecycle::WorkerVersioning)?;
        let v = &self.version;
        let missing = match (
            v.deployment_name.trim().is_empty(),
            v.build_id.trim().is_empty(),
        ) {
            (true, true) => Some("the deployment name and the build id are empty"),
            (true, false) => Some("the deployment name is empty"),
            (false, true) => Some("the build id is empty"),
            (false, false) => None,
        };
        if let Some(what) = missing {
            return Err(LambdaWorkerError::InvalidVersion(format!(
                "{what}. Pass both to run_worker (WorkerDeploymentVersion::builder()\
                 .deployment_name(\"my-app\").build_id(\"build-1\")), matching the version \
                 registered with `temporal worker deployment create-version`"
            )));
        }
        invoked_for(&inv.payload, v)?;
        let behavior = inv.config.versioning_behavior;
        if !matches!(
            behavior,
            VersioningBehavior::Pinned | VersioningBehavior::AutoUpgrade
        ) {
            return Err(LambdaWorkerError::InvalidVersion(format!(
                "versioning behaviour {behavior:?} is not allowed: a Serverless Worker needs \
                 `config.versioning_behavior` = VersioningBehavior::Pinned (the default) or \
                 VersioningBehavior::AutoUpgrade"
            )));
        }
        inv.config.worker.deployment_options = WorkerDeploymentOptions::new(v.clone())
            .use_worker_versioning(true)
            .default_versioning_behavior(behavior)
            .build();
        if inv.config.warn_unpublished_code
            && !self.warned.load(Ordering::Relaxed)
            && let Some(warning) = unpublished_code_warning(
                &inv.context.env_config.version,
                &inv.context.invoked_function_arn,
                v,
            )
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("{warning}");
        }
        Ok(())
    }
}

/// Layer that turns on Worker Deployment Versioning. Place it after the configure layer.
pub type WorkerVersioningLayer = StepLayer<WorkerVersioningStep>;

/// The service [`WorkerVersioningLayer`] makes: [`WorkerVersioningStep`] applied, then the inner service.
pub type WorkerVersioning<S> = Step<S, WorkerVersioningStep>;

impl StepLayer<WorkerVersioningStep> {
    /// The layer for this deployment version.
    pub fn new(version: WorkerDeploymentVersion) -> Self {
        StepLayer::from_step(WorkerVersioningStep {
            version,
            warned: Arc::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_through, version};

    #[tokio::test]
    async fn versioning_is_on_with_the_version_and_pinned_by_default() {
        let inv = run_through(
            WorkerVersioningLayer::new(version("my-app", "build-1")),
            Invocation::new(Default::default(), Default::default()),
        )
        .await
        .unwrap();
        let d = &inv.config.worker.deployment_options;
        assert!(d.use_worker_versioning);
        assert_eq!(d.version, version("my-app", "build-1"));
        assert_eq!(
            d.default_versioning_behavior,
            Some(VersioningBehavior::Pinned)
        );
    }

    #[test]
    fn unpublished_code_is_named_and_published_versions_are_not() {
        let v = version("shop", "build-7");
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:orders";
        let latest = unpublished_code_warning("$LATEST", arn, &v).unwrap();
        assert!(
            latest.contains("AWS_LAMBDA_FUNCTION_VERSION=$LATEST"),
            "{latest}"
        );
        assert!(latest.contains(&format!("invoked as {arn}")), "{latest}");
        assert!(latest.contains("shop/build-7"), "{latest}");
        assert!(latest.contains("publish-version"), "{latest}");
        assert!(
            latest.contains("TEMPORAL_ALLOW_UNPUBLISHED_CODE=1"),
            "{latest}"
        );
        let latest_qualified = format!("{arn}:$LATEST");
        assert!(unpublished_code_warning("$LATEST", &latest_qualified, &v).is_some());
        let alias = unpublished_code_warning("3", &format!("{arn}:live"), &v).unwrap();
        assert!(
            alias.contains("alias \"live\" (Lambda version 3)"),
            "{alias}"
        );
        assert_eq!(unpublished_code_warning("3", &format!("{arn}:3"), &v), None);
    }

    #[test]
    fn the_deploy_guide_quotes_the_unpublished_code_warning() {
        // Read when the test runs: the published package (type-checked by
        // scripts/package-check.sh) has no docs/.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md");
        let guide = std::fs::read_to_string(path).expect("the workspace's deploy guide");
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:hello-temporal-worker";
        let warning =
            unpublished_code_warning("$LATEST", arn, &version("hello-app", "build-1")).unwrap();
        assert!(
            guide.contains(&format!("> WARN {warning}\n")),
            "docs/deploy.md does not quote:\n{warning}"
        );
    }

    #[tokio::test]
    async fn auto_upgrade_is_kept() {
        let mut inv = Invocation::new(Default::default(), Default::default());
        inv.config.versioning_behavior = VersioningBehavior::AutoUpgrade;
        let inv = run_through(WorkerVersioningLayer::new(version("a", "b")), inv)
            .await
            .unwrap();
        assert_eq!(
            inv.config
                .worker
                .deployment_options
                .default_versioning_behavior,
            Some(VersioningBehavior::AutoUpgrade)
        );
    }

    #[tokio::test]
    async fn unspecified_behaviour_is_rejected() {
        let mut inv = Invocation::new(Default::default(), Default::default());
        inv.config.versioning_behavior = VersioningBehavior::Unspecified;
        let err = run_through(WorkerVersioningLayer::new(version("a", "b")), inv)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Unspecified"), "{err}");
        assert!(err.to_string().contains("Pinned"), "{err}");
    }

    #[tokio::test]
    async fn empty_names_are_rejected_saying_which() {
        for (name, build, expect) in [
            ("", "b", "deployment name is empty"),
            ("a", " ", "build id is empty"),
            ("", "", "deployment name and the build id are empty"),
        ] {
            let err = run_through(
                WorkerVersioningLayer::new(version(name, build)),
                Invocation::new(Default::default(), Default::default()),
            )
            .await
            .unwrap_err();
            let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
            assert_eq!(e.error_type(), "TemporalLambdaWorker.InvalidVersion");
            assert!(err.to_string().contains(expect), "{err}");
        }
    }

    #[tokio::test]
    async fn an_invocation_for_another_version_is_refused_naming_both() {
        let layer = || WorkerVersioningLayer::new(version("app", "b1"));
        let invoked = |body: serde_json::Value| {
            let mut inv = Invocation::new(Default::default(), Default::default());
            inv.payload = body;
            inv
        };
        let mine = serde_json::json!({ "deploymentName": "app", "buildId": "b1" });
        run_through(layer(), invoked(mine)).await.unwrap();
        // Lambda's payload names no version.
        run_through(layer(), invoked(serde_json::json!({})))
            .await
            .unwrap();
        let other = serde_json::json!({ "deploymentName": "app", "buildId": "b2" });
        let err = run_through(layer(), invoked(other)).await.unwrap_err();
        let e = err.downcast_ref::<LambdaWorkerError>().unwrap();
        assert_eq!(e.error_type(), "TemporalLambdaWorker.InvalidVersion");
        let text = e.to_string();
        assert!(
            text.contains("this invocation is for version app/b2"),
            "{text}"
        );
        assert!(text.contains("this build polls as app/b1"), "{text}");
    }
}
