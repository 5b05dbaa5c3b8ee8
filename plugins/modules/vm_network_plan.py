#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_network_plan
short_description: Validate a VM's network spec and turn it into a plan
version_added: 0.1.0
description:
  - Validates the C(spec.devices.interfaces) and C(spec.networks) of a VM object against every
    rule of the interfaces-and-networks specification and returns a plan, one entry per
    interface, that M(virtnet.podnet.vm_pod_bridge) takes as its O(virtnet.podnet.vm_pod_bridge#module:binding).
  - With neither interfaces nor networks, the VM gets the default, one interface C(default)
    connected by C(bridge) with C(delegateIp) to the network C(default) with the C(pod) backend.
  - Every violation is reported at once, each naming the field's path and what is allowed there.
  - Beyond the specification, an interface takes two fields of KubeVirt's C(Interface)
    (U(https://kubevirt.io/api-reference/main/definitions.html#_v1_interface)) - C(macAddress), the
    VM's MAC instead of the pod interface's original one, and C(dhcpOptions) (C(bootFileName),
    C(tftpServerName), C(ntpServers) and C(privateOptions) 224-254), served by the node's DHCP
    responder, so they need C(bridge.delegateIp=true). They add RV(plan[].mac_address) and
    RV(plan[].dhcp_options) to the plan only when set. See C(docs/spec.md) for their rules.
  - Other parts of the VM object (metadata, disks, domain) are accepted untouched.
  - The batch form O(vms) takes the VMs of a node with their pod namespaces, as the
    C(virtnet.podnet.vm_network) role's C(vm_network_vms), checks them all and returns RV(pods),
    ready for the O(virtnet.podnet.vm_pod_bridge#module:pods) option of M(virtnet.podnet.vm_pod_bridge).
  - Never changes anything on the host.
author:
  - virtnet.podnet contributors (@virtnet)
attributes:
  check_mode:
    support: full
    description: The module changes nothing, so check mode returns the same plan.
  diff_mode:
    support: none
    description: There is nothing to compare; the module reads its input only.
  platform:
    support: full
    platforms: posix
    description:
      - With O(vm), pure validation that runs on any host.
      - With O(vms), run it on the node of the pods - it looks at their namespace files (read only).
options:
  vm:
    description:
      - The VM object as in the specification, with C(kind=VM), C(spec.devices.interfaces) and C(spec.networks).
      - An empty mapping, or a VM without interfaces and networks, gets the default pod network.
      - Exactly one of O(vm) and O(vms) is required.
    type: raw
  vms:
    description:
      - The VMs of a node with their pods, planned and checked in one call (one task for a whole node
        instead of one per VM). Each entry is a mapping with C(vm) (the VM object, as O(vm)) and C(netns)
        (its pod's network namespace, a name under C(/run/netns) or an absolute path such as
        C(/proc/PID/ns/net)), and optionally the per-pod options C(dns_servers), C(search_domains),
        C(hostname), C(lease_time), C(tap_uid), C(tap_gid), C(multiqueue) and C(pod_mac) of
        M(virtnet.podnet.vm_pod_bridge), which are passed on in RV(pods).
      - Every entry needs its own namespace - two entries naming the same one, even under two
        spellings (C(pod1), C(/run/netns/pod1) and C(/proc/PID/ns/net) of the same pod, compared by the
        namespace files' device and inode), are refused; with O(state=present) the namespace must exist.
      - If any entry is invalid, the module fails before returning anything, listing every error of
        every entry, each prefixed with the VM's C(metadata.name) and the entry's index (C(vm1 (vms[0]))),
        or the index alone.
      - Exactly one of O(vm) and O(vms) is required.
    type: list
    elements: raw
  state:
    description:
      - With O(vms), the state the pods are planned for, as M(virtnet.podnet.vm_pod_bridge)'s
        O(virtnet.podnet.vm_pod_bridge#module:state).
      - V(absent) accepts a namespace that no longer exists (a pod deleted before its VM was
        disconnected); M(virtnet.podnet.vm_pod_bridge) then only clears its records.
      - Ignored with O(vm).
    type: str
    choices: [present, absent]
    default: present
  pod_interface:
    description:
      - The name of the pod's interface that the VM's interface is bridged to.
      - The bridge is named C(k6t-<pod_interface>), so at most 11 characters.
    type: str
    default: eth0
  tap:
    description:
      - The name of the tap device created for the VM inside the pod (at most 15 characters).
    type: str
    default: tap0
notes:
  - Today exactly one interface is supported, and it must be connected to a C(pod) network.
  - C(bridge.delegateIp) defaults to C(false) on an explicitly listed interface (Ethernet connectivity);
    the default interface uses C(delegateIp=true) (IP connectivity).
  - C(macAddress) accepts C(02:00:00:aa:bb:cc) and C(02-00-00-AA-BB-CC) in any case, never a multicast or
    the all-zero address, and no two interfaces of a VM share one; as in KubeVirt, C("") and C(null) mean unset.
  - C(dhcpOptions) without C(bridge.delegateIp=true) is an error - no DHCP is served to the VM then.
    Each value must fit one DHCP option (255 bytes as UTF-8, no control characters), at most 16 C(ntpServers)
    (IPv4 addresses), C(privateOptions) entries C({option, value}) with C(option) 224 to 254, each once.
  - The per-pod options in O(vms) are type-checked and converted as M(virtnet.podnet.vm_pod_bridge) does;
    their values (addresses, MACs) are validated by M(virtnet.podnet.vm_pod_bridge), before it touches any pod.
seealso:
  - module: virtnet.podnet.vm_pod_bridge
  - plugin: virtnet.podnet.pair_by_name
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Plan the default network of a VM with no network spec
  virtnet.podnet.vm_network_plan:
    vm:
      kind: VM
      metadata:
        name: vm1
  register: vm1_plan

- name: Plan an interface bridged to the pod network, with the pod's IP delegated to the VM
  virtnet.podnet.vm_network_plan:
    vm:
      kind: VM
      spec:
        devices:
          interfaces:
            - name: red
              bridge:
                delegateIp: true
        networks:
          - name: red
            pod: {}
  register: red_plan

- name: Plan an interface with KubeVirt's macAddress and dhcpOptions (a network boot, an NTP server)
  virtnet.podnet.vm_network_plan:
    vm:
      kind: VM
      spec:
        devices:
          interfaces:
            - name: red
              bridge:
                delegateIp: true
              macAddress: "02:00:00:aa:bb:cc"
              dhcpOptions:
                bootFileName: pxelinux.0
                tftpServerName: 10.96.0.30
                ntpServers: [10.96.0.20]
                privateOptions:
                  - {option: 240, value: "site data"}
        networks:
          - name: red
            pod: {}
  register: pxe_plan

- name: Use the plan
  ansible.builtin.debug:
    msg: "{{ red_plan.plan[0].tap }} on {{ red_plan.plan[0].bridge }}"

- name: Plan and check every VM of a node in one task; fails listing every error with its VM's name
  virtnet.podnet.vm_network_plan:
    vms:
      - vm: {kind: VM, metadata: {name: vm1}}
        netns: pod1
      - vm: {kind: VM, metadata: {name: vm2}}
        netns: /proc/4242/ns/net
        dns_servers: [10.96.0.10]
  register: node_plans

- name: Plumb every pod of the node in one task
  virtnet.podnet.vm_pod_bridge:
    pods: "{{ node_plans.pods }}"
"""

RETURN = r"""
plan:
  description: One entry per interface of the VM, in the interfaces' order.
  returned: success, with O(vm)
  type: list
  elements: dict
  contains:
    interface:
      description: The VM interface's name.
      type: str
      sample: default
    network:
      description: The network it is connected to (the one with the same name).
      type: str
      sample: default
    backend:
      description: The network's backend.
      type: str
      sample: pod
    connection:
      description: The connection method.
      type: str
      sample: bridge
    delegate_ip:
      description: Whether the pod's IP is moved to the VM by DHCP (C(bridge.delegateIp)).
      type: bool
      sample: true
    connectivity:
      description: What the VM gets, from the specification's support matrix, C(ip) with delegateIp, else C(ethernet).
      type: str
      sample: ip
    pod_interface:
      description: The pod's interface to bridge.
      type: str
      sample: eth0
    bridge:
      description: The bridge to create in the pod.
      type: str
      sample: k6t-eth0
    tap:
      description: The tap to create in the pod for the VM.
      type: str
      sample: tap0
    mac_address:
      description:
        - The VM's MAC address from the interface's C(macAddress), lower case with colons. The VM gets it
          instead of the pod interface's original MAC (the launcher facts and snippets of
          M(virtnet.podnet.vm_pod_bridge) carry it), and the DHCP responder serves that MAC.
        - Left out when the interface sets no C(macAddress), so the entry equals the binding of earlier versions.
      returned: when the interface sets C(macAddress)
      type: str
      sample: "02:00:00:aa:bb:cc"
    dhcp_options:
      description:
        - The interface's C(dhcpOptions), with the options it sets only, which the DHCP responder adds to
          its offers and acknowledgements whether the VM asks for them or not, as KubeVirt does.
        - Left out when the interface sets none, so the entry equals the binding of earlier versions.
      returned: when the interface's C(dhcpOptions) sets at least one option
      type: dict
      contains:
        boot_file_name:
          description:
            - C(bootFileName), DHCP option 67; also the BOOTP header's C(file) field when shorter than 128 bytes.
          type: str
          sample: pxelinux.0
        tftp_server_name:
          description:
            - C(tftpServerName), DHCP option 66; also the BOOTP header's C(sname) field when shorter than 64 bytes,
              and its C(siaddr) (next server) when it is an IPv4 address.
          type: str
          sample: 10.96.0.30
        ntp_servers:
          description: C(ntpServers), DHCP option 42.
          type: list
          elements: str
          sample: [10.96.0.20]
        private_options:
          description:
            - C(privateOptions), the site-specific DHCP options 224 to 254, each with its C(option) and C(value).
          type: list
          elements: dict
          sample: [{option: 240, value: site data}]
vm_name:
  description: The VM's C(metadata.name), when it has one.
  returned: success, with O(vm)
  type: str
  sample: vm1
plans:
  description: With O(vms), one entry per VM in the given order.
  returned: success, with O(vms)
  type: list
  elements: dict
  contains:
    vm_name:
      description: The VM's C(metadata.name), null without one.
      type: str
      sample: vm1
    netns:
      description: The entry's C(netns), as given.
      type: str
      sample: pod1
    plan:
      description: The VM's plan, as RV(plan).
      type: list
      elements: dict
  sample:
    - vm_name: vm1
      netns: pod1
      plan:
        - {interface: default, network: default, backend: pod, connection: bridge, delegate_ip: true,
           connectivity: ip, pod_interface: eth0, bridge: k6t-eth0, tap: tap0}
pods:
  description:
    - With O(vms), one entry per VM in the given order, ready for the
      O(virtnet.podnet.vm_pod_bridge#module:pods) option of M(virtnet.podnet.vm_pod_bridge).
    - Each has C(netns) (as given), C(binding) (the plan's only entry), C(hostname) (the entry's own, else
      the VM's C(metadata.name), left out without either) and the per-pod options the entry sets,
      converted to their types; options an entry does not set are left out, so the task's own apply.
  returned: success, with O(vms)
  type: list
  elements: dict
  sample:
    - netns: pod1
      binding: {interface: default, network: default, backend: pod, connection: bridge, delegate_ip: true,
                connectivity: ip, pod_interface: eth0, bridge: k6t-eth0, tap: tap0}
      hostname: vm1
      dns_servers: [10.96.0.10]
vms:
  description:
    - With O(vms), one entry per VM in the given order, to label the per-pod results of
      M(virtnet.podnet.vm_pod_bridge) (the role zips the two lists).
  returned: success, with O(vms)
  type: list
  elements: dict
  contains:
    name:
      description: The VM's C(metadata.name), or C(vms[N]) without one.
      type: str
      sample: vm1
    netns:
      description: The entry's C(netns), as given.
      type: str
      sample: pod1
    connectivity:
      description: C(ip) or C(ethernet), as in RV(plan).
      type: str
      sample: ip
errors:
  description:
    - On failure, every violation found, each with the field's path, the problem and what is allowed.
    - With O(vms), each also has C(vm) (the VM's name, or null) and C(index) (the entry's index in O(vms)),
      and C(path) is relative to the entry (C(netns), C(spec.networks[0])).
  returned: failure
  type: list
  elements: dict
  sample:
    - path: spec.devices.interfaces[0].bridge.delegateIp
      msg: "must be a boolean, got string 'yes'"
      allowed: "true, false"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import build_plan, vm_name
from ansible_collections.virtnet.podnet.plugins.module_utils._vm_batch import STATES, plan_vms


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vm=dict(type="raw"),
            vms=dict(type="list", elements="raw"),
            state=dict(type="str", choices=list(STATES), default="present"),
            pod_interface=dict(type="str", default="eth0"),
            tap=dict(type="str", default="tap0"),
        ),
        required_one_of=[("vm", "vms")],
        mutually_exclusive=[("vm", "vms")],
        supports_check_mode=True,
    )
    params = module.params
    names = dict(pod_interface=params["pod_interface"], tap=params["tap"])
    try:
        if params["vms"] is not None:
            module.exit_json(changed=False, **plan_vms(params["vms"], state=params["state"], **names))
        plan = build_plan(params["vm"], **names)
    except PodnetError as exc:
        module.fail_json(msg=exc.msg, changed=False, **exc.details)
    module.exit_json(changed=False, plan=plan, vm_name=vm_name(params["vm"]))


if __name__ == "__main__":
    main()
