"""Dynamixel calibration procedures against the emulated bus, on the real dynamixel-sdk.

Homing: the emulator's servos are mounted with offsets the driver's calibration does not know;
the procedure must recover them. Joint limits: the emulator is moved by the MuJoCo twin, whose
joint ranges are real stops (the position actuators cannot push past them), and the procedure
must find them by driving into them at low current.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_driver_dynamixel_node import slow_bus_calibration

from robot_rl.calibration import homing, joint_limits
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.emulators.dynamixel_bus import BusEmulatorConfig, EmulatedBus

TICK_RAD = 2 * np.pi / 4096


def test_homing_recovers_the_mounting_offsets_into_a_new_file(tmp_path: Path) -> None:
    driver_path = slow_bus_calibration(tmp_path)  # offsets all 0: an uncalibrated robot
    data = yaml.safe_load(driver_path.read_text())
    true_offsets = np.linspace(-0.3, 0.3, len(data["joints"]))
    for joint, offset in zip(data["joints"], true_offsets):
        joint["offset_rad"] = float(offset)
    world_path = tmp_path / "as_mounted.yaml"
    world_path.write_text(yaml.safe_dump(data))
    # the emulator starts every joint at joint angle 0 of the calibration it is given: the robot
    # is physically at the home pose, its servos at -offset
    with EmulatedBus(BusEmulatorConfig(calibration=str(world_path))) as port:
        out = tmp_path / "homed.yaml"
        assert homing.main(["--robot", str(driver_path), "--port", port, "--out", str(out),
                            "--yes"]) == 0
        homed = load_robot(out)
        np.testing.assert_allclose([j.offset_rad for j in homed.joints], true_offsets,
                                   atol=2 * TICK_RAD)
        assert homed.joint_names == load_robot(driver_path).joint_names
        assert out.read_text().startswith("# Written ")
        with pytest.raises(FileExistsError, match="--overwrite"):
            homing.main(["--robot", str(driver_path), "--port", port, "--out", str(out),
                         "--yes"])
        with pytest.raises(FileExistsError, match="source calibration"):
            homing.main(["--robot", str(driver_path), "--port", port, "--out",
                         str(driver_path), "--yes"])


def test_limit_discovery_finds_the_twins_joint_stops(tmp_path: Path) -> None:
    path = slow_bus_calibration(tmp_path)
    # the twin's MJCF (dclaw_hand.xml): abduction range +-0.85, tip flexion +-1.5 rad
    with EmulatedBus(BusEmulatorConfig(calibration=str(path), physics="twin")) as port:
        out = tmp_path / "limits.yaml"
        assert joint_limits.main(["--robot", str(path), "--port", port, "--joints",
                                  "f1_base", "--speed", "0.6", "--margin", "0.05",
                                  "--out", str(out)]) == 0
    found = load_robot(out)
    base = found.joints[found.joint_names.index("f1_base")]
    np.testing.assert_allclose(base.position_limits_rad, (-0.85 + 0.05, 0.85 - 0.05), atol=0.04)
    # the other joints keep the limits they had
    original = load_robot(path)
    for joint, before in zip(found.joints, original.joints):
        if joint.name != "f1_base":
            assert joint.position_limits_rad == before.position_limits_rad
