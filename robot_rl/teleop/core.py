"""What every teleop device shares: its output, joint selection, synergies, targets, episodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Button/key actions. "toggle" starts an episode or ends it as a success; "abort" discards the
# episode in progress or, between episodes, asks for a reset: two-button devices need no more.
EPISODE_ACTIONS = ("start", "end_success", "end_failure", "discard", "reset", "toggle", "abort")
SAFETY_ACTIONS = ("estop", "estop_reset")
SELECT_ACTIONS = ("select_next", "select_prev")
# During online learning: take over from the policy, or hand back (teleop.takeover)
TAKEOVER_ACTIONS = ("takeover",)
ACTIONS = EPISODE_ACTIONS + SAFETY_ACTIONS + SELECT_ACTIONS + TAKEOVER_ACTIONS


@dataclass(frozen=True)
class TeleopInput:
    """One device reading. Motion is relative (rad) or a velocity (rad/s, integrated over the
    control period) or absolute (a leader's targets); actions are names from ``ACTIONS``."""

    delta_rad: np.ndarray | None = None
    velocity_rad_s: np.ndarray | None = None
    targets_rad: np.ndarray | None = None
    actions: tuple[str, ...] = field(default=())


class Selection:
    """The joint that single-joint keys and axes move."""

    def __init__(self, joint_names: Sequence[str], index: int = 0) -> None:
        if not joint_names:
            raise ValueError("Selection: at least one joint name is needed")
        self.joint_names = tuple(joint_names)
        self.index = index % len(self.joint_names)

    @property
    def name(self) -> str:
        return self.joint_names[self.index]

    def select(self, index: int) -> bool:
        """Selects joint ``index`` if it exists; False (and no change) otherwise."""
        if 0 <= index < len(self.joint_names):
            self.index = index
            return True
        return False

    def step(self, offset: int) -> None:
        self.index = (self.index + offset) % len(self.joint_names)

    def vector(self, value: float) -> np.ndarray:
        out = np.zeros(len(self.joint_names))
        out[self.index] = value
        return out


def default_synergies(joint_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Joint-space directions that move several joints at once, from the joint naming scheme.

    D'Claw-style names (``f<i>_base``, ``f<i>_mid``, ``f<i>_tip``): ``grasp`` flexes every mid
    and tip joint (positive = close), ``turn`` moves every base joint together. Robots whose names
    do not follow the scheme get no synergies.
    """
    def direction(suffixes: tuple[str, ...]) -> np.ndarray:
        return np.array([1.0 if n.endswith(suffixes) else 0.0 for n in joint_names])

    candidates = {"grasp": direction(("_mid", "_tip")), "turn": direction(("_base",))}
    return {name: vec for name, vec in candidates.items() if vec.any()}


class TargetIntegrator:
    """Position targets from device inputs, inside the joint limits and near the robot.

    Targets start from the measured position (``sync``) so the first command does not jump. They
    never lead the measured position by more than ``max_lead_rad``: a finger pressing on the valve
    does not wind its target up, and releasing the key stops it at once.
    """

    def __init__(self, lower_rad: np.ndarray, upper_rad: np.ndarray, max_lead_rad: float) -> None:
        self.lower_rad = np.asarray(lower_rad, dtype=float)
        self.upper_rad = np.asarray(upper_rad, dtype=float)
        if self.lower_rad.shape != self.upper_rad.shape or not np.all(
                self.lower_rad < self.upper_rad):
            raise ValueError(f"TargetIntegrator: lower_rad {self.lower_rad} must be below "
                             f"upper_rad {self.upper_rad}, same shape")
        if not max_lead_rad > 0:
            raise ValueError(f"TargetIntegrator: max_lead_rad must be > 0, got {max_lead_rad}")
        self.max_lead_rad = float(max_lead_rad)
        self.targets_rad: np.ndarray | None = None

    def sync(self, measured_rad: np.ndarray) -> None:
        self.targets_rad = np.clip(np.asarray(measured_rad, dtype=float), self.lower_rad,
                                   self.upper_rad)

    def step(self, inputs: Sequence[TeleopInput], measured_rad: np.ndarray | None,
             dt_s: float) -> np.ndarray | None:
        """The targets after this control period's inputs; None until synced to a measurement."""
        if self.targets_rad is None:
            if measured_rad is None:
                return None
            self.sync(measured_rad)
        assert self.targets_rad is not None
        targets = self.targets_rad.copy()
        for item in inputs:
            if item.targets_rad is not None:
                targets = np.asarray(item.targets_rad, dtype=float).copy()
            if item.delta_rad is not None:
                targets += item.delta_rad
            if item.velocity_rad_s is not None:
                targets += np.asarray(item.velocity_rad_s) * dt_s
        if measured_rad is not None:
            measured = np.asarray(measured_rad, dtype=float)
            targets = np.clip(targets, measured - self.max_lead_rad, measured + self.max_lead_rad)
        self.targets_rad = np.clip(targets, self.lower_rad, self.upper_rad)
        return self.targets_rad.copy()


class EpisodeControl:
    """Start/end/discard/reset presses as EPISODE events; refuses those that make no sense now."""

    def __init__(self, first_episode: int = 0) -> None:
        self.episode = int(first_episode)
        self.recording = False

    def handle(self, action: str) -> tuple[dict[str, Any] | None, str]:
        """The event to publish (or None) and a line for the operator."""
        if action == "toggle":
            action = "end_success" if self.recording else "start"
        elif action == "abort":
            action = "discard" if self.recording else "reset"
        k = self.episode
        if action == "start":
            if self.recording:
                return None, f"episode {k} is already recording"
            self.recording = True
            return {"event": "start", "episode": k}, f"episode {k}: recording"
        if action in ("end_success", "end_failure", "discard"):
            if not self.recording:
                return None, f"no episode is recording ({action} ignored)"
            self.recording, self.episode = False, k + 1
            if action == "discard":
                return {"event": "discard", "episode": k}, f"episode {k}: discarded"
            success = action == "end_success"
            return ({"event": "end", "episode": k, "success": success},
                    f"episode {k}: ended, {'success' if success else 'failure'}")
        if action == "reset":
            if self.recording:
                return None, f"episode {k} is recording: end or discard it before a reset"
            return {"event": "reset", "episode": k}, f"reset requested before episode {k}"
        raise ValueError(f"EpisodeControl: unknown action {action!r}, expected one of "
                         f"{EPISODE_ACTIONS}")
