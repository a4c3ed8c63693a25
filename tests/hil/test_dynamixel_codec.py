"""Protocol 2.0 codec and emulated-servo rules, against hand-checked packets and the real SDK.

The packets below are the e-manual's Protocol 2.0 examples (PING of ID 1 answered by an XM430-W210
with firmware 38; READ of Present Position, 4 bytes, answered with 166). The SDK's own CRC and
stuffing routines are an independent implementation to compare against.
"""

from __future__ import annotations

import numpy as np
import pytest
from dynamixel_sdk import PacketHandler
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from robot_rl.drivers.dynamixel import control_table as ct
from robot_rl.sim_twin.emulators import dynamixel_codec as codec
from robot_rl.sim_twin.emulators.dynamixel_physics import FirstOrderServos
from robot_rl.sim_twin.emulators.dynamixel_servo import ACCESS_ERROR, DATA_LIMIT, DATA_RANGE, EmulatedServo

PING_ID1 = bytes.fromhex("ff ff fd 00 01 03 00 01 19 4e")
PING_ID1_STATUS = bytes.fromhex("ff ff fd 00 01 07 00 55 00 06 04 26 65 5d")
READ_POSITION_ID1 = bytes.fromhex("ff ff fd 00 01 07 00 02 84 00 04 00 1d 15")
READ_POSITION_ID1_STATUS = bytes.fromhex("ff ff fd 00 01 08 00 55 00 a6 00 00 00 8c c0")

SDK = PacketHandler(2.0)


def test_documented_packets_encode_byte_for_byte() -> None:
    assert codec.encode(1, codec.PING) == PING_ID1
    assert codec.encode_status(1, 0, bytes([0x06, 0x04, 0x26])) == PING_ID1_STATUS
    assert codec.encode(1, codec.READ, bytes([0x84, 0x00, 0x04, 0x00])) == READ_POSITION_ID1
    assert codec.encode_status(1, 0, (166).to_bytes(4, "little")) == READ_POSITION_ID1_STATUS


def test_documented_packets_parse() -> None:
    (ping,) = codec.PacketParser().feed(PING_ID1)
    assert (ping.id, ping.instruction, ping.params, ping.crc_ok) == (1, codec.PING, b"", True)
    (status,) = codec.PacketParser().feed(READ_POSITION_ID1_STATUS)
    assert status.instruction == codec.STATUS and status.params == bytes([0, 166, 0, 0, 0])
    assert ct.MODEL_BY_NUMBER[0x0406].name == "XM430-W210"


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_crc_matches_the_sdk(data: bytes) -> None:
    assert codec.crc16(data) == SDK.updateCRC(0, list(data), len(data))
    half = len(data) // 2
    assert codec.crc16(data[half:], codec.crc16(data[:half])) == codec.crc16(data)


def test_stuffing_of_a_hand_checked_packet() -> None:
    # WRITE to ID 1, address 0x0014, data FF FF FD 00: the FD after FF FF gets doubled on the wire
    packet = codec.encode(1, codec.WRITE, bytes([0x14, 0x00, 0xFF, 0xFF, 0xFD, 0x00]))
    assert packet[5] == 10  # LEN: INST + 6 params + 1 stuffed byte + CRC
    assert packet[7:15] == bytes([0x03, 0x14, 0x00, 0xFF, 0xFF, 0xFD, 0xFD, 0x00])
    (parsed,) = codec.PacketParser().feed(packet)
    assert parsed.params == bytes([0x14, 0x00, 0xFF, 0xFF, 0xFD, 0x00]) and parsed.crc_ok


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0x00, 0xFD, 0xFF, 0x12]), min_size=1, max_size=40))
def test_stuffing_matches_the_sdk_both_ways(params: list[int]) -> None:
    # the SDK's in-place removeStuffing misreads FD FD in the data (see the test below)
    assume(b"\xfd\xfd" not in bytes(params))
    ours = codec.encode(7, codec.WRITE, bytes(params))
    # the SDK stuffs an unstuffed packet in place; header and CRC placeholders as it expects
    raw = [0xFF, 0xFF, 0xFD, 0x00, 7, (len(params) + 3) & 0xFF, (len(params) + 3) >> 8,
           codec.WRITE, *params, 0, 0]
    stuffed = SDK.addStuffing(raw)
    length = stuffed[5] | (stuffed[6] << 8)
    assert bytes(stuffed[:7 + length - 2]) == ours[:-2]
    # and the SDK unstuffs what our emulator sends
    status = codec.encode_status(7, 0, bytes(params))
    unstuffed = SDK.removeStuffing(list(status))
    assert bytes(unstuffed[9:9 + len(params)]) == bytes(params)
    (parsed,) = codec.PacketParser().feed(status)
    assert parsed.params == bytes([0, *params])


def test_stuffing_round_trips_where_the_sdk_unstuffing_misreads() -> None:
    """dynamixel-sdk 4.1's removeStuffing compacts the packet in place and then compares against
    bytes it has already overwritten: data FF FF FD FF FD FD, correctly stuffed, loses its last FD
    (hypothesis found this). Our codec follows the protocol; the driver never sends such data."""
    params = bytes([0xFF, 0xFF, 0xFD, 0xFF, 0xFD, 0xFD])
    status = codec.encode_status(7, 0, params)
    (parsed,) = codec.PacketParser().feed(status)
    assert parsed.params == bytes([0, *params])
    sdk = SDK.removeStuffing(list(status))
    assert bytes(sdk[9:9 + len(params)]) != params  # the SDK's misreading, documented


def test_parser_resynchronises_and_flags_bad_crc() -> None:
    parser = codec.PacketParser()
    corrupt = bytearray(READ_POSITION_ID1)
    corrupt[-1] ^= 0xFF
    stream = b"\x00\xff\x13" + bytes(corrupt) + b"\xff\xff" + PING_ID1
    packets = []
    for i in range(0, len(stream), 3):  # arrives in pieces
        packets += parser.feed(stream[i:i + 3])
    assert [(p.instruction, p.crc_ok) for p in packets] == [(codec.READ, False), (codec.PING, True)]


def _servo(**kwargs: float) -> EmulatedServo:
    return EmulatedServo(11, "XM430-W210", **kwargs)


def test_servo_locks_eeprom_while_torque_is_on() -> None:
    servo = _servo()
    limit = ct.ITEMS["Velocity Limit"]
    assert servo.write(limit.address, (100).to_bytes(4, "little")) == 0
    assert servo.write(64, b"\x01") == 0
    assert servo.write(limit.address, (120).to_bytes(4, "little")) == ACCESS_ERROR
    assert servo.get("Velocity Limit") == 100
    assert servo.write(ct.ITEMS["Model Number"].address, b"\x00\x00") == ACCESS_ERROR


def test_servo_checks_ranges_and_position_limits() -> None:
    servo = _servo()
    assert servo.write(ct.ITEMS["Operating Mode"].address, b"\x63") == DATA_RANGE
    assert servo.write(ct.ITEMS["Max Position Limit"].address, (3000).to_bytes(4, "little")) == 0
    goal = ct.ITEMS["Goal Position"].address
    assert servo.write(goal, (3500).to_bytes(4, "little")) == DATA_LIMIT
    assert servo.write(goal, (2900).to_bytes(4, "little")) == 0
    error, data = servo.read(250, 10)
    assert error == DATA_RANGE and data == b""


def test_blocked_servo_overloads_turns_torque_off_and_reboot_clears_it() -> None:
    servo = _servo(overload_time_s=0.3)
    physics = FirstOrderServos((11,), np.zeros(1), np.array([2.3]))
    physics.block(11)
    servo.write(64, b"\x01")
    servo.write(ct.ITEMS["Goal Position"].address, (2048 + 600).to_bytes(4, "little"))
    for _ in range(40):  # 0.4 s of 10 ms steps
        physics.set_goals(ct.ticks_to_rad(np.array([servo.get("Goal Position")])),
                          np.array([servo.torque_on]), np.array([np.inf]))
        physics.advance(0.01)
        servo.update_present(2048, 0, float(physics.currents_a()[0]), 0.01)
    assert ct.decode_hardware_error(servo.hardware_error) == ("overload",)
    assert not servo.torque_on and servo.status_error() & ct.ERROR_ALERT_BIT
    assert servo.write(64, b"\x01") & 0x7F == 1  # result fail: no torque with a hardware error
    servo.reboot()
    assert servo.hardware_error == 0 and servo.write(64, b"\x01") == 0


@pytest.mark.parametrize(("status", "names"), [
    (0, ()), (0x20, ("overload",)), (0x25, ("input_voltage", "overheating", "overload"))])
def test_hardware_error_decoding(status: int, names: tuple[str, ...]) -> None:
    assert ct.decode_hardware_error(status) == names


def test_unit_conversions() -> None:
    assert ct.ticks_to_rad(2048) == 0.0
    assert ct.ticks_to_rad(3072) == pytest.approx(np.pi / 2)
    assert ct.rad_to_ticks(-np.pi / 2) == 1024
    assert ct.velocity_units_to_rad_s(1) == pytest.approx(0.229 * 2 * np.pi / 60)
    assert (ct.STATE_BLOCK_ADDRESS, ct.STATE_BLOCK_SIZE) == (126, 10)
    assert ct.to_signed(0xFFFF, 2) == -1 and ct.to_unsigned(-1, 4) == 0xFFFFFFFF
