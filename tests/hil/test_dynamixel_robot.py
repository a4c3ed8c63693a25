"""The Dynamixel chain through the Robot interface, on the real SDK against the emulated bus."""

from __future__ import annotations

import dataclasses
import time

import pytest

from robot_rl.drivers.dynamixel.robot import DynamixelRobot
from robot_rl.robot import GoalRefused
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.emulators.dynamixel_bus import BusEmulatorConfig, EmulatedBus


def test_the_chain_as_a_robot_reads_follows_refuses_and_lets_go() -> None:
    dclaw = load_robot("dclaw")
    slow = dataclasses.replace(dclaw.bus, latency_timer_ms=16)  # a loaded CI machine's margin
    dclaw = dataclasses.replace(dclaw, bus=slow)
    with EmulatedBus(BusEmulatorConfig()) as port:
        robot = DynamixelRobot(dclaw, port=port, telemetry_period_s=0.0)
        robot.connect()
        try:
            reading = robot.read()
            assert reading.position_rad.shape == (9,) and reading.sensors_rad.shape == (1,)
            assert reading.temperature_c is not None and not reading.hardware_error.any()
            goal = reading.position_rad.copy()
            goal[1] += 0.2
            robot.write_goal(goal)
            deadline = time.monotonic() + 5.0
            while abs(robot.read().position_rad[1] - goal[1]) > 0.02:
                assert time.monotonic() < deadline, "the servo did not reach its goal"
            far = robot.read().position_rad.copy()
            far[4] += 0.5  # more than max_step_rad 0.25 from the measurement: the chain refuses
            with pytest.raises(GoalRefused) as err:
                robot.write_goal(far)
            assert err.value.reason == "step"
        finally:
            robot.disconnect()
        assert not robot.is_connected and not robot.chain.torque_on
