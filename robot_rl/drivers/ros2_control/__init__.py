"""Arms driven by ros2_control (UR, Franka, Kinova...): a bridge between their controllers and our topics."""

from __future__ import annotations

from robot_rl.drivers.ros2_control.config import BridgeConfig

__all__ = ["BridgeConfig"]
