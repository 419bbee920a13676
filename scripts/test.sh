#!/usr/bin/env bash
# All the tests: formatting, clippy, unit + integration (real Temporal dev server and a
# Lambda Runtime API on loopback) + doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
TLW_QUIET_BOOTSTRAP=1 cargo test --workspace
