#!/usr/bin/env bash
# Assembles the image's build context in DIR (default target/podnet-image):
# the static binaries from build-release.sh, Debian's nft and wireguard-go
# and every shared library they load (found with ldd) at their paths, and
# the Containerfile.
# Prints DIR. No registry is needed: the image is FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
ctx=${1:-target/podnet-image}
bin=$(scripts/build-release.sh)
rm -rf "$ctx"
root="$ctx/rootfs"
mkdir -p "$root/usr/sbin" "$root/run/podnet" "$root/etc/podnet" "$root/var/lib/podnet/ipam"
cp "$bin/podnet" "$bin/podnetd" "$root/"
# nft, and wireguard-go for the wireguard backend's own container on
# kernels without WireGuard (deploy/wireguard-go.yaml).
mkdir -p "$root/usr/bin"
for tool in /usr/sbin/nft /usr/bin/wireguard-go; do
  cp "$tool" "$root$tool"
  for lib in $(ldd "$tool" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
cp Containerfile "$ctx/"
echo "$(cd "$ctx" && pwd)"
