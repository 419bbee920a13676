#!/usr/bin/env bash
# All the tests: formatting, clippy, unit + integration (real Temporal dev server, a Lambda
# Runtime API, the local Lambda control plane and an OTLP receiver on loopback) + doc tests,
# rustdoc without warnings, both published crates packaged and the packages type-checked
# (scripts/package-check.sh), the cargo-lambda zips for arm64 and x86_64 (checked, and run
# through the local serverless loop), the deploy guide's commands checked against their
# CLIs, and the deploy-as-code template validated (cfn-lint, and what create-version needs). Each step prints how long it took, and the total at the end.
#
# The release zips share nothing with the test build: they build in the background at the
# lowest CPU priority from the start, taking the CPU the other steps leave (a crate that
# compiles on one core, the integration tests waiting on their servers) and none from them.
# The package check shares the workspace's target dir (the dependencies clippy checked are
# reused), so it runs in the foreground, right after clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { # step NAME COMMAND...: runs COMMAND, then prints NAME, its duration and its CPU time
  local name=$1
  shift
  echo "== $name" >&2
  local TIMEFORMAT="== $name: %0R s (CPU %0U s user + %0S s system)"
  time "$@"
}
step setup bash scripts/setup.sh
step fmt cargo fmt --all -- --check
# One feature set for every step, so the SDK builds once: the default plus `otel`. The
# default build alone (no `otel`) is built by lambda-build.sh.
features=(--features temporal-lambda-worker/otel)

background_builds() {
  step lambda-build bash scripts/lambda-build.sh --build
}
background_log=$(mktemp)
# In a process group of its own (setsid), so that a failing step ends the builds under it
# too, not only their shell (cargo-lambda and cargo went on building after a failed run).
# setsid also makes a new session, and where the kernel groups sessions for scheduling
# (autogroup, /proc/sys/kernel/sched_autogroup_enabled) a nice value only counts inside
# its session's group: the builds then took half the CPU from the steps in front (seen:
# clippy 453 s against 235 s alone). So the group itself is set to nice 19 as well.
setsid nice -n 19 bash -c "{ echo 19 > /proc/self/autogroup; } 2>/dev/null || true
  set -euo pipefail; $(declare -f step background_builds); background_builds" \
  > "$background_log" 2>&1 &
background=$!
finish_background() { # waits for the background builds; shows their output
  local status=0
  wait "$background" || status=$?
  cat "$background_log" >&2
  rm -f "$background_log"
  return "$status"
}
trap 'kill -- -"$background" 2>/dev/null || kill "$background" 2>/dev/null || true' EXIT

step clippy cargo clippy --workspace --all-targets "${features[@]}" --quiet -- -D warnings
step package bash scripts/package-check.sh

step tests env TLW_QUIET_BOOTSTRAP=1 cargo test --workspace "${features[@]}"
step doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps "${features[@]}" --quiet
step background-builds finish_background
step lambda-run bash scripts/lambda-build.sh --run
step deploy-doc bash scripts/check_deploy_doc.sh
step deploy-doc-agentcore bash scripts/check_deploy_doc.sh docs/agentcore.md
step deploy-template bash scripts/check_deploy_template.sh
trap - EXIT
cpu=$(mktemp)
times > "$cpu" # this shell's own CPU time, then that of the steps and the builds it waited for
echo "== all steps: $((SECONDS - started)) s (CPU of the steps: $(sed -n 2p "$cpu"), user system)" >&2
rm -f "$cpu"
