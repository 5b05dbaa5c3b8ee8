#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_pod_network_info
short_description: Show what is plumbed in a pod for its VM
version_added: 0.1.0
description:
  - Read-only. Reports the pod's links (pod interface, bridge, tap) and their addresses, the
    original pod interface configuration recorded by M(virtnet.podnet.vm_pod_bridge), whether
    the live state matches it (drift listed, like the CNI C(CHECK) command), and the lease
    declaration and lease state.
author:
  - virtnet.podnet contributors (@virtnet)
attributes:
  check_mode:
    support: full
    description: The module changes nothing.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
options:
  netns:
    description:
      - The pod's network namespace, a name under C(/run/netns) or an absolute path such as C(/proc/PID/ns/net).
    type: str
    required: true
  binding:
    description:
      - One entry of the C(plan) returned by M(virtnet.podnet.vm_network_plan).
    type: dict
    required: true
extends_documentation_fragment:
  - virtnet.podnet.pod
seealso:
  - module: virtnet.podnet.vm_pod_bridge
"""

EXAMPLES = r"""
- name: Check a pod's plumbing
  virtnet.podnet.vm_pod_network_info:
    netns: pod1
    binding: "{{ plan.plan[0] }}"
  register: info

- name: Fail on drift
  ansible.builtin.assert:
    that: info.in_sync
    fail_msg: "{{ info.drift }}"
"""

RETURN = r"""
namespace_exists:
  description: Whether the namespace exists.
  returned: always
  type: bool
plumbed:
  description: Whether a state cache for this pod and interface exists (present has run at least up to recording).
  returned: always
  type: bool
in_sync:
  description: Whether the live state matches what O(binding) and the cache call for.
  returned: always
  type: bool
drift:
  description: What differs from the wanted state, as the changes C(present) would make.
  returned: always
  type: list
  elements: str
links:
  description: The pod interface, bridge and tap as found (kind, MTU, up, master; MAC of the pod interface).
  returned: always
  type: dict
addresses:
  description: IPv4 addresses of those links.
  returned: always
  type: dict
original:
  description: The pod interface as recorded before any change, or null.
  returned: always
  type: dict
lease:
  description: The lease declaration, or null.
  returned: always
  type: dict
lease_state:
  description:
    - The responder's lease state (C(state) offered, bound, released or declined, with the times), or null.
    - For a pod with an IPv6 address also C(ipv6), the DHCPv6 lease's state (advertised, bound, released or
      declined), C(last_message), C(bound_at), C(expires_at) and the times.
  returned: always
  type: dict
  sample: {"state": "bound", "ip": "10.244.1.10", "ipv6": {"address": "fd00:58::7", "state": "bound"}}
key:
  description: The state key.
  returned: always
  type: str
  sample: pod1__eth0
netns:
  description: The O(netns) given.
  returned: always
  type: str
  sample: pod1
netns_path:
  description: The namespace file used.
  returned: always
  type: str
  sample: /run/netns/pod1
cache_path:
  description: The state cache file of this pod and interface.
  returned: always
  type: str
  sample: /run/virtnet-podnet/pods/pod1__eth0.json
tap:
  description: When plumbed, the launcher facts as M(virtnet.podnet.vm_pod_bridge) returns them
    (also C(bridge), C(pod_interface), C(vm_mac), C(mtu), C(delegate_ip), C(ip), C(prefixlen), C(gateway),
    C(routes), C(libvirt_interface_xml), C(qemu_args)).
  returned: when plumbed
  type: str
  sample: tap0
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._netns import HAS_PYROUTE2, PYROUTE2_IMPORT_ERROR
from ansible_collections.virtnet.podnet.plugins.module_utils import _options, _pod_bridge


def main():
    module = AnsibleModule(
        argument_spec=_options.info_argument_spec(),
        supports_check_mode=True,
    )
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=str(PYROUTE2_IMPORT_ERROR))
    try:
        result = _pod_bridge.info(module.params)
    except PodnetError as exc:
        module.fail_json(msg=exc.msg, changed=False, **exc.details)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
