//! A deadline the Runtime API sends that cannot be real: a local emulator's (`cargo lambda
//! watch` sends its timeout in milliseconds there, not an epoch time). It is replaced with
//! `TEMPORAL_LOCAL_TIMEOUT_SECS` when that is set, or answered as
//! `TemporalLambdaWorker.InvalidDeadline`; deadlines from Lambda are never touched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::Context;

use crate::LambdaWorkerError;

/// The variable that gives invocations a timeout when the Runtime API's deadline cannot
/// be real (a local emulator's), as a decimal number of seconds.
pub(crate) const LOCAL_TIMEOUT_VAR: &str = "TEMPORAL_LOCAL_TIMEOUT_SECS";

/// A deadline this far in the past when it is handed out is not a deadline.
const UNREAL_BEFORE: Duration = Duration::from_secs(24 * 3600);

/// What to do with the deadline the Runtime API sent: keep it (`Ok(None)`), replace an
/// unreal one with `now + TEMPORAL_LOCAL_TIMEOUT_SECS` (`Ok(Some(timeout))`), or fail
/// when an unreal one has no local timeout to replace it.
pub(crate) fn normalize_deadline(
    context: &mut Context,
    local_timeout: Option<&str>,
    now: SystemTime,
) -> Result<Option<Duration>, LambdaWorkerError> {
    let sent = context.deadline;
    if sent == 0 || UNIX_EPOCH + Duration::from_millis(sent) + UNREAL_BEFORE > now {
        return Ok(None);
    }
    let timeout = local_timeout
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or(LambdaWorkerError::InvalidDeadline { sent_ms: sent })?;
    context.deadline = (now + timeout)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(Some(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulators_deadline_is_recognised_and_replaced_only_when_told_how() {
        let now = SystemTime::now();
        let mut ctx = Context::default();
        // `cargo lambda watch` sends its 600 s timeout as the deadline.
        ctx.deadline = 600_000;
        let err = normalize_deadline(&mut ctx.clone(), None, now).unwrap_err();
        assert_eq!(err.error_type(), "TemporalLambdaWorker.InvalidDeadline");
        let text = err.to_string();
        assert!(
            text.contains("Lambda-Runtime-Deadline-Ms: 600000"),
            "{text}"
        );
        assert!(text.contains("cargo lambda watch"), "{text}");
        assert!(text.contains(LOCAL_TIMEOUT_VAR), "{text}");
        assert!(!text.contains("0.0s remained"), "{text}");
        assert!(normalize_deadline(&mut ctx.clone(), Some("soon"), now).is_err());

        assert_eq!(
            normalize_deadline(&mut ctx, Some("45.5"), now).unwrap(),
            Some(Duration::from_millis(45_500))
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
