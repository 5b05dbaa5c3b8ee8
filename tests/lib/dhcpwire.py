"""DHCP frames as a VM puts them on its NIC, and the replies the tap hands back (the collection's codec).

    fd = standin.open_tap(pod.netns)
    os.write(fd, client_frame(pod.mac, DISCOVER, xid))
    frame, message = read_reply(fd, xid)

Needs ``lib.paths.setup()`` first (the codec is the collection's).
"""

from __future__ import annotations

import os
import selectors
import struct
import time

from lib.paths import module_utils


def client_frame(mac: str, mtype: int, xid: int, options=(), ciaddr: str = "0.0.0.0", flags: int = 0,
                 dst_ip: str = "255.255.255.255", dst_mac: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    """A client's DHCP frame as a VM would put it on its NIC."""
    codec = module_utils("_dhcp_codec")
    payload = codec.encode_message({"op": 1, "xid": xid, "chaddr": mac, "ciaddr": ciaddr, "flags": flags},
                                   [(53, mtype), *options])
    return codec.build_frame(mac, dst_mac, ciaddr, dst_ip, payload, sport=68, dport=67)


def read_reply(fd: int, xid: int, timeout: float = 5.0):
    """The first DHCP reply with ``xid`` the tap hands to its VM side, as ``(frame, decoded)``; None on timeout."""
    codec = module_utils("_dhcp_codec")
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not sel.select(left):
                continue
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                parsed = codec.parse_frame(frame, dport=68)
                if parsed is None or len(parsed[3]) < 8 or struct.unpack("!I", parsed[3][4:8])[0] != xid:
                    continue
                return frame, codec.decode_message(parsed[3])
    finally:
        sel.close()
