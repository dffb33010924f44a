#!/usr/bin/env bash
# Builds the image podnet:<version> with podman, offline (FROM scratch),
# from the context image-context.sh assembles. Prints the image's name.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ctx=$(scripts/image-context.sh)
podman build --quiet --network none -t "podnet:$version" "$ctx" >&2
echo "podnet:$version"
