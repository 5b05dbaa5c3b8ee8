#!/usr/bin/env bash
# Install the Debian packages the demo, the tests and ./podnet-dev itself use, only those
# missing (idempotent). On a fresh Debian 12 / Ubuntu cloud image (python3 only) this is what
# makes the venv (python3-venv), the Makefile (make) and the tests' tools work.
# Usage: tools/system_deps.sh [--fresh-machine]
#   --fresh-machine  also what containers as machines need on the host: podman (with runc) and
#                    mmdebstrap, to build and run fresh Debian 12 containers
#                    (tests/integration/test_fresh_machine.py), and the SSH client the molecule
#                    scenario "fleet" reaches its container nodes with; e2fsprogs (mke2fs -d), with
#                    mmdebstrap, builds the Debian guest of tests/integration/test_real_vm_networkd.py, whose
#                    dual-stack pod the CNI bridge plugin (containernetworking-plugins) makes
set -euo pipefail
packages=(
  python3-venv      # the venv ./podnet-dev builds (ensurepip)
  make git rsync    # the Makefile over ./podnet-dev; ansible-test sanity syncs a tree with rsync
  procps            # kill, ps: stopping the DHCP responder
  iproute2          # ip, tc: the test lab plays the CNI with them
  iputils-ping      # "gateway reachable" checks
  busybox           # udhcpc, a real DHCP client
  isc-dhcp-client   # dhclient, a real DHCP client
  dhcpcd-base       # dhcpcd, a real DHCP client
  dnsmasq-base      # the DHCP server we benchmark against
  tcpdump           # proving DHCP stays inside the pod
  shellcheck        # ansible-test sanity checks the shell scripts with it
  systemd           # systemd-analyze: the node role's unit is scored offline (security), not run
)
case ${1:-} in
  --fresh-machine) packages+=(podman runc uidmap mmdebstrap openssh-client e2fsprogs containernetworking-plugins) ;;
  "") ;;
  *) echo "usage: $0 [--fresh-machine]" >&2; exit 2 ;;
esac
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
