"""The Robot interface: the drivers' goal rules, the twin as a robot, drivers found by kind."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.registry import RegistryError, driver_class, register_driver
from robot_rl.robot import GoalRefused, Robot, check_goal
from robot_rl.robot_config import load_robot
from robot_rl.safety.limits import JointLimits

ARM = load_robot("ur5e")
LIMITS = JointLimits.from_calibration(ARM)


def test_a_goal_is_clamped_into_the_limits_and_refused_far_from_a_fresh_measurement() -> None:
    measured = np.array([LIMITS.upper_rad[0] - 0.01, 0.0, 0.0, 0.0, 0.0, 0.0])
    goal = measured + np.array([0.04, 0.03, 0, 0, 0, 0])
    written = check_goal(LIMITS, goal, measured, 0.0)
    assert written[0] == LIMITS.upper_rad[0] and written[1] == pytest.approx(0.03)
    at_limit = measured.copy()
    at_limit[2] += LIMITS.max_step_rad  # exactly the step limit passes
    check_goal(LIMITS, at_limit, measured, 0.0)
    cases = {"step": (measured + np.r_[0, 0, 0.051, 0, 0, 0], measured, 0.0),
             "stale": (measured, measured, LIMITS.state_timeout_s + 0.001),
             "unmeasured": (measured, None, 0.0),
             "malformed": (np.r_[measured[:5], np.nan], measured, 0.0)}
    for reason, (g, m, age) in cases.items():
        with pytest.raises(GoalRefused) as err:
            check_goal(LIMITS, g, m, age)
        assert err.value.reason == reason
    with pytest.raises(GoalRefused, match=r"joint elbow_joint goal .* is 0.0510 rad from"):
        check_goal(LIMITS, cases["step"][0], measured, 0.0)


def test_the_twin_is_a_robot_that_starts_where_its_task_starts_and_follows_goals() -> None:
    import time

    cls = driver_class("twin")
    robot = cls(ARM, task="drawer")
    assert isinstance(robot, Robot) and not robot.is_connected
    with robot:
        first = robot.read()
        # not the zero pose (stretched into the cabinet): the drawer task's home
        np.testing.assert_allclose(first.position_rad, ARM.task_settings("drawer")
                                   .config["home_rad"], atol=0.06)
        goal = check_goal(robot.limits, first.position_rad + 0.04, first.position_rad, 0.0)
        robot.write_goal(goal)
        deadline = time.monotonic() + 20.0  # the twin advances with wall time between reads
        while np.abs(robot.read().position_rad - goal).max() > 0.01:
            assert time.monotonic() < deadline, "the twin did not reach the goal"
            time.sleep(0.01)
        assert robot.read().sensors_rad is None  # the UR5e calibration lists no sensor
    assert not robot.is_connected
    with pytest.raises(RuntimeError, match=r"connect\(\) first"):
        robot.read()


def test_drivers_are_found_by_kind() -> None:
    from robot_rl.drivers.dynamixel.robot import DynamixelRobot

    assert driver_class("dynamixel_hand") is DynamixelRobot is driver_class("dynamixel_arm")
    with pytest.raises(RegistryError, match=r"no driver for kind 'ur_rtde'; known: "):
        driver_class("ur_rtde")
    register_driver("test_twin_alias", "robot_rl.sim_twin.robot:TwinRobot")
    assert driver_class("test_twin_alias").__name__ == "TwinRobot"
    with pytest.raises(RegistryError, match=r"driver kind 'twin' is already"):
        register_driver("twin", "my_pkg:Other")
    register_driver("test_missing", "no_such_pkg.driver:Robot")
    with pytest.raises(RegistryError, match=r"driver 'test_missing': cannot load"):
        driver_class("test_missing")
