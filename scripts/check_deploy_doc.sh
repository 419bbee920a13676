#!/usr/bin/env bash
# Checks the commands in docs/deploy.md without an AWS account or a Temporal server: sources the
# guide's values block, then runs each of its command blocks with the `aws` CLI (awscli from PyPI)
# and the `temporal` CLI pointed at a closed port on 127.0.0.1. A command the CLI rejects (unknown
# option, missing argument, invalid choice, unreadable file) fails the check; one that gets as far
# as connecting passes. `set -u` makes a value used but not defined in the values block fail too.
# The build step (`bash scripts/lambda-build.sh`) is skipped here: the test command runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v aws >/dev/null || python3 -m pip install --quiet --disable-pip-version-check awscli
python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml
blocks=$(mktemp -d)
trap 'rm -rf "$blocks"' EXIT
awk -v dir="$blocks" '/^```sh$/ {n++; f=1; next} /^```$/ {f=0; next} f {print > (dir "/" n ".sh")}' docs/deploy.md
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
cargo() {
  [ "$1 $2" = "lambda build" ] || { echo "FAILED: unexpected cargo $*"; return 1; }
  local help arg prev=""
  help=$(command cargo lambda build --help)
  for arg in "$@"; do
    if [[ "$arg" == --* ]] && ! grep -qE -- "(^|[ ,])${arg%%=*}([ ,=]|$)" <<<"$help"; then
      echo "FAILED: cargo lambda build has no option $arg"; return 1
    fi
    if [ "$prev" = --include ] && [ ! -e "${arg#*:}" ]; then
      echo "FAILED: --include $arg: ${arg#*:} does not exist"; return 1
    fi
    prev=$arg
  done
  echo "ok: cargo lambda build (options accepted)"
}

# The ADOT collector configuration the guide packages: valid YAML, the OTLP receiver wired
# into a traces pipeline (awsxray) and a metrics pipeline (awsemf).
python3 - examples/otel/collector.yaml <<'PY'
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
# shellcheck disable=SC1090
source "$blocks/1.sh" # the values
export AWS_ACCESS_KEY_ID=check AWS_SECRET_ACCESS_KEY=check AWS_DEFAULT_REGION="$AWS_REGION"
for i in $(seq 2 "$n"); do
  # shellcheck disable=SC1090
  source "$blocks/$i.sh"
done
echo "docs/deploy.md: the commands of $((n - 1)) blocks are accepted by their CLIs"
