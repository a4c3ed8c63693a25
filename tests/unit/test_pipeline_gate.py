"""The in-process gate: only the supervisor's verdict reaches the twin's servos."""

from __future__ import annotations

import numpy as np

from robot_rl.robot_config import load_robot
from robot_rl.safety.gate import SupervisorGate


def state(q: float) -> dict[str, np.ndarray]:
    return {"position_rad": np.full(9, q), "velocity_rad_s": np.zeros(9), "effort_a": np.zeros(9)}


def test_a_rejected_command_holds_and_a_jump_is_clipped() -> None:
    gate = SupervisorGate(load_robot("dclaw"))
    nan = np.full(9, np.nan)
    # a rejected command holds the servos where they are
    np.testing.assert_array_equal(gate(nan, state(0.0), 0.05), np.zeros(9))
    gate.reset()
    gate(np.zeros(9), state(0.0), 0.05)
    first = gate(np.full(9, 0.05), state(0.0), 0.10)
    np.testing.assert_allclose(first, 0.05)
    # a NaN is never passed on: the supervisor holds at the measured position
    np.testing.assert_allclose(gate(nan, state(0.02), 0.15), 0.02)
    assert gate.statuses["hold"] >= 1
    # a wild jump is cut to the step limit from the measured position
    jumped = gate(np.full(9, 1.0), state(0.05), 0.20)
    assert np.all(jumped - 0.05 <= load_robot("dclaw").safety.max_step_rad + 1e-9)


def test_the_gate_counts_the_commands_each_rule_acted_on_across_episodes() -> None:
    """Once per command, however many joints a rule clipped; episodes add up (a reset keeps them)."""
    gate = SupervisorGate(load_robot("dclaw"))
    gate(np.zeros(9), state(0.0), 0.05)
    gate(np.full(9, 0.05), state(0.0), 0.10)  # within every limit
    assert sum(gate.rules.values()) == 0 and gate.statuses["pass"] == 2
    gate(np.full(9, 0.40), state(0.05), 0.15)  # every joint past the velocity limit
    assert gate.rules["velocity_limit"] == 1 and gate.statuses["clipped"] == 1
    gate.reset()
    gate(np.zeros(9), state(0.0), 0.05)
    gate(np.full(9, np.nan), state(0.0), 0.10)
    assert gate.rules["velocity_limit"] == 1 and gate.rules["nan_in_command"] == 1
