"""A DNS server for tests: answers A and SRV questions over UDP from a table given
as JSON, and NXDOMAIN for every other name. Prints its port, then serves until
killed.

    fake_dns.py '{"A": {"xmpp.b.test": "127.0.0.3"},
                  "SRV": {"_xmpps-server._tcp.b.test": [[0, 0, 5270, "xmpp.b.test"]]}}'
"""
import json
import socket
import struct
import sys

TYPE_A, TYPE_SRV = 1, 33


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_question(packet):
    offset, labels = 12, []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode())
        offset += 1 + length
    qtype, qclass = struct.unpack(">HH", packet[offset + 1:offset + 5])
    return ".".join(labels).lower(), qtype, qclass, packet[12:offset + 5]


def answer(packet, table):
    (ident,) = struct.unpack(">H", packet[:2])
    name, qtype, _, question = parse_question(packet)
    records = []
    if qtype == TYPE_A and name in table.get("A", {}):
        records.append((TYPE_A, socket.inet_aton(table["A"][name])))
    if qtype == TYPE_SRV:
        for priority, weight, port, target in table.get("SRV", {}).get(name, []):
            records.append((TYPE_SRV, struct.pack(">HHH", priority, weight, port) + encode_name(target)))
    known = name in table.get("A", {}) or name in table.get("SRV", {})
    rcode = 0 if known else 3
    # A response, recursion desired and available.
    header = struct.pack(">HHHHHH", ident, 0x8180 | rcode, 1, len(records), 0, 0)
    body = b""
    for rtype, rdata in records:
        body += encode_name(name) + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata
    return header + question + body


def main():
    table = json.loads(sys.argv[1])
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    while True:
        packet, peer = server.recvfrom(512)
        try:
            server.sendto(answer(packet, table), peer)
        except (IndexError, struct.error, UnicodeDecodeError):
            continue


if __name__ == "__main__":
    main()
