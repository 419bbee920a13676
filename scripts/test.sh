#!/usr/bin/env bash
# All the tests: formatting, clippy, unit + integration (real Temporal dev server, a Lambda
# Runtime API, the local Lambda control plane and an OTLP receiver on loopback) + doc tests,
# rustdoc without warnings, the cargo-lambda zips for arm64 and x86_64 (checked, and this
# machine's run through the local serverless loop), and the deploy guide's commands checked
# against their CLIs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
# One feature set for every step, so the SDK builds once: the default plus `otel`. The
# default build alone (no `otel`) is built by lambda-build.sh.
features=(--features temporal-lambda-worker/otel)
cargo clippy --workspace --all-targets "${features[@]}" --quiet -- -D warnings
TLW_QUIET_BOOTSTRAP=1 cargo test --workspace "${features[@]}"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps "${features[@]}" --quiet
bash scripts/lambda-build.sh
bash scripts/check_deploy_doc.sh
