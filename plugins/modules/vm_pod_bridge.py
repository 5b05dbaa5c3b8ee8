#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_pod_bridge
short_description: Connect a VM to its pod's network with a bridge and a tap
version_added: 0.1.0
description:
  - Inside the pod's network namespace, records the pod interface (IPv4 and IPv6 addresses, MAC,
    MTU, routes) in a root-only state cache, then creates the bridge C(binding.bridge) and the tap
    C(binding.tap), enslaves the pod interface with a new locally administered MAC, and with
    C(binding.delegate_ip) moves the pod's IPv4 address away from it so the VM can lease it by DHCP.
  - The VM takes the pod interface's original MAC, which CNIs with anti-spoofing accept.
  - Every step is ensure-style; a second run reports no change. A run that was killed is finished
    by the next O(state=present) or undone by O(state=absent), from the state cache.
  - O(state=absent) removes tap and bridge, restores the pod interface exactly (addresses, routes
    with their protocol and scope, MAC, MTU, up) and withdraws the lease declaration. It succeeds
    without change when the links or the whole namespace are already gone.
  - With C(binding.delegate_ip), tc filters keep the VM's DHCP inside the pod (requests from the tap
    are dropped after the responder has seen them, DHCP replies arriving from the cluster network
    never reach the VM), and the node's DHCP responder C(podnet-dhcpd) is started if it is not running
    (O(responder)).
  - O(pods) plumbs many pods in one call (one task for a whole node); every entry is validated
    before any pod is touched.
  - Runs on the node as root, with netlink in-process (small raw rtnetlink requests, pyroute2 for restores);
    no C(ip) commands.
author:
  - virtnet.podnet contributors (@virtnet)
attributes:
  check_mode:
    support: full
    description: Predicts the exact list of changes and the diff a real run makes, and changes nothing.
  diff_mode:
    support: full
    description: Shows the pod's links (pod interface, bridge, tap) and their IPv4 addresses before and after.
options:
  netns:
    description:
      - The pod's network namespace, a name under C(/run/netns) or an absolute path such as
        C(/proc/PID/ns/net) or a bind mount.
      - Required with O(binding), unless O(pods) is used.
    type: str
  binding:
    description:
      - One entry of the C(plan) returned by M(virtnet.podnet.vm_network_plan); the same entry is
        needed for O(state=absent).
      - Its optional keys C(mac_address) (the VM's MAC instead of the pod interface's original one) and
        C(dhcp_options) (options 66, 67, 42 and 224 to 254 in the VM's leases) come from the interface's
        C(macAddress) and C(dhcpOptions).
      - Required with O(netns), unless O(pods) is used.
    type: dict
  pods:
    description:
      - Many pods at once, instead of O(netns) and O(binding). Each entry takes the options of this
        call as defaults and may override the per-pod ones.
      - A pod that fails does not stop the others; the task then fails listing every failed pod,
        and RV(pods) says what was done to each.
    type: list
    elements: dict
    suboptions:
      netns:
        description: As O(netns).
        type: str
        required: true
      binding:
        description: As O(binding).
        type: dict
        required: true
      tap_uid:
        description: As O(tap_uid).
        type: int
      tap_gid:
        description: As O(tap_gid).
        type: int
      multiqueue:
        description: As O(multiqueue).
        type: bool
      pod_mac:
        description: As O(pod_mac).
        type: str
      dns_servers:
        description: As O(dns_servers).
        type: list
        elements: str
      dns_servers6:
        description: As O(dns_servers6).
        type: list
        elements: str
      search_domains:
        description: As O(search_domains).
        type: list
        elements: str
      hostname:
        description: As O(hostname).
        type: str
      lease_time:
        description: As O(lease_time).
        type: int
      pod_identity:
        description: As O(pod_identity).
        type: bool
  state:
    description:
      - V(present) plumbs the pod for the VM, V(absent) undoes it.
    type: str
    choices: [present, absent]
    default: present
  tap_uid:
    description:
      - Numeric owner of the tap (the user qemu runs as). Unset leaves the tap ownerless (root only).
    type: int
  tap_gid:
    description:
      - Numeric group of the tap.
    type: int
  multiqueue:
    description:
      - Create the tap with multiqueue support (vhost with several queues).
      - A tap's queue mode cannot change while it exists.
    type: bool
    default: false
  pod_identity:
    description:
      - Keep the pod's identity for kubelet, as KubeVirt's bridge binding does (with C(delegate_ip) bindings only).
      - The pod interface is renamed (C(eth0) to C(eth0-nic)) and enslaved, and an inert link under its
        original name holds its original MAC, MTU, IPv4 and global IPv6 addresses, so C(ip addr show dev eth0)
        in the pod still shows the pod IP after it moved to the VM. That link is a C(dummy); on a kernel built
        without the dummy driver, an C(ifb) (as inert). On the bridge the pod's own stack never answers ARP or
        NDP for the VM's addresses (C(arp_ignore=1), C(arp_announce=2), IPv6 off).
      - The layout a pod was plumbed with is kept until O(state=absent). A pod plumbed by an earlier version, or
        with the other value, gets a warning and is not rebuilt under its VM.
      - The CNI bridge plugin's own CHECK fails under a bridge binding either way, since it wants C(eth0) to be its
        veth with its original MAC.
    type: bool
    default: true
    version_added: 0.2.0
  pod_mac:
    description:
      - The new MAC for the pod interface, a unicast address.
      - By default a locally administered MAC derived from the original MAC and the namespace,
        so check mode predicts it.
    type: str
  dns_servers:
    description:
      - IPv4 DNS servers the DHCP responder hands to the VM (option 6).
      - Unset, the pod's own resolv.conf where readable (C(/proc/PID/root/etc/resolv.conf) for
        O(netns=/proc/PID/ns/net), C(/etc/netns/NAME/resolv.conf) for a named namespace); V([]) sends none.
    type: list
    elements: str
  dns_servers6:
    description:
      - IPv6 DNS servers the responder hands to the VM by DHCPv6 (option 23), for pods with a global IPv6
        address. Each a global unicast address without a zone (V(fd00::53), not V(fd00::53%eth0)).
      - Unset, the IPv6 C(nameserver) lines of the pod's resolv.conf, as for O(dns_servers), less those the
        VM cannot use (link-local or with a zone); V([]) sends none.
    type: list
    elements: str
    version_added: 0.2.0
  search_domains:
    description:
      - DNS search domains for the VM (option 119, and DHCPv6 option 24).
      - Unset, the C(search) line of the pod's resolv.conf, as for O(dns_servers).
    type: list
    elements: str
  hostname:
    description:
      - Host name for the VM (option 12).
      - Unset, the pod's C(/etc/hostname) where readable (C(/proc/PID/root/etc/hostname) for
        O(netns=/proc/PID/ns/net), C(/etc/netns/NAME/hostname) for a named namespace).
    type: str
  lease_time:
    description:
      - DHCP lease time in seconds.
    type: int
    default: 86400
  responder:
    description:
      - V(auto) makes sure the node's DHCP responder C(podnet-dhcpd) runs when a binding delegates its IP -
        one that holds C(<run_dir>/podnet-dhcpd.pid) is used as it is; else, where systemd is PID 1
        (C(/run/systemd/system) exists) and has the unit C(podnet-dhcpd.service) (as the C(virtnet.podnet.node)
        role installs it), it waits up to 10 seconds for the unit's responder (one restarted a moment ago), then
        fails before any change, in check mode too, naming the unit, its state and
        the command to start it (C(systemctl start podnet-dhcpd.service)) - it never starts a responder outside
        the unit's sandbox; elsewhere it starts one, detached, from O(responder_pythonpath).
      - V(skip) leaves the responder alone.
    type: str
    choices: [auto, skip]
    default: auto
  responder_pythonpath:
    description:
      - Where the C(virtnet.podnet.node) role installed the collection's code for the responder.
    type: path
    default: /opt/virtnet-podnet/lib
  responder_log_file:
    description:
      - Log file of a responder started by this module (one line per lease event).
    type: path
    default: /var/log/podnet-dhcpd.log
notes:
  - Two runs on the same pod namespace serialize on a lock under O(run_dir), whatever name each
    run gives the namespace.
  - A pod is identified by its network namespace's cookie (Linux 5.14 and later), which the kernel
    never reuses; on older kernels by the namespace's inode and the pod interface's MAC. Records of
    a pod whose namespace is gone are removed (RV(housekeeping)), by this module and by the node's
    DHCP responder; they never cause a refusal.
  - Use the same O(netns) value for O(state=absent) as for O(state=present). A run that names an
    already plumbed namespace another way (C(pod1) and then C(/proc/PID/ns/net)) is refused before
    any change, naming the value recorded.
  - The pod's C(resolv.conf) and C(hostname) are read inside the pod's root, never through a link
    out of it, and only when they are regular files of at most 64 KiB; otherwise a warning says
    why and the option is left out.
  - IPv6 addresses of the pod interface are recorded and left alone.
  - The lease declaration (C(leases/<key>.json) under O(run_dir)) is written only with
    C(binding.delegate_ip); the DHCP responder serves nothing in Ethernet mode.
extends_documentation_fragment:
  - virtnet.podnet.pod
seealso:
  - module: virtnet.podnet.vm_network_plan
  - module: virtnet.podnet.vm_pod_network_info
"""

EXAMPLES = r"""
- name: Plan the VM's network
  virtnet.podnet.vm_network_plan:
    vm: "{{ vm }}"
  register: plan

- name: Plumb the pod for the VM
  virtnet.podnet.vm_pod_bridge:
    netns: pod1
    binding: "{{ plan.plan[0] }}"
    tap_uid: 107
    tap_gid: 107
    dns_servers: [10.96.0.10]
    search_domains: [default.svc.cluster.local, svc.cluster.local]
    hostname: vm1
  register: net

- name: Start the VM with the returned arguments
  ansible.builtin.debug:
    msg: "qemu-system-x86_64 {{ net.qemu_args | join(' ') }}"

- name: Undo it (with the same netns value as when plumbing, and the same binding)
  virtnet.podnet.vm_pod_bridge:
    netns: pod1
    binding: "{{ plan.plan[0] }}"
    state: absent

- name: A pod given by the namespace of its container's process
  virtnet.podnet.vm_pod_bridge:
    netns: /proc/4242/ns/net
    binding: "{{ plan.plan[0] }}"

- name: Plumb every pod of a node in one task
  virtnet.podnet.vm_pod_bridge:
    pods:
      - netns: pod1
        binding: "{{ plans.plans[0].plan[0] }}"
        hostname: vm1
      - netns: pod2
        binding: "{{ plans.plans[1].plan[0] }}"
        hostname: vm2
    dns_servers: [10.96.0.10]
  register: node_net
"""

RETURN = r"""
pods:
  description:
    - With O(pods), one result per entry in the given order, each with the keys returned for a single
      pod below; a pod that failed has C(failed=true) and C(msg) instead.
  returned: with O(pods)
  type: list
  elements: dict
responder_pid:
  description: The pid of the DHCP responder when O(responder=auto) made sure it runs (null in check mode when it would be started).
  returned: state=present, and with O(pods)
  type: int
  sample: 4242
netns:
  description: The O(netns) given.
  returned: without O(pods)
  type: str
  sample: pod1
changes:
  description:
    - What was done (or, in check mode, what would be done), in order.
    - With O(pods), each entry starts with the pod's netns and a colon.
  returned: always
  type: list
  elements: str
  sample: ["create bridge k6t-eth0 (MTU 1450, STP off, forward delay 0, no IPv6 autoconf)"]
key:
  description: The state key, the netns made file-safe plus C(__<pod_interface>).
  returned: always
  type: str
  sample: pod1__eth0
netns_path:
  description: The namespace file used.
  returned: always
  type: str
  sample: /run/netns/pod1
tap:
  description: The tap for the VM.
  returned: state=present
  type: str
  sample: tap0
bridge:
  description: The bridge in the pod.
  returned: state=present
  type: str
  sample: k6t-eth0
pod_interface:
  description: The pod interface bridged to the VM.
  returned: state=present
  type: str
  sample: eth0
vm_mac:
  description: The MAC the VM must use, the pod interface's original MAC.
  returned: state=present
  type: str
  sample: 0a:58:0a:f4:01:0a
pod_port:
  description: The name of the pod interface as a bridge port, C(eth0-nic) under O(pod_identity).
  returned: state=present
  type: str
  sample: eth0-nic
  version_added: 0.2.0
pod_mac:
  description: The new MAC of the pod interface.
  returned: state=present
  type: str
  sample: 1e:7c:33:09:a2:51
mtu:
  description: The MTU of the pod interface, bridge, tap and VM.
  returned: state=present
  type: int
  sample: 1450
delegate_ip:
  description: Whether the pod's IPv4 address was moved to the VM.
  returned: state=present
  type: bool
  sample: true
ip:
  description: The delegated IPv4 address (null in Ethernet mode).
  returned: state=present
  type: str
  sample: 10.244.1.10
prefixlen:
  description: Its prefix length.
  returned: state=present
  type: int
  sample: 24
gateway:
  description: The gateway from the pod's routes.
  returned: state=present
  type: str
  sample: 10.244.1.1
routes:
  description: Routes for DHCP option 121, link routes first and the default route last.
  returned: state=present
  type: list
  elements: dict
  sample: [{"dst": "10.244.1.0/24", "gateway": null}, {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}]
ipv6:
  description:
    - The delegated IPv6 address, its prefix length and the VM's default router (the pod gateway's link-local
      address, the source of the VM's router advertisements; null when it did not answer before the move).
    - Null without a global IPv6 address on the pod interface, in Ethernet mode, and for pods plumbed by a
      version that delegated IPv4 only.
  returned: state=present
  type: dict
  sample: {"address": "fd00:58::7", "prefixlen": 64, "gateway": "fe80::c46f:b3ff:fe83:8a76"}
  version_added: 0.2.0
libvirt_interface_xml:
  description: A libvirt C(<interface type='ethernet'>) element for the VM.
  returned: state=present
  type: str
  sample: "<interface type='ethernet'>...</interface>"
qemu_args:
  description: qemu C(-netdev) and C(-device) arguments.
  returned: state=present
  type: list
  elements: str
  sample: ["-netdev", "tap,id=net-default,ifname=tap0,script=no,downscript=no", "-device",
           "virtio-net-pci,netdev=net-default,mac=0a:58:0a:f4:01:0a,host_mtu=1450"]
original:
  description: The pod interface as recorded before any change (addresses, MAC, MTU, routes).
  returned: when a state cache exists
  type: dict
cache_path:
  description: The state cache file.
  returned: state=present
  type: str
lease_path:
  description: The lease declaration file, null in Ethernet mode.
  returned: state=present
  type: str
housekeeping:
  description:
    - Records removed that do not count as a change, because the namespace they were made for is
      gone or is another one now (a pod deleted without O(state=absent), then maybe recreated
      under the same name).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._netns import HAS_PYROUTE2, PYROUTE2_IMPORT_ERROR
from ansible_collections.virtnet.podnet.plugins.module_utils import _options, _pod_bridge


def main():
    module = AnsibleModule(
        argument_spec=_options.bridge_argument_spec(),
        required_one_of=[("netns", "pods")],
        required_together=[("netns", "binding")],
        mutually_exclusive=[("netns", "pods"), ("binding", "pods")],
        supports_check_mode=True,
    )
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=str(PYROUTE2_IMPORT_ERROR))
    runner = _pod_bridge.run_many if module.params["pods"] is not None else _pod_bridge.run
    try:
        result = runner(module.params, check_mode=module.check_mode, diff=module._diff)
    except PodnetError as exc:
        details = dict(exc.details)
        module.fail_json(msg=exc.msg, changed=details.pop("changed", False), **details)
    diff = result.pop("diff")
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
