"""A tiny bootable VM for the real-VM test: Debian's cloud kernel and a busybox initramfs.

    image = vm_image.build()          # cached; rebuilt only when an input changes
    result = vm_image.boot(image, pod.netns, vm_image.tap_nic(pod.mac))   # qemu in the pod's netns
    result.lease["ip"], result.ping, result.boot_to_lease

Everything lives OUTSIDE the repository, in ``$VIRTNET_PODNET_VM_CACHE`` (default
``~/.cache/virtnet-podnet/vm``):

- ``debs/``: the kernel package that ``linux-image-cloud-amd64`` depends on and
  ``busybox-static``, fetched with ``apt-get download`` (never installed: the kernel has no
  business in /boot, and busybox-static conflicts with the busybox package other tests use);
- ``extract/``: those packages unpacked with ``dpkg-deb -x``;
- ``images/<key>/``: ``vmlinuz`` and ``initrd.img``, where ``key`` hashes every input (both
  packages, the init and udhcpc scripts, the module list, this builder's format version).

The initramfs (cpio newc, gzip, written here so no cpio tool or root is needed) holds the
static busybox, virtio_pci and virtio_net with every module they depend on (decompressed if
the kernel ships .ko.xz/.ko.zst: busybox insmod takes plain ELF), and ``/init``. The init
brings eth0 up, runs ``udhcpc`` once and prints machine-readable lines on the serial console:

    PODNET-BOOT
    PODNET-LEASE ip=10.244.7.10 mask=255.255.255.0 prefix=24 router=10.244.7.1 mtu=1450 mac=... routes=169.254.1.1/32>0.0.0.0,...
    PODNET-STATE addr=10.244.7.10/24 mtu=1450 mac=... gateway=10.244.7.1
    PODNET-ROUTE <one line of `ip -4 route`>
    PODNET-PING ok|fail gateway=...
    PODNET-NOLEASE mac=...          (instead of the three above when udhcpc got nothing)
    PODNET-DONE

then powers the VM off (``poweroff -f``; qemu runs with ``-no-reboot``).
"""

from __future__ import annotations

import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CACHE_ENV = "VIRTNET_PODNET_VM_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "virtnet-podnet" / "vm"
KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# virtio_pci is the transport (not a symbol dependency of virtio_net, so named here too).
ROOT_MODULES = ("virtio_pci", "virtio_net")
FORMAT_VERSION = 1
APT_TIMEOUT = 300

# The lease as udhcpc hands it over, applied the way a distribution's script would, then
# printed: first the DHCP values, then what the kernel actually holds after applying them.
UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc event script: $1 = event, lease in the environment.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    eval "$(ipcalc -p "$ip" "${subnet:-255.255.255.255}")"
    ip addr replace "$ip/$PREFIX" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    gateway=""
    routes=""
    # RFC 3442: with option 121 present the router option is ignored.
    if [ -n "$staticroutes" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            routes="$routes${routes:+,}$1>$2"
            if [ "$2" = 0.0.0.0 ]; then
                ip route replace "$1" dev "$interface"
            else
                ip route replace "$1" via "$2" dev "$interface"
                [ "$1" = 0.0.0.0/0 ] && gateway="$2"
            fi
            shift 2
        done
    else
        for r in $router; do gateway="$r"; break; done
        [ -n "$gateway" ] && ip route replace default via "$gateway" dev "$interface"
    fi
    mac=$(cat /sys/class/net/$interface/address)
    echo "PODNET-LEASE ip=$ip mask=$subnet prefix=$PREFIX router=$router mtu=$mtu mac=$mac routes=$routes"
    addr=$(ip -4 -o addr show dev "$interface" | sed -n 's/.* inet \([0-9./]*\) .*/\1/p' | head -n 1)
    now=$(ip -4 route show default | sed -n 's/^default via \([0-9.]*\) .*/\1/p' | head -n 1)
    echo "PODNET-STATE addr=$addr mtu=$(cat /sys/class/net/$interface/mtu) mac=$mac gateway=$now"
    ip -4 route show | while read -r line; do echo "PODNET-ROUTE $line"; done
    echo "$gateway" > /tmp/gateway
    ;;
esac
exit 0
"""

# The start of every /init here (vm_guest's too): busybox, the pseudo filesystems, the modules.
INIT_PREAMBLE = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Keep kernel messages off the console: the test parses it line by line.
echo 1 > /proc/sys/kernel/printk
echo PODNET-BOOT
for m in @MODULES@; do
    insmod "/lib/modules/$m.ko" || echo "PODNET-ERROR insmod $m"
done
"""

INIT_TEMPLATE = INIT_PREAMBLE + r"""# Probing is synchronous in insmod; this bounded wait only covers a slow sysfs.
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
ip link set lo up
ip link set eth0 up
if udhcpc -i eth0 -n -q -t 5 -T 2 -s /etc/udhcpc.script; then
    gw=$(cat /tmp/gateway)
    if [ -n "$gw" ] && ping -c 3 -W 2 "$gw" >/dev/null 2>&1; then
        echo "PODNET-PING ok gateway=$gw"
    else
        echo "PODNET-PING fail gateway=$gw"
    fi
else
    echo "PODNET-NOLEASE mac=$(cat /sys/class/net/eth0/address 2>/dev/null)"
fi
echo PODNET-DONE
poweroff -f
"""


def check_finished(result, timeout: float):
    """The VM powered off by itself after printing its whole report, with no PODNET-ERROR line."""
    console = result.console()
    assert not result.timed_out, f"VM still running after {timeout}s; console:\n{console}"
    assert "PODNET-DONE" in result.lines, f"VM did not finish its report (qemu exit {result.returncode}):\n{console}"
    assert not any(line.startswith("PODNET-ERROR") for line in result.lines), console
    return result


@dataclass(frozen=True)
class VmImage:
    kernel: Path
    initrd: Path
    kernel_version: str
    modules: tuple[str, ...]
    key: str


class VmImageError(RuntimeError):
    """The image cannot be built here (no apt, no package, bad package)."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _run(*argv: str, cwd: Path | None = None, timeout: float = APT_TIMEOUT) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise VmImageError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- packages -----------------------------------------------------------------------------------
def kernel_package(debs: Path | None = None) -> str:
    """The versioned package the cloud meta-package depends on (local apt-cache, no network).

    Without apt lists (cleaned after a build) a kernel already in the cache still does.
    """
    try:
        out = _run("apt-cache", "depends", KERNEL_META, timeout=60)
    except (OSError, VmImageError) as exc:
        out = str(exc)
    match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)\b", out)
    if match:
        return match.group(1)
    cached = sorted(glob.glob(str(debs / "linux-image-*-cloud-amd64_*.deb"))) if debs else []
    if cached:
        return os.path.basename(cached[-1]).split("_", 1)[0]
    raise VmImageError(f"cannot tell which kernel {KERNEL_META} depends on (apt-get update?): {out.strip()}")


def fetch_deb(package: str, debs: Path) -> Path:
    """``apt-get download`` into the cache once; later builds reuse the file (works offline)."""
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(glob.glob(str(debs / f"{glob.escape(package)}_*.deb")))
    if found:
        return Path(found[-1])
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        # The _apt sandbox user may not write into a root-owned cache: that only costs a warning.
        _run("apt-get", "download", "-q", package, cwd=Path(tmp))
        got = glob.glob(os.path.join(tmp, f"{glob.escape(package)}_*.deb"))
        if len(got) != 1:
            raise VmImageError(f"apt-get download {package} left {got}")
        target = debs / os.path.basename(got[0])
        os.replace(got[0], target)
    return target


def extract_deb(deb: Path, extract_root: Path) -> Path:
    target = extract_root / deb.stem
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _run("dpkg-deb", "-x", str(deb), str(target))
    (target / ".complete").write_text("")
    return target


# -- kernel modules -------------------------------------------------------------------------------
def read_module(path: Path) -> bytes:
    """The module as plain ELF: busybox insmod does not decompress."""
    name = path.name
    if name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if name.endswith(".ko.zst"):
        if shutil.which("zstd") is None:
            raise VmImageError(f"{path} is zstd-compressed and the zstd command is missing (apt-get install zstd)")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, timeout=60, check=True).stdout
    if name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    return path.read_bytes()


def _module_name(path: str) -> str:
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", os.path.basename(path)).replace("-", "_")


def module_graph(moddir: Path) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Module name -> file and -> dependencies.

    From modules.dep when the tree has one; Debian's packages leave it to depmod at install
    time, so otherwise from each module's own ``depends=`` (.modinfo), which is what depmod
    turns into modules.dep.
    """
    files: dict[str, Path] = {}
    for path in moddir.rglob("*.ko*"):
        if re.search(r"\.ko(\.(xz|zst|gz))?$", path.name):
            files[_module_name(path.name)] = path
    deps: dict[str, list[str]] = {}
    depfile = moddir / "modules.dep"
    if depfile.exists():
        for line in depfile.read_text().splitlines():
            if ":" in line:
                mod, rest = line.split(":", 1)
                deps[_module_name(mod)] = [_module_name(d) for d in rest.split()]
    return files, deps


def module_deps(name: str, files: dict[str, Path], deps: dict[str, list[str]]) -> list[str]:
    if name in deps:
        return deps[name]
    match = re.search(rb"\x00depends=([^\x00]*)\x00", b"\x00" + read_module(files[name]))
    deps[name] = [d.replace("-", "_") for d in match.group(1).decode().split(",") if d] if match else []
    return deps[name]


def load_order(roots: tuple[str, ...], files: dict[str, Path], deps: dict[str, list[str]]) -> list[str]:
    """Every module the roots need, each after its dependencies (a post-order walk)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in files:
            raise VmImageError(f"kernel module {name} not in the kernel package (built in? then drop it)")
        if name in visiting:
            raise VmImageError(f"module dependency cycle at {name}")
        visiting.add(name)
        for dep in module_deps(name, files, deps):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for root in roots:
        visit(root)
    return order


# -- cpio newc ------------------------------------------------------------------------------------
class Cpio:
    """A minimal ``cpio -H newc`` writer: root-owned entries, fixed mtime (reproducible)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\x00"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.ino += 1
        self.buf.write(header + encoded)
        self.buf.write(b"\x00" * (-(len(header) + len(encoded)) % 4))
        self.buf.write(data)
        self.buf.write(b"\x00" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def initramfs(busybox: bytes, modules: list[tuple[str, bytes]], init: str, script: str) -> bytes:
    archive = Cpio()
    for directory in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "run"):
        archive.directory(directory)
    # The kernel opens /dev/console before /init runs: without it init has no stdout.
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", busybox, 0o755)
    for name, data in modules:
        archive.file(f"lib/modules/{name}.ko", data)
    archive.file("etc/udhcpc.script", script.encode(), 0o755)
    archive.file("init", init.encode(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


# -- the build ------------------------------------------------------------------------------------
def build(cache: Path | None = None) -> VmImage:
    """Kernel and initramfs, from the cache when every input is unchanged."""
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        # Concurrent test runs build once; the others wait and reuse.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cache)


def _build_locked(cache: Path) -> VmImage:
    debs = cache / "debs"
    kernel_deb = fetch_deb(kernel_package(debs), debs)
    busybox_deb = fetch_deb(BUSYBOX_PACKAGE, debs)
    kernel_root = extract_deb(kernel_deb, cache / "extract")
    busybox_root = extract_deb(busybox_deb, cache / "extract")

    vmlinuz = sorted((kernel_root / "boot").glob("vmlinuz-*"))
    if len(vmlinuz) != 1:
        raise VmImageError(f"expected one vmlinuz in {kernel_deb.name}, found {vmlinuz}")
    version = vmlinuz[0].name[len("vmlinuz-"):]
    moddir = next((p for p in (kernel_root / "lib" / "modules" / version, kernel_root / "usr" / "lib" / "modules" / version)
                   if p.is_dir()), None)
    if moddir is None:
        raise VmImageError(f"no modules directory for {version} in {kernel_deb.name}")
    busybox = busybox_root / "bin" / "busybox"
    files, deps = module_graph(moddir)
    order = load_order(ROOT_MODULES, files, deps)
    init = INIT_TEMPLATE.replace("@MODULES@", " ".join(order))

    key = hashlib.sha256(json.dumps({
        "format": FORMAT_VERSION, "kernel_deb": _sha256(kernel_deb), "busybox_deb": _sha256(busybox_deb),
        "modules": order, "init": init, "script": UDHCPC_SCRIPT,
    }, sort_keys=True).encode()).hexdigest()[:16]
    out = cache / "images" / key
    image = VmImage(kernel=out / "vmlinuz", initrd=out / "initrd.img", kernel_version=version,
                    modules=tuple(order), key=key)
    if image.kernel.exists() and image.initrd.exists():
        return image

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=out.parent))
    try:
        shutil.copyfile(vmlinuz[0], tmp / "vmlinuz")
        data = initramfs(busybox.read_bytes(), [(m, read_module(files[m])) for m in order], init, UDHCPC_SCRIPT)
        (tmp / "initrd.img").write_bytes(data)
        (tmp / "inputs.json").write_text(json.dumps({
            "kernel_deb": kernel_deb.name, "busybox_deb": busybox_deb.name, "kernel_version": version,
            "modules": order}, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)  # atomic: a reader sees a complete image or none
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return image


# -- booting it ----------------------------------------------------------------------------------
QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 120.0
APPEND = "console=ttyS0 quiet panic=-1"


def qemu_argv(image: VmImage, nic_args: list[str], memory_mb: int = 256) -> list[str]:
    """TCG only (no KVM here); -no-reboot turns the guest's poweroff or panic into qemu's exit."""
    return [QEMU, "-machine", "q35,accel=tcg", "-cpu", "max", "-m", str(memory_mb), "-nographic", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", APPEND, *nic_args]


def tap_nic(mac: str, tap: str = "tap0") -> list[str]:
    """The plain virtio NIC on the pod's existing persistent tap (qemu neither creates nor configures it)."""
    return ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no", "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]


@dataclass
class Boot:
    """One boot's serial console, parsed; times are seconds since qemu was started."""

    argv: list[str]
    lines: list[str] = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False
    elapsed: float = 0.0
    started_at: float = 0.0  # wall clock, to line the console up with other logs
    marks: dict[str, float] = field(default_factory=dict)

    def first(self, tag: str) -> str | None:
        return next((line for line in self.lines if line.startswith(tag + " ") or line == tag), None)

    def fields(self, tag: str) -> dict[str, str] | None:
        line = self.first(tag)
        if line is None:
            return None
        return dict(word.split("=", 1) for word in line.split()[1:] if "=" in word)

    @property
    def lease(self) -> dict[str, str] | None:
        return self.fields("PODNET-LEASE")

    @property
    def state(self) -> dict[str, str] | None:
        return self.fields("PODNET-STATE")

    @property
    def routes(self) -> list[str]:
        return [line.split(" ", 1)[1].strip() for line in self.lines if line.startswith("PODNET-ROUTE ")]

    @property
    def ping(self) -> str | None:
        line = self.first("PODNET-PING")
        return line.split()[1] if line else None

    @property
    def boot_to_lease(self) -> float | None:
        return self.marks.get("PODNET-LEASE")

    def console(self) -> str:
        return "\n".join(self.lines)


def _console_line(raw: bytes) -> str:
    # Firmware leaves escape sequences, and text without a newline before our first line.
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", raw.decode(errors="replace")).strip()


def boot(image: VmImage, netns: str, nic_args: list[str], timeout: float = BOOT_TIMEOUT) -> Boot:
    """Boot the VM inside ``netns`` and read its console until qemu exits; killed at ``timeout``."""
    argv = ["ip", "netns", "exec", netns, *qemu_argv(image, nic_args)]
    result = Boot(argv=argv, started_at=time.time())
    start = time.monotonic()
    # Own session: a timeout kills qemu and anything it started, not the test.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    pending = b""
    try:
        while True:
            left = start + timeout - time.monotonic()
            if left <= 0:
                result.timed_out = True
                break
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            now = time.monotonic() - start
            if not chunk:
                break
            pending += chunk
            *complete, pending = re.split(rb"\r?\n", pending)
            for raw in complete:
                line = _console_line(raw)
                match = re.search(r"PODNET-[A-Z]+", line)
                if match:
                    line = line[match.start():]
                    result.marks.setdefault(match.group(0), now)
                result.lines.append(line)
        if pending:
            result.lines.append(_console_line(pending))
    finally:
        sel.close()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(10)
        finally:
            proc.stdout.close()
        result.returncode = proc.returncode
        result.elapsed = time.monotonic() - start
    return result


if __name__ == "__main__":
    built = build()
    print(json.dumps({"kernel": str(built.kernel), "initrd": str(built.initrd), "kernel_version": built.kernel_version,
                      "modules": list(built.modules), "key": built.key}, indent=2))
