"""An operator taking over from the policy during online learning, and handing back.

Two pieces, both pure:

``TakeoverSwitch``: the operator's one button or key. ``hold`` (a deadman: in control while it is
held, hand back on release: the gamepad's right trigger) or ``toggle`` (one press takes over, the
next hands back: a terminal cannot see a key's release, and a SpaceMouse's side button is awkward
to hold while the puck is twisted). A hold switch whose device goes silent hands back, as a
release; a toggle switch waits for the operator's next press.

``Handover``: what goes to the supervisor each control step, and who acted. Its rule: every command
made by the operator, and the policy's first command after a handback, is within one action step
(``step_rad``, the task's: ``ActionMapping.step_rad``) of the last command the supervisor let
through. Why: the operator's device may be anywhere when control passes (a leader arm held in
another pose, an absolute-action policy's target across the range), and the supervisor would only
rate-limit the jump, not refuse it; within one step, the change of hands is a step the task could
have taken itself, so the recorded action (``targets_to_action``) is exact in every action mode.
With relative and velocity actions a policy's command already is such a step; the rule matters for
absolute actions and for the operator's device.

Neither piece can reach a motor: both produce targets for COMMAND_RAW (on the graph) or for the
in-process supervisor gate, which remains the only path to the actuators; an e-stop it latched
holds whoever is in control.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SWITCH_MODES = ("hold", "toggle")
POLICY, OPERATOR = "policy", "operator"


class TakeoverSwitch:
    """The state of the operator's takeover button: in control or not, and the changes seen."""

    def __init__(self, mode: str) -> None:
        if mode not in SWITCH_MODES:
            raise ValueError(f"TakeoverSwitch: mode {mode!r}: expected one of {SWITCH_MODES}")
        self.mode = mode
        self.active = False
        self.takeovers = 0  # times control passed to the operator
        self._level = False  # the last level reading (``held``)

    def press(self) -> bool:
        """The button went down; returns whether the operator is in control now."""
        if self.mode == "toggle":
            self._set(not self.active)
        else:
            self._set(True)
        return self.active

    def release(self) -> bool:
        """The button came up (hold mode hands back; toggle mode ignores releases)."""
        if self.mode == "hold":
            self._set(False)
        return self.active

    def held(self, pressed: bool) -> bool:
        """A level reading (a trigger past its threshold, a button's state): hold mode follows it,
        toggle mode takes its rising edges as presses."""
        if self.mode == "hold":
            self._set(pressed)
        elif pressed and not self._level:
            self._set(not self.active)
        self._level = pressed
        return self.active

    def lost(self) -> bool:
        """The device went silent: a deadman (hold) hands back; a toggle keeps its state."""
        if self.mode == "hold":
            self._set(False)
        self._level = False
        return self.active

    def _set(self, active: bool) -> None:
        if active and not self.active:
            self.takeovers += 1
        self.active = active


@dataclass(frozen=True)
class Command:
    """One control step's command and who made it."""

    targets_rad: np.ndarray
    actor: str          # POLICY or OPERATOR
    limited: bool       # the handover rule moved it


class Handover:
    """Who commands this step, held to one step from the last gated command at each change.

    ``step_rad``: the most one action moves a joint's target (per joint or one value).
    ``command`` is called once per control step with the policy's targets (or None when the
    policy did not act) and the operator's (None when the operator is not in control).
    """

    def __init__(self, step_rad: np.ndarray | float) -> None:
        step = np.asarray(step_rad, dtype=np.float64)
        if np.any(~np.isfinite(step)) or np.any(step <= 0):
            raise ValueError(f"Handover: step_rad must be finite and > 0, got {step_rad}")
        self.step_rad = step
        self.actor = POLICY
        self.takeovers = 0
        self.handbacks = 0
        self.operator_steps = 0
        self.steps = 0

    def command(self, policy_rad: np.ndarray | None, operator_rad: np.ndarray | None,
                last_gated_rad: np.ndarray) -> Command | None:
        """The targets to send, or None (the policy did not act and the operator is away)."""
        actor = OPERATOR if operator_rad is not None else POLICY
        wanted = operator_rad if operator_rad is not None else policy_rad
        if wanted is None:
            return None
        if actor != self.actor:
            if actor == OPERATOR:
                self.takeovers += 1
            else:
                self.handbacks += 1
        # the operator always, and the policy on the step control came back to it
        limit = actor == OPERATOR or self.actor == OPERATOR
        self.actor = actor
        self.steps += 1
        self.operator_steps += actor == OPERATOR
        targets = np.asarray(wanted, dtype=np.float64)
        if not limit:
            return Command(targets.copy(), actor, False)
        last = np.asarray(last_gated_rad, dtype=np.float64)
        held = np.clip(targets, last - self.step_rad, last + self.step_rad)
        return Command(held, actor, bool(np.any(held != targets)))

    def reset(self) -> None:
        """A new episode: the policy starts in control; the counters restart."""
        self.actor = POLICY
        self.takeovers = self.handbacks = self.operator_steps = self.steps = 0
