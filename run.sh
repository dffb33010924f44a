#!/usr/bin/env bash
# The main job on an embedded default: build podnet, bring up a lab of two
# nodes (192.168.1.2 and .3) with one pod each on the file store, print the
# connectivity matrix and the lab's state, then take it all down again.
# KEEP=1 leaves the lab up (remove it with `podnetctl lab down`);
# NODES=3 PODS=2 ./run.sh builds a bigger one.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/install-deps.sh

echo "==> building podnet, podnetd, podnetctl (release, static)"
bin="$(scripts/build-release.sh)"
lab_dir="${LAB_DIR:-/run/podnet-lab}"
ctl() { "$bin/podnetctl" lab --dir "$lab_dir" "$@"; }

# `lab up` removes what it made if it fails, and refuses to touch a lab
# that already exists; only a lab this run made is taken down at the end.
ctl up --nodes "${NODES:-2}" --pods-per-node "${PODS:-1}" --backend host-gw
if [ "${KEEP:-0}" != 1 ]; then
  trap 'ctl down >/dev/null 2>&1 || true' EXIT
fi
echo
echo "==> connectivity matrix (OK = connected, and the receiver saw the sender's own address)"
ctl check
echo
echo "==> lab status"
ctl status
if [ "${KEEP:-0}" = 1 ]; then
  echo "==> the lab stays up: $bin/podnetctl lab --dir $lab_dir down"
fi
