//! Worker Deployment Versioning: always on, with the function's deployment version.
//!
//! Goes after the configure callback. It rejects an empty deployment name or build id
//! and an `Unspecified` versioning behaviour (with versioning on and no behaviour, the
//! Rust SDK's workflow tasks never complete).

use temporalio_common::worker::{
    VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion,
};

use crate::{Invocation, InvocationStep, LambdaWorkerError, StepLayer};

/// Puts the worker on a Worker Deployment Version with versioning turned on.
#[derive(Clone, Debug)]
pub struct WorkerVersioning {
    version: WorkerDeploymentVersion,
}

impl WorkerVersioning {
    /// The version the worker polls as.
    pub fn version(&self) -> &WorkerDeploymentVersion {
        &self.version
    }
}

impl InvocationStep for WorkerVersioning {
    fn stage(&self) -> Option<(crate::invocation::StagePublic, &'static str)> {
        Some((
            crate::invocation::StagePublic(crate::invocation::Stage::Enforce),
            "WorkerVersioningLayer",
        ))
    }

    fn apply(&self, inv: &mut Invocation) -> Result<(), LambdaWorkerError> {
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
        Ok(())
    }
}

/// Layer that turns on Worker Deployment Versioning. Place it after the configure layer.
pub type WorkerVersioningLayer = StepLayer<WorkerVersioning>;

impl StepLayer<WorkerVersioning> {
    /// The layer for this deployment version.
    pub fn new(version: WorkerDeploymentVersion) -> Self {
        StepLayer::from_step(WorkerVersioning { version })
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
}
