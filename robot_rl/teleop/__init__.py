"""Teleoperation: pure mappings from input devices to joint targets and episode events.

Devices: a keyboard (``keyboard``), a gamepad or a SpaceMouse through sensor_msgs/Joy (``joy``) and
a leader robot whose joint states are mirrored (``leader``). Each turns raw input into a
``TeleopInput``; ``TargetIntegrator`` turns inputs into position targets that stay within the
joint limits and close to the measured position; ``EpisodeControl`` turns button presses into the
EPISODE events of ``robot_rl.nodes.topics``. No I/O here except ``terminal`` (the TTY reader).
"""

from __future__ import annotations

from robot_rl.teleop.core import (
    EPISODE_ACTIONS,
    EpisodeControl,
    Selection,
    TargetIntegrator,
    TeleopInput,
    default_synergies,
)
from robot_rl.teleop.joy import GAMEPAD, SPACEMOUSE, AxisBinding, JoyMapping, JoyTeleop
from robot_rl.teleop.keyboard import KEY_HELP, KeyboardTeleop
from robot_rl.teleop.leader import LeaderMirror

__all__ = ["EPISODE_ACTIONS", "GAMEPAD", "KEY_HELP", "SPACEMOUSE", "AxisBinding", "EpisodeControl",
           "JoyMapping", "JoyTeleop", "KeyboardTeleop", "LeaderMirror", "Selection",
           "TargetIntegrator", "TeleopInput", "default_synergies"]
