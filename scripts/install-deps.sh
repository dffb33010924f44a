#!/usr/bin/env bash
# Installs what podnet needs on a Debian machine: the kernel tools the
# plugin and tests drive, and the Rust test runner. Sourced by ./run.sh and
# ./test.sh, so a missing dependency can never hide.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "podnet: this must run as root: it creates network namespaces and installs packages." >&2
  echo "        try: sudo $0" >&2
  exit 1
fi

# iptables: the reference portmap and firewall plugins drive it.
# podman, runc, busybox-static: the real-runtime test.
# iperf3, sockperf: the datapath benchmark.
# wireguard-go, wireguard-tools: the wireguard backend where the kernel
# has no WireGuard (as here), and `wg` for its benchmark's baseline.
# etcd-server, etcd-client (etcdctl): the etcd store's tests start their
# own members, in network namespaces of their own. protobuf-compiler:
# the etcd-client crate's build. containerd: the CRI tests start their own,
# in network namespaces of their own.
APT_PACKAGES=(iproute2 iputils-ping nftables iptables containernetworking-plugins
  podman runc busybox-static iperf3 sockperf ca-certificates wireguard-go wireguard-tools
  etcd-server etcd-client protobuf-compiler containerd)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  # No package may start a service: etcd-server would otherwise start an
  # etcd in the root namespace on 127.0.0.1:2379, and containerd its
  # daemon on /run/containerd.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -z "$own_policy" ] || rm -f "$policy"
fi

if ! command -v cargo >/dev/null 2>&1; then
  for dir in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$dir/cargo" ] && export PATH="$dir:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "podnet: cargo not found. Install Rust >= 1.89 (https://rustup.rs) and re-run." >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi
