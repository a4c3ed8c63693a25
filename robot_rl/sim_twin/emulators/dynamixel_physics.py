"""What moves the emulated servos: a ``ServoPhysics`` protocol, a first-order model, a twin adapter.

All arrays follow ``ids`` and are in servo space: radians from the servo's centre (tick 2048),
rad/s and A. The calibration's direction and offset map joint space to servo space; only the twin
adapter needs them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from robot_rl.robot_config import RobotCalibration


class ServoPhysics(Protocol):
    ids: tuple[int, ...]

    def set_goals(self, goal_rad: np.ndarray, torque_on: np.ndarray,
                  velocity_limit_rad_s: np.ndarray) -> None: ...

    def advance(self, duration_s: float) -> None: ...

    def positions_rad(self) -> np.ndarray: ...

    def velocities_rad_s(self) -> np.ndarray: ...

    def currents_a(self) -> np.ndarray: ...


class FirstOrderServos:
    """Each servo with torque on closes on its goal with time constant ``time_constant_s``, at most
    at its velocity limit; its current is ``stiffness_a_per_rad`` times the remaining error, capped
    at ``max_current_a``. Torque off: the servo stays where it is. ``block(i)`` freezes one servo
    (a finger against an obstacle), so its current stays high: the way to provoke an overload."""

    def __init__(self, ids: tuple[int, ...], initial_rad: np.ndarray, max_current_a: np.ndarray,
                 *, time_constant_s: float = 0.05, stiffness_a_per_rad: float = 4.0,
                 substep_s: float = 0.002) -> None:
        self.ids = tuple(ids)
        self._position = np.array(initial_rad, dtype=np.float64)
        self._velocity = np.zeros(len(ids))
        self._current = np.zeros(len(ids))
        self._goal = self._position.copy()
        self._torque = np.zeros(len(ids), dtype=bool)
        self._velocity_limit = np.full(len(ids), np.inf)
        self._blocked = np.zeros(len(ids), dtype=bool)
        self._max_current_a = np.asarray(max_current_a, dtype=np.float64)
        self.time_constant_s = time_constant_s
        self.stiffness_a_per_rad = stiffness_a_per_rad
        self.substep_s = substep_s

    def block(self, servo_id: int, blocked: bool = True) -> None:
        self._blocked[self.ids.index(servo_id)] = blocked

    def displace(self, servo_id: int, position_rad: float) -> None:
        """Puts one servo at ``position_rad`` (servo space), at rest: a limp joint that sagged, or
        one pushed by hand. A servo with torque on then drives back to its goal."""
        i = self.ids.index(servo_id)
        self._position[i] = float(position_rad)
        self._velocity[i] = 0.0

    def set_goals(self, goal_rad: np.ndarray, torque_on: np.ndarray,
                  velocity_limit_rad_s: np.ndarray) -> None:
        self._goal = np.asarray(goal_rad, dtype=np.float64)
        self._torque = np.asarray(torque_on, dtype=bool)
        self._velocity_limit = np.asarray(velocity_limit_rad_s, dtype=np.float64)

    def advance(self, duration_s: float) -> None:
        n = max(1, int(np.ceil(duration_s / self.substep_s)))
        dt = duration_s / n
        active = self._torque & ~self._blocked
        for _ in range(n):
            error = self._goal - self._position
            velocity = np.clip(error / self.time_constant_s, -self._velocity_limit,
                               self._velocity_limit)
            step = np.where(np.abs(velocity * dt) > np.abs(error), error, velocity * dt)
            self._position = self._position + np.where(active, step, 0.0)
            self._velocity = np.where(active, step / dt, 0.0)
        error = self._goal - self._position
        limit = self._max_current_a
        current = np.clip(self.stiffness_a_per_rad * error, -limit, limit)
        self._current = np.where(self._torque, current, 0.0)

    def positions_rad(self) -> np.ndarray:
        return self._position.copy()

    def velocities_rad_s(self) -> np.ndarray:
        return self._velocity.copy()

    def currents_a(self) -> np.ndarray:
        return self._current.copy()


class TwinServos:
    """The MuJoCo twin behind the servos: joints follow the twin's joints, each sensor (the valve
    encoder) the twin's object. A servo with torque off cannot go limp in a position-actuated
    model, so its target is held where it is."""

    def __init__(self, twin: Any, calibration: RobotCalibration) -> None:
        self.twin = twin
        joints, sensors = calibration.joints, calibration.sensors
        self.ids = tuple(int(j.id) for j in (*joints, *sensors) if j.id is not None)
        self._n_joints = len(joints)
        self._direction = np.array([j.direction for j in (*joints, *sensors)], dtype=np.float64)
        self._offset = np.array([j.offset_rad for j in (*joints, *sensors)], dtype=np.float64)
        self._sensor_velocity = np.zeros(len(sensors))
        self._sensor_last = self._sensor_joint_rad()
        self._owed_s = 0.0

    def _to_servo(self, joint_rad: np.ndarray, sl: slice) -> np.ndarray:
        return self._direction[sl] * (joint_rad - self._offset[sl])

    def _sensor_joint_rad(self) -> np.ndarray:
        n_sensors = len(self.ids) - self._n_joints
        if n_sensors == 0:
            return np.zeros(0)
        return np.atleast_1d(np.asarray(self.twin.object_position(), dtype=np.float64))[:n_sensors]

    def set_goals(self, goal_rad: np.ndarray, torque_on: np.ndarray,
                  velocity_limit_rad_s: np.ndarray) -> None:
        n = self._n_joints
        goal_joint = self._direction[:n] * goal_rad[:n] + self._offset[:n]
        held = np.asarray(self.twin.joint_positions_rad(), dtype=np.float64)
        self.twin.set_joint_targets(np.where(torque_on[:n], goal_joint, held))

    def advance(self, duration_s: float) -> None:
        """Advances the twin by whole physics steps, carrying the time owed between calls: the bus
        calls this at about 1 kHz, and Twin.advance rounds each call up to one step, which would
        run the world faster than real time. A stall slows the world rather than bursting it."""
        step_s = float(getattr(self.twin, "physics_timestep_s", 0.0))
        if step_s > 0.0:
            self._owed_s = min(self._owed_s + duration_s, 0.25)
            steps = int(self._owed_s / step_s + 1e-9)
            if steps == 0:
                return
            self._owed_s -= steps * step_s
            duration_s = steps * step_s
        before = self._sensor_joint_rad()
        self.twin.advance(duration_s)
        if hasattr(self.twin, "object_velocity"):
            self._sensor_velocity = np.atleast_1d(np.asarray(self.twin.object_velocity(),
                                                             dtype=np.float64))[:len(before)]
        elif duration_s > 0:
            self._sensor_velocity = (self._sensor_joint_rad() - before) / duration_s

    def positions_rad(self) -> np.ndarray:
        n = self._n_joints
        joints = self._to_servo(np.asarray(self.twin.joint_positions_rad()), slice(0, n))
        sensors = self._to_servo(self._sensor_joint_rad(), slice(n, None))
        return np.concatenate([joints, sensors])

    def velocities_rad_s(self) -> np.ndarray:
        n = self._n_joints
        joints = self._direction[:n] * np.asarray(self.twin.joint_velocities_rad_s())
        return np.concatenate([joints, self._direction[n:] * self._sensor_velocity])

    def currents_a(self) -> np.ndarray:
        n = self._n_joints
        joints = self._direction[:n] * np.asarray(self.twin.joint_efforts_a())
        return np.concatenate([joints, np.zeros(len(self.ids) - n)])
