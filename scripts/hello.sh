#!/usr/bin/env bash
# The main job: the `hello` Lambda bootstrap serving simulated invocations against a local
# Temporal dev server, through a local Lambda Runtime API. Args: [INVOCATIONS] [TIMEOUT_SECS].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet --example hello -p temporal-lambda-worker
cargo run --quiet -p temporal-lambda-worker-testkit --bin lambda-local -- target/debug/examples/hello "$@"
