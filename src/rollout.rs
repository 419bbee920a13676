//! The rollout hold: a Serverless Worker stays polling while the routing comes to its
//! version, so the first tasks after a version is made current or ramping find a poller.
//!
//! Why: a task added while a task queue partition has not yet learned its new routing
//! (Temporal propagates a deployment's routing to partitions asynchronously) does not
//! count as a task of the new version, so the server does not signal the Worker
//! Controller for it; when the routing arrives it is waiting for the new version, and only
//! a worker already polling takes it. Nothing invokes the function for it until the next
//! task add (issue 33, stall 1: 10 s seen here). The version-creation invocation is the
//! worker polling at that moment, if it has not left on the idle exit.
//!
//! The rule, read beside the polls from `DescribeWorkerDeploymentVersion` (and, for a
//! version being routed to, `DescribeWorkerDeployment`): a version the Worker Controller
//! invokes (it has a compute config) holds the idle exit
//! - while it is not yet current or ramping and was created within [`ROLLOUT_WINDOW`]
//!   (it is being rolled out: `set-current-version` / `set-ramping-version` comes next);
//! - while it is current or ramping and the deployment's routing is still propagating
//!   (`routing_config_update_state` IN_PROGRESS: the server marks a version current before
//!   every partition knows it), and for [`ROUTING_SETTLE`] after its routing changed (a
//!   partition that learns it re-reads its backlog asynchronously).
//!
//! The hold never lasts past the invocation's shutdown moment; a version nobody makes
//! current polls until then, as Temporal's other SDKs' Lambda workers always do. A version
//! without a compute config (a worker run by other means, a test's) is never held.

use std::future::Future;
use std::time::{Duration, SystemTime};

pub(crate) use temporalio_common::protos::temporal::api::enums::v1::WorkerDeploymentVersionStatus as Status;

use crate::session::tasks::TaskActivity;

/// A version created this recently and not yet current or ramping is being rolled out.
/// Lambda's longest invocation is 15 minutes: a version older than that was made by a
/// deploy that is not waiting on this invocation.
pub(crate) const ROLLOUT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How long after its routing changed a current or ramping version keeps its worker
/// polling at least, once the routing has propagated (the stalls seen were for tasks
/// added 0.07–0.3 s after the change).
pub(crate) const ROUTING_SETTLE: Duration = Duration::from_secs(2);

/// How many times a version the server does not know is looked at again (a second
/// apart) before the watch gives up on it.
const UNKNOWN_LOOKS: u32 = 5;
/// A look that failed for a while (the server throttled the deployment's queries, or did
/// not answer in time) is tried again each [`RECHECK`], this many times in a row.
const TRANSIENT_LOOKS: u32 = 5;

/// Why a look at the version failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookFailed {
    /// In words, for the log.
    pub(crate) why: String,
    /// For a while only (throttled, unavailable, too slow): worth another look.
    pub(crate) transient: bool,
}

/// A process that found its version known and not held looks again only this long after
/// (the rollout hold's looks are queries on the server's deployment workflows: one per
/// warm invocation would load them for nothing).
pub(crate) const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// How often a held worker looks at its version again.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// What the version's state means for the idle exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Not a rollout: the idle exit applies.
    None,
    /// Being rolled out: keep polling; look again after [`RECHECK`].
    Rollout,
    /// The routing came to this version recently: keep polling for this long more.
    Settling(Duration),
}

/// What the server says of a worker's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VersionView {
    pub(crate) status: Status,
    /// Whether the Worker Controller invokes it (it has a compute config).
    pub(crate) invoked: bool,
    pub(crate) created: Option<SystemTime>,
    /// The latest change of its routing (made current or ramping).
    pub(crate) routing_changed: Option<SystemTime>,
    /// Whether the deployment's routing is still propagating to the task queues.
    pub(crate) propagating: bool,
}

impl Hold {
    /// What to make of `version` at `now` (the server's clock and this one are taken as
    /// the same: Lambda's are NTP-synchronised).
    pub(crate) fn of(version: &VersionView, now: SystemTime) -> Self {
        if !version.invoked {
            return Self::None;
        }
        let ago = |t: Option<SystemTime>| t.map(|t| now.duration_since(t).unwrap_or_default());
        match version.status {
            Status::Current | Status::Ramping => {
                if version.propagating {
                    return Self::Settling(RECHECK);
                }
                match ago(version.routing_changed) {
                    Some(ago) if ago < ROUTING_SETTLE => Self::Settling(ROUTING_SETTLE - ago),
                    _ => Self::None,
                }
            }
            Status::Inactive | Status::Created => match ago(version.created) {
                Some(ago) if ago < ROLLOUT_WINDOW => Self::Rollout,
                _ => Self::None,
            },
            _ => Self::None,
        }
    }
}

/// Holds `tasks`' idle exit until the first look answers, then while [`Hold::of`] the
/// version `describe` reads says so (at `now`, the wall clock), looking again every
/// [`RECHECK`] (or when the settling ends); returns once the version is not held, with the exit let go, and whether the server
/// knew the version then (a version it knows and does not hold needs no look for a while:
/// [`LOOK_AGAIN_AFTER`]). A failed look (say an API key without the permission) lets the
/// exit go: the hold is an optimisation, never a reason to stay; one that failed for a
/// while (the deployment's queries throttled under load) holds and is tried again, a few
/// times.
pub(crate) async fn watch<F, Fut>(
    tasks: &TaskActivity,
    mut describe: F,
    now: impl Fn() -> SystemTime,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<VersionView>, LookFailed>>,
{
    // Held for a rollout (logged), or only while the server does not know the version.
    let mut held = false;
    let mut looks = Looks::default();
    // Held from here until this returns, which is the one place that lets it go: the
    // first look can take longer than the idle window under load, and a version being
    // created must not lose its worker meanwhile.
    tasks.hold_idle_exit();
    loop {
        let look = describe().await;
        let known = matches!(look, Ok(Some(_)));
        let hold = looks.hold(look, now());
        let wait = match hold {
            None => RECHECK,
            Some(Hold::None) => {
                if held {
                    tracing::info!("the routing has reached this version: the idle exit applies");
                }
                tasks.release_idle_exit(held);
                return known;
            }
            Some(Hold::Rollout) => RECHECK,
            Some(Hold::Settling(left)) => left.min(RECHECK),
        };
        if let Some(hold) = hold.filter(|_| !held) {
            tracing::info!(
                "this version is being rolled out ({}): polling on until the routing has \
                 reached it, so its first tasks find a worker",
                match hold {
                    Hold::Rollout => "created, not yet current or ramping",
                    _ => "just made current or ramping",
                }
            );
            held = true;
        }
        tokio::time::sleep(wait).await;
    }
}

/// The looks so far that found no version, or failed for a while.
#[derive(Default)]
struct Looks {
    unknown: u32,
    failed: u32,
}

impl Looks {
    /// What `look` (at `now`) says: the version's [`Hold`], or `None` to look again after
    /// [`RECHECK`] (the version is not created yet, or a look failed for a while: a few
    /// times each).
    fn hold(
        &mut self,
        look: Result<Option<VersionView>, LookFailed>,
        now: SystemTime,
    ) -> Option<Hold> {
        match look {
            Ok(Some(version)) => {
                let hold = Hold::of(&version, now);
                tracing::debug!(?version, ?hold, "looked at this worker's version");
                Some(hold)
            }
            // Not created yet: `create-version` invokes the function before it commits
            // the version, and a worker's first poll creates one it does not know.
            Ok(None) if self.unknown < UNKNOWN_LOOKS => {
                self.unknown += 1;
                None
            }
            Ok(None) => Some(Hold::None),
            Err(failed) if failed.transient && self.failed < TRANSIENT_LOOKS => {
                self.failed += 1;
                tracing::debug!(
                    why = failed.why,
                    "this worker's version could not be read yet"
                );
                None
            }
            Err(failed) => {
                tracing::debug!(
                    why = failed.why,
                    "cannot read this worker's version: no rollout hold"
                );
                Some(Hold::None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn at(ago: Duration) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + NOW - ago)
    }

    fn version(status: Status, created: Duration) -> VersionView {
        VersionView {
            status,
            invoked: true,
            created: at(created),
            routing_changed: None,
            propagating: false,
        }
    }

    fn hold(v: &VersionView) -> Hold {
        Hold::of(v, SystemTime::UNIX_EPOCH + NOW)
    }

    #[test]
    fn a_version_just_created_for_the_worker_controller_is_held_until_it_is_routed_to() {
        for status in [Status::Inactive, Status::Created] {
            assert_eq!(hold(&version(status, S(20))), Hold::Rollout, "{status:?}");
            // A version created long ago is not waiting on a deploy.
            assert_eq!(hold(&version(status, S(16 * 60))), Hold::None, "{status:?}");
        }
    }

    #[test]
    fn a_version_routed_to_just_now_is_held_while_the_partitions_learn_it() {
        for status in [Status::Current, Status::Ramping] {
            let mut v = version(status, S(600));
            v.routing_changed = at(Duration::from_millis(500));
            let left = ROUTING_SETTLE - Duration::from_millis(500);
            assert_eq!(hold(&v), Hold::Settling(left), "{status:?}");
            v.routing_changed = at(S(4));
            assert_eq!(hold(&v), Hold::None, "{status:?}");
            // Still propagating: held, whenever it changed.
            v.propagating = true;
            assert_eq!(hold(&v), Hold::Settling(RECHECK), "{status:?}");
        }
        // A version no longer routed to is not held.
        for status in [Status::Draining, Status::Drained, Status::Unspecified] {
            let mut v = version(status, S(5));
            v.routing_changed = at(S(1));
            assert_eq!(hold(&v), Hold::None, "{status:?}");
        }
    }

    #[test]
    fn a_version_the_worker_controller_does_not_invoke_is_never_held() {
        let mut v = version(Status::Inactive, S(1));
        v.invoked = false;
        assert_eq!(hold(&v), Hold::None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_holds_the_idle_exit_until_the_version_is_routed_to_and_settled() {
        use crate::session::tasks::IdleExit;
        let tasks = TaskActivity::default();
        tasks.polling_started();
        let start = tokio::time::Instant::now();
        let wall = || SystemTime::UNIX_EPOCH + NOW + start.elapsed();
        // Made current 2.5 s after polling began; propagated by 3.5 s.
        let describe = || {
            let elapsed = start.elapsed();
            async move {
                let mut v = version(Status::Inactive, S(30));
                if elapsed >= Duration::from_millis(2500) {
                    v.status = Status::Current;
                    v.routing_changed =
                        Some(SystemTime::UNIX_EPOCH + NOW + Duration::from_millis(2500));
                    v.propagating = elapsed < Duration::from_millis(3500);
                }
                Ok(Some(v))
            }
        };
        let exit = IdleExit {
            window: S(2),
            settled: None,
        };
        let watching = watch(&tasks, describe, wall);
        let idle = tasks.idle_exit(exit);
        tokio::pin!(idle);
        tokio::select! {
            known = watching => assert!(known),
            _ = &mut idle => panic!("the idle exit left during the rollout"),
        }
        (&mut idle).await;
        // Looked at each second: inactive at 0, 1, 2 s; propagating at 3 s; at 4 s
        // propagated, 1.5 s after the change: settling until 4.5 s; then the whole window.
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(2500) + ROUTING_SETTLE + S(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_not_yet_created_is_looked_at_again_and_then_held() {
        let tasks = TaskActivity::default();
        tasks.polling_started();
        let start = tokio::time::Instant::now();
        // Committed by `create-version` 1.5 s after its invocation began polling; never
        // made current here.
        let describe = || {
            let known = start.elapsed() >= Duration::from_millis(1500);
            async move { Ok(known.then(|| version(Status::Inactive, S(1)))) }
        };
        let wall = || SystemTime::UNIX_EPOCH + NOW;
        let exit = crate::session::tasks::IdleExit {
            window: S(2),
            settled: None,
        };
        tokio::select! {
            _ = watch(&tasks, describe, wall) => panic!("the watch let a rollout go"),
            _ = tasks.idle_exit(exit) => panic!("the idle exit left during the rollout"),
            () = tokio::time::sleep(S(60)) => {}
        }
        // One the server never knows is let go after UNKNOWN_LOOKS looks, and the idle
        // exit's clock is not restarted: it leaves at once, its window long over.
        let tasks = TaskActivity::default();
        tasks.polling_started();
        let start = tokio::time::Instant::now();
        assert!(!watch(&tasks, || async { Ok(None) }, SystemTime::now).await);
        assert_eq!(start.elapsed(), RECHECK * UNKNOWN_LOOKS);
        tasks.idle_exit(exit).await;
        assert_eq!(start.elapsed(), RECHECK * UNKNOWN_LOOKS);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_exit_waits_for_the_first_look_however_slow() {
        // Under load the first look at a version being created took longer than the idle
        // window: the version-creation invocation left (2 s of no task) before the look
        // came back to hold it (seen in the integration tests with the CPU saturated).
        let tasks = TaskActivity::default();
        tasks.polling_started();
        let start = tokio::time::Instant::now();
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok(Some(version(Status::Inactive, S(1))))
        };
        let wall = || SystemTime::UNIX_EPOCH + NOW;
        let exit = crate::session::tasks::IdleExit {
            window: S(2),
            settled: None,
        };
        tokio::select! {
            _ = watch(&tasks, slow, wall) => panic!("the watch let a rollout go"),
            _ = tasks.idle_exit(exit) => {
                panic!("the idle exit left after {:?}, before the first look", start.elapsed())
            }
            () = tokio::time::sleep(S(10)) => {}
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_look_lets_the_idle_exit_go() {
        let tasks = TaskActivity::default();
        tasks.polling_started();
        tasks.hold_idle_exit();
        let denied = || async {
            Err(LookFailed {
                why: "PermissionDenied".to_owned(),
                transient: false,
            })
        };
        assert!(!watch(&tasks, denied, SystemTime::now).await);
        let start = tokio::time::Instant::now();
        let exit = crate::session::tasks::IdleExit {
            window: S(2),
            settled: None,
        };
        tasks.idle_exit(exit).await;
        assert_eq!(start.elapsed(), S(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_look_holds_and_is_tried_again() {
        // Under load the server answered a look "too many requests … try again later"
        // (ResourceExhausted): the version-creation invocation left at its window, before
        // its version became current (seen in the integration tests, run together).
        let tasks = TaskActivity::default();
        tasks.polling_started();
        let looks = std::sync::atomic::AtomicU32::new(0);
        let describe = || {
            let n = looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(LookFailed {
                        why: "ResourceExhausted: try again later".to_owned(),
                        transient: true,
                    })
                } else {
                    Ok(Some(VersionView {
                        status: Status::Inactive,
                        invoked: true,
                        created: Some(SystemTime::now()),
                        routing_changed: None,
                        propagating: false,
                    }))
                }
            }
        };
        let exit = crate::session::tasks::IdleExit {
            window: S(2),
            settled: None,
        };
        let watching = watch(&tasks, describe, SystemTime::now);
        tokio::pin!(watching);
        // Three seconds in: past the window, still held (the third look saw a rollout).
        let held = tokio::time::timeout(S(3), async {
            tokio::select! {
                _ = &mut watching => "the watch ended",
                _ = tasks.idle_exit(exit) => "the idle exit left",
            }
        })
        .await;
        assert!(held.is_err(), "{held:?}");
        assert_eq!(looks.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
