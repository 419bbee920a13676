//! Lambda Managed Instances: `AWS_LAMBDA_MAX_CONCURRENCY=4`, one `hello` process taking four
//! invocations at once from the Runtime API, against the real dev server.

use std::time::{Duration, SystemTime};

use temporal_lambda_worker_testkit::{Answer, Outcome};

use crate::{
    ARN,
    edges::{HelloSetup, read, summary_fields},
};

const CONCURRENCY: usize = 4;

/// The latest hand-out and the earliest answer of `answers`: all were in flight at once
/// when the first is before the second.
fn overlap(answers: &[Answer]) -> (SystemTime, SystemTime) {
    let handed = answers.iter().map(|a| a.handed_out).max().unwrap();
    let answered = answers.iter().map(|a| a.answered_at).min().unwrap();
    (handed, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_invocations_at_once_each_answer_by_their_own_deadline_with_their_own_worker() {
    let HelloSetup {
        server, api, log, ..
    } = &HelloSetup::start(
        "conc",
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
            // Each polls until its own deadline's buffer (7 s before it).
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
        ],
    )
    .await;
    // Four deadlines, 2 s apart: each invocation must answer by its own.
    let pending: Vec<_> = (0..CONCURRENCY)
        .map(|i| api.submit(b"", Duration::from_secs(12 + 2 * i as u64)))
        .collect();
    let workflows = (0..8).map(|i| {
        let id = format!("wf-conc-{i}");
        async move { server.execute_hello("tq-conc", &id, &format!("C{i}")).await }
    });
    let (answers, results) = tokio::join!(
        futures::future::join_all(pending.into_iter().map(|p| p.answer())),
        futures::future::join_all(workflows)
    );
    let text = read(log);
    for (i, result) in results.into_iter().enumerate() {
        let result = result.unwrap_or_else(|e| panic!("workflow {i}: {e}\n{text}"));
        assert!(result.contains(&format!("Hello, C{i}!")), "{result}");
    }
    let (handed, answered) = overlap(&answers);
    assert!(
        handed < answered,
        "the four invocations were not in flight at once (the last was handed out \
         {:?} after the first answer): {text}",
        handed.duration_since(answered).unwrap_or_default()
    );
    let mut identities = Vec::new();
    for answer in &answers {
        let body = answer.response();
        crate::assert_polled_until_the_buffer(answer);
        let identity = format!("{}@{ARN}", answer.request_id);
        assert_eq!(body["identity"], identity.as_str(), "{body}");
        identities.push(identity);
        // Its own summary line.
        let summary = summary_fields(&text, &answer.request_id);
        assert_eq!(summary["outcome"], "ok", "{summary}");
    }
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), CONCURRENCY, "one identity per invocation");
    // The registering invocation left one connection; the other three connected.
    let reused = answers
        .iter()
        .filter(|a| a.response()["connection_reused"] == true)
        .count();
    assert_eq!(reused, 1, "{text}");

    // A second round: four connections are kept, one per invocation at once.
    let pending: Vec<_> = (0..CONCURRENCY)
        .map(|_| api.submit(b"", Duration::from_secs(10)))
        .collect();
    let answers = futures::future::join_all(pending.into_iter().map(|p| p.answer())).await;
    let text = read(log);
    for answer in &answers {
        let body = answer.response();
        assert_eq!(body["connection_reused"], true, "{body}: {text}");
    }
    assert!(api.init_errors().is_empty());
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_every_invocation_in_flight_begin_its_graceful_shutdown() {
    let setup = HelloSetup::start(
        "conc-term",
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let (api, log) = (&setup.api, &setup.log);
    let polling = |text: &str| text.matches("worker polling").count();
    let before = polling(&read(log));
    let pending: Vec<_> = (0..CONCURRENCY)
        .map(|_| api.submit(b"", Duration::from_secs(60)))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while polling(&read(log)) < before + CONCURRENCY && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = read(log);
    assert_eq!(
        polling(&text),
        before + CONCURRENCY,
        "four workers were not polling at once: {text}"
    );
    let mut bootstrap = setup.bootstrap;
    bootstrap.signal("TERM").unwrap();
    let code = tokio::task::spawn_blocking(move || bootstrap.wait_exit(Duration::from_secs(5)))
        .await
        .unwrap();
    let text = read(log);
    assert_eq!(
        code,
        Some(Some(0)),
        "not a clean exit after SIGTERM: {text}"
    );
    assert_eq!(
        text.matches("the process is stopping (SIGTERM): graceful shutdown")
            .count(),
        CONCURRENCY,
        "not every polling worker began its graceful shutdown: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    for p in pending {
        if let Outcome::Error { error_type, .. } = &p.answer().await.outcome {
            panic!("answered an error after SIGTERM: {error_type}: {text}");
        }
    }
}
