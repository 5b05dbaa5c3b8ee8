# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The responder's packet socket, on a real tap: woken by the VM's DHCP, never by DHCP sent *to* the VM.

Frames sent to the VM leave the pod through its tap; a packet socket bound to the tap sees
them too (PACKET_OUTGOING). Anyone who reaches the pod's IP can send such frames to :67/:547
(on a bridge CNI one broadcast reaches every pod), so before the fix they filled the socket's
queue ahead of any rate limit and the VM's own DISCOVERs were dropped. Here the frames leave
the tap exactly as the bridge would forward them (a second packet socket sends them out of it),
and the responder's socket, opened by the responder's own code, must stay empty; the same
frame written by the "VM" into the tap must wake it.
"""

from __future__ import annotations

import os
import select
import socket

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_sockets as sockets
from lib.dhcpwire import client_frame
from lib.netlab import NetLab, sh
from lib.standin import netns_entered, open_tap

pytestmark = [pytest.mark.root]

VM_MAC = "0a:58:0a:f4:01:0a"
FLOOD = 2000  # far more than the 64 KiB queue holds


def readable(sock_or_fd, timeout=0.5):
    return bool(select.select([sock_or_fd], [], [], timeout)[0])


@pytest.fixture
def tap_pod():
    """A namespace with a tap that a "VM" holds open (carrier up), as the plumbing leaves it."""
    with NetLab() as lab:
        netns = lab.add_namespace("sock")
        sh("ip", "-n", netns, "tuntap", "add", "dev", "tap0", "mode", "tap")
        sh("ip", "-n", netns, "link", "set", "tap0", "up")
        vm_fd = open_tap(netns)
        try:
            yield netns, vm_fd
        finally:
            os.close(vm_fd)


def test_frames_sent_to_the_vm_never_wake_the_socket(tap_pod):
    netns, vm_fd = tap_pod
    discover = client_frame(VM_MAC, 1, 0x1234, [(55, [1, 3, 6])])
    with netns_entered(netns):
        served = sockets.open_client_socket("tap0", v4=True, v6=True)
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sender.bind(("tap0", 0))
    with served, sender:
        served.setblocking(False)
        for _frame in range(FLOOD):
            sender.send(discover)  # out of the tap, to the VM, as the bridge forwards the cluster's DHCP
        received_by_vm = 0
        while readable(vm_fd):
            os.read(vm_fd, 2048)
            received_by_vm += 1
        assert received_by_vm > 0  # the frames really left through the tap
        assert not readable(served), "a frame sent to the VM woke the responder's socket"

        os.write(vm_fd, discover)  # the VM's own DISCOVER still does
        assert readable(served, timeout=5)
        frame, addr = served.recvfrom(2048)
        assert frame[:len(discover)] == discover and addr[2] != sockets.PACKET_OUTGOING
