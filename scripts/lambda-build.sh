#!/usr/bin/env bash
# Builds the `hello` example as a Lambda `bootstrap` zip with cargo-lambda, for arm64 and
# x86_64 (the release profile; cross-compiled with zig), and checks each artifact:
# `target/lambda/<arch>/hello/bootstrap.zip`. The zip for this machine's architecture is then
# unpacked and run through the local serverless loop (lambda-local: the dev server's Worker
# Controller invokes it and a workflow completes). Args: the architectures (default: both).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo lambda --version >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check cargo-lambda ziglang
fi
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 x86_64)
for arch in "${archs[@]}"; do
  case "$arch" in
    arm64) flag=--arm64 target=aarch64-unknown-linux-gnu ;;
    x86_64) flag=--x86-64 target=x86_64-unknown-linux-gnu ;;
    *) echo "unknown architecture $arch (arm64 or x86_64)" >&2; exit 2 ;;
  esac
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  cargo lambda build --quiet --release "$flag" --example hello --output-format zip \
    --lambda-dir "target/lambda/$arch"
  python3 scripts/check_lambda_zip.py "target/lambda/$arch/hello/bootstrap.zip" "$arch"
done
host=$(uname -m); [ "$host" = aarch64 ] && host=arm64
for arch in "${archs[@]}"; do
  [ "$arch" = "$host" ] || continue
  run=$(mktemp -d)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "target/lambda/$arch/hello/bootstrap.zip" "$run"
  chmod +x "$run/bootstrap"
  TLW_QUIET_BOOTSTRAP=1 RUST_LOG=warn cargo run --quiet -p temporal-lambda-worker-testkit \
    --bin lambda-local -- "$run/bootstrap" --workflows 1 --timeout 10
  rm -rf "$run"
done
