"""Bus cycle of the Dynamixel driver (sync read of current/velocity/position + sync write of goals)
for every servo of a calibration (D'Claw: 9 joints + the valve encoder), through the Protocol 2.0
emulator on a pty, next to the bare SDK on the same bus in the same run: one PING, and a bare
GroupSyncRead (plain and fast) of the same block. Prints p50/p99 and the driver/SDK ratio.

    PYTHONPATH=. python bench/dynamixel_cycle.py --cycles 2000

A pty has no baud rate: these figures are the software's cost (SDK, driver, emulator), not the
wire time of a real 1 Mbaud bus. Run on a quiet machine; the SDK busy-polls.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np
from dynamixel_sdk import COMM_SUCCESS, GroupSyncRead, PacketHandler, PortHandler

from drivers.dynamixel import control_table as ct
from drivers.dynamixel.chain import DynamixelChain
from robot_rl.robot_config import RobotCalibration, load_robot
from sim_twin.emulators.dynamixel_bus import BusEmulatorConfig, EmulatedBus

FAILURES: dict[str, int] = {}


def _time(operation: Callable[[], int], cycles: int, name: str) -> np.ndarray:
    """Times ``cycles`` runs; failed transactions (SDK result) are counted, not timed."""
    samples = []
    for _ in range(cycles):
        start = time.perf_counter()
        result = operation()
        if result == COMM_SUCCESS:
            samples.append(time.perf_counter() - start)
        else:
            FAILURES[name] = FAILURES.get(name, 0) + 1
    return np.array(samples or [np.nan])


def bare_sdk(port_name: str, calibration: RobotCalibration, cycles: int) -> dict[str, np.ndarray]:
    assert calibration.bus is not None
    ids = [m.id for m in (*calibration.joints, *calibration.sensors) if m.id is not None]
    port, ph = PortHandler(port_name), PacketHandler(2.0)
    port.openPort()
    port.setBaudRate(calibration.bus.baudrate)
    reader = GroupSyncRead(port, ph, ct.STATE_BLOCK_ADDRESS, ct.STATE_BLOCK_SIZE)
    for servo_id in ids:
        reader.addParam(servo_id)
    try:
        names = ("SDK ping (1 servo)", f"SDK GroupSyncRead ({len(ids)})",
                 f"SDK fastSyncRead ({len(ids)})")
        operations = (lambda: ph.ping(port, ids[0])[1], reader.txRxPacket, reader.fastSyncRead)
        return {name: _time(op, cycles, name) for name, op in zip(names, operations)}
    finally:
        port.closePort()


def driver(port_name: str, calibration: RobotCalibration, cycles: int) -> dict[str, np.ndarray]:
    with DynamixelChain(calibration, port=port_name) as chain:
        chain.configure()
        chain.torque(True)
        centre = (calibration.lower_rad + calibration.upper_rad) / 2
        amplitude = 0.2 * (calibration.upper_rad - calibration.lower_rad)
        cycle = np.empty(cycles)
        for i in range(cycles):
            start = time.perf_counter()
            chain.read()
            chain.write_positions(centre + amplitude * np.sin(2 * np.pi * i / 500))
            cycle[i] = time.perf_counter() - start
        mode = "fast" if chain.fast_sync_read_in_use else "plain"
        n = len(chain.members)
        chain.torque(False)
        return {f"driver read+write cycle ({n}, {mode} sync read)": cycle,
                "driver bus time (read+write, as chain.timing())":
                    np.array([chain.timing()["cycle"].p50_s, chain.timing()["cycle"].p99_s])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--calibration", default="dclaw")
    parser.add_argument("--latency-timer-ms", type=int, default=None,
                        help="override the calibration's (a loaded machine may need 16)")
    args = parser.parse_args()
    calibration = load_robot(args.calibration)
    if args.latency_timer_ms is not None and calibration.bus is not None:
        bus = dataclasses.replace(calibration.bus, latency_timer_ms=args.latency_timer_ms)
        calibration = dataclasses.replace(calibration, bus=bus)
    with EmulatedBus(BusEmulatorConfig(calibration=args.calibration)) as port:
        # the driver first: its configure() sets Return Delay Time 0, which the bare SDK then enjoys
        results = {**driver(port, calibration, args.cycles),
                   **bare_sdk(port, calibration, args.cycles)}
    print(f"{args.cycles} cycles, emulator in its own process on {port}")
    print(f"{'':58s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, samples in results.items():
        p50, p99 = (samples if len(samples) == 2 and "chain.timing" in name
                    else np.percentile(samples, [50, 99]))
        print(f"{name:58s} {p50 * 1e3:8.3f} {p99 * 1e3:8.3f}")
    for name, count in FAILURES.items():
        print(f"{name}: {count} failed transactions (not timed)")
    cycle = next(v for k, v in results.items() if k.startswith("driver read+write"))
    fast = next(v for k, v in results.items() if "fastSyncRead" in k)
    plain = next(v for k, v in results.items() if "GroupSyncRead" in k)
    for label, bare in (("fast", fast), ("plain", plain)):
        print(f"ratio driver cycle p50 / bare SDK {label} sync read p50: "
              f"{np.median(cycle) / np.median(bare):.2f}")


if __name__ == "__main__":
    main()
