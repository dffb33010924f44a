#!/usr/bin/env bash
# Builds the image localhost/podnet:<version> with podman, offline (FROM
# scratch), from the context image-context.sh assembles. Prints the image's
# name: the manifest's, fully qualified, which is also the name the image
# gets when loaded into containerd
# (podman save IMAGE | ctr -n k8s.io images import -).
# With --name, prints the name and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name="localhost/podnet:$version"
if [[ "${1:-}" == --name ]]; then
  echo "$name"
  exit 0
fi
ctx=$(scripts/image-context.sh)
podman build --quiet --network none -t "$name" "$ctx" >&2
echo "$name"
