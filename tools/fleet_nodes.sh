#!/usr/bin/env bash
# Nodes for fleet tests and benchmarks: podman containers that boot a fresh Debian 12 with
# systemd as PID 1 and sshd, reached over real SSH as the user `ops` (sudo without password),
# with Debian's own python3 (3.11) - what a Kubernetes node looks like to the controller. They
# carry the lab's stand-ins for kubelet's tools (the CNI reference plugins, busybox's DHCP
# client and ping for the VM stand-in), nothing of this collection and no pip.
#
#   tools/fleet_nodes.sh up DIR COUNT [PREFIX]   start COUNT nodes <PREFIX>-1..COUNT (default prefix
#                                                podnet-fleet-<random>); write into DIR:
#                                                  id_ed25519(.pub)  the controller's key
#                                                  ssh_config        Host fleet-1..COUNT (ssh -F DIR/ssh_config fleet-1),
#                                                                    one file per node in ssh_config.d/
#                                                  prefix            the container prefix, for `down`
#   tools/fleet_nodes.sh down DIR                remove the nodes named in DIR/prefix (none is fine)
#   tools/fleet_nodes.sh restart DIR N           `podman restart` node N, wait until it boots again
#
# The image comes from tools/fresh_debian_image.sh (mmdebstrap + podman import, cached). Podman
# on this kind of host needs --runtime runc (crun refuses a hybrid cgroup v1 layout),
# --cgroup-manager=cgroupfs, explicit ulimits (no CAP_SYS_RESOURCE) and --privileged (network
# namespaces, taps, systemd's sandboxing inside). The nodes sit on podman's default bridge; SSH
# goes to their addresses there, inside namespaces this script made.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_PACKAGES=(systemd systemd-sysv openssh-server sudo iproute2 busybox iputils-ping containernetworking-plugins)
podman_() { tools/podman.sh "$@"; }  # runc, cgroupfs, vfs on overlayfs
die() { echo "$0: $*" >&2; exit 1; }

# A node boots in 5-10 s on a quiet machine; beside the rest of `make test` on two cores
# (load 10-15) three nodes booting at once took over a minute.
BOOT_TIMEOUT=${FLEET_BOOT_TIMEOUT:-240}

wait_booted() {  # wait_booted CONTAINER: systemd reached a steady state and sshd listens
  local name=$1 state deadline=$((SECONDS + BOOT_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    state=$(podman_ exec "$name" systemctl is-system-running 2>/dev/null || true)
    if [ "$state" = running ] || [ "$state" = degraded ]; then
      podman_ exec "$name" systemctl is-active --quiet ssh && return 0
    fi
    sleep 0.5
  done
  die "$name did not boot within $BOOT_TIMEOUT s (systemd: ${state:-unknown})"
}

address_of() { podman_ inspect -f '{{.NetworkSettings.IPAddress}}' "$1"; }

write_ssh_config() {  # write_ssh_config DIR PREFIX N: node N's entry (ssh_config includes every entry)
  local dir=$1 prefix=$2 n=$3 address
  address=$(address_of "$prefix-$n")
  [ -n "$address" ] || die "$prefix-$n has no address"
  mkdir -p "$dir/ssh_config.d"
  cat > "$dir/ssh_config.d/fleet-$n.conf.tmp" <<CONF
Host fleet-$n
  HostName $address
  User ops
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  # Throwaway lab nodes with fresh host keys on every run.
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CONF
  mv "$dir/ssh_config.d/fleet-$n.conf.tmp" "$dir/ssh_config.d/fleet-$n.conf"
  [ -e "$dir/ssh_config" ] || echo "Include $dir/ssh_config.d/*.conf" > "$dir/ssh_config"
}

# The user `ops` with the controller's key and sudo, and host keys of its own (the image's were
# made once, at build time).
PREPARE_NODE='set -e
rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -A
id ops >/dev/null 2>&1 || useradd -m -s /bin/bash ops
install -d -m 0700 -o ops -g ops /home/ops/.ssh
cat > /home/ops/.ssh/authorized_keys
chown ops:ops /home/ops/.ssh/authorized_keys; chmod 0600 /home/ops/.ssh/authorized_keys
echo "ops ALL=(ALL) NOPASSWD: ALL" > /etc/sudoers.d/ops; chmod 0440 /etc/sudoers.d/ops
systemctl restart ssh'

up() {
  local dir=$1 count=$2 prefix=${3:-podnet-fleet-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')}
  [[ $count =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive number"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local image
  image=$(tools/fresh_debian_image.sh "${NODE_PACKAGES[@]}" | tail -n1)
  [ -s "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C podnet-fleet -f "$dir/id_ed25519"
  echo "$prefix" > "$dir/prefix"
  local i
  for i in $(seq 1 "$count"); do
    podman_ run --detach --name "$prefix-$i" --hostname "fleet-$i" --privileged --systemd=always \
      --ulimit nofile=10000:10000 --ulimit nproc=4096:4096 "$image" /sbin/init >/dev/null
  done
  for i in $(seq 1 "$count"); do
    wait_booted "$prefix-$i"
    podman_ exec -i "$prefix-$i" bash -c "$PREPARE_NODE" < "$dir/id_ed25519.pub"
    write_ssh_config "$dir" "$prefix" "$i"
  done
  echo "$count nodes up: $prefix-1..$count; ssh -F $dir/ssh_config fleet-1"
}

down() {
  local dir=$1 prefix
  prefix=$(cat "$dir/prefix" 2>/dev/null) || return 0
  [ -n "$prefix" ] || return 0
  local names
  names=$(podman_ ps -a --format '{{.Names}}' | grep -E "^${prefix}-[0-9]+$" || true)
  if [ -n "$names" ]; then
    # shellcheck disable=SC2086  # one argument per name
    podman_ rm --force --time 0 $names >/dev/null
  fi
  rm -rf "$dir/prefix" "$dir/ssh_config" "$dir/ssh_config.d"
}

restart() {
  local dir=$1 n=$2 prefix
  prefix=$(cat "$dir/prefix") || die "no nodes in $dir"
  podman_ restart --time 10 "$prefix-$n" >/dev/null
  wait_booted "$prefix-$n"
  # The address may change with the restart.
  write_ssh_config "$dir" "$prefix" "$n"
}

case ${1:-} in
  up) [ $# -ge 3 ] || die "usage: $0 up DIR COUNT [PREFIX]"; up "$2" "$3" "${4:-}" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
  restart) [ $# -eq 3 ] || die "usage: $0 restart DIR N"; restart "$2" "$3" ;;
  *) die "usage: $0 up DIR COUNT [PREFIX] | down DIR | restart DIR N" ;;
esac
