#!/usr/bin/env bash
# Packages the three published crates (`cargo package --no-verify`: the manifest, the
# metadata, the file list) and type-checks the packages as a user's build would see them:
# each `.crate` unpacked, the main crate resolving `temporal-lambda-worker-layers` and its
# dev-dependency `temporal-lambda-local` (the local loop, `lambda-local`) to the unpacked
# ones (not the workspace), the workspace's Cargo.lock, `cargo check --all-targets`
# with `otel` (every source file, the unit tests included; no code is for the default
# features only, and the default build of the same files is the release zips' in
# scripts/lambda-build.sh). That is what `cargo package`'s verify proves (the package
# builds from its own files), short of code generation: the verify's full debug build took
# 15 min of a 2-core CI run beside the tests, the check of both feature sets 10 min, of one
# about half of that.
# The check builds in the workspace's target dir (CARGO_TARGET_DIR; by default a nested
# workspace gets a target dir of its own, checked from nothing each run: 3 min here), with
# the workspace's dev profile. `--all-targets` resolves the packages' dev-dependencies as
# clippy's `--all-targets` does, so every dependency clippy checked is reused (a check of
# the libraries alone resolved tokio and others without their test features, and checked
# most of the dependency tree again: 58 s of a CI run).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo package --quiet --no-verify --allow-dirty \
  -p temporal-lambda-worker-layers -p temporal-lambda-worker -p temporal-lambda-local
check=target/package-check
rm -rf "$check"
mkdir -p "$check"
for crate in temporal-lambda-worker-layers temporal-lambda-worker temporal-lambda-local; do
  tar -xzf "target/package/$crate-$version.crate" -C "$check"
done
cat > "$check/Cargo.toml" <<TOML
[workspace]
members = [
  "temporal-lambda-worker-$version",
  "temporal-lambda-worker-layers-$version",
  "temporal-lambda-local-$version",
]
resolver = "3"

[patch.crates-io]
temporal-lambda-worker-layers = { path = "temporal-lambda-worker-layers-$version" }
temporal-lambda-local = { path = "temporal-lambda-local-$version" }

$(sed -n '/^\[profile\.dev/,/^$/p' Cargo.toml)
TOML
cp Cargo.lock "$check/Cargo.lock"
CARGO_TARGET_DIR="$PWD/target" cargo check --quiet --manifest-path "$check/Cargo.toml" \
  --workspace --all-targets --features temporal-lambda-worker/otel
echo "packaged and checked: temporal-lambda-worker-layers, temporal-lambda-worker, temporal-lambda-local $version"
