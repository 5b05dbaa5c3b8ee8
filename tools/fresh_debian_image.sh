#!/usr/bin/env bash
# Build (once) and print the name of a podman image of a fresh Debian 12 machine: the
# userland of a cloud image as far as this project cares - Debian's essential packages, apt,
# and python3; no make, no python3-venv, no git. Used by tests/integration/test_fresh_machine.py
# (the README's commands on a fresh machine), reusable for multi-node scenarios.
#
# Usage: tools/fresh_debian_image.sh [PACKAGE...]
#   PACKAGE...  extra Debian packages on top of python3 (default: none)
# Prints the image name (localhost/virtnet-podnet-fresh:<hash>) as the last line of stdout.
#
# The rootfs is made by mmdebstrap (as root) from Debian's mirror and cached as a tarball under
# ${XDG_CACHE_HOME:-~/.cache}/virtnet-podnet/images, keyed by a hash of the suite, the mirrors
# and the package list; `podman import` turns it into an image, which is reused while it exists.
# Needs root, mmdebstrap and podman (tools/system_deps.sh --fresh-machine installs them).
# Podman on this kind of host wants --runtime runc and --cgroup-manager=cgroupfs; the image
# itself does not care.
set -euo pipefail
SUITE=bookworm
MIRROR=${FRESH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${FRESH_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=(python3 "$@")
# Bump when the way the image is made changes, so that cached images are rebuilt.
RECIPE=1
sources=(
  "deb $MIRROR $SUITE main"
  "deb $MIRROR $SUITE-updates main"
  "deb $SECURITY_MIRROR $SUITE-security main"
)
key=$(printf '%s\n' "recipe=$RECIPE" "suite=$SUITE" "${sources[@]}" "${packages[@]}" | sha256sum | cut -c1-16)
image="localhost/virtnet-podnet-fresh:$key"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/virtnet-podnet/images"
tarball="$cache_dir/debian12-$key.tar"

podman_() { "$(dirname "$0")/podman.sh" "$@"; }  # runc, cgroupfs, vfs on overlayfs

if podman_ image exists "$image"; then
  echo "$image"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "$0: building the rootfs needs root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "$0: mmdebstrap is not installed" >&2; exit 1; }
mkdir -p "$cache_dir"
if [ ! -s "$tarball" ]; then
  echo "building $tarball (Debian $SUITE, minbase + ${packages[*]})" >&2
  tmp="$tarball.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # minbase: essential packages and apt, as in a container or cloud image. mmdebstrap removes
  # the package lists afterwards, so the first apt-get install needs an apt-get update, as on a
  # real fresh machine.
  mmdebstrap --quiet --variant=minbase --format=tar \
    --include="$(IFS=,; echo "${packages[*]}")" \
    "$SUITE" "$tmp" "${sources[@]}" >&2
  mv "$tmp" "$tarball"
  trap - EXIT
fi
podman_ import --quiet --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
echo "$image"
