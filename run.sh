#!/usr/bin/env bash
# The main job on an embedded default: build podnet, attach two pods to a
# throwaway node namespace with the real plugin, and show they reach each
# other. Everything it makes is removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/install-deps.sh

echo "==> building podnet (release, static)"
PLUGIN="$(scripts/build-release.sh)/podnet"

tag="podnet-demo-$$"
node="$tag-node"
work="$(mktemp -d)"
cleanup() {
  for ns in "$node" "$tag-pod-a" "$tag-pod-b"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for ns in "$node" "$tag-pod-a" "$tag-pod-b"; do ip netns add "$ns"; done
ip -n "$node" link set lo up

conf=$(cat <<JSON
{"cniVersion":"1.1.0","name":"podnet-demo","type":"podnet","bridge":"podnet0",
 "ipam":{"subnet":"10.244.1.0/24","dataDir":"$work/ipam"},"subnetFile":"$work/subnet.json"}
JSON
)
cni() { # cni COMMAND POD
  echo "$conf" | ip netns exec "$node" env CNI_COMMAND="$1" CNI_CONTAINERID="demo-$2" \
    CNI_NETNS="/var/run/netns/$tag-$2" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$2" "$PLUGIN"
}
ip_of() { grep -o '"address":"[^"/]*' | head -n 1 | cut -d'"' -f4; }

echo "==> node namespace $node, bridge podnet0, subnet 10.244.1.0/24"
a=$(cni ADD pod-a | ip_of)
b=$(cni ADD pod-b | ip_of)
echo "    pod-a eth0 = $a"
echo "    pod-b eth0 = $b"
echo "==> pod-a -> pod-b"
ip netns exec "$tag-pod-a" ping -c 3 -i 0.2 -W 2 "$b"
echo "==> pod-b -> pod-a"
ip netns exec "$tag-pod-b" ping -c 3 -i 0.2 -W 2 "$a"
cni DEL pod-a
cni DEL pod-b
echo "==> OK: two pods on one node reached each other; DEL removed both attachments."
