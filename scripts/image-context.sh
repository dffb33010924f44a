#!/usr/bin/env bash
# Assembles the image's build context in DIR (default target/podnet-image):
# the static binaries from build-release.sh, Debian's nft and every shared
# library it loads (found with ldd) at their paths, and the Containerfile.
# Prints DIR. No registry is needed: the image is FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
ctx=${1:-target/podnet-image}
bin=$(scripts/build-release.sh)
rm -rf "$ctx"
root="$ctx/rootfs"
mkdir -p "$root/usr/sbin" "$root/run/podnet" "$root/etc/podnet" "$root/var/lib/podnet/ipam"
cp "$bin/podnet" "$bin/podnetd" "$root/"
nft=$(command -v nft)
cp "$nft" "$root/usr/sbin/nft"
for lib in $(ldd "$nft" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp Containerfile "$ctx/"
echo "$(cd "$ctx" && pwd)"
