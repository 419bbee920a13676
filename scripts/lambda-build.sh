#!/usr/bin/env bash
# Builds the `hello` example as a Lambda `bootstrap` zip with cargo-lambda, for arm64 and
# x86_64 (the release profile; cross-compiled with zig), and checks each artifact:
# `target/lambda/<arch>/hello/bootstrap.zip`. Each zip is then unpacked and run through the
# local serverless loop (lambda-local: the dev server's Worker Controller invokes it and
# workflows complete): this machine's architecture natively, arm64 on x86_64 under qemu
# user-mode emulation (Debian qemu-user + libc6-arm64-cross, installed when missing). The
# arm64 one runs a second time as an AgentCore Runtime container (lambda-local --agentcore).
# Args: [--build | --run] [ARCH...]: only build and check the zips, or only run them (the
# test command builds them in the background while the integration tests wait on their
# servers); both by default, for both architectures (built at the same time, each in
# `target/lambda-build/<arch>`; one architecture builds in `target`).
set -euo pipefail
cd "$(dirname "$0")/.."
do_build=1 do_run=1
case "${1:-}" in
  --build) do_run=0; shift ;;
  --run) do_build=0; shift ;;
esac
bash scripts/setup.sh >/dev/null # cargo-lambda and ziglang, when missing
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 x86_64)
target_of() { # the Rust target triple of an architecture
  case "$1" in
    arm64) echo aarch64-unknown-linux-gnu ;;
    x86_64) echo x86_64-unknown-linux-gnu ;;
    *) echo "unknown architecture $1 (arm64 or x86_64)" >&2; exit 2 ;;
  esac
}
build() { # build ARCH [TARGET_DIR]: the zip, checked
  local arch=$1 flag=--arm64
  [ "$arch" = x86_64 ] && flag=--x86-64
  CARGO_TARGET_DIR=${2:-target} cargo lambda build --quiet --release "$flag" --example hello \
    --output-format zip --lambda-dir "target/lambda/$arch"
  python3 scripts/check_lambda_zip.py "target/lambda/$arch/hello/bootstrap.zip" "$arch"
}
for arch in "${archs[@]}"; do
  target=$(target_of "$arch")
  [ "$do_build" = 1 ] || continue
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
if [ "$do_build" = 1 ] && [ ${#archs[@]} -gt 1 ]; then
  # Both at once, each in a target dir of its own (one cargo build per dir at a time): most
  # of a release build's last minutes are one single-threaded LTO link, so the other
  # architecture's build uses the second core meanwhile.
  pids=()
  for arch in "${archs[@]}"; do
    build "$arch" "target/lambda-build/$arch" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
elif [ "$do_build" = 1 ]; then
  build "${archs[0]}"
fi
[ "$do_run" = 1 ] || exit 0
host=$(uname -m); [ "$host" = aarch64 ] && host=arm64
for arch in "${archs[@]}"; do
  run=$(mktemp -d)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "target/lambda/$arch/hello/bootstrap.zip" "$run"
  chmod +x "$run/bootstrap"
  bootstrap="$run/bootstrap" loop=(--workflows 1 --timeout 10)
  if [ "$arch" != "$host" ]; then
    # The deploy guide's default architecture, run on this machine under user-mode
    # emulation, so the artifact is proven to start and work, not only to link.
    [ "$arch" = arm64 ] || { rm -rf "$run"; continue; }
    if ! command -v qemu-aarch64 >/dev/null 2>&1 || [ ! -d /usr/aarch64-linux-gnu ]; then
      echo "installing qemu-user and libc6-arm64-cross (Debian) to run the arm64 bootstrap…"
      apt-get update -qq && apt-get install -y -qq qemu-user libc6-arm64-cross >/dev/null
    fi
    printf '#!/bin/sh\nexec qemu-aarch64 -L /usr/aarch64-linux-gnu "%s" "$@"\n' "$run/bootstrap" \
      > "$run/bootstrap-qemu"
    chmod +x "$run/bootstrap-qemu"
    bootstrap="$run/bootstrap-qemu" loop=(--workflows 2 --timeout 15) # emulation is slower
  fi
  echo "running the $arch zip's bootstrap through the local serverless loop"
  TLW_QUIET_BOOTSTRAP=1 RUST_LOG=warn cargo run --quiet -p temporal-lambda-local \
    --bin lambda-local -- "$bootstrap" "${loop[@]}"
  if [ "$arch" = arm64 ]; then
    # The same binary is the AgentCore image's (docs/agentcore.md; AgentCore runs arm64
    # only): served as an AgentCore Runtime container, invoked by the Worker Controller.
    echo "running the $arch bootstrap as an AgentCore Runtime container through the local loop"
    TLW_QUIET_BOOTSTRAP=1 RUST_LOG=warn cargo run --quiet -p temporal-lambda-local \
      --bin lambda-local -- "$bootstrap" --agentcore --workflows 1 --idle-session-timeout 2
  fi
  rm -rf "$run"
done
