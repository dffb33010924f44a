#!/usr/bin/env bash
# Runs every test: pure unit and property tests, and the privileged
# integration tests that build throwaway network namespaces (root only).
# JUnit output goes to target/nextest/ci/junit.xml.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/install-deps.sh

# The lab tests run podnetd and podnet next to podnetctl: build every
# binary, not only the test harnesses. The crash tests need the failpoints
# (PODNET_FAILPOINT), which only this test build has.
features=podnet-cni/failpoints,podnetd/failpoints
echo "==> cargo build --workspace --bins --features $features"
cargo build --workspace --bins --quiet --features "$features"

# The image test builds podnet's image from this context (the release
# binaries and nft); the benchmarks reuse the release build.
echo "==> scripts/image-context.sh"
scripts/image-context.sh >/dev/null

echo "==> cargo nextest run --workspace --profile ci --features $features"
cargo nextest run --workspace --profile ci --features "$features" "$@"
