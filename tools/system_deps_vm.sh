#!/usr/bin/env bash
# Install the Debian packages the real-VM test (tests/integration/test_real_vm.py) needs,
# only those missing (idempotent). The kernel (linux-image-*-cloud-amd64) and busybox-static
# are NOT installed: tests/lib/vm_image.py fetches them with `apt-get download` into its cache
# and extracts them there (busybox-static conflicts with the busybox package the other tests use,
# and the kernel has no business in /boot).
set -euo pipefail
packages=(
  qemu-system-x86   # qemu-system-x86_64 (TCG; KVM is not required)
  zstd xz-utils     # decompress .ko.zst/.ko.xz modules when the kernel ships them compressed
  apt               # apt-get download for the kernel and busybox-static
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
