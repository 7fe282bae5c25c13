#!/usr/bin/env python3
"""Sends one TCP SYN to DST (127.0.0.1, say) out through the route to VIA: what a
neighbour on the LAN can do to a host. Usage: syn_to_loopback.py SRC VIA DST DPORT SPORT"""
import socket
import struct
import sys


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main() -> None:
    src, via, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    dport, sport, seq = int(sys.argv[4]), int(sys.argv[5]), 12345
    tcp = struct.pack("!HHLLBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 54321, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    # The route is chosen by VIA; the packet on the wire still says 127.0.0.1.
    s.sendto(ip + tcp, (via, 0))


main()
