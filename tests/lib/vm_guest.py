"""A second real VM: a Debian 12 guest whose network is configured by systemd-networkd.

    image = vm_guest.build()          # cached; rebuilt only when an input changes
    result = vm_guest.boot(image, pod.netns, vm_image.tap_nic(pod.mac), ping6="fd00:58:7::1")
    result.lease["ip"], result.ping, result.state6, result.ping6, result.boot_to_lease

The guest is what most cloud images are: systemd as PID 1, udev, and systemd-networkd as the
DHCP client (DHCPv4, and DHCPv6 + Router Advertisements), from Debian's own packages. It
boots Debian's cloud kernel (the one tests/lib/vm_image.py fetches, reused from its cache)
under qemu TCG, on the pod's tap, and reports on the serial console.

Everything lives OUTSIDE the repository, in vm_image's cache (``$VIRTNET_PODNET_VM_CACHE``,
default ``~/.cache/virtnet-podnet/vm``), under ``guest/``:

- ``rootfs/<key>/``: ``mmdebstrap --variant=essential`` of bookworm plus systemd,
  systemd-sysv, udev, iproute2 and iputils-ping (no docs, man pages, locales or udev hwdb),
  keyed by suite, sources, packages and recipe; made once, as root, from Debian's mirror;
- ``images/<key>/``: ``vmlinuz``; ``initrd.img``, a busybox initramfs (vm_image's writer)
  that loads virtio_pci, virtio_blk and virtio_net and switches to the root disk;
  ``rootfs.ext4``, the rootfs plus this module's systemd configuration, made by
  ``mke2fs -d`` (e2fsprogs; no loop mount, no root needed for this step). ``key`` hashes the
  rootfs key, the kernel package, the busybox package, the module list and every file added.

qemu attaches ``rootfs.ext4`` with ``snapshot=on``: every boot starts from the pristine
image, and concurrent boots share it. The guest boots to ``podnet.target`` (basic.target,
systemd-networkd, the report; no getty, no logind, no timesyncd). ``podnet-report.service``
waits (bounded, ``podnet.wait=`` seconds) with systemd-networkd-wait-online, prints, and
powers off at once:

    PODNET-BOOT                                     (the initramfs)
    PODNET-UP uptime=14.07 ifname=enp0s2            (the report started; guest seconds since boot)
    PODNET-LEASE ip=10.244.7.10 mask=255.255.255.0 prefix=24 router=10.244.7.1 mtu=1450 mac=... routes=...
    PODNET-STATE addr=10.244.7.10/24 mtu=1450 mac=... gateway=10.244.7.1
    PODNET-ROUTE <one line of `ip -4 route`>
    PODNET-PING ok|fail gateway=...
    PODNET-NOLEASE mac=...                          (instead of the four above: no IPv4 in time)
    PODNET-ADDR6 <one line of `ip -6 -o addr show dev IF`, trimmed>
    PODNET-STATE6 addr=fd00:58:7::2/128 gateway=fe80::... (podnet.ping6= given; DHCPv6 gives a /128)
    PODNET-ROUTE6 <one line of `ip -6 route`>
    PODNET-PING6 ok|fail target=...                 (when podnet.ping6= was given)
    PODNET-LOG <one line of systemd-networkd's journal>
    PODNET-DEBUG <one line of the whole journal>    (only with $VIRTNET_PODNET_VM_DEBUG set)
    PODNET-DONE

``Boot.marks`` keys stop at the digit: the IPv6 lines count as PODNET-ADDR, -STATE, -ROUTE, -PING
there, after their IPv4 namesakes; ``GuestBoot`` parses each tag exactly.

``PODNET-LEASE`` is networkd's own lease file (/run/systemd/netif/leases/IFINDEX), so it
shows what DHCP delivered; ``PODNET-STATE`` what the kernel holds after networkd applied it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lib import vm_image

SUITE = "bookworm"
MIRROR_ENV = "VIRTNET_PODNET_DEBIAN_MIRROR"
SECURITY_MIRROR_ENV = "VIRTNET_PODNET_DEBIAN_SECURITY_MIRROR"
MMDEBSTRAP = "mmdebstrap"
MKE2FS = "mke2fs"
PACKAGES = ("systemd", "systemd-sysv", "udev", "iproute2", "iputils-ping")
# mmdebstrap's own merged-/usr hook installs usr-is-merged; without it apt satisfies
# init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, and so with perl (40 MB).
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
# Not needed to boot and configure a NIC; the hwdb alone is 20 MB (bookworm's udev ships it in /lib).
PATH_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*",
                 "/lib/udev/hwdb.d/*", "/usr/lib/udev/hwdb.d/*")
ROOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net")
RECIPE = 2  # bump when the rootfs is made differently: cached rootfs trees are rebuilt
FORMAT_VERSION = 1  # bump when the image is assembled differently
MMDEBSTRAP_TIMEOUT = 900
MKE2FS_TIMEOUT = 120
MIRROR_PROBE_TIMEOUT = 10
BOOT_TIMEOUT = 180.0
WAIT_ONLINE = 30  # seconds the guest waits for each family before it reports what it has
# One vCPU: a second one (multi-threaded TCG) made the boot slower, not faster, on a 2-CPU host.
MEMORY_MB = 384

NETWORK_UNIT = """\
# The virtio NIC, configured the way a cloud image's networkd is: DHCPv4 and DHCPv6, RAs.
[Match]
Driver=virtio_net

[Network]
DHCP=yes
IPv6AcceptRA=yes
LinkLocalAddressing=ipv6

[DHCPv4]
# What netplan-generated configurations of cloud images set; networkd's own default is no.
UseMTU=yes
"""

TARGET_UNIT = """\
[Unit]
Description=podnet test guest
Requires=basic.target
Wants=systemd-networkd.service podnet-report.service
After=basic.target
AllowIsolate=yes
"""

REPORT_UNIT = """\
[Unit]
Description=podnet report on the serial console
Wants=systemd-networkd.service
After=systemd-networkd.service basic.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/podnet-report
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
TTYReset=no
TTYVHangup=no
"""

# Slow or pointless in a one-shot test guest (each unit costs a fork and exec under TCG, the
# modprobe@ ones fail anyway: no kmod here, virtio is loaded by the initramfs). podnet.target
# does not pull getty, logind or the timers; masked anyway, so no later change can.
MASKED = ("systemd-firstboot.service", "systemd-logind.service", "getty.target", "serial-getty@ttyS0.service",
          "systemd-journal-flush.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
          "systemd-random-seed.service", "systemd-timesyncd.service", "systemd-hwdb-update.service",
          "e2scrub_reap.service", "systemd-tmpfiles-clean.timer", "fstrim.timer", "e2scrub_all.timer",
          "dpkg-db-backup.timer", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
          "modprobe@.service", "kmod-static-nodes.service", "systemd-modules-load.service",
          "dev-hugepages.mount", "dev-mqueue.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
          "sys-kernel-config.mount", "sys-fs-fuse-connections.mount", "proc-sys-fs-binfmt_misc.automount",
          "systemd-binfmt.service", "systemd-sysusers.service", "systemd-sysctl.service", "systemd-pstore.service",
          "systemd-repart.service", "systemd-machine-id-commit.service", "systemd-remount-fs.service",
          "systemd-tmpfiles-setup-dev.service", "systemd-ask-password-console.path", "cryptsetup.target",
          "integritysetup.target", "veritysetup.target", "remote-fs.target")
# Generators run before any unit is loaded; none of them has anything to generate here.
GENERATORS_OFF = ("systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-fstab-generator",
                  "systemd-getty-generator", "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
                  "systemd-integritysetup-generator", "systemd-rc-local-generator", "systemd-run-generator",
                  "systemd-system-update-generator", "systemd-sysv-generator", "systemd-veritysetup-generator")

JOURNALD_CONF = """\
[Journal]
Storage=volatile
ForwardToConsole=no
"""

REPORT_SCRIPT = r"""#!/bin/sh
# The guest's report: wait for networkd (bounded), print what it configured, power off.
ping6="" wait=30 debug=""
for word in $(cat /proc/cmdline); do
    case $word in
    podnet.ping6=*) ping6=${word#*=} ;;
    podnet.wait=*) wait=${word#*=} ;;
    podnet.debug=*) debug=${word#*=} ;;
    esac
done
nic() {  # the first Ethernet link with a device behind it
    for dir in /sys/class/net/*; do
        [ "$(cat "$dir/type" 2>/dev/null)" = 1 ] && [ -e "$dir/device" ] && { echo "${dir##*/}"; return; }
    done
}
# udev may still be loading virtio_net when this unit starts (a busy host slows TCG down to
# minutes): wait for the NIC, bounded by the same $wait as networkd.
ifname=$(nic) i=0
while [ -z "$ifname" ] && [ $i -lt $((wait * 5)) ]; do sleep 0.2; i=$((i + 1)); ifname=$(nic); done
echo "PODNET-UP uptime=$(cut -d' ' -f1 /proc/uptime) ifname=$ifname"
[ -n "$ifname" ] || { echo "PODNET-ERROR no NIC"; echo PODNET-DONE; systemctl poweroff -ff; }
mac=$(cat "/sys/class/net/$ifname/address")
ifindex=$(cat "/sys/class/net/$ifname/ifindex")
online() {  # online FAMILY: routable with that family (networkd's own notion), within $wait seconds
    /lib/systemd/systemd-networkd-wait-online --interface="$ifname" "$1" --operational-state=routable \
        --timeout="$wait" >/dev/null 2>&1
}
settled() {  # settled COMMAND...: bounded poll (10 s) for output from COMMAND
    i=0
    while [ -z "$("$@" 2>/dev/null)" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
}
prefix_of() {  # dotted netmask -> prefix length
    bits=0
    saved=$IFS; IFS=.; set -- $1; IFS=$saved
    for octet in "$@"; do
        while [ "$octet" -gt 0 ]; do bits=$((bits + (octet & 1))); octet=$((octet >> 1)); done
    done
    echo $bits
}
if online --ipv4; then
    lease=/run/systemd/netif/leases/$ifindex
    settled cat "$lease"
    # Read in the shell: every fork and exec costs tens of milliseconds under TCG.
    leased="" mask="" router="" mtu="" classless="" routes=""
    while IFS='=' read -r key value; do
        case $key in
        ADDRESS) leased=$value ;;
        NETMASK) mask=$value ;;
        ROUTER) router=$value ;;
        MTU) mtu=$value ;;
        CLASSLESS_ROUTES) classless=$value ;;
        esac
    done < "$lease"
    # "dst/len,gw dst/len,gw" -> "dst/len>gw,dst/len>gw", as vm_image's udhcpc script prints them
    for route in $classless; do routes="$routes${routes:+,}${route%%,*}>${route#*,}"; done
    echo "PODNET-LEASE ip=$leased mask=$mask prefix=$(prefix_of "$mask") router=$router mtu=$mtu mac=$mac" \
        "routes=$routes"
    settled ip -4 route show default dev "$ifname"
    addr=$(ip -4 -o addr show dev "$ifname" scope global | sed -n 's/.* inet \([0-9./]*\) .*/\1/p' | head -n 1)
    gateway=$(ip -4 route show default dev "$ifname" | sed -n 's/^default via \([0-9.]*\) .*/\1/p' | head -n 1)
    echo "PODNET-STATE addr=$addr mtu=$(cat "/sys/class/net/$ifname/mtu") mac=$mac gateway=$gateway"
    ip -4 route show | while read -r line; do echo "PODNET-ROUTE $line"; done
    if [ -n "$gateway" ] && ping -c 3 -i 0.2 -W 2 "$gateway" >/dev/null 2>&1; then
        echo "PODNET-PING ok gateway=$gateway"
    else
        echo "PODNET-PING fail gateway=$gateway"
    fi
else
    echo "PODNET-NOLEASE mac=$mac"
fi
if [ -n "$ping6" ]; then
    if online --ipv6; then
        # A global address DAD has finished with, and a default route (from an RA).
        settled ip -6 -o addr show dev "$ifname" scope global -tentative
        settled ip -6 route show default dev "$ifname"
    fi
    addr6=$(ip -6 -o addr show dev "$ifname" scope global -tentative | sed -n 's/.* inet6 \([0-9a-f:/]*\) .*/\1/p' \
        | head -n 1)
    gateway6=$(ip -6 route show default dev "$ifname" | sed -n 's/^default via \([0-9a-f:]*\) .*/\1/p' | head -n 1)
    echo "PODNET-STATE6 addr=$addr6 gateway=$gateway6"
fi
ip -6 -o addr show dev "$ifname" | while read -r line; do echo "PODNET-ADDR6 ${line#*: }"; done
ip -6 route show | while read -r line; do echo "PODNET-ROUTE6 $line"; done
if [ -n "$ping6" ]; then
    if ping -6 -c 3 -i 0.2 -W 2 "$ping6" >/dev/null 2>&1; then
        echo "PODNET-PING6 ok target=$ping6"
    else
        echo "PODNET-PING6 fail target=$ping6"
    fi
fi
if [ -n "$debug" ]; then
    journalctl -b -q -o short-monotonic --no-pager 2>&1 | while read -r line; do echo "PODNET-DEBUG $line"; done
fi
journalctl -b -q -o cat -u systemd-networkd --no-pager 2>&1 | while read -r line; do
    echo "PODNET-LOG $line"
done
echo PODNET-DONE
# At once: nothing on the disk is kept (qemu's snapshot=on), and qemu exits on poweroff.
systemctl poweroff -ff
"""

INIT_TEMPLATE = vm_image.INIT_PREAMBLE + r"""i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
mkdir -p /newroot
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "PODNET-ERROR mount /dev/vda"
    echo PODNET-DONE
    poweroff -f
fi
for fs in dev proc sys; do mount --move "/$fs" "/newroot/$fs"; done
exec switch_root /newroot /sbin/init
"""


@dataclass(frozen=True)
class GuestImage:
    """Duck-types vm_image.VmImage for vm_image.qemu_argv (kernel, initrd), plus the root disk."""

    kernel: Path
    initrd: Path
    rootfs: Path
    kernel_version: str
    modules: tuple[str, ...]
    key: str
    rootfs_key: str


class GuestUnavailable(vm_image.VmImageError):
    """The guest cannot be built on this machine (a tool or the mirror is missing): skip - or fail, under CI=true."""


def sources() -> list[str]:
    mirror = os.environ.get(MIRROR_ENV) or os.environ.get("FRESH_DEBIAN_MIRROR") or "http://deb.debian.org/debian"
    security = (os.environ.get(SECURITY_MIRROR_ENV) or os.environ.get("FRESH_DEBIAN_SECURITY_MIRROR")
                or "http://deb.debian.org/debian-security")
    return [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main",
            f"deb {security} {SUITE}-security main"]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def rootfs_key() -> str:
    return _digest({"recipe": RECIPE, "suite": SUITE, "sources": sources(), "packages": PACKAGES,
                    "excludes": PATH_EXCLUDES})


def mirror_reachable() -> str | None:
    """None when the first source's Release file answers, else why not."""
    _deb, url, suite, _component = sources()[0].split()
    try:
        with urllib.request.urlopen(f"{url}/dists/{suite}/Release", timeout=MIRROR_PROBE_TIMEOUT) as response:
            response.read(64)
    except (OSError, urllib.error.URLError) as exc:
        return f"{url}: {exc}"
    return None


# -- the rootfs -----------------------------------------------------------------------------------
def build_rootfs(cache: Path) -> tuple[Path, str]:
    """The mmdebstrap tree for the current inputs, made once (needs root, mmdebstrap, the mirror)."""
    key = rootfs_key()
    target = cache / "guest" / "rootfs" / key
    if (target / ".complete").exists():
        return target, key
    problems = [f"{tool} not found" for tool in (MMDEBSTRAP,) if shutil.which(tool) is None]
    if os.geteuid() != 0:
        problems.append("building the rootfs needs root (mmdebstrap's root mode)")
    if not problems:
        unreachable = mirror_reachable()
        if unreachable:
            problems.append(f"Debian mirror unreachable: {unreachable}")
    if problems:
        raise GuestUnavailable(f"cannot build the Debian guest rootfs: {'; '.join(problems)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        hooks = [f"--hook-dir={MERGED_USR_HOOK}"] if os.path.isdir(MERGED_USR_HOOK) else []
        argv = [MMDEBSTRAP, "--quiet", "--mode=root", "--variant=essential", *hooks, "--include=" + ",".join(PACKAGES),
                *(f"--dpkgopt=path-exclude={pattern}" for pattern in PATH_EXCLUDES),
                SUITE, str(tmp / "root"), *sources()]
        # stdin is not a tty: mmdebstrap would read sources from it, so give it nothing.
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=MMDEBSTRAP_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise vm_image.VmImageError(f"mmdebstrap failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
        (tmp / "root" / ".complete").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp / "root", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, key


def guest_files(machine_id: str) -> dict[str, str]:
    """Path in the guest -> text; a value starting with '->' is a symlink to the rest."""
    files = {
        "etc/systemd/network/20-podnet.network": NETWORK_UNIT,
        "etc/systemd/system/podnet.target": TARGET_UNIT,
        "etc/systemd/system/podnet-report.service": REPORT_UNIT,
        "etc/systemd/system/default.target": "->/etc/systemd/system/podnet.target",
        "etc/systemd/system/sockets.target.wants/systemd-networkd.socket":
            "->/lib/systemd/system/systemd-networkd.socket",
        "etc/systemd/journald.conf.d/podnet.conf": JOURNALD_CONF,
        "usr/local/sbin/podnet-report": REPORT_SCRIPT,
        # Fixed, so networkd's DUID (and so its DHCP client identifier) is the same every boot.
        "etc/machine-id": machine_id + "\n",
        "etc/hostname": "podnet-guest\n",
    }
    files.update({f"etc/systemd/system/{unit}": "->/dev/null" for unit in MASKED})
    files.update({f"etc/systemd/system-generators/{name}": "->/dev/null" for name in GENERATORS_OFF})
    return files


def _install(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        if text.startswith("->"):
            path.symlink_to(text[2:])
        else:
            path.write_text(text)
            path.chmod(0o755 if rel.startswith("usr/local/sbin/") else 0o644)


def make_ext4(tree: Path, image: Path) -> None:
    """``mke2fs -d``: the tree as an ext4 file system, owners and modes kept, sized with headroom."""
    if shutil.which(MKE2FS) is None:
        raise GuestUnavailable(f"{MKE2FS} not found: install e2fsprogs")
    used = int(subprocess.run(["du", "-sk", str(tree)], capture_output=True, text=True, timeout=60,
                              check=True).stdout.split()[0])
    size_mb = used // 1024 + 96  # journald, udev and /var writes land in qemu's snapshot overlay
    proc = subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", "-L", "podnet-guest", "-m", "0", "-E", "root_owner=0:0",
                           "-d", str(tree), str(image), f"{size_mb}M"],
                          capture_output=True, text=True, timeout=MKE2FS_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise vm_image.VmImageError(f"mke2fs failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


# -- the build ------------------------------------------------------------------------------------
def build(cache: Path | None = None) -> GuestImage:
    """Kernel, initramfs and root disk, from the cache when every input is unchanged."""
    cache = Path(cache or vm_image.cache_dir())
    kernel = vm_image.build(cache)  # the kernel (and its packages) come from vm_image's cache
    (cache / "guest").mkdir(parents=True, exist_ok=True)
    # Not vm_image's .lock: flock on a second open of the same file would wait on ourselves.
    with open(cache / "guest" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cache, kernel)


def _kernel_tree(cache: Path, kernel: vm_image.VmImage) -> tuple[Path, Path]:
    """(busybox binary, module directory) from the packages vm_image.build fetched and unpacked.

    Named by the image's inputs.json, not by asking apt again (apt-cache takes a second).
    """
    inputs = json.loads((kernel.kernel.parent / "inputs.json").read_text())
    kernel_root = vm_image.extract_deb(cache / "debs" / inputs["kernel_deb"], cache / "extract")
    busybox_root = vm_image.extract_deb(cache / "debs" / inputs["busybox_deb"], cache / "extract")
    for moddir in (kernel_root / "lib" / "modules" / kernel.kernel_version,
                   kernel_root / "usr" / "lib" / "modules" / kernel.kernel_version):
        if moddir.is_dir():
            return busybox_root / "bin" / "busybox", moddir
    raise vm_image.VmImageError(f"no modules for {kernel.kernel_version} in {kernel_root}")


def _build_locked(cache: Path, kernel: vm_image.VmImage) -> GuestImage:
    busybox, moddir = _kernel_tree(cache, kernel)
    files, deps = vm_image.module_graph(moddir)
    order = vm_image.load_order(ROOT_MODULES, files, deps)
    init = INIT_TEMPLATE.replace("@MODULES@", " ".join(order))
    rkey = rootfs_key()
    machine_id = hashlib.sha256(f"virtnet-podnet-guest {rkey}".encode()).hexdigest()[:32]
    added = guest_files(machine_id)
    # vm_image's key hashes the kernel and busybox packages (and its own init, harmlessly here).
    key = _digest({"format": FORMAT_VERSION, "rootfs": rkey, "kernel": kernel.key, "modules": order, "init": init,
                   "files": added})
    out = cache / "guest" / "images" / key
    image = GuestImage(kernel=out / "vmlinuz", initrd=out / "initrd.img", rootfs=out / "rootfs.ext4",
                       kernel_version=kernel.kernel_version, modules=tuple(order), key=key, rootfs_key=rkey)
    if all(p.exists() for p in (image.kernel, image.initrd, image.rootfs)):
        return image

    tree = build_rootfs(cache)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=out.parent))
    try:
        stage = tmp / "stage"
        # A copy, so the cached tree stays as mmdebstrap made it (cp -a keeps owners, modes, links).
        subprocess.run(["cp", "-a", "--reflink=auto", str(tree), str(stage)], capture_output=True, timeout=300,
                       check=True)
        (stage / ".complete").unlink()
        _install(stage, added)
        make_ext4(stage, tmp / "rootfs.ext4")
        shutil.rmtree(stage)
        shutil.copyfile(kernel.kernel, tmp / "vmlinuz")
        (tmp / "initrd.img").write_bytes(vm_image.initramfs(
            busybox.read_bytes(), [(m, vm_image.read_module(files[m])) for m in order], init, ""))
        (tmp / "inputs.json").write_text(json.dumps({
            "rootfs_key": rkey, "suite": SUITE, "sources": sources(), "packages": PACKAGES,
            "kernel_version": kernel.kernel_version, "modules": order}, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)  # atomic: a reader sees a complete image or none
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image


# -- booting it ------------------------------------------------------------------------------------
DEBUG_ENV = "VIRTNET_PODNET_VM_DEBUG"  # set: the guest prints its whole journal (PODNET-DEBUG lines)


def kernel_cmdline(ping6: str | None = None, wait: int = WAIT_ONLINE) -> str:
    words = ["console=ttyS0", "quiet", "panic=-1", "root=/dev/vda", "systemd.show_status=error", f"podnet.wait={wait}"]
    if ping6:
        words.append(f"podnet.ping6={ping6}")
    if os.environ.get(DEBUG_ENV):
        words.append("podnet.debug=1")
    return " ".join(words)


def guest_args(image: GuestImage, ping6: str | None = None, wait: int = WAIT_ONLINE) -> list[str]:
    """What vm_image.qemu_argv lacks: the root disk, this guest's command line and memory.

    qemu keeps the last -append and -m it is given, so these override vm_image's.
    """
    return ["-append", kernel_cmdline(ping6, wait), "-m", str(MEMORY_MB),
            "-drive", f"file={image.rootfs},format=raw,if=virtio,snapshot=on"]


class GuestBoot(vm_image.Boot):
    """vm_image's parsed console, plus the guest's IPv6 and networkd lines."""

    @classmethod
    def of(cls, boot: vm_image.Boot) -> GuestBoot:
        return cls(**vars(boot))

    def tagged(self, tag: str) -> list[str]:
        return [line.split(" ", 1)[1].strip() for line in self.lines if line.startswith(tag + " ")]

    @property
    def routes6(self) -> list[str]:
        return self.tagged("PODNET-ROUTE6")

    @property
    def addrs6(self) -> list[str]:
        return self.tagged("PODNET-ADDR6")

    @property
    def state6(self) -> dict[str, str] | None:
        return self.fields("PODNET-STATE6")

    @property
    def ping6(self) -> str | None:
        line = self.first("PODNET-PING6")
        return line.split()[1] if line else None

    @property
    def networkd_log(self) -> list[str]:
        return self.tagged("PODNET-LOG")


def boot(image: GuestImage, netns: str, nic_args: list[str], ping6: str | None = None,
         timeout: float = BOOT_TIMEOUT, wait: int = WAIT_ONLINE) -> GuestBoot:
    """Boot the guest inside ``netns`` on ``nic_args`` (vm_image.tap_nic, or the module's qemu_args)."""
    return GuestBoot.of(vm_image.boot(image, netns, [*guest_args(image, ping6, wait), *nic_args], timeout=timeout))


if __name__ == "__main__":
    built = build()
    print(json.dumps({"kernel": str(built.kernel), "initrd": str(built.initrd), "rootfs": str(built.rootfs),
                      "kernel_version": built.kernel_version, "modules": list(built.modules), "key": built.key,
                      "rootfs_key": built.rootfs_key}, indent=2))
