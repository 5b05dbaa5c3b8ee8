"""A minimal busybox udhcpc script, made executable per test by ``taprelay.udhcpc_script()``

(Debian ships busybox without /usr/share/udhcpc/default.script.)

udhcpc calls it with the event as argv[1] and the lease in the environment. It applies
what the stock script would: address and prefix, MTU, option 121 routes (else the router),
DNS and search list in /etc/resolv.conf (under ``ip netns exec`` that is the namespace's
/etc/netns/<ns>/resolv.conf). Events are appended to $PODNET_UDHCPC_LOG when set.
"""

import ipaddress
import os
import subprocess
import sys


def ip(*args, check=True):
    subprocess.run(["ip", *args], check=check, timeout=10, capture_output=True)


def main():
    event = sys.argv[1] if len(sys.argv) > 1 else ""
    env = os.environ
    iface = env.get("interface", "")
    log = env.get("PODNET_UDHCPC_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{event} ip={env.get('ip', '')} lease={env.get('lease', '')} "
                         f"serverid={env.get('serverid', '')}\n")
    if event == "deconfig":
        ip("addr", "flush", "dev", iface, check=False)
        ip("link", "set", iface, "up", check=False)
    elif event in ("bound", "renew"):
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{env.get('subnet', '255.255.255.255')}").prefixlen
        ip("addr", "replace", f"{env['ip']}/{prefix}", "dev", iface)
        if env.get("mtu"):
            ip("link", "set", iface, "mtu", env["mtu"])
        words = env.get("staticroutes", "").split()
        if words:
            for dst, gw in zip(words[::2], words[1::2]):
                if gw == "0.0.0.0":
                    ip("route", "replace", dst, "dev", iface)
                else:
                    ip("route", "replace", dst, "via", gw, "dev", iface)
        else:
            for gw in env.get("router", "").split()[:1]:
                ip("route", "replace", "default", "via", gw, "dev", iface)
        lines = []
        search = env.get("search") or env.get("domain")
        if search:
            lines.append(f"search {search}")
        lines += [f"nameserver {server}" for server in env.get("dns", "").split()]
        target = env.get("PODNET_RESOLV")  # only the namespace's bind-mounted copy, never the host's
        if lines and target and os.path.exists(target) and os.path.samefile("/etc/resolv.conf", target):
            with open("/etc/resolv.conf", "w") as handle:
                handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
