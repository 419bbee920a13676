//! A deadline the Runtime API sends that cannot be real: a local emulator's. `cargo lambda
//! watch` sends its timeout in milliseconds there (`600000`), not an epoch time: a value
//! that is plainly a duration (at most a day) is read as one. `TEMPORAL_LOCAL_TIMEOUT_SECS`
//! overrides both; any other unreal deadline without it is answered as
//! `TemporalLambdaWorker.InvalidDeadline`. Deadlines from Lambda are never touched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::Context;

use crate::LambdaWorkerError;

/// The variable that gives invocations a timeout when the Runtime API's deadline cannot
/// be real (a local emulator's), as a decimal number of seconds.
pub(crate) const LOCAL_TIMEOUT_VAR: &str = "TEMPORAL_LOCAL_TIMEOUT_SECS";

/// A deadline this far in the past when it is handed out is not a deadline.
const UNREAL_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// A "deadline" of at most this many milliseconds after 1970-01-01 is a duration.
const PLAINLY_A_DURATION: Duration = Duration::from_secs(24 * 3600);

/// How an unreal deadline was made usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Emulated {
    /// `TEMPORAL_LOCAL_TIMEOUT_SECS` gave the timeout.
    LocalTimeout(Duration),
    /// The value sent was read as the timeout in milliseconds.
    SentAsDuration(Duration),
}

impl Emulated {
    /// The timeout the invocation polls as if it had.
    pub(crate) fn timeout(self) -> Duration {
        match self {
            Self::LocalTimeout(d) | Self::SentAsDuration(d) => d,
        }
    }
}

/// What to do with the deadline the Runtime API sent: keep it (`Ok(None)`), replace an
/// unreal one with `now +` the timeout it stands for (`Ok(Some(how))`), or fail when an
/// unreal one is not a duration and has no local timeout to replace it.
pub(crate) fn normalize_deadline(
    context: &mut Context,
    local_timeout: Option<&str>,
    now: SystemTime,
) -> Result<Option<Emulated>, LambdaWorkerError> {
    let sent = context.deadline;
    if sent == 0 || UNIX_EPOCH + Duration::from_millis(sent) + UNREAL_BEFORE > now {
        return Ok(None);
    }
    let local = local_timeout
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| Emulated::LocalTimeout(Duration::from_secs_f64(t)));
    let sent_duration = Duration::from_millis(sent);
    let duration = (sent_duration <= PLAINLY_A_DURATION).then_some(sent_duration);
    let emulated = local
        .or(duration.map(Emulated::SentAsDuration))
        .ok_or(LambdaWorkerError::InvalidDeadline { sent_ms: sent })?;
    context.deadline = (now + emulated.timeout())
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(Some(emulated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_that_is_plainly_a_duration_is_read_as_one() {
        let now = SystemTime::now();
        let mut ctx = Context::default();
        // `cargo lambda watch` sends its 600 s timeout as the deadline.
        ctx.deadline = 600_000;
        let how = normalize_deadline(&mut ctx, None, now).unwrap();
        assert_eq!(
            how,
            Some(Emulated::SentAsDuration(Duration::from_secs(600)))
        );
        let expected = (now + Duration::from_secs(600))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(ctx.deadline, expected);
    }

    #[test]
    fn an_emulators_deadline_is_recognised_and_replaced_only_when_told_how() {
        let now = SystemTime::now();
        let mut ctx = Context::default();
        // An epoch time long past (2001-09-09): neither a deadline nor a duration.
        ctx.deadline = 1_000_000_000_000;
        let err = normalize_deadline(&mut ctx.clone(), None, now).unwrap_err();
        assert_eq!(err.error_type(), "TemporalLambdaWorker.InvalidDeadline");
        let text = err.to_string();
        assert!(
            text.contains("Lambda-Runtime-Deadline-Ms: 1000000000000"),
            "{text}"
        );
        assert!(text.contains("cargo lambda watch"), "{text}");
        assert!(text.contains(LOCAL_TIMEOUT_VAR), "{text}");
        assert!(!text.contains("0.0s remained"), "{text}");
        assert!(normalize_deadline(&mut ctx.clone(), Some("soon"), now).is_err());

        // The local timeout replaces it, and overrides a sent duration too.
        assert_eq!(
            normalize_deadline(&mut ctx, Some("45.5"), now).unwrap(),
            Some(Emulated::LocalTimeout(Duration::from_millis(45_500)))
        );
        let mut watch = Context::default();
        watch.deadline = 600_000;
        assert_eq!(
            normalize_deadline(&mut watch, Some("45.5"), now).unwrap(),
            Some(Emulated::LocalTimeout(Duration::from_millis(45_500)))
        );
        let expected = (now + Duration::from_millis(45_500))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(ctx.deadline, expected);

        // Real deadlines (even one just missed) and no deadline are left alone.
        for real in [expected, expected - 50_000, 0] {
            let mut ctx = Context::default();
            ctx.deadline = real;
            assert_eq!(normalize_deadline(&mut ctx, Some("45"), now).unwrap(), None);
            assert_eq!(ctx.deadline, real);
        }
    }
}
