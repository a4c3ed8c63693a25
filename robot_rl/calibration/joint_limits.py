"""Joint-limit discovery at low torque: drive each joint slowly into its mechanical stops.

For each joint and direction: current-based position mode with a low Goal Current (the servo
pushes gently), the goal advances at ``speed_rad_s`` while the other joints hold; when the joint
lags its goal by more than ``stall_error_rad`` it has met a stop, recorded where it stands. The
joint goes back to where it started before the next search. The new software limits are the stops
moved inwards by ``margin_rad``, written to a NEW calibration file (default
``robot_rl/calibration/<robot>.limits.yaml``); the user's file is never overwritten silently.

The search runs on a copy of the calibration whose limits span the servo's whole turn (the chain
clamps goals to the calibrated limits); in current-based position mode the servo ignores its
EEPROM position limits, as the X series does. Keep a hand on the power switch on a real robot.

    python -m robot_rl.calibration.joint_limits --robot dclaw --joints f0_base,f0_mid --speed 0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.calibration.robot_yaml import default_output, write_updated
from robot_rl.drivers.dynamixel.chain import DynamixelChain, DynamixelChainConfig
from robot_rl.robot_config import RobotCalibration, load_robot

_EDGE_RAD = 0.02  # keep the search inside the servo's single turn


@dataclass(frozen=True)
class LimitSearchConfig:
    speed_rad_s: float = field(default=0.3, metadata={"range": (0.01, 2.0)})
    goal_current_a: float = field(default=0.3, metadata={"range": (0.01, 5.0),
                                                         "help": "push of the servo at a stop"})
    stall_error_rad: float = field(default=0.2, metadata={"range": (0.02, 1.0)})
    margin_rad: float = field(default=0.05, metadata={"range": (0.0, 0.5)})
    period_s: float = field(default=0.02, metadata={"range": (0.002, 0.5)})
    settle_timeout_s: float = field(default=5.0, metadata={"range": (0.1, 60.0)})


@dataclass(frozen=True)
class JointStops:
    name: str
    lower_rad: float  # where the joint stopped; NaN where no stop came before the servo's edge
    upper_rad: float

    def limits(self, margin_rad: float) -> tuple[float, float]:
        return (self.lower_rad + margin_rad, self.upper_rad - margin_rad)


def search_calibration(calibration: RobotCalibration) -> RobotCalibration:
    """The calibration with each joint's limits opened to the servo's whole turn."""
    def opened(joint):  # type: ignore[no-untyped-def]
        ends = joint.direction * np.array([-math.pi + _EDGE_RAD, math.pi - _EDGE_RAD]) \
            + joint.offset_rad
        return dataclasses.replace(joint, position_limits_rad=(float(ends.min()),
                                                               float(ends.max())))
    return dataclasses.replace(calibration, joints=tuple(opened(j) for j in calibration.joints))


def _search(chain: DynamixelChain, index: int, sign: int, hold: np.ndarray,
            config: LimitSearchConfig) -> float:
    """Where joint ``index`` stops moving in direction ``sign`` (NaN if it reaches the edge)."""
    lower, upper = chain.calibration.joints[index].position_limits_rad
    goal = hold.copy()
    while True:
        goal[index] += sign * config.speed_rad_s * config.period_s
        if not lower <= goal[index] <= upper:
            return math.nan
        chain.write_positions(goal)
        time.sleep(config.period_s)
        position = chain.read().position_rad[index]
        if sign * (goal[index] - position) > config.stall_error_rad:
            return float(position)


def _return_to(chain: DynamixelChain, target: np.ndarray, config: LimitSearchConfig) -> None:
    """Steps back to ``target``, each goal at most half of ``safety.max_step_rad`` from the
    reading just taken: the chain refuses a goal further than the step limit from where a joint
    is measured (docs/safety.md, the driver's own rules)."""
    step = 0.5 * chain.calibration.safety.max_step_rad
    deadline = time.monotonic() + config.settle_timeout_s
    while time.monotonic() < deadline:
        position = chain.read().position_rad[: len(target)]
        if np.allclose(position, target, atol=0.05):
            return
        chain.write_positions(position + np.clip(target - position, -step, step))
        time.sleep(config.period_s)


def discover(calibration: RobotCalibration, joint_names: tuple[str, ...] | None = None,
             config: LimitSearchConfig = LimitSearchConfig(), port: str | None = None,
             chain_config: DynamixelChainConfig | None = None) -> list[JointStops]:
    names = joint_names or calibration.joint_names
    unknown = sorted(set(names) - set(calibration.joint_names))
    if unknown:
        raise ValueError(f"calibration {calibration.robot}: no joints {unknown}; "
                         f"known: {calibration.joint_names}")
    chain_config = dataclasses.replace(chain_config or DynamixelChainConfig(),
                                       operating_mode="current_based_position")
    chain = DynamixelChain(search_calibration(calibration), chain_config, port=port)
    stops = []
    with chain:
        chain.configure()
        for m in chain.joints:
            units = int(round(config.goal_current_a / m.spec.current_unit_a))
            chain.write_item(m.id, "Goal Current", max(1, units))
        chain.torque(True)
        try:
            start = chain.read().position_rad[: calibration.n_joints]
            for name in names:
                i = calibration.joint_names.index(name)
                found = []
                for sign in (-1, 1):
                    found.append(_search(chain, i, sign, start, config))
                    _return_to(chain, start, config)
                stops.append(JointStops(name, found[0], found[1]))
        finally:
            chain.torque(False)
    return stops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robot_rl.calibration.joint_limits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="dclaw", help="calibration name or YAML path")
    parser.add_argument("--port", default=None, help="serial port (default: the calibration's)")
    parser.add_argument("--joints", default=None, help="comma-separated names (default: all)")
    defaults = LimitSearchConfig()
    parser.add_argument("--speed", type=float, default=defaults.speed_rad_s, help="rad/s")
    parser.add_argument("--current", type=float, default=defaults.goal_current_a,
                        help="Goal Current while searching, A")
    parser.add_argument("--margin", type=float, default=defaults.margin_rad,
                        help="back-off from each stop, rad")
    parser.add_argument("--out", default=None,
                        help="new calibration file (default: robot_rl/calibration/<robot>.limits.yaml)")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace --out if it exists (--force: its old spelling)")
    args = parser.parse_args(argv)
    calibration = load_robot(args.robot)
    config = LimitSearchConfig(speed_rad_s=args.speed, goal_current_a=args.current,
                               margin_rad=args.margin)
    names = tuple(args.joints.split(",")) if args.joints else None
    stops = discover(calibration, names, config, args.port)
    updates = {}
    for stop in stops:
        print(f"{stop.name:>20}: stops [{stop.lower_rad:+.3f}, {stop.upper_rad:+.3f}] rad")
        if math.isnan(stop.lower_rad) or math.isnan(stop.upper_rad):
            print(f"{'':>20}  no stop on one side: its limit is left as it was")
            continue
        updates[stop.name] = {"position_limits_rad": list(stop.limits(config.margin_rad))}
    out = Path(args.out) if args.out else default_output(args.robot, "limits")
    write_updated(args.robot, updates, out, force=args.overwrite,
                  note=f"joint limits found at {config.goal_current_a} A, margin "
                       f"{config.margin_rad} rad (calibration.joint_limits)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
