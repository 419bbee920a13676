//! Lambda Managed Instances: `AWS_LAMBDA_MAX_CONCURRENCY=4`, one `hello` process taking four
//! invocations at once from the Runtime API, against the real dev server.

use std::time::{Duration, SystemTime};

use temporal_lambda_local::{Answer, Outcome};

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

/// Waits up to 30 s until `n` more "worker polling" lines than `before` are in the log.
async fn wait_polling(log: &std::path::Path, before: usize, n: usize) -> String {
    let polling = |text: &str| text.matches("worker polling").count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while polling(&read(log)) < before + n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = read(log);
    assert!(
        polling(&text) >= before + n,
        "{n} more workers were not polling: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_will_not_drain_leaves_the_others_polling_to_their_own_deadlines() {
    let setup = HelloSetup::start(
        "conc-poison",
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let (server, api, log) = (&setup.server, &setup.api, &setup.log);
    let before = read(log).matches("worker polling").count();
    // The poisoned one: a 12 s invocation polls until 5 s and drains until 10 s; the only
    // worker polling when the workflow starts takes its 12 s activity, which ignores the
    // cancellation, so its drain cannot end: it answers DrainTimeout.
    let poisoned = api.submit(b"", Duration::from_secs(12));
    wait_polling(log, before, 1).await;
    let slow = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .execute_workflow(
                    "SlowHelloWorkflow",
                    "tq-conc-poison",
                    "wf-poison",
                    Some("12000"),
                )
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Three more, polling until 23 s after now, well past the poisoned one's answer.
    let others: Vec<_> = (0..3)
        .map(|_| api.submit(b"", Duration::from_secs(30)))
        .collect();
    wait_polling(log, before, 4).await;
    let poisoned = poisoned.answer().await;
    let (ty, msg) = poisoned.error();
    assert_eq!(
        ty,
        "TemporalLambdaWorker.DrainTimeout",
        "{msg}: {}",
        read(log)
    );
    assert!(poisoned.slack() > 0.0, "answered late: {msg}");
    // After the poisoned answer, the other three still take new work.
    let workflows = (0..6).map(|i| {
        let id = format!("wf-conc-poison-{i}");
        async move {
            server
                .execute_hello("tq-conc-poison", &id, &format!("P{i}"))
                .await
        }
    });
    let (answers, results) = tokio::join!(
        futures::future::join_all(others.into_iter().map(|p| p.answer())),
        futures::future::join_all(workflows)
    );
    let text = read(log);
    for (i, result) in results.into_iter().enumerate() {
        let result = result.unwrap_or_else(|e| panic!("workflow {i}: {e}\n{text}"));
        assert!(result.contains(&format!("Hello, P{i}!")), "{result}");
    }
    for answer in &answers {
        answer.response();
        crate::assert_polled_until_the_buffer(answer);
        assert_eq!(
            summary_fields(&text, &answer.request_id)["outcome"],
            "ok",
            "{text}"
        );
    }
    // Nothing lost: the abandoned worker's activity ends in the process that still polls,
    // and the workflow closes on one of the others.
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .unwrap_or_else(|_| panic!("the poisoned session's workflow never closed: {text}"))
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(slow.contains("Hello after 12000 ms!"), "{slow}");
    // Then the process is recycled, with no invocation taken after the poisoned one.
    let mut bootstrap = setup.bootstrap;
    let code = tokio::task::spawn_blocking(move || bootstrap.wait_exit(Duration::from_secs(5)))
        .await
        .unwrap();
    let text = read(log);
    assert!(
        matches!(code, Some(Some(c)) if c != 0),
        "the process was not recycled ({code:?}): {text}"
    );
    // The exit line names why in words (not `Recycling("…")`).
    assert!(
        text.contains(
            "Error: exiting so Lambda starts a fresh process (the invocation was answered): \
             the worker did not finish within its graceful shutdown timeout"
        ),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_under_four_sessions_is_answered_by_each_and_no_dead_connection_is_kept() {
    let setup = HelloSetup::start(
        "conc-gone",
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
            ("TEMPORAL_IDLE_SHUTDOWN_SECS", "off"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let HelloSetup {
        server,
        api,
        log,
        mut bootstrap,
        root: _root,
    } = setup;
    let address = server.address.clone();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let before = read(&log).matches("worker polling").count();
    let pending: Vec<_> = (0..CONCURRENCY)
        .map(|_| api.submit(b"", Duration::from_secs(30)))
        .collect();
    wait_polling(&log, before, CONCURRENCY).await;
    drop(std::sync::Arc::into_inner(server).expect("the only handle on the dev server"));
    let answers = futures::future::join_all(pending.into_iter().map(|p| p.answer())).await;
    let text = read(&log);
    for answer in &answers {
        let (ty, msg) = answer.error();
        assert_eq!(
            ty, "TemporalLambdaWorker.ServerUnreachable",
            "{msg}: {text}"
        );
        assert!(msg.contains(&address), "{msg}");
        assert!(
            answer.slack() > 20.0,
            "answered {:.2}s before the deadline: it polled into the void: {text}",
            answer.slack()
        );
    }

    // The server comes back on the same address: every session reconnects (none is given
    // a connection made to the old one) and serves real work.
    let server = tokio::task::spawn_blocking(move || {
        temporal_lambda_local::DevServer::start_on(port, &[], &[])
    })
    .await
    .unwrap();
    server
        .register_version(&api, "dep-conc-gone", "build-1")
        .await
        .unwrap();
    let pending: Vec<_> = (0..CONCURRENCY)
        .map(|_| api.submit(b"", Duration::from_secs(12)))
        .collect();
    let workflows = (0..4).map(|i| {
        let (server, id) = (&server, format!("wf-conc-gone-{i}"));
        async move {
            server
                .execute_hello("tq-conc-gone", &id, &format!("G{i}"))
                .await
        }
    });
    let (answers, results) = tokio::join!(
        futures::future::join_all(pending.into_iter().map(|p| p.answer())),
        futures::future::join_all(workflows)
    );
    let text = read(&log);
    for (i, result) in results.into_iter().enumerate() {
        let result = result.unwrap_or_else(|e| panic!("workflow {i}: {e}\n{text}"));
        assert!(result.contains(&format!("Hello, G{i}!")), "{result}");
    }
    // The registering invocation after the restart made one connection to the new server;
    // the other three connected: none of the four connections to the old one was kept.
    let reused = answers
        .iter()
        .filter(|a| a.response()["connection_reused"] == true)
        .count();
    assert_eq!(reused, 1, "{text}");
    assert_eq!(bootstrap.exited(), None, "the process kept serving: {text}");
}
