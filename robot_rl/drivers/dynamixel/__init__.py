"""Dynamixel Protocol 2.0 chains (hand, arm, valve encoder) on dynamixel_sdk."""

from __future__ import annotations

from robot_rl.drivers.dynamixel.chain import (
    BusTiming,
    ChainState,
    DynamixelChain,
    DynamixelChainConfig,
    DynamixelCommError,
    DynamixelConnectError,
    DynamixelError,
    DynamixelGoalRefused,
    DynamixelPortError,
    DynamixelStatusError,
    DynamixelTorqueError,
)

__all__ = ["BusTiming", "ChainState", "DynamixelChain", "DynamixelChainConfig",
           "DynamixelCommError", "DynamixelConnectError", "DynamixelError",
           "DynamixelGoalRefused", "DynamixelPortError", "DynamixelStatusError",
           "DynamixelTorqueError"]
