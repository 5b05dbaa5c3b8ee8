"""The one binding factory of the tests: an entry of ``vm_network_plan``'s ``plan``.

    make_binding()                       # default interface, delegateIp: eth0 -> k6t-eth0 + tap0
    make_binding(delegate_ip=False)      # Ethernet only
    make_binding(pod_interface="eth1", tap="tap1", interface="red", network="red")
"""

from __future__ import annotations


def make_binding(pod_interface: str = "eth0", tap: str = "tap0", delegate_ip: bool = True, **overrides) -> dict:
    binding = {
        "interface": "default", "network": "default", "backend": "pod", "connection": "bridge",
        "delegate_ip": delegate_ip, "connectivity": "ip" if delegate_ip else "ethernet",
        "pod_interface": pod_interface, "bridge": "k6t-" + pod_interface, "tap": tap,
    }
    binding.update(overrides)
    return binding
