"""Dynamixel homing offsets: pose the robot at a known pose, read the servos, write offset_rad.

``joint_rad = direction * servo_rad + offset_rad``: with the robot held at ``pose_rad`` (a jig, or
fingers straight for the D'Claw), the new offset is ``offset_rad + (pose_rad - measured_rad)``.
Torque stays off throughout (the robot is posed by hand). The result goes to a NEW calibration
file (default ``robot_rl/calibration/<robot>.homed.yaml``); the user's file is never overwritten silently.

    python -m robot_rl.calibration.homing --robot dclaw --port /dev/ttyUSB0 --pose 0,0,0,0,0,0,0,0,0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from robot_rl.calibration.robot_yaml import default_output, write_updated
from robot_rl.drivers.dynamixel.chain import DynamixelChain
from robot_rl.robot_config import RobotCalibration, load_robot


def measure_offsets(chain: DynamixelChain, pose_rad: np.ndarray, reads: int = 10) -> np.ndarray:
    """New offset_rad per joint (calibration order) that makes the present reading ``pose_rad``."""
    calibration = chain.calibration
    pose = np.asarray(pose_rad, dtype=np.float64)
    if pose.shape != (calibration.n_joints,):
        raise ValueError(f"pose: expected {calibration.n_joints} values (rad) for "
                         f"{calibration.joint_names}, got {pose.shape}")
    measured = np.mean([chain.read().position_rad[: calibration.n_joints]
                        for _ in range(reads)], axis=0)  # averages encoder jitter
    old = np.array([j.offset_rad for j in calibration.joints])
    return old + (pose - measured)


def home(calibration: RobotCalibration, pose_rad: np.ndarray, port: str | None = None
         ) -> np.ndarray:
    with DynamixelChain(calibration, port=port) as chain:
        chain.torque(False)
        return measure_offsets(chain, pose_rad)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robot_rl.calibration.homing",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="dclaw", help="calibration name or YAML path")
    parser.add_argument("--port", default=None, help="serial port (default: the calibration's)")
    parser.add_argument("--pose", default=None,
                        help="the known pose, comma-separated rad in joint order (default: 0s)")
    parser.add_argument("--out", default=None, help="new calibration file "
                        "(default: robot_rl/calibration/<robot>.homed.yaml)")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace --out if it exists (--force: its old spelling)")
    parser.add_argument("--yes", action="store_true", help="do not wait for Enter")
    args = parser.parse_args(argv)
    calibration = load_robot(args.robot)
    pose = (np.zeros(calibration.n_joints) if args.pose is None
            else np.array([float(v) for v in args.pose.split(",")]))
    out = Path(args.out) if args.out else default_output(args.robot, "homed")
    if not args.yes:
        input(f"Torque is off. Hold {calibration.robot} at {pose.tolist()} rad "
              f"({', '.join(calibration.joint_names)}), then press Enter ")
    offsets = home(calibration, pose, args.port)
    write_updated(args.robot, {j.name: {"offset_rad": float(o)}
                               for j, o in zip(calibration.joints, offsets)}, out,
                  force=args.overwrite, note="homing offsets (calibration.homing)")
    for joint, offset in zip(calibration.joints, offsets):
        print(f"{joint.name:>20}: offset_rad {joint.offset_rad:+.4f} -> {offset:+.4f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
