#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark a fleet over SSH: connect and disconnect N VMs per node on 1 node and on 3 nodes in one run.

Run as root from the repository root:

    python bench/bench_fleet.py                      # 3 nodes, 20 VMs per node, 3 rounds; docs/performance-fleet.md
    python bench/bench_fleet.py --vms 2 --rounds 1 --report /tmp/fleet.md --json /tmp/fleet.json

The nodes are podman containers booting a fresh Debian 12 (systemd as PID 1, sshd, Debian's
python3, no pip), started by ``tools/fleet_nodes.sh`` with a prefix of this run's own and
removed at the end (also on SIGTERM). The controller reaches them over real SSH as ``ops`` with
sudo, through an inventory this script writes; in each node the CNI bridge plugin
(``/usr/lib/cni/bridge``, host-local IPAM) makes N pods, as kubelet would (setup, not measured).

Measured, each as the wall time of a whole ``ansible-playbook`` run (start-up included: what a
user waits for):

- the ``virtnet.podnet.node`` role alone on the fresh nodes (its first run: one sample per set of
  nodes), and again on the prepared nodes (median of the rounds);
- ``playbooks/connect.yml`` then ``playbooks/disconnect.yml`` of N VMs per node, limited to one
  node (``--limit fleet-1``) and on every node in one run, interleaved, median of the rounds,
  and the ratio of the two against the target (every node in one run <= 1.5x one node);
- the same cycle on every node with SSH pipelining on/off and ControlPersist on/off.

Every run must end with return code 0 and ``failed=0 unreachable=0`` for every host in its
PLAY RECAP; a connect or a disconnect must also report changes on every host and a connect must
show N VMs per host. Around each run the CPU time used is read: the controller's (``ansible-playbook``
and every process it waited for) and the nodes' (each container's cpuacct cgroup). The more-nodes-
than-cores estimate in the report is derived from those figures. Every figure, verdict and
version in the report comes from the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import _paths  # noqa: F401  (sys.path: the collection and tests/lib; ANSIBLE_COLLECTIONS_PATH)
from _common import commit, commit_line, load_text, machine_line, now_utc, shown_command, verdict

REPO = _paths.REPO
FLEET_NODES = REPO / "tools" / "fleet_nodes.sh"
CONNECT = REPO / "playbooks" / "connect.yml"
DISCONNECT = REPO / "playbooks" / "disconnect.yml"
PODMAN = [str(REPO / "tools" / "podman.sh")]  # runc, cgroupfs, vfs where the storage is on overlayfs
TARGET_RATIO = 1.5
UNAVAILABLE = 3  # the exit code for "this machine cannot run a fleet" (run_all.py --quick reports it as skipped)
PLAYBOOK_TIMEOUT = 1800
SETUP_TIMEOUT = 600
# What each SSH setting is, as ANSIBLE_SSH_ARGS (Ansible's default is "-C" plus the first one).
SSH_ARGS = {True: "-o ControlMaster=auto -o ControlPersist=60s", False: "-o ControlMaster=no"}
# The settings of every run but the SSH comparison: pipelining on, ControlPersist on.
MAIN = (True, True)
SSH_SETTINGS = [(True, True), (True, False), (False, True), (False, False)]
NODE_PLAY = """---
- name: Prepare the nodes (the node role alone)
  hosts: podnet_nodes
  become: true
  gather_facts: false
  roles:
    - role: virtnet.podnet.node
"""
# A node's pods, as kubelet would make them: a namespace each and the CNI bridge plugin's ADD
# (host-local IPAM from the node's own /24). Arguments: the number of pods and the node's CIDR.
PODS_SCRIPT = r"""set -euo pipefail
count=$1 cidr=$2
conf='{"cniVersion": "1.0.0", "name": "fleet", "type": "bridge", "bridge": "cni0", "isGateway": true,
  "ipMasq": false, "mtu": 1450, "ipam": {"type": "host-local", "ranges": [[{"subnet": "'"$cidr"'"}]],
  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/fleet-cni/ipam"}}'
for i in $(seq 1 "$count"); do
  ip netns add "fleet-pod$i"
  CNI_COMMAND=ADD CNI_CONTAINERID="fleet-pod$i" CNI_NETNS="/run/netns/fleet-pod$i" CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge <<<"$conf" >/dev/null
done
ls /run/netns | grep -c '^fleet-pod'
"""
RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")
SHOWN_VM = re.compile(r"^ok: \[([^\]]+)\] => \(item=(vm-[^)]+)\)")


def fail(what: str, proc) -> None:
    out = (proc.stdout or "") + (proc.stderr or "")
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{out[-4000:]}")


def pyroute2_version() -> str:
    return yaml.safe_load((REPO / "roles" / "node" / "defaults" / "main.yml").read_text())["node_pyroute2_version"]


def wheel_path() -> Path:
    """The pyroute2 wheel the node role copies from the controller's cache (roles/node/defaults)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", str(Path.home())), ".cache")
    return Path(cache) / "virtnet-podnet" / "wheels" / f"pyroute2-{pyroute2_version()}-py3-none-any.whl"


def ensure_wheel() -> str | None:
    """Fill the controller's wheel cache before the clock starts, as the node role's first run would (its
    ``pip download``), so that the fresh-node figure does not include a download. None, or why it cannot."""
    wheel = wheel_path()
    if wheel.exists():
        return None
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--dest", str(wheel.parent), f"pyroute2=={pyroute2_version()}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`pip download` of the node role's pyroute2 wheel failed: {exc}"
    if proc.returncode != 0 or not wheel.exists():
        last = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        return f"the node role's pyroute2 wheel is not in the controller's cache and `pip download` failed: {last}"
    return None


def unavailable_reason() -> str | None:
    """Why this machine cannot run a fleet at all (a tool missing, podman unable to start containers), or None."""
    for tool in ("podman", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    proc = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return f"podman cannot run containers here (`podman info`): {last}"
    return ensure_wheel()


class Fleet:
    """The run's nodes, its inventory, and whole ansible-playbook runs against them."""

    def __init__(self, work: Path, count: int, vms: int):
        self.work, self.count, self.vms = work, count, vms
        self.nodes_dir = work / "nodes"
        self.prefix = f"podnet-bench-fleet-{secrets.token_hex(4)}"
        self.hosts = [f"fleet-{i}" for i in range(1, count + 1)]
        self.forks = max(5, count)  # Ansible's default is 5: never fewer than the nodes
        self.inventory = work / "hosts.yml"
        self.node_play = work / "node.yml"
        self.cgroups = {}
        self.runs = 0

    # -- the nodes ---------------------------------------------------------------------------

    def up(self):
        proc = run_group([str(FLEET_NODES), "up", str(self.nodes_dir), str(self.count), self.prefix], SETUP_TIMEOUT)
        if proc.returncode != 0:
            fail("tools/fleet_nodes.sh up", proc)
        for index, host in enumerate(self.hosts, 1):
            self.cgroups[host] = cpuacct_file(f"{self.prefix}-{index}")
        self.write_inventory()
        self.node_play.write_text(NODE_PLAY)
        (self.work / "ansible.cfg").write_text("[defaults]\n")  # nobody's ansible.cfg but this

    def ssh(self, host: str, command: str, timeout: int = 120) -> str:
        proc = subprocess.run(["ssh", "-F", str(self.nodes_dir / "ssh_config"), host, command], capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            fail(f"ssh {host} {command[:60]}", proc)
        return proc.stdout.strip()

    def make_pods(self):
        """N pods in every node, all nodes at once (setup: not measured)."""
        procs = {}
        for index, host in enumerate(self.hosts, 1):
            remote = f"sudo bash -c {shlex.quote(PODS_SCRIPT)} pods {self.vms} 10.244.{index}.0/24"
            procs[host] = subprocess.Popen(["ssh", "-F", str(self.nodes_dir / "ssh_config"), host, remote],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for host, proc in procs.items():
            out, err = proc.communicate(timeout=SETUP_TIMEOUT)
            if proc.returncode != 0 or out.strip() != str(self.vms):
                raise RuntimeError(f"making {self.vms} pods in {host} failed (exit {proc.returncode}, "
                                   f"pods {out.strip()!r}):\n{err[-3000:]}")

    def write_inventory(self):
        nodes = {}
        for index, host in enumerate(self.hosts, 1):
            nodes[host] = {"fleet_index": index, "vm_network_vms": [
                {"vm": {"kind": "VM", "metadata": {"name": f"vm-{host}-{pod}"}}, "netns": f"fleet-pod{pod}"}
                for pod in range(1, self.vms + 1)]}
        inventory = {"all": {
            "hosts": {"localhost": {"ansible_connection": "local",
                                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
            "children": {"podnet_nodes": {"hosts": nodes, "vars": {
                "ansible_connection": "ssh", "ansible_user": "ops", "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_common_args": f"-F {self.nodes_dir / 'ssh_config'}"}}}}}
        self.inventory.write_text("---\n# Written by bench/bench_fleet.py for one run.\n"
                                  + yaml.safe_dump(inventory, default_flow_style=False, sort_keys=False))

    def nodes_cpu(self):
        """CPU seconds the node containers used so far (None where the cgroup is not readable)."""
        total = 0.0
        for path in self.cgroups.values():
            if path is None:
                return None
            try:
                total += int(Path(path).read_text()) / 1e9
            except (OSError, ValueError):
                return None
        return total

    # -- ansible-playbook ------------------------------------------------------------------

    def playbook(self, play: Path, limit: str | None = None, pipelining: bool = True, persist: bool = True,
                 check: str | None = None) -> dict:
        """One whole run: wall time, CPU, changed per host. ``check``: "connect" or "disconnect" sanity."""
        self.runs += 1
        control = self.work / "cp" / str(self.runs)  # fresh per run: no master left from an earlier run is reused
        control.mkdir(parents=True)
        env = dict(os.environ, ANSIBLE_CONFIG=str(self.work / "ansible.cfg"), ANSIBLE_PIPELINING=str(pipelining),
                   ANSIBLE_SSH_ARGS=SSH_ARGS[persist], ANSIBLE_SSH_CONTROL_PATH_DIR=str(control),
                   ANSIBLE_FORKS=str(self.forks), ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_HOST_KEY_CHECKING="0")
        argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(self.inventory), str(play)]
        if limit:
            argv += ["--limit", limit]
        expected = [limit] if limit else self.hosts
        nodes0, usage0 = self.nodes_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        proc = run_group(argv, PLAYBOOK_TIMEOUT, env)
        wall = time.monotonic() - start
        usage1, nodes1 = resource.getrusage(resource.RUSAGE_CHILDREN), self.nodes_cpu()
        close_masters(control)
        what = f"ansible-playbook {play.name}" + (f" --limit {limit}" if limit else "")
        if proc.returncode != 0:
            fail(what, proc)
        recap = parse_recap(proc.stdout)
        bad = [host for host in expected if host not in recap or recap[host].get("failed", 1)
               or recap[host].get("unreachable", 1)]
        bad += [host for host, counts in recap.items() if counts.get("failed") or counts.get("unreachable")]
        if bad:
            raise RuntimeError(f"{what}: no clean PLAY RECAP for {', '.join(sorted(set(bad)))}:\n{proc.stdout[-4000:]}")
        changed = {host: recap[host].get("changed", 0) for host in expected}
        if check and not all(changed.values()):
            raise RuntimeError(f"{what}: a {check} that changed nothing on a host ({changed}):\n{proc.stdout[-3000:]}")
        if check == "connect":
            shown = {}
            for line in proc.stdout.splitlines():
                m = SHOWN_VM.match(line)
                if m:
                    shown.setdefault(m[1], set()).add(m[2])
            wrong = {host: len(shown.get(host, ())) for host in expected if len(shown.get(host, ())) != self.vms}
            if wrong:
                raise RuntimeError(f"{what}: not {self.vms} VMs per host ({wrong}):\n{proc.stdout[-3000:]}")
        controller = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        nodes = None if nodes0 is None or nodes1 is None else nodes1 - nodes0
        return {"wall": round(wall, 3), "changed": changed, "controller_cpu": round(controller, 3),
                "nodes_cpu": None if nodes is None else round(nodes, 3)}


def run_group(argv: list, timeout: int, env: dict | None = None):
    """Run in a process group of its own; on any way out (timeout, SIGTERM) the whole group goes, so no
    ``podman run`` outlives this script to create a node after the clean-up, and no Ansible worker or
    SSH client is left behind."""
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def parse_recap(stdout: str) -> dict:
    recap, seen = {}, False
    for line in stdout.splitlines():
        if line.startswith("PLAY RECAP"):
            seen = True
            continue
        m = RECAP.match(line.strip()) if seen else None
        if m:
            recap[m[1]] = {key: int(value) for key, value in (item.split("=") for item in m[2].split())}
    return recap


def cpuacct_file(container: str):
    """The container's CPU usage counter on the host (cgroup v1 cpuacct, or v2 cpu.stat), or None."""
    proc = subprocess.run([*PODMAN, "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True,
                          timeout=60, check=False)
    try:
        lines = Path(f"/proc/{int(proc.stdout.strip())}/cgroup").read_text().splitlines()
    except (OSError, ValueError):
        return None
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for mount in ("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"):
                candidate = Path(mount + path) / "cpuacct.usage"
                if candidate.exists():
                    return str(candidate)
    return None


def close_masters(control: Path):
    """End the SSH ControlPersist masters of one run (their sockets are in its own directory)."""
    for sock in control.iterdir() if control.exists() else ():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet"], capture_output=True, timeout=30,
                       check=False)


def stop_leftover_ssh(work: Path):
    """Any ssh of this run still running (a master whose socket went first): by its pid."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ssh") and str(work).encode() in cmdline:
            try:
                os.kill(int(pid_dir.name), signal.SIGTERM)
            except OSError:
                pass


def leftover_containers(prefix: str) -> list:
    proc = subprocess.run([*PODMAN, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=120,
                          check=False)
    return [name for name in proc.stdout.split() if re.fullmatch(re.escape(prefix) + r"-\d+", name)]


def cleanup(fleet: Fleet):
    """Remove the nodes, whatever happened; a second SIGTERM does not interrupt it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_leftover_ssh(fleet.work)
    subprocess.run([str(FLEET_NODES), "down", str(fleet.nodes_dir)], cwd=REPO, capture_output=True, timeout=300,
                   check=False)
    for _attempt in range(3):
        left = leftover_containers(fleet.prefix)
        if not left:
            break
        subprocess.run([*PODMAN, "rm", "--force", "--time", "0", *left], capture_output=True, timeout=300, check=False)
        time.sleep(2)
    left = leftover_containers(fleet.prefix)
    if left:
        print(f"WARNING: containers left behind: {' '.join(left)}", file=sys.stderr)


# -- measuring ------------------------------------------------------------------------------

def median(values):
    return round(statistics.median(values), 3)


def cpu_of(runs: list, key: str):
    values = [run[key] for run in runs]
    return None if any(v is None for v in values) else median(values)


def summary(runs: list) -> dict:
    return {"wall_s": median([r["wall"] for r in runs]), "controller_cpu_s": cpu_of(runs, "controller_cpu"),
            "nodes_cpu_s": cpu_of(runs, "nodes_cpu"), "samples": [r["wall"] for r in runs],
            "changed": [r["changed"] for r in runs]}


def measure(fleet: Fleet, rounds: int) -> dict:
    one = fleet.hosts[0]
    print(f"  node role on {fleet.count} fresh nodes ...", flush=True)
    fresh = fleet.playbook(fleet.node_play)
    print(f"  node role, fresh: {fresh['wall']:.2f} s", flush=True)
    prepared = []
    for _round in range(rounds):
        prepared.append(fleet.playbook(fleet.node_play))
        print(f"  node role, prepared: {prepared[-1]['wall']:.2f} s", flush=True)
    cycle = {"one": {"connect": [], "disconnect": []}, "all": {"connect": [], "disconnect": []}}
    for _round in range(rounds):
        for key, limit in (("one", one), ("all", None)):
            for state, play in (("connect", CONNECT), ("disconnect", DISCONNECT)):
                cycle[key][state].append(fleet.playbook(play, limit=limit, check=state))
            print(f"  {'1 node' if limit else f'{fleet.count} nodes'}: connect {cycle[key]['connect'][-1]['wall']:.2f} s, "
                  f"disconnect {cycle[key]['disconnect'][-1]['wall']:.2f} s", flush=True)
    ssh = {setting: {"connect": [], "disconnect": []} for setting in SSH_SETTINGS if setting != MAIN}
    ssh[MAIN] = cycle["all"]  # the all-node runs above already are the main setting's
    for _round in range(rounds):
        for (pipelining, persist), runs in ssh.items():
            if (pipelining, persist) == MAIN:
                continue
            for state, play in (("connect", CONNECT), ("disconnect", DISCONNECT)):
                runs[state].append(fleet.playbook(play, pipelining=pipelining, persist=persist, check=state))
            print(f"  pipelining {'on' if pipelining else 'off'}, ControlPersist {'on' if persist else 'off'}: connect "
                  f"{runs['connect'][-1]['wall']:.2f} s, disconnect {runs['disconnect'][-1]['wall']:.2f} s", flush=True)
    result = {
        "node_role": {"fresh": {"wall_s": fresh["wall"], "controller_cpu_s": fresh["controller_cpu"],
                                "nodes_cpu_s": fresh["nodes_cpu"], "changed": fresh["changed"]},
                      "prepared": summary(prepared)},
        "cycle": {key: {state: summary(runs) for state, runs in value.items()} for key, value in cycle.items()},
        "ssh": [],
    }
    for setting in SSH_SETTINGS:
        runs = ssh[setting]
        walls = [c["wall"] + d["wall"] for c, d in zip(runs["connect"], runs["disconnect"])]
        result["ssh"].append({"pipelining": setting[0], "control_persist": setting[1], "ssh_args": SSH_ARGS[setting[1]],
                              "connect_s": median([r["wall"] for r in runs["connect"]]),
                              "disconnect_s": median([r["wall"] for r in runs["disconnect"]]),
                              "cycle_s": median(walls), "samples": {state: [r["wall"] for r in v] for state, v in runs.items()},
                              "main": setting == MAIN})
    for key in ("one", "all"):
        c, d = cycle[key]["connect"], cycle[key]["disconnect"]
        result["cycle"][key]["cycle_s"] = median([a["wall"] + b["wall"] for a, b in zip(c, d)])
    one_row, all_row = result["cycle"]["one"], result["cycle"]["all"]
    result["ratio"] = {state: round(all_row[state]["wall_s"] / one_row[state]["wall_s"], 3)
                       for state in ("connect", "disconnect")}
    result["ratio"]["cycle"] = round(all_row["cycle_s"] / one_row["cycle_s"], 3)
    return result


# -- more nodes than cores --------------------------------------------------------------------

def more_nodes(result: dict, nodes: int, cores: int, forks: int) -> dict:
    """The estimate for more nodes than cores, from this run's connect figures (reasoning, not measurement)."""
    one, every = result["cycle"]["one"]["connect"], result["cycle"]["all"]["connect"]
    w1, wk = one["wall_s"], every["wall_s"]
    slope = (wk - w1) / (nodes - 1)  # wall seconds each node beyond the first added
    out = {"cores": cores, "forks": forks, "wall_per_extra_node_s": round(slope, 3), "cpu": None, "points": []}
    cpu1 = cpuk = None
    if one["controller_cpu_s"] is not None and one["nodes_cpu_s"] is not None and every["nodes_cpu_s"] is not None:
        cpu1 = one["controller_cpu_s"] + one["nodes_cpu_s"]
        cpuk = every["controller_cpu_s"] + every["nodes_cpu_s"]
        per_node = (cpuk - cpu1) / (nodes - 1)
        controller_per_node = (every["controller_cpu_s"] - one["controller_cpu_s"]) / (nodes - 1)
        out["cpu"] = {"one_s": round(cpu1, 3), "all_s": round(cpuk, 3), "per_extra_node_s": round(per_node, 3),
                      "controller_per_extra_node_s": round(controller_per_node, 3),
                      "busy_one": round(cpu1 / (w1 * cores), 3), "busy_all": round(cpuk / (wk * cores), 3)}
    for n in (2 * cores, 5 * cores):
        linear = w1 + (n - 1) * slope
        bound = (cpu1 + (n - 1) * out["cpu"]["per_extra_node_s"]) / cores if out["cpu"] else None
        wall = max(linear, bound) if bound is not None else linear
        out["points"].append({"nodes": n, "wall_s": round(wall, 2), "ratio": round(wall / w1, 2),
                              "from_slope_s": round(linear, 2), "cpu_bound_s": None if bound is None else round(bound, 2)})
    return out


def more_nodes_text(est: dict, result: dict, nodes: int, vms: int) -> str:
    one, every = result["cycle"]["one"]["connect"], result["cycle"]["all"]["connect"]
    cores, w1, wk = est["cores"], one["wall_s"], every["wall_s"]
    text = (f"Ansible runs each task on every host at once, one worker process per host (up to `forks`, "
            f"{est['forks']} here), so a node's own work overlaps the others'. On a real fleet each node brings its own "
            f"CPUs; here the {nodes} \"nodes\" are containers on this machine's {cores} cores, shared with the controller. "
            f"In this run a connect of {vms} VMs took {w1:.2f} s on 1 node and {wk:.2f} s on {nodes} nodes: "
            f"each node beyond the first added {est['wall_per_extra_node_s']:.2f} s.")
    cpu = est["cpu"]
    if cpu:
        text += (f" The CPU time behind it (the controller's `ansible-playbook` and its processes, plus the containers' "
                 f"cgroups): {cpu['one_s']:.1f} s for 1 node, {cpu['all_s']:.1f} s for {nodes}, i.e. "
                 f"{cpu['per_extra_node_s']:.1f} CPU-seconds per extra node, of which {cpu['controller_per_extra_node_s']:.1f} "
                 f"on the controller; the {cores} cores were {cpu['busy_one']:.0%} busy with 1 node and "
                 f"{cpu['busy_all']:.0%} with {nodes}.")
        if cpu["busy_all"] < 0.75:
            text += (f" So this run's own processes did not saturate the cores: the rest of the {wk:.2f} s was waiting - "
                     "for SSH round trips, for the slowest host at the end of every task (Ansible's default linear "
                     "strategy starts a task once every host finished the one before), and for other processes on the "
                     "machine (see the load average above).")
    points = "; ".join(f"{p['nodes']} nodes ≈ {p['wall_s']:.0f} s, {p['ratio']:.1f}x one node" for p in est["points"])
    text += (f" **Estimate, not measured:** with more nodes than cores the wall time cannot fall below the CPU time "
             f"divided by the {cores} cores, so once the cores are saturated it grows about linearly with "
             f"nodes / cores: {points} (the larger of the measured per-node slope and that CPU bound).")
    if cpu and cpu["controller_per_extra_node_s"] > 0:
        limit = cores * w1 / cpu["controller_per_extra_node_s"]
        text += (f" With real nodes doing their own work, only the controller's {cpu['controller_per_extra_node_s']:.1f} "
                 f"CPU-seconds per node share its cores: its {cores} cores would then be saturated from about "
                 f"{limit:.0f} nodes on.")
    text += (f" Beyond `forks` hosts a task also runs in batches of {est['forks']}; raise `--forks` with the node count.")
    return text


# -- the report -------------------------------------------------------------------------------

def targets(result: dict, nodes: int, vms: int) -> list:
    out = []
    for state in ("connect", "disconnect"):
        value = result["ratio"][state]
        out.append((f"{nodes} nodes <= {TARGET_RATIO:g}x one node ({state}, {vms} VMs per node)", f"{value:.2f}x",
                    value <= TARGET_RATIO))
    return out


def on_off(flag: bool) -> str:
    return "on" if flag else "off"


def report(data: dict) -> str:
    r, nodes, vms, rounds = data["results"], data["nodes"], data["vms"], data["rounds"]
    one, every = r["cycle"]["one"], r["cycle"]["all"]
    lines = [
        "# Performance: a fleet of nodes over SSH",
        "",
        f"Wall time of whole `ansible-playbook` runs (start-up included: what a user waits for) against {nodes} nodes",
        "reached over real SSH: podman containers booting a fresh Debian 12 (systemd as PID 1, sshd, Debian's python3,",
        f"no pip; `tools/fleet_nodes.sh`), `ops` with sudo (`become`). In each node the CNI bridge plugin made {vms} pods",
        "(host-local IPAM, the node's own /24) before anything was measured. Medians of the rounds.",
        "",
        "Measured with:",
        "",
        "```sh",
        data["command"],
        "```",
        "",
        f"Run {data['date']} on {data['machine']}.",
        commit_line(data.get("commit")),
        f"The nodes: {nodes} containers on this same machine ({data['node_python']} on the nodes), sharing its "
        f"{data['cores']} cores with the controller.",
        f"Load average (1, 5, 15 min) before the run {load_text(data['load']['before'])}, after it "
        f"{load_text(data['load']['after'])}; other work on the machine slows every figure here.",
        f"Unless a table says otherwise: SSH pipelining on, `ANSIBLE_SSH_ARGS=\"{SSH_ARGS[True]}\"`, forks {data['forks']}, "
        "a fresh ControlPath directory for every run (no connection kept from an earlier run).",
        "",
        f"## Connect and disconnect: 1 node vs {nodes} nodes",
        "",
        f"`playbooks/connect.yml` then `playbooks/disconnect.yml` with {vms} VMs per node (the node role runs first in both,",
        f"on prepared nodes), `--limit fleet-1` vs every node in one run; {rounds} round{'s' if rounds != 1 else ''}, "
        "interleaved.",
        "",
        f"| run | 1 node ({vms} VMs) | {nodes} nodes ({nodes * vms} VMs), one run | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for state in ("connect", "disconnect"):
        value = r["ratio"][state]
        lines.append(f"| {state} | {one[state]['wall_s']:.2f} s | {every[state]['wall_s']:.2f} s | {value:.2f}x "
                     f"| <= {TARGET_RATIO:g}x: {verdict(value <= TARGET_RATIO)} |")
    lines.append(f"| connect + disconnect | {one['cycle_s']:.2f} s | {every['cycle_s']:.2f} s | {r['ratio']['cycle']:.2f}x | |")
    lines += ["", "CPU time of those runs (medians): the controller's (`ansible-playbook` and every process it waited for;",
              "the SSH masters' own not included) and the nodes' (the containers' cpuacct cgroups).", "",
              "| run | controller CPU | nodes CPU | cores busy (CPU / wall / cores) |", "| --- | ---: | ---: | ---: |"]
    for label, row in (("connect, 1 node", one["connect"]), (f"connect, {nodes} nodes", every["connect"]),
                       ("disconnect, 1 node", one["disconnect"]), (f"disconnect, {nodes} nodes", every["disconnect"])):
        busy = "n/a"
        if row["controller_cpu_s"] is not None and row["nodes_cpu_s"] is not None:
            busy = f"{(row['controller_cpu_s'] + row['nodes_cpu_s']) / row['wall_s'] / data['cores']:.0%}"
        nodes_cpu = "n/a" if row["nodes_cpu_s"] is None else f"{row['nodes_cpu_s']:.1f} s"
        lines.append(f"| {label} | {row['controller_cpu_s']:.1f} s | {nodes_cpu} | {busy} |")
    lines += ["", "| target | measured | verdict |", "| --- | --- | --- |"]
    for label, measured, met in targets(r, nodes, vms):
        lines.append(f"| {label} | {measured} | {verdict(met)} |")
    fresh, prepared = r["node_role"]["fresh"], r["node_role"]["prepared"]
    lines += ["", "## The node role: fresh vs prepared nodes", "",
              f"A play with only `virtnet.podnet.node` on all {nodes} nodes, with its defaults (`node_pyroute2: controller`:",
              "the pyroute2 wheel copied from the controller's cache into a venv; the hardened `podnet-dhcpd` unit).",
              "The fresh run is the first on new nodes, so one sample per set of nodes.", "",
              "| run | wall | changed (per node) | controller CPU | nodes CPU |", "| --- | ---: | --- | ---: | ---: |",
              f"| fresh nodes (first run) | {fresh['wall_s']:.2f} s | {changed_text(fresh['changed'])} "
              f"| {fresh['controller_cpu_s']:.1f} s | {cpu_text(fresh['nodes_cpu_s'])} |",
              f"| prepared nodes (median of {len(prepared['samples'])}) | {prepared['wall_s']:.2f} s "
              f"| {changed_text(prepared['changed'][-1])} | {prepared['controller_cpu_s']:.1f} s "
              f"| {cpu_text(prepared['nodes_cpu_s'])} |",
              "", f"Fresh nodes cost {fresh['wall_s'] - prepared['wall_s']:.2f} s more than prepared ones "
              f"({fresh['wall_s'] / prepared['wall_s']:.1f}x); a prepared node's run is the node role's share of every "
              f"connect and disconnect above ({prepared['wall_s']:.2f} s of the {every['connect']['wall_s']:.2f} s connect "
              f"on {nodes} nodes).", ""]
    lines += ssh_section(r, nodes, vms)
    est = data["more_nodes"]
    lines += ["## More nodes than CPU cores", "", more_nodes_text(est, r, nodes, vms), "",
              "## Every sample (seconds)", ""]
    lines.append(f"- node role, prepared: {prepared['samples']}")
    for key, label in (("one", "1 node"), ("all", f"{nodes} nodes")):
        lines.append(f"- {label}: connect {r['cycle'][key]['connect']['samples']}; "
                     f"disconnect {r['cycle'][key]['disconnect']['samples']}")
    for row in r["ssh"]:
        lines.append(f"- pipelining {on_off(row['pipelining'])}, ControlPersist {on_off(row['control_persist'])}: "
                     f"connect {row['samples']['connect']}; disconnect {row['samples']['disconnect']}")
    lines.append(f"- setup (not measured): nodes up in {data['setup']['nodes_up_s']:.1f} s, "
                 f"{nodes} x {vms} pods in {data['setup']['pods_s']:.1f} s")
    return "\n".join(lines) + "\n"


def ssh_section(r: dict, nodes: int, vms: int) -> list:
    rows = {(row["pipelining"], row["control_persist"]): row for row in r["ssh"]}
    base = rows[MAIN]
    lines = ["## SSH pipelining and ControlPersist", "",
             f"The connect + disconnect cycle on all {nodes} nodes ({vms} VMs each) with each combination "
             "(`ANSIBLE_PIPELINING`, `ANSIBLE_SSH_ARGS`); the first row is the same runs as the table above.", "",
             "| pipelining | ControlPersist | `ANSIBLE_SSH_ARGS` | connect | disconnect | cycle | cycle vs first row |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for row in r["ssh"]:
        lines.append(f"| {on_off(row['pipelining'])} | {on_off(row['control_persist'])} | `{row['ssh_args']}` "
                     f"| {row['connect_s']:.2f} s | {row['disconnect_s']:.2f} s | {row['cycle_s']:.2f} s "
                     f"| {row['cycle_s'] / base['cycle_s']:.2f}x |")
    no_pipe, no_persist, neither = rows[(False, True)], rows[(True, False)], rows[(False, False)]
    lines += ["", f"Against the first row, per cycle: pipelining off {no_pipe['cycle_s'] - base['cycle_s']:+.2f} s "
              f"({no_pipe['cycle_s'] / base['cycle_s']:.2f}x; without pipelining each module's file is first copied "
              f"to the node and then run by a second SSH command); ControlPersist off "
              f"{no_persist['cycle_s'] - base['cycle_s']:+.2f} s ({no_persist['cycle_s'] / base['cycle_s']:.2f}x; a new "
              f"SSH connection, key exchange and login, for every task on every node); both off "
              f"{neither['cycle_s'] - base['cycle_s']:+.2f} s ({neither['cycle_s'] / base['cycle_s']:.2f}x). "
              + spread_note(r["ssh"]), ""]
    return lines


def spread_note(rows: list) -> str:
    """How far one setting's cycles lay apart in this run: differences below that are noise."""
    spreads = []
    for row in rows:
        cycles = [c + d for c, d in zip(row["samples"]["connect"], row["samples"]["disconnect"])]
        if len(cycles) > 1:
            spreads.append(max(cycles) - min(cycles))
    if not spreads:
        return "One round per setting: no spread over rounds to tell noise from effect."
    return (f"The cycles of one setting lay up to {max(spreads):.2f} s apart (max - min over the rounds): differences "
            "smaller than that are noise.")


def changed_text(changed: dict) -> str:
    values = set(changed.values())
    return str(values.pop()) if len(values) == 1 else ", ".join(f"{h} {c}" for h, c in changed.items())


def cpu_text(value) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--vms", type=int, default=20, help="VMs (and pods) per node (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measured run; medians are reported")
    parser.add_argument("--nodes", type=int, default=3, help="nodes in the fleet (default 3; 1 node is the --limit run)")
    parser.add_argument("--report", default=str(_paths.DOCS / "performance-fleet.md"))
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (podman containers with systemd)")
    if args.nodes < 2 or not 1 <= args.vms <= 250 or args.rounds < 1:
        parser.error("--nodes must be at least 2, --vms 1 to 250 (one /24 per node), --rounds at least 1")
    reason = unavailable_reason()
    if reason:
        print(f"unavailable: {reason}", flush=True)
        return UNAVAILABLE
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(143))
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="podnet-bench-fleet-"))
    fleet = Fleet(work, args.nodes, args.vms)
    try:
        print(f"  starting {args.nodes} nodes ({fleet.prefix}-1..{args.nodes}) ...", flush=True)
        start = time.monotonic()
        fleet.up()
        up_s = time.monotonic() - start
        node_python = fleet.ssh(fleet.hosts[0], "python3 --version")
        start = time.monotonic()
        fleet.make_pods()
        pods_s = time.monotonic() - start
        print(f"  {args.nodes} nodes up in {up_s:.1f} s, {args.nodes} x {args.vms} pods in {pods_s:.1f} s", flush=True)
        results = measure(fleet, args.rounds)
    finally:
        cleanup(fleet)
        shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count()
    results["targets"] = [{"target": t, "measured": m, "met": met} for t, m, met in targets(results, args.nodes, args.vms)]
    data = {"nodes": args.nodes, "vms": args.vms, "rounds": args.rounds, "forks": fleet.forks, "cores": cores,
            "machine": machine_line(), "commit": commit(), "node_python": node_python, "date": now_utc(),
            "command": shown_command(),
            "load": {"before": load_before, "after": os.getloadavg()},
            "setup": {"nodes_up_s": round(up_s, 1), "pods_s": round(pods_s, 1)}, "results": results}
    data["more_nodes"] = more_nodes(results, args.nodes, cores, fleet.forks)
    data["more_nodes"]["text"] = more_nodes_text(data["more_nodes"], results, args.nodes, args.vms)
    Path(args.report).write_text(report(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2))
    print(json.dumps({"ratio": results["ratio"], "targets": results["targets"],
                      "node_role": {k: v["wall_s"] for k, v in results["node_role"].items()},
                      "ssh": [{k: row[k] for k in ("pipelining", "control_persist", "cycle_s")} for row in results["ssh"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
