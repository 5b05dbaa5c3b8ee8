"""podnet-dhcpd keeps serving after >= 10,000 malformed frames on the pod's tap.

Frames come from a seeded generator (reproducible: the seed is in the test id) in four
families: random bytes; valid Ethernet/IPv4/UDP to port 67 around random payloads; real
DISCOVERs and REQUESTs from the VM's MAC with mutated, truncated or extended bytes; and
broken IPv4/UDP headers. They are written into the tap exactly as a VM's NIC would. The
responder must stay up, log no traceback, answer a valid DISCOVER right after, and then
give a real client (busybox udhcpc) its lease.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_codec import inet_checksum
from lib import plumbing
from lib.bindings import make_binding
from lib.dhcpwire import client_frame, read_reply
from lib.netlab import NetLab, sh
from lib.responder import ResponderProcess
from lib.standin import TapRelay, open_tap, udhcpc_script

pytestmark = [pytest.mark.root, pytest.mark.dhcp_client, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, taps, packet sockets", allow_module_level=True)
if shutil.which("busybox") is None:
    pytest.skip("busybox (udhcpc) missing", allow_module_level=True)

COUNT = 10_000
SEED = 20261128
PACE = 25  # well under what the responder's 64 KiB socket queue holds


def malformed_frames(rng: random.Random, vm_mac: str, count: int):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
    mac = codec.mac_bytes(vm_mac)
    bases = [client_frame(vm_mac, mtype, rng.getrandbits(32), options)
             for mtype, options in ((1, [(55, [1, 3, 6, 121])]), (3, [(50, "10.1.2.3"), (54, "10.1.2.1")]),
                                    (3, []), (8, []), (7, []), (4, [(50, "1.2.3.4")]))]
    for i in range(count):
        family = i % 4
        if family == 0:
            yield rng.randbytes(rng.randint(14, 600))
        elif family == 1:
            payload = rng.randbytes(rng.randint(0, 700))
            if rng.random() < 0.5 and len(payload) >= 240:
                # Keep the magic cookie and our VM's MAC so the option walker is reached.
                payload = b"\x01\x01\x06" + payload[3:28] + mac + payload[34:236] + b"c\x82Sc" + payload[240:]
            yield codec.build_frame(vm_mac, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", payload, 68, 67)
        elif family == 2:
            frame = bytearray(rng.choice(bases))
            action = rng.randrange(5)
            if action == 0:          # flip bytes anywhere in the DHCP message
                for _flip in range(rng.randint(1, 20)):
                    frame[rng.randrange(42, len(frame))] = rng.getrandbits(8)
            elif action == 1:        # truncate (UDP/IP lengths now lie)
                frame = frame[:rng.randint(0, len(frame))]
            elif action == 2:        # garbage options with lying lengths, no END
                start = 42 + 240
                frame = frame[:start] + rng.randbytes(rng.randint(1, 300))
            elif action == 3:        # a hostile option list: huge lengths, bad types, odd sizes
                options = bytes([53, 1, rng.choice([0, 9, 255, 1, 3]), 50, rng.randint(0, 255),
                                 55, 255]) + rng.randbytes(rng.randint(0, 40))
                frame = frame[:42 + 240] + options
            else:                    # header fields: op, htype, hlen, giaddr, flags
                frame[42 + rng.choice([0, 1, 2, 10, 11, 24, 25])] = rng.getrandbits(8)
            yield bytes(frame)
        else:
            frame = bytearray(rng.choice(bases))
            field = rng.randrange(5)
            if field == 0:
                frame[14] = rng.getrandbits(8)                             # version / IHL
            elif field == 1:
                frame[16:18] = struct.pack("!H", rng.getrandbits(16))    # total length
            elif field == 2:
                frame[20:22] = struct.pack("!H", rng.getrandbits(16))    # fragment bits
            elif field == 3:
                frame[38:40] = struct.pack("!H", rng.getrandbits(16))    # UDP length
            else:
                frame[23] = rng.choice([6, 1, 0, 255])                    # not UDP
            frame[24:26] = b"\x00\x00"
            frame[24:26] = struct.pack("!H", inet_checksum(bytes(frame[14:34])))
            yield bytes(frame)


def test_malformed_frames_never_stop_the_responder(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir, mode=0o700)
    with NetLab() as lab:
        pod = lab.add_pod()
        decl = plumbing.plumb(pod.netns, make_binding(), run_dir, dns_servers=["10.96.0.10"],
                              search_domains=["default.svc.cluster.local"], hostname="vm1")
        assert decl["vm_mac"] == pod.mac and decl["ip"] == pod.ip
        # No frame-rate limit: every malformed frame must reach the parser (the limit has its own tests).
        with ResponderProcess(run_dir, extra_args=("--frame-rate", "0")) as responder:
            responder.wait_serving(decl["key"])
            fd = open_tap(pod.netns)
            written = failed = probes = 0
            try:
                rng = random.Random(SEED)
                for frame in malformed_frames(rng, pod.mac, COUNT):
                    try:
                        os.write(fd, frame)
                        written += 1
                    except BlockingIOError:
                        failed += 1
                    except OSError:
                        failed += 1  # the tap refuses some (too short): that is the kernel, not us
                    if written % PACE == 0:
                        # A valid DISCOVER after every PACE frames, and wait for its OFFER: the
                        # socket queue is FIFO, so every frame before it was read and judged
                        # by the responder (not lost to a full queue), and it still answers.
                        probes += 1
                        os.write(fd, client_frame(pod.mac, 1, 0xF0000000 + probes))
                        probe = read_reply(fd, 0xF0000000 + probes, timeout=5)
                        assert probe is not None, f"no OFFER after {written} malformed frames"
                        assert len(probe[0]) - 14 <= pod.mtu, f"a {len(probe[0]) - 14}-byte reply, MTU {pod.mtu}"
                assert written >= COUNT * 0.95 and probes >= COUNT * 0.95 // PACE, (written, failed, probes)
                # Still serving, right away.
                os.write(fd, client_frame(pod.mac, 1, 0xC0FFEE, [(55, [1, 3, 121])]))
                reply = read_reply(fd, 0xC0FFEE, timeout=10)
                assert reply is not None, "no OFFER after the fuzzing"
                assert reply[1]["message_type"] == 2 and reply[1]["yiaddr"] == pod.ip
                assert len(reply[0]) - 14 <= pod.mtu
            finally:
                os.close(fd)
            assert responder.proc.poll() is None, "responder died"
            assert "Traceback" not in responder.log()
            # And a real client gets its lease afterwards.
            vm = lab.add_namespace("vm")
            with TapRelay(pod.netns, vm, pod.mac, pod.mtu) as relay:
                result = subprocess.run(
                    ["ip", "netns", "exec", vm, "busybox", "udhcpc", "-i", relay.vm_ifname, "-f", "-q", "-n",
                     "-t", "5", "-T", "1", "-s", udhcpc_script(tmp_path)], capture_output=True, text=True, timeout=40,
                    check=False)
                assert result.returncode == 0, result.stdout + result.stderr
                addrs = sh("ip", "-n", vm, "-4", "-o", "addr", "show", "dev", relay.vm_ifname).stdout
                assert f"{pod.ip}/{pod.prefixlen}" in addrs
            assert responder.proc.poll() is None and "Traceback" not in responder.log()
            served = responder.log().count("reply=")
        assert responder.proc is None  # stopped cleanly by the context manager
        assert served >= 1
