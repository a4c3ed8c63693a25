"""A person with a keyboard or a gamepad taking over during in-process fine-tuning.

The in-process pipeline has no graph, so only the devices it can read itself: the keyboard of its
terminal (``t`` toggles the takeover) and a gamepad read from the Linux joystick API (hold the right
trigger). SpaceMouse, Joy gamepads and leader arms arrive as ROS topics: on the graph, with the
teleop node's ``role:=intervene`` (docs/teleop.md). With ``realtime`` the online episodes run at
the task's control rate, so that a person can follow them; evaluations stay as fast as the twin.

The same rules as on the graph: targets start from the last gated command at a takeover, move as
the teleop node's do (``TargetIntegrator``), and pass through the supervisor gate, held to one
step at each change of hands (``pipeline.hil``); the e-stop key or button latches the supervisor
until the reset key or button, across episodes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robot_rl.teleop import KeyboardTeleop, TargetIntegrator, TeleopInput
from robot_rl.teleop.joy import GAMEPAD
from robot_rl.teleop.joystick import JoystickTeleop
from robot_rl.teleop.takeover import TakeoverSwitch
from robot_rl.teleop.terminal import TerminalKeys

DEVICES = ("keyboard", "joystick")


class DeviceOperator:
    """``act(obs)`` once per step: the person's action while in control, else None."""

    def __init__(self, env: Any, device: str, *, joystick_path: str = "/dev/input/js0",
                 key_step_rad: float = 0.05, speed_rad_s: float = 1.0,
                 max_lead_rad: float = 0.3, realtime: bool = True,
                 keys: Any = None, joystick: JoystickTeleop | None = None) -> None:
        """``env``: a ``GatedEnv``. ``keys`` / ``joystick``: readers to use instead of this
        terminal / ``joystick_path`` (tests)."""
        if device not in DEVICES:
            raise ValueError(f"intervention.operator {device!r}: in process the devices are "
                             f"{DEVICES} (others through the teleop node on the graph)")
        self.env, self.gym = env, env.env.unwrapped
        self.task = self.gym.task
        cal = self.task.calibration
        names = list(cal.joint_names)
        self.period_s = self.task.control_period_s
        self.realtime = realtime
        self.integrator = TargetIntegrator(cal.lower_rad, cal.upper_rad, max_lead_rad)
        self.keyboard = KeyboardTeleop(names, key_step_rad) if device == "keyboard" else None
        self.keys = keys
        if device == "keyboard" and keys is None:
            self.keys = TerminalKeys.open_if_tty()
            if self.keys is None:
                raise ValueError("intervention.operator keyboard: stdin is not a terminal")
        self.joystick = joystick
        if device == "joystick" and joystick is None:
            self.joystick = JoystickTeleop(names, GAMEPAD, speed_rad_s, device=joystick_path)
        mode = "toggle" if device == "keyboard" else (GAMEPAD.takeover.mode
                                                      if GAMEPAD.takeover else "hold")
        self.switch = TakeoverSwitch(mode)
        self.estopped = False
        self.takeovers = 0
        self._next_s: float | None = None

    def reset(self) -> None:
        """A new episode: the twin was reset, so targets start again from it; control stays
        with whoever had it (a held trigger keeps the operator in control)."""
        self.integrator.targets_rad = None
        self._next_s = None

    def act(self, obs: np.ndarray) -> np.ndarray | None:
        self._pace()
        now = time.monotonic()
        inputs = self._inputs(now)
        commanded = self.gym.commanded_targets_rad
        if self.estopped:  # the gate's supervisor is new each episode: latch it again
            self.env.gate.supervisor.estop("operator e-stop")
        if not self.switch.active:
            self.integrator.sync(commanded)
            return None
        if self.integrator.targets_rad is None:
            self.integrator.sync(commanded)
        measured = self.gym.twin.joint_positions_rad()
        targets = self.integrator.step(inputs, measured, self.period_s)
        assert targets is not None
        return self.task.targets_to_action(targets, commanded)

    def _inputs(self, now: float) -> list[TeleopInput]:
        inputs: list[TeleopInput] = []
        if self.keyboard is not None:
            for key in self.keys.read():
                item = self.keyboard.handle(key)
                if item is not None:
                    inputs.append(item)
        if self.joystick is not None:
            item = self.joystick.poll(now)
            if item is not None:
                inputs.append(item)
            inputs.append(TeleopInput(velocity_rad_s=self.joystick.velocity_rad_s(now)))
            level = self.joystick.takeover_level(now)
            if level is None:
                self.switch.lost()
            else:
                self.switch.held(level)
        for item in inputs:
            for action in item.actions:
                self._action(action)
        self.takeovers = self.switch.takeovers
        return inputs

    def _action(self, action: str) -> None:
        if action == "takeover" and self.switch.mode == "toggle":
            self.switch.press()
        elif action == "estop":
            self.estopped = True
        elif action == "estop_reset" and self.estopped:
            self.estopped = False
            supervisor = self.env.gate.supervisor
            supervisor.reset(self.gym.twin.time_s)

    def _pace(self) -> None:
        """Real time: one step per control period of wall time."""
        if not self.realtime:
            return
        now = time.monotonic()
        if self._next_s is not None and now < self._next_s:
            time.sleep(self._next_s - now)
        self._next_s = max(now, self._next_s or now) + self.period_s

    def close(self) -> None:
        if self.keys is not None and hasattr(self.keys, "close"):
            self.keys.close()
        if self.joystick is not None:
            self.joystick.close()
