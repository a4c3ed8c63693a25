"""The emulated bus moves the twin in real time, however often it is called."""

from __future__ import annotations

import pytest

from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.emulators.dynamixel_physics import TwinServos
from robot_rl.sim_twin.twin import Twin


def test_twin_time_follows_the_bus_time_at_1_khz_calls() -> None:
    calibration = load_robot("dclaw")
    twin = Twin(calibration)
    servos = TwinServos(twin, calibration)
    for _ in range(500):        # 0.5 s of bus time in 1 ms calls, below the 2 ms physics step
        servos.advance(0.001)
    assert twin.time_s == pytest.approx(0.5, abs=twin.physics_timestep_s)
