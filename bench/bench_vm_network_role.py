#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark the vm_network role: connect and disconnect N VMs on one node in one play (N = 1, 50, 100, 250).

Run as root from the repository root:

    python bench/bench_vm_network_role.py                # writes docs/performance-role.md
    python bench/bench_vm_network_role.py --sizes 1 10 --rounds 1 --report /tmp/role.md --json /tmp/role.json

For each N: N pods (tests/lib/netlab.py, at most LAB_PODS per lab namespace, all on this one
node), then whole ``ansible-playbook`` runs of a play with only the vm_network role: connect
(present), connect again (must change nothing), disconnect (absent). The DHCP responder runs
throughout, started once from this checkout with the run's own run directory. The wall time
includes ansible-playbook's start-up, so it is what a user waits for; a small callback plugin
(written into the run's temporary directory) records when each task starts, which splits the
wall time by task. The same run times the kernel's bridge teardown (``ip link del`` of an empty
bridge, and ``ip link show lo`` for the cost of running ``ip`` itself), so the report can say how
much of a disconnect is the kernel's. Every figure and verdict in the report comes from the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401  (sys.path: the collection and tests/lib; ANSIBLE_COLLECTIONS_PATH)
from _common import Responder, commit_line, load_text, machine_line, now_utc, shown_command, verdict
from lib.netlab import NetLab, sh

DEFAULT_SIZES = [1, 50, 100, 250]
LAB_PODS = 200  # tests/lib/netlab.py numbers a lab's pods inside one /24
MARGIN = (50, 250)  # the marginal cost per VM is taken between these sizes
TARGET_CONNECT_VMS, TARGET_CONNECT_S = 250, 4.0
TARGET_MARGIN_CONNECT_MS = 8.0
TARGET_MARGIN_DISCONNECT_MS = 50.0
FLOOR_ROUNDS = 20
PLAYBOOK_TIMEOUT = 900
PLAY = """---
- name: Connect or disconnect the VMs of this node
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: virtnet.podnet.vm_network
"""
# Records when each task starts and when the play ends (time.time(), one JSON line each).
CALLBACK = '''
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "podnet_timing"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, **event):
        with open(os.environ["PODNET_TIMING_FILE"], "a", encoding="utf-8") as out:
            out.write(json.dumps(dict(event, t=time.time())) + "\\n")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write(task=task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._write(end=True)
'''
# The role's tasks as the callback names them, and how the report calls them.
TASKS = {
    "Validating arguments against arg spec": "the role's argument validation",
    "Plan every VM's network": "`vm_network_plan` (plans and checks every VM, one module run)",
    "Connect or disconnect every pod": "`vm_pod_bridge` with `pods` (one module run)",
    "Register what each VM got": "`set_fact` of `vm_network_results`",
}


def task_key(name):
    for key in TASKS:
        if key in name:
            return key
    return name


def ansible_playbook(playbook: Path, variables: dict, work: Path) -> dict:
    """One run: wall time, the changed count, and seconds per phase (start-up, each task, exit)."""
    extra, timing = work / "vars.json", work / "timing.jsonl"
    extra.write_text(json.dumps(variables))
    timing.unlink(missing_ok=True)
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_CALLBACK_PLUGINS=str(work / "callback_plugins"), ANSIBLE_CALLBACKS_ENABLED="podnet_timing",
               PODNET_TIMING_FILE=str(timing))
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}", str(playbook)]
    t0, start = time.time(), time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, env=env, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    events = [json.loads(line) for line in timing.read_text().splitlines()]
    phases, previous, mark = {}, "start-up", t0
    for event in events:
        phases[previous] = phases.get(previous, 0.0) + event["t"] - mark
        previous, mark = ("exit" if event.get("end") else task_key(event["task"])), event["t"]
    phases[previous] = phases.get(previous, 0.0) + (t0 + wall) - mark
    return {"wall": wall, "changed": changed(proc.stdout), "phases": phases}


def changed(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.startswith("localhost") and "changed=" in line:
            return int(line.split("changed=", 1)[1].split()[0])
    raise RuntimeError("no play recap in the output:\n" + stdout[-3000:])


def make_pods(labs: list, vms: int) -> list:
    pods = []
    while len(pods) < vms:
        lab = NetLab(prefix="pbr")
        labs.append(lab)  # closed by the caller, also when this fails half-way
        pods += [lab.add_pod() for _index in range(min(LAB_PODS, vms - len(pods)))]
    return pods


def measure(vms: int, rounds: int, work: Path, paths: dict) -> dict:
    play = work / "play.yml"
    play.write_text(PLAY)
    runs = {"present": [], "again": [], "absent": []}
    labs = []
    try:
        pods = make_pods(labs, vms)
        variables = dict(paths, vm_network_vms=[{"vm": {"kind": "VM", "metadata": {"name": f"vm{i}"}}, "netns": pod.netns}
                                                for i, pod in enumerate(pods)])
        for _round in range(rounds):
            for state in ("present", "again", "absent"):
                run = ansible_playbook(play, dict(variables, vm_network_state="absent" if state == "absent" else "present"),
                                       work)
                if (state == "again") != (run["changed"] == 0):
                    raise RuntimeError(f"{state} run with {vms} VMs reported changed={run['changed']}")
                runs[state].append(run)
            print(f"  {vms} VMs: connect {runs['present'][-1]['wall']:.2f} s, again {runs['again'][-1]['wall']:.2f} s, "
                  f"disconnect {runs['absent'][-1]['wall']:.2f} s", flush=True)
    finally:
        for lab in labs:
            lab.close()

    def median(state, pick):
        return round(statistics.median(pick(run) for run in runs[state]), 3)

    row = {"vms": vms, "rounds": rounds, "wall_s": median("present", lambda r: r["wall"]),
           "again_s": median("again", lambda r: r["wall"]), "absent_s": median("absent", lambda r: r["wall"]),
           "samples": {state: [round(r["wall"], 3) for r in values] for state, values in runs.items()}, "phases": {}}
    for state, values in runs.items():
        names = list(values[0]["phases"])
        row["phases"][state] = {name: median(state, lambda r, n=name: r["phases"].get(n, 0.0)) for name in names}
    return row


def kernel_floor(rounds: int) -> dict:
    """Median ms of ``ip link del`` of an empty bridge, and of ``ip link show lo`` (running ``ip`` alone)."""
    times = {"bridge_del": [], "ip_alone": []}
    with NetLab(prefix="pbk") as lab:
        netns = lab.add_namespace("floor")
        for index in range(rounds):
            sh("ip", "-n", netns, "link", "add", f"br{index}", "type", "bridge")
            start = time.monotonic()
            sh("ip", "-n", netns, "link", "del", f"br{index}")
            times["bridge_del"].append(time.monotonic() - start)
            start = time.monotonic()
            sh("ip", "-n", netns, "link", "show", "lo")
            times["ip_alone"].append(time.monotonic() - start)
    return {"empty_bridge_del_ms": round(statistics.median(times["bridge_del"]) * 1000, 1),
            "ip_alone_ms": round(statistics.median(times["ip_alone"]) * 1000, 1), "rounds": rounds,
            "samples_ms": {k: [round(v * 1000, 1) for v in values] for k, values in times.items()}}


def margins(rows: list) -> dict:
    """ms per VM between MARGIN's sizes: the wall times, and each phase."""
    by = {row["vms"]: row for row in rows}
    low, high = MARGIN
    if low not in by or high not in by:
        return {}
    span = high - low
    out = {"connect_ms": round((by[high]["wall_s"] - by[low]["wall_s"]) / span * 1000, 2),
           "disconnect_ms": round((by[high]["absent_s"] - by[low]["absent_s"]) / span * 1000, 2), "phases": {}}
    for state in ("present", "absent"):
        phases_low, phases_high = by[low]["phases"][state], by[high]["phases"][state]
        out["phases"][state] = {name: round((phases_high[name] - phases_low.get(name, 0.0)) / span * 1000, 2)
                                for name in phases_high}
    return out


def targets(rows: list, margin: dict, floor: dict) -> list:
    """(target, measured, met or None) rows, from this run's figures."""
    by = {row["vms"]: row for row in rows}
    out = []
    wall = by.get(TARGET_CONNECT_VMS, {}).get("wall_s")
    out.append((f"connect {TARGET_CONNECT_VMS} VMs <= {TARGET_CONNECT_S:g} s",
                "not measured" if wall is None else f"{wall:.2f} s", None if wall is None else wall <= TARGET_CONNECT_S))
    for key, limit, what in (("connect_ms", TARGET_MARGIN_CONNECT_MS, "connect"),
                             ("disconnect_ms", TARGET_MARGIN_DISCONNECT_MS, "disconnect")):
        value = margin.get(key)
        out.append((f"marginal {what} cost per VM between {MARGIN[0]} and {MARGIN[1]} VMs <= {limit:g} ms",
                    "not measured" if value is None else f"{value:.1f} ms/VM", None if value is None else value <= limit))
    return out


def kernel_sentence(margin: dict, floor: dict) -> str:
    bridge, alone = floor["empty_bridge_del_ms"], floor["ip_alone_ms"]
    kernel = bridge - alone
    text = (f"The kernel's bridge teardown, measured in this run: `ip link del` of an empty bridge in a namespace took "
            f"{bridge} ms (median of {floor['rounds']}); `ip link show lo` in the same namespace, the cost of running "
            f"`ip` at all, took {alone} ms, so deleting a bridge costs the kernel about {kernel:.1f} ms.")
    value = margin.get("disconnect_ms")
    if value is None:
        return text
    share = kernel / value if value > 0 else 0.0
    bound = "so unplumbing is kernel-bound" if share >= 0.5 else "so the kernel's teardown is not the larger part here"
    return (text + f" A VM's disconnect deletes one bridge: {kernel:.1f} ms of the marginal {value:.1f} ms per VM "
            f"({share:.0%}), {bound}.")


def where_the_time_goes(rows: list, margin: dict) -> list:
    small, big = min(rows, key=lambda row: row["vms"]), max(rows, key=lambda row: row["vms"])
    shown = [small, big] if small is not big else [big]
    columns = [(row, state) for state in ("present", "again", "absent") for row in shown]
    what = {"present": "connect", "again": "again", "absent": "disconnect"}
    lines = [f"Where the time goes (medians of {big['rounds']} rounds, split at each task's start by a callback plugin):", "",
             "| phase | " + " | ".join(f"{what[state]}, {row['vms']} VM{'' if row['vms'] == 1 else 's'}" for row, state in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]
    for name in big["phases"]["present"]:
        label = "ansible-playbook start-up to the first task" if name == "start-up" else \
            "end of the play and exit" if name == "exit" else TASKS.get(name, name)
        lines.append(f"| {label} | " + " | ".join(f"{row['phases'][state].get(name, 0.0):.2f} s" for row, state in columns) + " |")
    wall = {"present": "wall_s", "again": "again_s", "absent": "absent_s"}
    lines.append("| whole run (wall) | " + " | ".join(f"{row[wall[state]]:.2f} s" for row, state in columns) + " |")
    n, bridge, plan = big["vms"], "Connect or disconnect every pod", "Plan every VM's network"
    per_pod = {state: big["phases"][state].get(bridge, 0.0) / n * 1000 for state in ("present", "absent")}
    lines += ["", "The role is three tasks after its argument validation: `vm_network_plan` checks every VM and its pod "
              "namespace and returns the list of pods, `vm_pod_bridge` plumbs (or unplumbs) them all in one module run, "
              "and one `set_fact` pairs each VM's name with its pod's result; there are no Jinja loops. "
              f"At {n} VMs the `vm_pod_bridge` task took {per_pod['present']:.1f} ms per pod connecting and "
              f"{per_pod['absent']:.1f} ms per pod disconnecting; `vm_network_plan` took "
              f"{big['phases']['present'].get(plan, 0.0):.2f} s for all {n} VMs"
              + (f" ({small['phases']['present'].get(plan, 0.0):.2f} s for {small['vms']})." if small is not big else ".")]
    if margin:
        def said(state):
            items = sorted(((name, value) for name, value in margin["phases"][state].items() if name in TASKS),
                           key=lambda item: -item[1])
            return ", ".join(f"{TASKS[name]} {value:.1f} ms" for name, value in items)

        lines += ["", f"Marginal cost per VM between {MARGIN[0]} and {MARGIN[1]} VMs, by task (largest first; the "
                  f"differences of medians, so noise can make one negative): connect {said('present')}; disconnect "
                  f"{said('absent')}."]
    return lines


def report(rows: list, floor: dict, command: str, load: tuple, when: str) -> str:
    margin = margins(rows)
    lines = [
        "# Performance: the vm_network role",
        "",
        "Wall time of one `ansible-playbook` run of a play with only the `virtnet.podnet.vm_network` role, for N VMs",
        "on one node (N pods, `tests/lib/netlab.py`), median of the rounds, including ansible-playbook's start-up.",
        "",
        "Measured with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Run {when} on {machine_line()}.",
        commit_line(),
        f"Load average (1, 5, 15 min) before the run {load_text(load[0])}, after it {load_text(load[1])}; other work on",
        "the machine slows every figure here.",
        "",
        "| VMs | connect (changed) | connect again (no change) | disconnect |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(f"| {row['vms']} | {row['wall_s']:.2f} s | {row['again_s']:.2f} s | {row['absent_s']:.2f} s |")
    lines += ["", "| target | measured | verdict |", "| --- | --- | --- |"]
    for label, measured, met in targets(rows, margin, floor):
        lines.append(f"| {label} | {measured} | {verdict(met)} |")
    lines += ["", kernel_sentence(margin, floor), ""]
    lines += where_the_time_goes(rows, margin)
    lines += ["", "Every sample (seconds):", ""]
    for row in rows:
        lines.append(f"- {row['vms']} VMs: " + "; ".join(f"{k} {v}" for k, v in row["samples"].items()))
    lines.append("- `ip` in a namespace (ms): " + "; ".join(f"{k} {v}" for k, v in floor["samples_ms"].items()))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-rounds", type=int, default=FLOOR_ROUNDS)
    parser.add_argument("--report", default=str(_paths.DOCS / "performance-role.md"))
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-role-") as tmp:
        work = Path(tmp)
        (work / "callback_plugins").mkdir()
        (work / "callback_plugins" / "podnet_timing.py").write_text(CALLBACK)
        run_dir = work / "run"
        run_dir.mkdir()
        paths = {"vm_network_run_dir": str(run_dir), "vm_network_responder_pythonpath": str(_paths.COLLECTIONS_ROOT)}
        floor = kernel_floor(args.floor_rounds)
        print(f"  ip link del of an empty bridge {floor['empty_bridge_del_ms']} ms, ip alone {floor['ip_alone_ms']} ms", flush=True)
        with Responder(str(run_dir)):
            for vms in args.sizes:
                rows.append(measure(vms, args.rounds, work, paths))
    load_after = os.getloadavg()
    Path(args.report).write_text(report(rows, floor, shown_command(), (load_before, load_after), now_utc()))
    margin = margins(rows)
    result = {"sizes": rows, "kernel": floor, "margin": margin, "load": {"before": load_before, "after": load_after},
              "targets": [{"target": t, "measured": m, "met": met} for t, m, met in targets(rows, margin, floor)]}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({"sizes": [{k: row[k] for k in ("vms", "wall_s", "again_s", "absent_s")} for row in rows],
                      "kernel": {k: floor[k] for k in ("empty_bridge_del_ms", "ip_alone_ms")}, "margin":
                      {k: v for k, v in margin.items() if k != "phases"}, "targets": result["targets"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
