#!/usr/bin/env bash
# Checks the commands in a deploy guide (docs/deploy.md, or the one given: docs/agentcore.md)
# without an AWS account or a Temporal server: sources the
# guide's values block, then runs each of its command blocks with the `aws` CLI (awscli from PyPI)
# and the `temporal` CLI pointed at a closed port on 127.0.0.1. A command the CLI rejects (unknown
# option, missing argument, invalid choice, unreadable file) fails the check; one that gets as far
# as connecting passes. `set -u` makes a value used but not defined in the values block fail too.
# The build step (`bash scripts/lambda-build.sh`) is skipped here: the test command runs it first.
# An image build (`docker buildx build`) is checked against its Dockerfile, not run.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=${1:-docs/deploy.md}
command -v aws >/dev/null || python3 -m pip install --quiet --disable-pip-version-check awscli
python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml
blocks=$(mktemp -d)
trap 'rm -rf "$blocks"' EXIT
awk -v dir="$blocks" '/^```sh$/ {n++; f=1; next} /^```$/ {f=0; next} f {print > (dir "/" n ".sh")}' "$doc"
closed=127.0.0.1:9
# One attempt per command: the verdict is the CLI's parsing, and its retries against the
# closed port only waited (2 min 14 s of the check's 2 min 17 s).
export AWS_MAX_ATTEMPTS=1

# The verdict goes to stderr: a command whose output the guide captures (`VERSION_ARN=$(aws
# … --query FunctionArn --output text)`) gets what AWS would print there: a qualified ARN.
aws() {
  local out arg prev="" query=""
  for arg in "$@"; do [ "$prev" = --query ] && query=$arg; prev=$arg; done
  if out=$(command aws "$@" --endpoint-url "http://$closed" --cli-connect-timeout 1 --cli-read-timeout 1 2>&1); then
    echo "ok (parsed): aws $1 $2" >&2
  elif grep -q "Could not connect to the endpoint URL" <<<"$out"; then
    echo "ok: aws $1 $2" >&2
  else
    echo "FAILED: aws $1 $2:" >&2; echo "$out" >&2; return 1
  fi
  case "$query" in
    FunctionArn) echo "$FUNCTION_ARN:1" ;;
    *FunctionVersionArn*) echo "$FUNCTION_ARN:1" ;;
    *InvokerRoleArn*) echo "$INVOKER_ROLE_ARN" ;;
    Version) echo 1 ;;
    CapacityProvider.CapacityProviderArn) echo "arn:aws:lambda:$AWS_REGION:$ACCOUNT_ID:capacity-provider:$CAPACITY_PROVIDER" ;;
    "[agentRuntimeArn,agentRuntimeVersion]") echo "arn:aws:bedrock-agentcore:$AWS_REGION:$ACCOUNT_ID:runtime/$RUNTIME_NAME-a1b2c3d4e5 1" ;;
    agentRuntimeVersion) echo 2 ;;
    agentRuntimeEndpointArn) echo "$RUNTIME_ARN/runtime-endpoint/$ENDPOINT_NAME" ;;
  esac
}
temporal() {
  local out
  if out=$(timeout 30 "$(type -P temporal)" "$@" --address "$closed" 2>&1); then
    echo "ok (parsed): temporal $*"; return 0
  fi
  if grep -qE "Nothing is listening|connection refused" <<<"$out"; then echo "ok: temporal $1 $2 $3"; return 0; fi
  echo "FAILED: temporal $*:"; echo "$out"; return 1
}
bash() { echo "skipped: bash $*"; }
# `cargo lambda build …`: every option must be one cargo-lambda knows, and every
# `--include NAME:PATH` file must exist (the build itself is the test command's
# scripts/lambda-build.sh).
built="" # what the last `cargo lambda build` writes: LAMBDA_DIR/EXAMPLE/bootstrap
cargo() {
  if [ "$1 $2 $3 $4 $5 $6" = "run -p temporal-lambda-local --bin lambda-local --" ]; then
    # The local loop: every option must be one lambda-local knows.
    local opt usage
    usage=$(command cargo run --quiet -p temporal-lambda-local --bin lambda-local -- --help)
    for opt in "${@:7}"; do
      if [[ "$opt" == --* ]] && ! grep -qE -- "(^|[ ,])${opt%%=*}([ ,=]|$)" <<<"$usage"; then
        echo "FAILED: lambda-local has no option $opt"; return 1
      fi
    done
    echo "ok: lambda-local ${*:7} (options accepted, not run)"; return 0
  fi
  [ "$1 $2" = "lambda build" ] || { echo "FAILED: unexpected cargo $*"; return 1; }
  local help arg prev="" dir=target/lambda example=""
  help=$(command cargo lambda build --help)
  for arg in "$@"; do
    [ "$prev" = --lambda-dir ] && dir=$arg
    [ "$prev" = --example ] && example=$arg
    if [[ "$arg" == --* ]] && ! grep -qE -- "(^|[ ,])${arg%%=*}([ ,=]|$)" <<<"$help"; then
      echo "FAILED: cargo lambda build has no option $arg"; return 1
    fi
    if [ "$prev" = --include ] && [ ! -e "${arg#*:}" ]; then
      echo "FAILED: --include $arg: ${arg#*:} does not exist"; return 1
    fi
    prev=$arg
  done
  built=$dir/$example/bootstrap
  echo "ok: cargo lambda build (options accepted)"
}
# `docker login` reads its password and does nothing; `docker buildx build` checks the
# Dockerfile it names: an arm64 image (AgentCore runs no other) serving 8080, whose every
# COPY source is the binary the guide's `cargo lambda build` wrote.
docker() {
  if [ "$1" = login ]; then cat >/dev/null; echo "ok: docker login (not run)"; return 0; fi
  [ "$1 $2" = "buildx build" ] || { echo "FAILED: unexpected docker $*"; return 1; }
  local arg prev="" file="" platform="" src
  for arg in "$@"; do
    [ "$prev" = -f ] && file=$arg
    [ "$prev" = --platform ] && platform=$arg
    prev=$arg
  done
  [ -f "$file" ] || { echo "FAILED: docker buildx build -f $file: no such Dockerfile"; return 1; }
  [ "$platform" = linux/arm64 ] || { echo "FAILED: --platform $platform: AgentCore runs linux/arm64"; return 1; }
  grep -q '^FROM --platform=linux/arm64 ' "$file" || { echo "FAILED: $file: not FROM --platform=linux/arm64"; return 1; }
  grep -q '^EXPOSE 8080$' "$file" || { echo "FAILED: $file: AgentCore calls port 8080"; return 1; }
  for src in $(awk '/^COPY / {print $2}' "$file"); do
    [ "$src" = "$built" ] || { echo "FAILED: $file copies $src, the guide's cargo lambda build writes ${built:-nothing}"; return 1; }
  done
  echo "ok: docker buildx build ($file checked, not built)"
}

# The ADOT collector configuration the Lambda guide packages: valid YAML, the OTLP receiver
# wired into a traces pipeline (awsxray) and a metrics pipeline (awsemf).
[ "$doc" != docs/deploy.md ] || python3 - examples/otel/collector.yaml <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
p = c["service"]["pipelines"]
assert "otlp" in c["receivers"], "no otlp receiver"
assert "localhost:4317" in str(c["receivers"]["otlp"]), "the otlp receiver is not on localhost:4317"
for name, exporter in (("traces", "awsxray"), ("metrics", "awsemf")):
    assert "otlp" in p[name]["receivers"], f"otlp is not a receiver of the {name} pipeline"
    assert exporter in p[name]["exporters"], f"{exporter} is not an exporter of the {name} pipeline"
    assert exporter in c["exporters"], f"{exporter} is not configured"
print("ok: examples/otel/collector.yaml wires otlp into the traces and metrics pipelines")
PY

n=$(ls "$blocks" | wc -l)
# The values first (the block of step 0, which sets AWS_REGION), then every other block in order.
values=$(grep -l '^export AWS_REGION=' "$blocks"/*.sh | head -1)
[ -n "$values" ] || { echo "FAILED: $doc has no values block (export AWS_REGION=…)"; exit 1; }
# shellcheck disable=SC1090
source "$values"
export AWS_ACCESS_KEY_ID=check AWS_SECRET_ACCESS_KEY=check AWS_DEFAULT_REGION="$AWS_REGION"
for i in $(seq 1 "$n"); do
  [ "$blocks/$i.sh" = "$values" ] && continue
  # shellcheck disable=SC1090
  source "$blocks/$i.sh"
done
echo "$doc: the commands of $((n - 1)) blocks are accepted by their CLIs"
