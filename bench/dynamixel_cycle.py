"""Bus cycle of the Dynamixel driver (sync read of current/velocity/position + sync write of goals)
for every servo of a calibration (D'Claw: 9 joints + the valve encoder), through the Protocol 2.0
emulator on a pty, next to the bare SDK on the same bus in the same run: one PING, and a bare
GroupSyncRead (plain and fast) of the same block. Prints p50/p99 and the driver/SDK ratio.

The cost of the driver's own safety rules (docs/safety.md, "The Dynamixel driver's own rules"),
before and after, in the same run: the cycle with them (goal checks on every write: margin clamp,
step from the last reading, the reading's age; the power-loss check, a sync read of Torque Enable
.. Hardware Error Status every telemetry period) and the same cycle without them (the goal only
clamped and written, no power-loss read), alternating in blocks so machine load hits both alike;
then each rule alone, and the power-loss read spread over the node's default cycle.

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

from robot_rl.drivers.dynamixel import control_table as ct
from robot_rl.drivers.dynamixel.chain import DynamixelChain
from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.sim_twin.emulators.dynamixel_bus import BusEmulatorConfig, EmulatedBus

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


NODE_RATE_HZ = 100.0  # the driver node's default control_rate_hz
BLOCK = 100  # cycles per block; the two variants alternate block by block


def _goal(chain: DynamixelChain, measured: np.ndarray, i: int) -> np.ndarray:
    """A sine around the joints' centres, stepped as the supervisor steps: at most half of
    safety.max_step_rad from the reading (the chain refuses more than the step)."""
    calibration = chain.calibration
    centre = (calibration.lower_rad + calibration.upper_rad) / 2
    amplitude = 0.2 * (calibration.upper_rad - calibration.lower_rad)
    target = centre + amplitude * np.sin(2 * np.pi * i / 500)
    step = 0.5 * calibration.safety.max_step_rad
    return measured + np.clip(target - measured, -step, step)


def _unchecked_write(chain: DynamixelChain, goal: np.ndarray) -> None:
    """The write as it was before the driver's own rules: clamp to the limits, write."""
    n = chain.calibration.n_joints
    clamped = np.clip(goal, chain.calibration.lower_rad, chain.calibration.upper_rad)
    chain._sync_write_ticks(ct.rad_to_ticks(chain._dir[:n] * (clamped - chain._off[:n])))


def driver(port_name: str, calibration: RobotCalibration, cycles: int) -> dict[str, np.ndarray]:
    with DynamixelChain(calibration, port=port_name) as chain:
        chain.configure()
        chain.torque(True)
        n_joints = calibration.n_joints
        checked, unchecked = [], []
        check_torque = chain._check_torque
        for i in range(cycles):
            with_rules = (i // BLOCK) % 2 == 0
            chain._check_torque = check_torque if with_rules else (lambda: None)  # type: ignore
            start = time.perf_counter()
            state = chain.read()
            goal = _goal(chain, state.position_rad[:n_joints], i)
            if with_rules:
                chain.write_positions(goal)
            else:
                _unchecked_write(chain, goal)
            (checked if with_rules else unchecked).append(time.perf_counter() - start)
        chain._check_torque = check_torque  # type: ignore[method-assign]
        state = chain.read()
        goal = state.position_rad[:n_joints]
        checks = np.empty(cycles)
        for i in range(cycles):
            start = time.perf_counter()
            chain._check_goal(np.clip(goal, chain._lower, chain._upper))
            checks[i] = time.perf_counter() - start
        torque_check = np.empty(max(1, cycles // 10))
        for i in range(len(torque_check)):
            start = time.perf_counter()
            chain._check_torque()
            torque_check[i] = time.perf_counter() - start
        mode = "fast" if chain.fast_sync_read_in_use else "plain"
        n = len(chain.members)
        period_s = chain.config.telemetry_period_s
        chain.torque(False)
        return {f"driver read+write cycle ({n}, {mode} sync read), with the rules":
                    np.array(checked),
                "same cycle without them (as before)": np.array(unchecked),
                "driver bus time (read+write, as chain.timing())":
                    np.array([chain.timing()["cycle"].p50_s, chain.timing()["cycle"].p99_s]),
                "goal checks alone (clamp, step, age), per write": checks,
                f"power-loss check ({n_joints} joints, 7 bytes), per read": torque_check,
                f"power-loss check per cycle at {NODE_RATE_HZ:.0f} Hz, every {period_s} s":
                    torque_check / (NODE_RATE_HZ * period_s)}


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
    print(f"{'':62s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, samples in results.items():
        p50, p99 = (samples if len(samples) == 2 and "chain.timing" in name
                    else np.percentile(samples, [50, 99]))
        print(f"{name:62s} {p50 * 1e3:8.4f} {p99 * 1e3:8.4f}")
    for name, count in FAILURES.items():
        print(f"{name}: {count} failed transactions (not timed)")
    cycle = next(v for k, v in results.items() if k.startswith("driver read+write"))
    before = results["same cycle without them (as before)"]
    print(f"the rules' cost per cycle (p50 with - p50 without): "
          f"{(np.median(cycle) - np.median(before)) * 1e3:.4f} ms")
    fast = next(v for k, v in results.items() if "fastSyncRead" in k)
    plain = next(v for k, v in results.items() if "GroupSyncRead" in k)
    for label, bare in (("fast", fast), ("plain", plain)):
        print(f"ratio driver cycle p50 / bare SDK {label} sync read p50: "
              f"{np.median(cycle) / np.median(bare):.2f}")


if __name__ == "__main__":
    main()
