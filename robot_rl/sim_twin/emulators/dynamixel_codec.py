"""Dynamixel Protocol 2.0 packets: CRC-16, byte stuffing, encoding and an incremental parser.

Packet: FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAMS... | CRC_L CRC_H. LEN counts INST, PARAMS
and the CRC after stuffing; the CRC (polynomial 0x8005, initial 0, no reflection) covers every
byte before it, as sent. Stuffing: wherever FF FF FD occurs in INST+PARAMS, an FD is inserted
after it, so a payload can never look like a header.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
STATUS = 0x55
MAX_PACKET_LENGTH = 1024  # the LEN field of a sane packet stays below this

PING, READ, WRITE, REG_WRITE, ACTION, FACTORY_RESET = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
REBOOT = 0x08
SYNC_READ, SYNC_WRITE, FAST_SYNC_READ, BULK_READ = 0x82, 0x83, 0x8A, 0x92


def _crc_table(polynomial: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ polynomial) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table(0x8005)


def crc16(data: bytes | bytearray, crc: int = 0) -> int:
    """CRC-16 (polynomial 0x8005, MSB first) as Protocol 2.0 computes it; ``crc`` continues one."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


def stuff(body: bytes) -> bytes:
    """Inserts FD after every FF FF FD in ``body`` (instruction and parameters)."""
    if b"\xff\xff\xfd" not in body:
        return bytes(body)
    out = bytearray()
    for i, byte in enumerate(body):
        out.append(byte)
        if byte == 0xFD and i >= 2 and body[i - 1] == 0xFF and body[i - 2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Removes the FD that follows every FF FF FD in a received body."""
    if b"\xff\xff\xfd" not in body:
        return bytes(body)
    out = bytearray()
    i = 0
    while i < len(body):
        out.append(body[i])
        stuffed = i + 1 < len(body) and body[i + 1] == 0xFD
        if body[i] == 0xFD and stuffed and len(out) >= 3 and out[-3:-1] == b"\xff\xff":
            i += 1  # skip the stuffed byte
        i += 1
    return bytes(out)


def encode(packet_id: int, instruction: int, params: bytes = b"", *,
           stuffing: bool = True) -> bytes:
    """A complete packet on the wire (instruction packets and status packets alike)."""
    body = bytes([instruction]) + bytes(params)
    if stuffing:
        body = stuff(body)
    length = len(body) + 2
    head = HEADER + bytes([packet_id, length & 0xFF, length >> 8]) + body
    crc = crc16(head)
    return head + bytes([crc & 0xFF, crc >> 8])


def encode_status(servo_id: int, error: int, params: bytes = b"") -> bytes:
    return encode(servo_id, STATUS, bytes([error]) + bytes(params))


@dataclass(frozen=True)
class Packet:
    """A received packet, unstuffed. ``crc_ok`` False: it was framed but its CRC did not match."""

    id: int
    instruction: int
    params: bytes
    crc_ok: bool = True


class PacketParser:
    """Feed it bytes as they arrive; it returns each complete packet once, skipping noise."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer += data
        packets = []
        while True:
            packet = self._next()
            if packet is None:
                return packets
            packets.append(packet)

    def _next(self) -> Packet | None:
        buf = self._buffer
        start = buf.find(HEADER)
        if start < 0:
            del buf[: max(0, len(buf) - 3)]  # keep a possible partial header
            return None
        del buf[:start]
        if len(buf) < 7:
            return None
        length = buf[5] | (buf[6] << 8)
        if length < 3 or length > MAX_PACKET_LENGTH:
            del buf[:1]  # not a real header: look further
            return self._next()
        total = 7 + length
        if len(buf) < total:
            return None
        raw = bytes(buf[:total])
        del buf[:total]
        crc_ok = crc16(raw[:-2]) == (raw[-2] | (raw[-1] << 8))
        body = unstuff(raw[7:-2])
        return Packet(id=raw[4], instruction=body[0], params=body[1:], crc_ok=crc_ok)
