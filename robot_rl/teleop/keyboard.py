"""Keyboard teleop: each key press moves the selected joint or a synergy by one step.

Holding a key relies on the terminal's auto-repeat, so motion is as smooth as the repeat rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robot_rl.teleop.core import Selection, TeleopInput, default_synergies

# key -> (what it moves, sign); 'selected' is the selected joint, anything else a synergy
MOTION_KEYS: dict[str, tuple[str, float]] = {
    "w": ("selected", 1.0), "up": ("selected", 1.0),
    "s": ("selected", -1.0), "down": ("selected", -1.0),
    "d": ("turn", 1.0), "right": ("turn", 1.0),
    "a": ("turn", -1.0), "left": ("turn", -1.0),
    "e": ("grasp", 1.0), "q": ("grasp", -1.0),
}
ACTION_KEYS: dict[str, str] = {
    "b": "start", "y": "end_success", "n": "end_failure", "x": "discard", "r": "reset",
    " ": "estop", "u": "estop_reset", "]": "select_next", "\t": "select_next",
    "[": "select_prev", "t": "takeover",
}
KEY_HELP = ("keys: 1-9 select joint, [ ] previous/next, w/s (up/down) move it, a/d (left/right) "
            "turn, q/e open/close grasp | b start episode, y end success, n end failure, "
            "x discard, r reset | t take over / hand back (online learning) | space E-STOP, "
            "u reset e-stop")


class KeyboardTeleop:
    def __init__(self, joint_names: Sequence[str], step_rad: float,
                 synergies: Mapping[str, np.ndarray] | None = None) -> None:
        if not step_rad > 0:
            raise ValueError(f"KeyboardTeleop: step_rad must be > 0, got {step_rad}")
        self.selection = Selection(joint_names)
        self.step_rad = float(step_rad)
        self.synergies = dict(default_synergies(joint_names) if synergies is None else synergies)

    def handle(self, key: str) -> TeleopInput | None:
        """The input for one key (as ``terminal.parse_keys`` names it); None for unused keys."""
        if key.isdigit():
            index = 9 if key == "0" else int(key) - 1
            self.selection.select(index)
            return None
        if key in ACTION_KEYS:
            action = ACTION_KEYS[key]
            if action in ("select_next", "select_prev"):
                self.selection.step(1 if action == "select_next" else -1)
                return None
            return TeleopInput(actions=(action,))
        if key in MOTION_KEYS:
            target, sign = MOTION_KEYS[key]
            if target == "selected":
                return TeleopInput(delta_rad=self.selection.vector(sign * self.step_rad))
            if target in self.synergies:
                return TeleopInput(delta_rad=self.synergies[target] * sign * self.step_rad)
        return None
