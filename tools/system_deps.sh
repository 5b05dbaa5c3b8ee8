#!/usr/bin/env bash
# Install the Debian packages the tests and the demo use, only those missing (idempotent).
set -euo pipefail
packages=(
  iproute2          # ip, tc: the test lab plays the CNI with them
  iputils-ping      # "gateway reachable" checks
  busybox           # udhcpc, a real DHCP client
  isc-dhcp-client   # dhclient, a real DHCP client
  dhcpcd-base       # dhcpcd, a real DHCP client
  dnsmasq-base      # the DHCP server we benchmark against
  tcpdump           # proving DHCP stays inside the pod
  shellcheck        # ansible-test sanity checks the shell scripts with it
  rsync git make
  python3-venv
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
