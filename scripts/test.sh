#!/usr/bin/env bash
# All the tests: formatting, clippy, unit + integration (real Temporal dev server, a Lambda
# Runtime API, the local Lambda control plane and an OTLP receiver on loopback) + doc tests,
# rustdoc without warnings, the cargo-lambda zips for arm64 and x86_64 (checked, and this
# machine's run through the local serverless loop), and the deploy guide's commands checked
# against their CLIs. Each step prints how long it took, and the total at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { # step NAME COMMAND...: runs COMMAND, then prints NAME and its duration
  local name=$1 t=$SECONDS
  shift
  echo "== $name" >&2
  "$@"
  echo "== $name: $((SECONDS - t)) s" >&2
}
step setup bash scripts/setup.sh
step fmt cargo fmt --all -- --check
# One feature set for every step, so the SDK builds once: the default plus `otel`. The
# default build alone (no `otel`) is built by lambda-build.sh.
features=(--features temporal-lambda-worker/otel)
step clippy cargo clippy --workspace --all-targets "${features[@]}" --quiet -- -D warnings
step tests env TLW_QUIET_BOOTSTRAP=1 cargo test --workspace "${features[@]}"
step doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps "${features[@]}" --quiet
step lambda-build bash scripts/lambda-build.sh
step deploy-doc bash scripts/check_deploy_doc.sh
echo "== all steps: $((SECONDS - started)) s" >&2
