//! The edges production hits (issue 10): the API key on the wire, a server that dies under
//! a warm process, SIGTERM, a broken Lambda environment and a flaky Runtime API. Each
//! runs the bootstrap as its own process.

use std::time::Duration;

use temporal_lambda_worker_testkit::{Bootstrap, RuntimeApi, WireRecorder};

use crate::{ARN, TempDir, example_binary};

/// A key with characters HPACK codes long, so a plaintext gRPC header would carry it
/// byte for byte; the recorder also decodes plaintext HTTP/2 headers in any case.
const KEY: &str = "tlw-test-key-{~|^}-4f1c9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_set_by_a_layer_never_crosses_the_wire_in_plaintext() {
    let wire = WireRecorder::start().await.unwrap();
    let api = RuntimeApi::start(ARN).await.unwrap();
    let root = TempDir::new("wire");
    let key_file = root.0.join("api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    // `custom_layer` sets the key through ApiKeySecretLayer; the environment has no
    // TEMPORAL_API_KEY and no TLS setting, so nothing but the rule turns TLS on.
    let _bootstrap = Bootstrap::start(
        &example_binary("custom_layer"),
        &api.address(),
        "hello",
        &root.0,
        &[
            ("TEMPORAL_ADDRESS", wire.address()),
            ("TEMPORAL_API_KEY_FILE", key_file.to_str().unwrap()),
            ("TEMPORAL_TASK_QUEUE", "tq-wire"),
        ],
    )
    .unwrap();
    let answer = api.invoke(b"", Duration::from_secs(10)).await;
    // The recorder speaks no TLS: the connection fails, and says why.
    let (ty, msg) = answer.error();
    assert_eq!(ty, "TemporalLambdaWorker.ConnectError", "{msg}");
    assert!(answer.slack() > 0.0);
    assert!(!msg.contains(KEY), "the key is in the error: {msg}");
    assert!(wire.connections() > 0, "the bootstrap never connected");
    let bytes = wire.bytes();
    assert!(
        !wire.saw(KEY),
        "the API key went over the wire readable; headers: {:?}",
        wire.plaintext_headers()
    );
    assert!(
        wire.plaintext_headers().is_empty(),
        "plaintext HTTP/2: {:?}",
        wire.plaintext_headers()
    );
    // A TLS handshake record (ClientHello) opens the connection.
    assert_eq!(
        bytes.get(..2),
        Some(&[0x16, 0x03][..]),
        "not a TLS handshake: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
    );
}
