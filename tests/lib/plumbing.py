"""Pods plumbed by the real code: ``vm_pod_bridge``'s entry point, in-process.

    from lib import paths, plumbing
    paths.setup()
    result = plumbing.plumb(pod.netns, make_binding(), run_dir, dns_servers=["10.96.0.10"])
    result["key"], result["lease_path"], result["vm_mac"], ...      # the module's return value
    plumbing.unplumb(pod.netns, make_binding(), run_dir)

``options`` are the module's (dns_servers, search_domains, hostname, lease_time, tap_uid,
pod_mac, ...). ``responder`` defaults to "skip": tests and benchmarks run their own
responder. A failure raises (PodnetError), as the module would fail.

The rest changes one thing of a pod the module plumbed, for tests that need a pod that is
not standard (say why at the call): the DHCP filters, the lease declaration.
"""

from __future__ import annotations

from lib.paths import module_utils

RUN_DIR_OWNER = "_rundir"  # the module_utils file that owns every file under the run directory


def plumb(netns: str, binding: dict, run_dir: str, check_mode: bool = False, diff: bool = True, **options) -> dict:
    params = dict(options, netns=netns, binding=binding, run_dir=run_dir, state="present")
    params.setdefault("responder", "skip")
    return module_utils("_pod_bridge").run(params, check_mode=check_mode, diff=diff)


def unplumb(netns: str, binding: dict, run_dir: str, check_mode: bool = False, diff: bool = True, **options) -> dict:
    params = dict(options, netns=netns, binding=binding, run_dir=run_dir, state="absent")
    return module_utils("_pod_bridge").run(params, check_mode=check_mode, diff=diff)


def set_dhcp_filters(netns: str, present: bool, tap: str = "tap0", pod_interface: str = "eth0-nic") -> dict:
    """Install or remove the pod's DHCP filters (the module installs them when it plumbs).

    ``pod_interface`` is the bridge port: eth0-nic under the pod identity (the default).
    """
    filters = module_utils("_dhcp_filters")
    with module_utils("_netns").entered(netns) as (ipr, _path, _inode):
        if present:
            return filters.install_dhcp_filters(ipr, tap, pod_interface)
        return filters.remove_dhcp_filters(ipr, tap, pod_interface)


def dhcp_filters_present(netns: str, tap: str = "tap0", pod_interface: str = "eth0-nic") -> dict:
    """``{"tap": bool, "pod_interface": bool}``: which of the pod's DHCP filters are in place."""
    with module_utils("_netns").entered(netns) as (ipr, _path, _inode):
        return module_utils("_dhcp_filters").dhcp_filters_present(ipr, tap, pod_interface)


def read_declaration(path: str) -> dict:
    return module_utils(RUN_DIR_OWNER).read_declaration(path)


def write_declaration(run_dir: str, declaration: dict) -> str:
    """Write a lease declaration as the module does (validated, atomically, mode 0600); return its path."""
    return module_utils(RUN_DIR_OWNER).write_declaration(run_dir, declaration)


def take_declaration(run_dir: str, key: str) -> dict:
    """Withdraw the lease declaration the module wrote for ``key`` and return it, to hand it over later."""
    rundir = module_utils(RUN_DIR_OWNER)
    declaration = rundir.read_declaration(rundir.lease_path(run_dir, key))
    if not rundir.remove_declaration(run_dir, key):
        raise FileNotFoundError(f"no lease declaration for {key} in {run_dir}")
    return declaration
