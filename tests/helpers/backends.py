"""The two Node API backends in tests: whether real rclpy is here, and a marker that runs a test
on both (the rclpy case skipped, with its reason, where rclpy cannot be imported)."""

from __future__ import annotations

import pytest

from robot_rl.ros.runtime import rclpy_available

RCLPY = rclpy_available()
NO_RCLPY = ("rclpy cannot be imported: robot_rl[ros] (ROS 2 Jazzy wheels) installs only on x86_64 "
            "Linux with CPython 3.10-3.13, or source a ROS 2 installation")
needs_rclpy = pytest.mark.skipif(not RCLPY, reason=NO_RCLPY)
# Parametrises a test that takes ``ros_domain`` (or ``backend``, fixtures of tests/conftest.py)
# over both backends.
both_backends = pytest.mark.parametrize(
    "backend", ["dds", pytest.param("rclpy", marks=needs_rclpy)], indirect=True)
