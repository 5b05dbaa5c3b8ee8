#!/usr/bin/env bash
# podman as this project's tests and benchmarks run it (the fleet's nodes, the fresh machine):
# - --runtime runc: crun refuses a hybrid cgroup v1 layout; --cgroup-manager=cgroupfs: no
#   systemd manages the host's cgroups in a container or a CI sandbox;
# - the vfs storage driver where podman's storage would sit on overlayfs - a machine that is
#   itself a container (common for CI): the overlay driver refuses overlayfs as its lower layer
#   ("'overlay' is not supported over overlayfs, a mount_program is required") and
#   fuse-overlayfs is one more package and a FUSE device; vfs is slower but needs nothing.
# Usage: tools/podman.sh ARGS...   (as podman)
set -euo pipefail
args=(--runtime runc --cgroup-manager=cgroupfs)
storage=${PODNET_PODMAN_STORAGE:-/var/lib/containers/storage}  # podman's default graph root for root
probe=$storage
while [ ! -e "$probe" ]; do probe=$(dirname "$probe"); done  # the filesystem it will be made on
if [ "$(stat -f -c %T "$probe")" = overlayfs ]; then
  args+=(--storage-driver vfs)
fi
exec podman "${args[@]}" "$@"
