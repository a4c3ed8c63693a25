"""Camera intrinsics read from the device (its factory calibration) into a camera YAML.

A RealSense stores its calibration; this reads the colour stream's (depth is aligned to it, so one
set serves both) for the chosen mode and writes ``robot_rl/calibration/cameras/<name>.yaml``. A recording
carries the recorded device's intrinsics, so ``--recording`` works the same way.

    python -m robot_rl.calibration.camera_intrinsics --name d435_front --serial 123456789012
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robot_rl.camera_config import CAMERAS_DIR, CameraCalibration, Intrinsics, save_camera
from robot_rl.drivers.realsense.camera import RealSenseCamera
from robot_rl.drivers.realsense.config import CameraConfig
from robot_rl.drivers.realsense.frame import CameraIntrinsics


def to_intrinsics(device: CameraIntrinsics) -> Intrinsics:
    fields = device.camera_info_fields()
    return Intrinsics(width=device.width, height=device.height, fx=device.fx, fy=device.fy,
                      cx=device.ppx, cy=device.ppy, distortion_model=fields["distortion_model"],
                      d=tuple(fields["D"]))


def read_intrinsics(name: str, config: CameraConfig) -> CameraCalibration:
    with RealSenseCamera(config) as camera:
        return CameraCalibration(camera=name, intrinsics=to_intrinsics(camera.intrinsics()),
                                 serial=camera.serial)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robot_rl.calibration.camera_intrinsics",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="camera name (the YAML's file name)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--serial", default=None, help="device serial (default: the only one)")
    source.add_argument("--recording", default=None, help="a .db3/.bag recording instead")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--out", default=None, help="default: robot_rl/calibration/cameras/<name>.yaml")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace --out if it exists (--force: its old spelling)")
    args = parser.parse_args(argv)
    config = CameraConfig(serial=args.serial, recording_path=args.recording, width=args.width,
                          height=args.height, fps=args.fps)
    calibration = read_intrinsics(args.name, config)
    out = Path(args.out) if args.out else CAMERAS_DIR / f"{args.name}.yaml"
    save_camera(calibration, out, overwrite=args.overwrite,
                header=f"Intrinsics read from {config.source} (calibration.camera_intrinsics); "
                       "add extrinsics with calibration.camera_extrinsics")
    k = calibration.intrinsics
    print(f"{calibration.serial}: {k.width}x{k.height} fx {k.fx:.2f} fy {k.fy:.2f} "
          f"cx {k.cx:.2f} cy {k.cy:.2f} {k.distortion_model} {list(k.d)}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
