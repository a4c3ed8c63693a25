"""The episode state machine of one robot: reset, wait for reset_done, start, act, end.

It runs on the control clock: ``tick(now_s, state, state_received_s)`` once per period. Transition
semantics match the twin's gymnasium environment (sim_twin.envs): at a tick the new state closes
the previous step (reward, success, terminated at success, truncated at the episode length) and,
unless the episode ended, the policy acts on the observation built from it.

A pixel task's step also needs its camera view (``agent.frames.ViewFrame``, paired with the joint
state by the node): the policy then acts on {"state": the task's vector, "image": the view as the
network reads it}, and the episode keeps each step's view (``camera_color``, ``camera_depth``),
the keys of the twin's pixel episodes. A step without a view is skipped like a stale state.

A human in the loop (the learner node; ``pipeline.hil`` is the in-process twin of this): a tick may
bring the operator's targets (``operator_rad``: the teleop node in its intervene role holds
control). They replace the policy's for that step; ``teleop.takeover.Handover`` holds every
operator command, and the policy's first command after a handback, to one action step from the
supervisor's last command, and the recorded action is the one that yields the targets sent
(``targets_to_action``), so an operator's step is a transition like any other. Every step records
who acted (``intervention``) and the episode's info counts the ``takeovers``. The targets still go
to COMMAND_RAW: the supervisor gates the operator as it gates the policy.

A success model (``success_model``: ``reward.SuccessDetector``, a learned classifier) replaces the
task's success rule: the step's success is the detector's on the observation after it, and for a
pixel task on the view paired with that observation too (an image classifier judges the view after
the action, not the one the policy acted on) (reward 0 on success, else -1; termination where the
task ends at success). The task's own rule is still
computed where the state allows it and kept as ``true_success`` in the episode's info, so
misdetections can be counted on the twin; where no step of the episode had the object measured
(a cell without a sensor on it: ``LatestState(object_optional=True)``), the info has none.

An episode starts on the first state measured after its reset: one whose stamp is at or after the
``stamp_s`` that reset_done names (the twin's stamp of the state it published after the teleport,
compared on the robot's own clock, so no clock is trusted across machines), or, for a reply
without one, a state received after reset_done. Episodes are ``online`` (their reset drawn from
(seed, episode)) or ``eval`` (``plan``: draw k of a separate evaluation stream, so every round of
evaluations starts from the same states).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from robot_rl.agent.frames import ViewFrame
from robot_rl.tasks.base import ResetSample, Task, TaskState
from robot_rl.tasks.camera import network_image
from robot_rl.teleop.takeover import OPERATOR, Handover

Policy = Callable[[Any], np.ndarray]  # a vector, or a pixel task's {"state", "image"}
NO_VIEW = "no camera view for this step"
STEP_KEYS = ("observation", "action", "reward", "next_observation", "terminated", "truncated",
             "intervention")
FLAG_KEYS = ("terminated", "truncated", "intervention")
_ROW_DTYPES = {**dict.fromkeys(FLAG_KEYS, bool), "camera_color": np.uint8,
               "camera_depth": np.uint16}


class SuccessModel(Protocol):
    """Success from the frame after each step (``reward.SuccessDetector``): the observation
    vector, or for a pixel task {"observation": vector, "camera_color": the view paired with it}
    (``success_frame``), so an image classifier judges the view after the action."""

    def reset(self) -> None: ...

    def step(self, observation: np.ndarray | Mapping[str, np.ndarray]) -> bool: ...


def success_frame(next_obs: np.ndarray, color: np.ndarray | None
                  ) -> np.ndarray | dict[str, np.ndarray]:
    """What a success model judges after a step: the vector alone (a state task: as before), or
    the vector and the view of the same instant (the view after the action, never the one the
    policy acted on)."""
    return next_obs if color is None else {"observation": next_obs, "camera_color": color}


EPISODE_KINDS = ("online", "eval")
EVAL_STREAM = 1  # the evaluation starts' stream, beside the online one (0)


class Phase(enum.Enum):
    IDLE = "idle"
    RESETTING = "resetting"
    RUNNING = "running"


@dataclass(frozen=True)
class EpisodeConfig:
    reset_timeout_s: float = field(default=3.0, metadata={
        "range": (0.05, 600.0), "help": "re-send a reset that got no reset_done after this"})
    max_stale_s: float = field(default=1.0, metadata={
        "range": (0.01, 60.0), "help": "discard an episode whose state stays stale this long"})
    seed: int = field(default=0, metadata={"range": (0, 2**31 - 1),
                                           "help": "episode k's reset comes from (seed, k)"})


@dataclass
class FinishedEpisode:
    """An episode's transitions (time-major, the keys of the twin's episodes) and its info."""

    steps: dict[str, np.ndarray]
    info: dict[str, Any]

    @property
    def length(self) -> int:
        return len(self.steps["reward"])

    @property
    def success(self) -> bool:
        return bool(self.info["success"])


@dataclass
class TickOutput:
    """What one tick asks the node to do: publish events, publish targets, log."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (event, fields)
    targets_rad: np.ndarray | None = None
    finished: FinishedEpisode | None = None
    warnings: list[str] = field(default_factory=list)


class EpisodeMachine:
    def __init__(self, task: Task, config: EpisodeConfig, *, first_episode: int = 0,
                 tag: str = "", success_model: SuccessModel | None = None) -> None:
        self.task, self.config, self.tag = task, config, tag
        self.success_model = success_model
        self.handover = Handover(task.actions.step_rad)
        self.phase = Phase.IDLE
        self.episode = first_episode - 1  # index of the current (or last) episode
        self.reset: ResetSample | None = None
        self.resets_sent = 0
        self._reset_sent_s = 0.0
        self._reset_done_s: float | None = None
        self._stale_since_s: float | None = None
        self._rows: dict[str, list[Any]] = {}
        # obs, action, the view it acted on, whether the operator acted
        self._pending: tuple[np.ndarray, np.ndarray, ViewFrame | None, bool] | None = None
        self._previous_action = np.zeros(task.n_joints, np.float32)
        self._targets = np.zeros(task.n_joints)
        self._command_rad: np.ndarray | None = None  # the supervisor's, since our last action
        self._gated_rad: np.ndarray | None = None  # the supervisor's latest, this episode
        self._success = False
        self._true_success: bool | None = None  # None: the object was never measured
        self._steps = 0
        self._start_wait_logged = False
        self.kind = "online"
        self._draw: int | None = None  # eval: which start of the evaluation stream
        self._reset_stamp_s: float | None = None  # reset_done's stamp of the state after it

    def plan(self, kind: str = "online", draw: int | None = None) -> None:
        """The kind of the next episode, and for ``eval`` its start: draw ``draw`` of the
        evaluation stream. Only between episodes."""
        if self.phase is not Phase.IDLE:
            raise RuntimeError(f"{self.tag}: plan() during episode {self.episode} "
                               f"({self.phase.value})")
        if kind not in EPISODE_KINDS or (kind == "eval") != (draw is not None):
            raise ValueError(f"{self.tag}: plan({kind!r}, {draw!r}): kind is one of "
                             f"{EPISODE_KINDS}, and an eval episode (only) names its draw")
        self.kind, self._draw = kind, draw

    # ---- inputs ----------------------------------------------------------------------------
    def on_status(self, event: dict[str, Any], now_s: float) -> str | None:
        """A reply on EPISODE_STATUS; returns a warning to log, if any."""
        if self.phase is not Phase.RESETTING or event.get("episode") != self.episode:
            return None
        if event.get("event") == "reset_done":
            self._reset_done_s = now_s
            stamp = event.get("stamp_s")
            self._reset_stamp_s = float(stamp) if stamp is not None else None
            return None
        if event.get("event") == "reset_failed":
            return (f"{self.tag}: reset of episode {self.episode} failed: "
                    f"{event.get('error', '?')}; retrying in {self.config.reset_timeout_s:g} s")
        return None

    def on_command(self, command_rad: np.ndarray) -> None:
        """The supervisor's latest command (COMMAND, in the calibration's joint order). With
        relative actions the next action steps from it, as the twin's environment steps from
        its gated targets: a step the supervisor cut short or held is not taken twice."""
        if self.phase is Phase.RUNNING:
            self._command_rad = np.asarray(command_rad, dtype=np.float64).copy()
            self._gated_rad = self._command_rad.copy()

    @property
    def reset_done_s(self) -> float | None:
        """When this episode's reset_done arrived (None before)."""
        return self._reset_done_s

    def tick(self, now_s: float, state: TaskState | None, state_received_s: float,
             policy: Policy | None, stale_reason: str | None = None,
             frame: ViewFrame | None = None,
             operator_rad: np.ndarray | None = None,
             state_stamp_s: float | None = None) -> TickOutput:
        """``frame``: a pixel task's view paired with ``state`` (None: no step for a pixel
        task, ``stale_reason`` says why). ``operator_rad``: the operator's targets when an
        operator holds control this step. ``state_stamp_s``: the state's measurement stamp (the
        oldest of its messages')."""
        out = TickOutput()
        if self.task.uses_pixels and frame is None:
            state = None
        if self.phase is Phase.IDLE:
            if policy is not None:
                self._begin_reset(now_s, out)
        elif self.phase is Phase.RESETTING:
            self._resetting(now_s, state, state_received_s, state_stamp_s, policy, out, frame,
                            stale_reason, operator_rad)
        else:
            self._running(now_s, state, policy, stale_reason, out, frame, operator_rad)
        return out

    def ready_to_start(self, state_received_s: float,
                       state_stamp_s: float | None = None) -> bool:
        """Whether the latest state may start the episode now (reset_done is in, and the state
        was measured after the reset)."""
        if self.phase is not Phase.RESETTING or self._reset_done_s is None:
            return False
        if self._reset_stamp_s is not None and state_stamp_s is not None:
            return state_stamp_s >= self._reset_stamp_s
        return state_received_s >= self._reset_done_s

    # ---- phases ----------------------------------------------------------------------------
    def _begin_reset(self, now_s: float, out: TickOutput) -> None:
        self.episode += 1
        key = ((self.config.seed, self.episode) if self._draw is None
               else (self.config.seed, EVAL_STREAM, self._draw))
        self.reset = self.task.sample_reset(np.random.default_rng(key))
        self.phase, self._reset_done_s, self.resets_sent = Phase.RESETTING, None, 0
        self._start_wait_logged = False
        self._reset_stamp_s = None
        self._send_reset(now_s, out)

    def _send_reset(self, now_s: float, out: TickOutput) -> None:
        assert self.reset is not None
        self.resets_sent += 1
        self._reset_sent_s = now_s
        out.events.append(("reset", {
            "seed": self.reset_seed, "joint_positions_rad": self.reset.joint_positions_rad,
            "object_position": self.reset.object_position, "goal": self.reset.goal}))

    @property
    def last_gated_rad(self) -> np.ndarray:
        """The supervisor's latest command this episode, else this machine's last targets."""
        return (self._gated_rad if self._gated_rad is not None else self._targets).copy()

    @property
    def reset_seed(self) -> int:
        """The physics seed of the episode's reset (the twin's randomisation)."""
        if self._draw is not None:
            return (self.config.seed * 1_000_003 + 999_999_937 + self._draw) % 2**31
        return (self.config.seed * 1_000_003 + self.episode) % 2**31

    def _resetting(self, now_s: float, state: TaskState | None, received_s: float,
                   stamp_s: float | None, policy: Policy | None, out: TickOutput,
                   frame: ViewFrame | None, stale_reason: str | None = None,
                   operator_rad: np.ndarray | None = None) -> None:
        if self._reset_done_s is None:
            if now_s - self._reset_sent_s >= self.config.reset_timeout_s:
                out.warnings.append(f"{self.tag}: no reset_done for episode {self.episode} "
                                    f"after {self.config.reset_timeout_s:g} s; re-sending "
                                    f"(attempt {self.resets_sent + 1})")
                self._send_reset(now_s, out)
            return
        # act only on a state measured after the reset (the old one may still be in flight)
        if state is None or not self.ready_to_start(received_s, stamp_s):
            if state is None and stale_reason and not self._start_wait_logged:
                self._start_wait_logged = True  # once per episode: the camera may be down
                out.warnings.append(f"{self.tag}: episode {self.episode} waits to start: "
                                    f"{stale_reason}")
            return
        self._start(state, out)
        self._running(now_s, state, policy, None, out, frame, operator_rad)

    def _start(self, state: TaskState, out: TickOutput) -> None:
        assert self.reset is not None
        self.phase = Phase.RUNNING
        self._targets = np.asarray(self.reset.joint_positions_rad, dtype=np.float64).copy()
        self._command_rad = self._gated_rad = None  # the last episode's are not this one's
        self.handover.reset()
        if self.success_model is not None:
            self.success_model.reset()
        if self.task.actions.steps_from_command:
            self._previous_action = np.zeros(self.task.n_joints, np.float32)
        else:
            self._previous_action = self.task.targets_to_action(self._targets, self._targets)
        self._rows = {k: [] for k in STEP_KEYS}
        image = self.task.image
        if image is not None:  # each step's view, as the twin's pixel episodes hold it
            self._rows["camera_color"] = []
            if image.depth:
                self._rows["camera_depth"] = []
        self._pending, self._success, self._steps, self._stale_since_s = None, False, 0, None
        self._true_success = None
        out.events.append(("start", {"goal": self.reset.goal, "seed": self.reset_seed,
                                     "kind": self.kind}))

    def _running(self, now_s: float, state: TaskState | None, policy: Policy | None,
                 stale_reason: str | None, out: TickOutput, frame: ViewFrame | None,
                 operator_rad: np.ndarray | None = None) -> None:
        if state is None or policy is None:
            self._stale(now_s, stale_reason or ("no policy" if state is not None else NO_VIEW),
                        out)
            return
        self._stale_since_s = None
        assert self.reset is not None
        goal = self.reset.goal
        obs = self.task.observation(state, goal, self._previous_action)
        if self._pending is not None and self._close_step(state, obs, goal, frame):
            self._finish(out)
            return
        # the targets an action steps from: the supervisor's last command with relative actions
        base = self._targets
        if self.task.actions.steps_from_command and self._command_rad is not None:
            base = self._command_rad
        wanted = None
        if operator_rad is None:
            action = np.asarray(policy(self._policy_input(obs, frame)), dtype=np.float32)
            if action.shape != (self.task.n_joints,):
                raise ValueError(f"{self.tag}: policy gave an action of shape {action.shape}, "
                                 f"expected {self.task.n_joints} actions (task "
                                 f"{self.task.name})")
            wanted = self.task.action_to_targets(action, base)
        last_gated = self._gated_rad if self._gated_rad is not None else self._targets
        command = self.handover.command(wanted, operator_rad, last_gated)
        assert command is not None
        by_operator = command.actor == OPERATOR
        if by_operator or command.limited:
            # the action that yields the targets sent, so the transition records what happened
            action = self.task.targets_to_action(command.targets_rad, base)
        self._targets = self.task.action_to_targets(action, base)
        self._command_rad = None
        self._pending, self._previous_action = (obs, action, frame, by_operator), action
        out.targets_rad = self._targets

    def _policy_input(self, obs: np.ndarray, frame: ViewFrame | None) -> Any:
        """The vector, or a pixel task's {"state": vector, "image": the network's view}."""
        view = self.task.image
        if view is None:
            return obs
        assert frame is not None
        return {"state": obs, "image": network_image(frame.color, frame.depth, view)}

    def _close_step(self, state: TaskState, next_obs: np.ndarray, goal: float,
                    next_frame: ViewFrame | None = None) -> bool:
        """Closes the pending step at ``state``; ``next_frame``: the view paired with ``state``
        (after the action), which a success model judges beside ``next_obs``."""
        assert self._pending is not None
        obs, action, frame, by_operator = self._pending
        if frame is not None:  # the view the policy acted on
            self._rows["camera_color"].append(frame.color)
            if "camera_depth" in self._rows:
                self._rows["camera_depth"].append(frame.depth)
        measured = bool(np.isfinite(state.object_position))
        true_success = measured and self.task.is_success(state, goal)
        if measured:
            self._true_success = bool(self._true_success) or true_success
        if self.success_model is None:
            if not measured:
                raise ValueError(f"{self.tag}: the task's reward needs the object's state, and "
                                 f"none was measured for this step")
            success, reward = true_success, self.task.reward(state, goal)
        else:  # the classifier's word stands for the task's rule (as on a robot without one)
            success = bool(self.success_model.step(success_frame(
                next_obs, None if next_frame is None else next_frame.color)))
            reward = 0.0 if success else -1.0
        self._steps += 1
        terminated = bool(success and self.task.config.terminate_on_success)
        truncated = self._steps >= self.task.episode_length_steps
        for key, value in zip(STEP_KEYS, (obs, action, reward, next_obs, terminated, truncated,
                                          by_operator)):
            self._rows[key].append(value)
        self._success = self._success or success
        self._pending = None
        return terminated or truncated

    def _finish(self, out: TickOutput) -> None:
        assert self.reset is not None
        steps = {k: np.asarray(v, dtype=_ROW_DTYPES.get(k, np.float32))
                 for k, v in self._rows.items()}
        info = {"episode": self.episode, "success": self._success, "seed": self.reset_seed,
                "goal": self.reset.goal, "kind": self.kind, "robot_namespace": self.tag,
                "takeovers": self.handover.takeovers}
        if self.success_model is not None and self._true_success is not None:
            info["true_success"] = self._true_success
        if self._draw is not None:
            info["draw"] = self._draw
        out.finished = FinishedEpisode(steps, info)
        out.events.append(("end", {"success": self._success, "steps": self._steps,
                                   "kind": self.kind}))
        self.phase = Phase.IDLE

    def _stale(self, now_s: float, reason: str, out: TickOutput) -> None:
        if self._stale_since_s is None:
            self._stale_since_s = now_s
            out.warnings.append(f"{self.tag}: episode {self.episode}: skipping a step: {reason}")
        elif now_s - self._stale_since_s > self.config.max_stale_s:
            out.warnings.append(f"{self.tag}: episode {self.episode} discarded: {reason} for "
                                f"{now_s - self._stale_since_s:.2f} s")
            out.events.append(("discard", {"reason": reason}))
            self.phase = Phase.IDLE
