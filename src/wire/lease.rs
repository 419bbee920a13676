//! Poll leases: every poll of the normal queue asks the server to answer it by the
//! session's shutdown moment, through its `grpc-timeout`, so that no poll is outstanding
//! when the worker has stopped and none is cut.
//!
//! A poll cut by the client after the server matched a task to it loses the task: matching
//! records the task started before the answer goes out, and the answer goes to nobody; the
//! task waits its start-to-close timeout (10 s for a workflow task). The server ends a poll
//! by itself, safely, only when the namespace has `worker_poll_complete_on_shutdown` (at
//! `ShutdownWorker`), or at the poll's own deadline: matching answers it empty
//! [`SERVER_BUDGET`] before the deadline the client gave (temporal 1.32,
//! `service/matching/matching_engine.go`, `pollTask`: `WithDeadlineBuffer(ctx,
//! longPollInterval, returnEmptyTaskTimeBudget)`), and keeps that budget to record and
//! send a task it matched. The frontend refuses a poll with less than [`MIN_TIMEOUT`]
//! (`common.MinLongPollTimeout`).
//!
//! So a poll sent at `now` gets `stop_at − now + SERVER_BUDGET + TAIL` (at least
//! [`MIN_TIMEOUT`], at most what the SDK asked): the server answers it by the shutdown
//! moment (plus [`TAIL`], by when closing holds new polls), and the end of the session
//! waits for that answer rather than cut it. The sticky queue's polls keep the SDK's
//! timeout: `ShutdownWorker` unloads that queue, which answers them.

use std::time::Duration;

use tokio::time::Instant;

/// How long before a poll's deadline matching answers it empty.
pub(super) const SERVER_BUDGET: Duration = Duration::from_secs(1);
/// The shortest poll timeout the frontend takes.
pub(super) const MIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after the shutdown moment a leased poll is answered: closing (which holds new
/// polls) has begun by then, so the SDK's next poll is held, not sent.
pub(super) const TAIL: Duration = Duration::from_millis(50);

/// Leases a poll sent at `now` in a session that stops polling at `stop_at`: rewrites its
/// `grpc-timeout` in `headers` when that asks the server to answer sooner than the SDK's
/// own timeout, and returns when the server will have answered it (`None`: the SDK's
/// timeout stands, a long poll no lease bounds).
pub(super) fn lease(
    headers: &mut http::HeaderMap,
    stop_at: Instant,
    now: Instant,
) -> Option<Instant> {
    let wanted = (stop_at + SERVER_BUDGET + TAIL)
        .saturating_duration_since(now)
        .max(MIN_TIMEOUT);
    let asked = headers
        .get("grpc-timeout")
        .and_then(|v| parse(v.to_str().ok()?));
    if asked.is_some_and(|asked| asked <= wanted) {
        return None;
    }
    headers.insert("grpc-timeout", format(wanted));
    Some(now + wanted - SERVER_BUDGET)
}

/// A `grpc-timeout` value (gRPC over HTTP/2: at most 8 digits and a unit).
fn parse(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value, in whole milliseconds (rounded down: the server
/// answers no later than asked).
fn format(timeout: Duration) -> http::HeaderValue {
    let ms = timeout.as_millis().min(99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m")).expect("digits and a unit")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(timeout: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", timeout.parse().unwrap());
        headers
    }

    #[test]
    fn a_poll_is_answered_by_the_shutdown_moment() {
        let now = Instant::now();
        let mut headers = asking("70S");
        let answered = lease(&mut headers, now + Duration::from_secs(10), now);
        // 10 s to the stop, 1 s for the server to answer in, 50 ms after the stop.
        assert_eq!(headers["grpc-timeout"], "11050m");
        assert_eq!(answered, Some(now + Duration::from_millis(10_050)));
    }

    #[test]
    fn a_poll_near_the_stop_asks_the_least_the_frontend_takes() {
        let now = Instant::now();
        let mut headers = asking("70000000u");
        let answered = lease(&mut headers, now + Duration::from_millis(300), now);
        assert_eq!(headers["grpc-timeout"], "2000m");
        assert_eq!(answered, Some(now + Duration::from_secs(1)));
        // Past the stop (a poll the SDK sends as closing begins): the same.
        let mut headers = asking("70S");
        let late = lease(&mut headers, now, now + Duration::from_secs(1));
        assert_eq!(headers["grpc-timeout"], "2000m");
        assert_eq!(late, Some(now + Duration::from_secs(2)));
    }

    #[test]
    fn a_shorter_timeout_of_the_sdk_stands() {
        let now = Instant::now();
        let mut headers = asking("5S");
        assert_eq!(
            lease(&mut headers, now + Duration::from_secs(60), now),
            None
        );
        assert_eq!(headers["grpc-timeout"], "5S");
    }

    #[test]
    fn a_poll_without_a_timeout_gets_one() {
        let now = Instant::now();
        let mut headers = http::HeaderMap::new();
        let answered = lease(&mut headers, now + Duration::from_secs(3), now);
        assert_eq!(headers["grpc-timeout"], "4050m");
        assert_eq!(answered, Some(now + Duration::from_millis(3050)));
    }

    #[test]
    fn timeouts_are_read_in_every_unit_and_nonsense_is_not() {
        for (value, want) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("70S", Duration::from_secs(70)),
            ("1500m", Duration::from_millis(1500)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            assert_eq!(parse(value), Some(want), "{value}");
        }
        for bad in ["", "S", "123456789S", "12x", "-1S", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
