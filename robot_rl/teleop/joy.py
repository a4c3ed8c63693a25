"""sensor_msgs/Joy teleop: axes are joint velocities, button presses are actions.

Two presets: ``GAMEPAD`` (the layout ROS 2's ``joy`` node reports for an Xbox-style pad) and
``SPACEMOUSE`` (``spacenav``'s Joy: axes x, y, z, roll, pitch, yaw; two buttons). Velocities
fall to zero when Joy messages stop for ``timeout_s`` (an unplugged pad must not keep moving).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from robot_rl.teleop.core import ACTIONS, Selection, TeleopInput, default_synergies
from robot_rl.teleop.takeover import SWITCH_MODES


@dataclass(frozen=True)
class AxisBinding:
    """Axis ``axis`` (-1..1) drives ``target`` at ``gain`` times the device speed (rad/s).

    target: ``selected`` (the selected joint), ``synergy:<name>`` or ``joint:<name>``.
    """

    axis: int = field(metadata={"range": (0, 63)})
    target: str
    gain: float = field(default=1.0, metadata={"range": (-10.0, 10.0)})


@dataclass(frozen=True)
class TakeoverBinding:
    """The one input that takes over from the policy during online learning (teleop.takeover).

    A ``button``, or an ``axis`` that counts as pressed below ``pressed_below`` (a trigger: the
    joy node reports one at +1 released, -1 fully pulled, so -0.5 is three quarters of its
    travel). ``mode``: ``hold`` (in control while pressed: a deadman) or ``toggle``.
    """

    button: int | None = None
    axis: int | None = None
    pressed_below: float = field(default=-0.5, metadata={"range": (-1.0, 1.0)})
    mode: str = "hold"

    def __post_init__(self) -> None:
        if (self.button is None) == (self.axis is None):
            raise ValueError("TakeoverBinding: give a button or an axis, not both")
        if self.mode not in SWITCH_MODES:
            raise ValueError(f"TakeoverBinding: mode {self.mode!r}: expected one of "
                             f"{SWITCH_MODES}")


@dataclass(frozen=True)
class JoyMapping:
    axes: tuple[AxisBinding, ...]
    buttons: tuple[tuple[int, str], ...]  # (button index, action from core.ACTIONS)
    deadzone: float = field(default=0.1, metadata={"range": (0.0, 0.9)})
    takeover: TakeoverBinding | None = None

    def __post_init__(self) -> None:
        bad = [action for _, action in self.buttons if action not in ACTIONS]
        if bad:
            raise ValueError(f"JoyMapping.buttons: unknown actions {bad}, expected {ACTIONS}")


# joy_node, Xbox layout: axes LX 0, LY 1, LT 2, RX 3, RY 4, RT 5; buttons A 0, B 1, X 2, Y 3,
# LB 4, RB 5, back 6, start 7, guide 8. Stick up/left is +1. Takeover: hold the right trigger
# (the "enable switch" convention of robot teleop: let go and the policy has control again).
GAMEPAD = JoyMapping(
    axes=(AxisBinding(0, "synergy:turn", -1.0), AxisBinding(1, "synergy:grasp"),
          AxisBinding(4, "selected")),
    buttons=((0, "start"), (2, "end_success"), (3, "end_failure"), (1, "discard"),
             (6, "reset"), (8, "estop"), (7, "estop_reset"), (4, "select_prev"),
             (5, "select_next")),
    takeover=TakeoverBinding(axis=5, mode="hold"),
)
# spacenav: push down is -z, twist counter-clockwise is +yaw. Its two buttons start/end and abort
# episodes while recording; during online learning (the learner runs the episodes) the left one
# toggles the takeover: a side button is awkward to hold while the puck is twisted.
SPACEMOUSE = JoyMapping(
    axes=(AxisBinding(2, "synergy:grasp", -1.0), AxisBinding(5, "synergy:turn"),
          AxisBinding(0, "selected")),
    buttons=((0, "toggle"), (1, "abort")),
    deadzone=0.15,
    takeover=TakeoverBinding(button=0, mode="toggle"),
)
PRESETS: dict[str, JoyMapping] = {"gamepad": GAMEPAD, "spacemouse": SPACEMOUSE}


class JoyTeleop:
    def __init__(self, joint_names: Sequence[str], mapping: JoyMapping, speed_rad_s: float,
                 timeout_s: float = 0.5,
                 synergies: Mapping[str, np.ndarray] | None = None) -> None:
        if not speed_rad_s > 0 or not timeout_s > 0:
            raise ValueError(f"JoyTeleop: speed_rad_s {speed_rad_s} and timeout_s {timeout_s} "
                             "must be > 0")
        self.joint_names = tuple(joint_names)
        self.mapping = mapping
        self.speed_rad_s = float(speed_rad_s)
        self.timeout_s = float(timeout_s)
        self.selection = Selection(joint_names)
        self.synergies = dict(default_synergies(joint_names) if synergies is None else synergies)
        for binding in mapping.axes:  # fail at start, not at the first stick movement
            self._direction(binding.target)
        self._axes = np.zeros(0)
        self._buttons: tuple[int, ...] = ()
        self._stamp_s: float | None = None

    def _direction(self, target: str) -> np.ndarray:
        kind, _, name = target.partition(":")
        if kind == "selected" and not name:
            return self.selection.vector(1.0)
        if kind == "synergy" and name in self.synergies:
            return self.synergies[name]
        if kind == "joint" and name in self.joint_names:
            out = np.zeros(len(self.joint_names))
            out[self.joint_names.index(name)] = 1.0
            return out
        raise ValueError(f"JoyTeleop: axis target {target!r} unknown; expected 'selected', "
                         f"'synergy:<{'|'.join(self.synergies) or 'none defined'}>' or "
                         f"'joint:<one of {self.joint_names}>'")

    def handle(self, axes: Sequence[float], buttons: Sequence[int], now_s: float
               ) -> TeleopInput | None:
        """Takes one Joy message; the actions of the buttons pressed since the last one."""
        self._axes, self._stamp_s = np.asarray(axes, dtype=float), now_s
        pressed = [i for i, b in enumerate(buttons)
                   if b and not (i < len(self._buttons) and self._buttons[i])]
        self._buttons = tuple(int(b) for b in buttons)
        actions = []
        for index, action in self.mapping.buttons:
            if index not in pressed:
                continue
            if action in ("select_next", "select_prev"):
                self.selection.step(1 if action == "select_next" else -1)
            else:
                actions.append(action)
        return TeleopInput(actions=tuple(actions)) if actions else None

    def takeover_level(self, now_s: float) -> bool | None:
        """Whether the takeover input is pressed now; None without a binding or once Joy messages
        are older than the timeout (a silent device presses nothing)."""
        binding = self.mapping.takeover
        if binding is None or self._stamp_s is None or now_s - self._stamp_s > self.timeout_s:
            return None
        if binding.button is not None:
            return binding.button < len(self._buttons) and bool(self._buttons[binding.button])
        assert binding.axis is not None
        return binding.axis < self._axes.size and \
            float(self._axes[binding.axis]) < binding.pressed_below

    def velocity_rad_s(self, now_s: float) -> np.ndarray:
        """Joint velocities from the latest axes; zero once Joy messages are older than timeout."""
        out = np.zeros(len(self.joint_names))
        if self._stamp_s is None or now_s - self._stamp_s > self.timeout_s:
            return out
        dz = self.mapping.deadzone
        for binding in self.mapping.axes:
            if binding.axis >= self._axes.size:
                continue
            value = float(np.clip(self._axes[binding.axis], -1.0, 1.0))
            if abs(value) <= dz:
                continue
            scaled = np.sign(value) * (abs(value) - dz) / (1.0 - dz)
            out += self._direction(binding.target) * scaled * binding.gain * self.speed_rad_s
        return out
