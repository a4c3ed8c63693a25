"""What the recorder writes at each control tick: the latest value of every topic, and, when a
task is set, the task's transition keys (so a recording feeds pretraining directly).

Row t is written at tick t + 1: its action is the command that answered observation t (the
latest command at tick t + 1) and its reward and termination come from the state at t + 1, the
transition semantics of the twin's environment (sim_twin.envs).

A pixel task's rows are the twin's pixel episodes' (``robot-rl record`` with ``observation:
pixels``): ``observation`` is the task's vector (no object in it), ``next_observation`` the next
tick's, ``state_observation`` and ``next_state_observation`` the state layout (for evaluation and a
state baseline); the recorder adds each row's view (``camera_color``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.tasks.base import Task, TaskState


class StepSampler:
    """Builds recorder rows from sampled values; one episode at a time."""

    def __init__(self, n_joints: int, task: Task | None) -> None:
        self.n_joints, self.task = n_joints, task
        # a pixel task's rows are transitions with the state layout beside the vector
        self._state_task = task.state_variant() if task is not None and task.uses_pixels \
            else None
        self.goal = 0.0
        self._pending: dict[str, Any] | None = None
        self._previous_action = np.zeros(n_joints, np.float32)
        self._previous_command: np.ndarray | None = None

    def begin(self, goal: float, command_rad: np.ndarray | None) -> None:
        self.goal, self._pending = float(goal), None
        self._previous_command = None if command_rad is None else np.asarray(command_rad)
        self._previous_action = np.zeros(self.n_joints, np.float32)

    def raw_row(self, stamp_s: float, state: TaskState, effort_a: np.ndarray,
                temperature_c: np.ndarray, command_rad: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "stamp_s": np.float64(stamp_s),
            "joint_position_rad": state.joint_positions_rad.astype(np.float32),
            "joint_velocity_rad_s": state.joint_velocities_rad_s.astype(np.float32),
            "joint_effort_a": np.asarray(effort_a, np.float32),
            "temperature_c": np.asarray(temperature_c, np.float32),
            "object_position": np.array([state.object_position], np.float32),
            "object_velocity": np.array([state.object_velocity], np.float32),
            "command_rad": np.asarray(command_rad, np.float32),
        }

    def step(self, raw: dict[str, np.ndarray], state: TaskState,
             command_rad: np.ndarray) -> dict[str, np.ndarray] | None:
        """The completed row of the previous tick (None at the first tick of an episode)."""
        done_row = None
        if self._pending is not None:
            done_row = self._pending
            if self.task is not None:
                done_row.update(self._close(state, command_rad))
        row = dict(raw)
        if self.task is not None:
            row["observation"] = self.task.observation(state, self.goal, self._previous_action)
        if self._state_task is not None:
            row["state_observation"] = self._state_task.observation(state, self.goal,
                                                                    self._previous_action)
            if done_row is not None:
                done_row["next_observation"] = row["observation"]
                done_row["next_state_observation"] = row["state_observation"]
        self._pending = row
        return done_row

    def _close(self, state: TaskState, command_rad: np.ndarray) -> dict[str, np.ndarray]:
        assert self.task is not None
        previous = command_rad if self._previous_command is None else self._previous_command
        action = self.task.targets_to_action(command_rad, previous)
        self._previous_action, self._previous_command = action, np.asarray(command_rad)
        success = self.task.is_success(state, self.goal)
        return {"action": action.astype(np.float32),
                "reward": np.float32(self.task.reward(state, self.goal)),
                "terminated": np.bool_(success and self.task.config.terminate_on_success)}
