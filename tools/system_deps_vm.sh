#!/usr/bin/env bash
# Install the Debian packages the real-VM test (tests/integration/test_real_vm.py) needs,
# only those missing (idempotent). The kernel (linux-image-*-cloud-amd64) and busybox-static
# are NOT installed: tests/lib/vm_image.py fetches them with `apt-get download` into its cache
# and extracts them there (busybox-static conflicts with the busybox package the other tests use,
# and the kernel has no business in /boot).
set -euo pipefail
# Modules shipped as .ko.xz are decompressed by Python's lzma; only a .ko.zst kernel
# would need the zstd command on top (bookworm's cloud kernel ships them uncompressed).
packages=(
  qemu-system-x86   # qemu-system-x86_64 (TCG; KVM is not required), pulls in seabios and ipxe-qemu
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# apt-get download needs package lists that know the kernel and busybox-static.
lists_ok=true
apt-cache show linux-image-cloud-amd64 busybox-static >/dev/null 2>&1 || lists_ok=false
[ ${#missing[@]} -eq 0 ] && $lists_ok && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]:-none}; package lists current: $lists_ok (run as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
