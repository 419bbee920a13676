//! The local loop Rust Lambda developers use every day: `cargo lambda watch` runs the
//! `hello` example (from this target dir, no extra build) and `cargo lambda invoke`
//! invokes it, with no variable of ours set. cargo-lambda's emulator sends
//! `Lambda-Runtime-Deadline-Ms: 600000`, its timeout, not an epoch time: it is read as one.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use temporal_lambda_local::{DevServer, dev_server::free_port};

use crate::TempDir;

/// `cargo lambda watch` and everything it started (the function runs in a process group
/// of its own), ended by PID.
struct Watch(Child);

/// The PIDs of `root`'s descendants, from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.split_off(1)
}

impl Drop for Watch {
    fn drop(&mut self) {
        let children = descendants(self.0.id());
        let _ = self.0.kill();
        for pid in children {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &pid.to_string()])
                .status();
        }
        let _ = self.0.wait();
    }
}

/// `cargo lambda invoke` without a function name: the default route, which cargo-lambda
/// enables only while the workspace has exactly one binary (`lambda-local`).
async fn invoke(port: u16) -> (bool, String) {
    let out = tokio::process::Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            "--data-ascii",
            "{}",
            "-P",
            &port.to_string(),
        ])
        .output()
        .await
        .expect("cargo lambda invoke runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_lambda_watch_polls_and_a_queued_workflow_completes() {
    let installed = Command::new("cargo")
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "cargo-lambda is missing: scripts/setup.sh installs it (pip install cargo-lambda)"
    );
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let port = free_port();
    let dir = TempDir::new("watch");
    let log = std::fs::File::create(dir.path().join("watch.log")).unwrap();
    let mut cmd = Command::new("cargo");
    cmd.args([
        "lambda",
        "watch",
        "--example",
        "hello",
        "--ignore-changes",
        "-P",
        &port.to_string(),
    ]);
    if cfg!(feature = "otel") {
        // The features this test binary was built with: the example is already built.
        cmd.args(["--features", "temporal-lambda-worker/otel"]);
    }
    // Not the variables `cargo test` sets for this test process: `cargo run` under the
    // watch would see CARGO_MANIFEST_DIR and rebuild ring's build script, and with it
    // most of the SDK (3 minutes on 2 cores), beside the other tests.
    for (name, _) in std::env::vars() {
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || name == "CARGO_TARGET_TMPDIR"
            || name == "CARGO_RUSTC_CURRENT_DIR"
        {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TEMPORAL_ADDRESS", &server.address)
        .env("TEMPORAL_TASK_QUEUE", "tq-watch")
        .env("HELLO_DEPLOYMENT_NAME", "dep-watch")
        .env_remove("TEMPORAL_LOCAL_TIMEOUT_SECS")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _watch = Watch(cmd.spawn().expect("cargo lambda watch starts"));
    let up = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), up)
        .await
        .expect("cargo lambda watch listens");
    let watch_log = || std::fs::read_to_string(dir.path().join("watch.log")).unwrap_or_default();

    // The first invocation (which waits for the example to start) polls as
    // dep-watch/build-1, so the server knows that version; then it is made current.
    let (ok, text) = invoke(port).await;
    assert!(ok, "{text}\n{}", watch_log());
    assert!(!text.contains("InvalidDeadline"), "{text}");
    assert!(
        watch_log().contains("read as a timeout of 600.0s"),
        "{}",
        watch_log()
    );
    server
        .set_current_version("dep-watch", "build-1", Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", watch_log()));

    // The next one takes a queued workflow's tasks.
    let ((ok, text), result) = tokio::join!(
        invoke(port),
        server.execute_hello("tq-watch", "wf-watch", "Watch")
    );
    let log = watch_log();
    assert!(ok, "{text}\n{log}");
    assert!(
        result
            .unwrap_or_else(|e| panic!("{e}\n{log}"))
            .contains("Hello, Watch!")
    );
    assert!(text.contains("\"task_queue\":\"tq-watch\""), "{text}");
    // Both invocations read the emulator's 600 s as their timeout and left by the idle
    // exit, not after 600 s.
    assert_eq!(
        log.matches("read as a timeout of 600.0s").count(),
        2,
        "{log}"
    );
}
