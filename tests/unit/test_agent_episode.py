"""The episode state machine against the real twin (MuJoCo) and the real valve task, no processes."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.agent.episode import EpisodeConfig, EpisodeMachine, Phase
from robot_rl.agent.frames import ViewFrame
from robot_rl.agent.observation import LatestState
from robot_rl.agent.sites import task_sites
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.twin import Twin
from robot_rl.tasks.valve import ValveTask, ValveTaskConfig

PERIOD_S = 0.05


def ZERO(obs: np.ndarray) -> np.ndarray:
    return np.zeros(9, np.float32)


class TwinRobot:
    """The twin in-process: what the graph's twin node does on reset and on a command."""

    def __init__(self, task: ValveTask) -> None:
        self.twin = Twin(task.calibration)
        self.latest = LatestState(task.calibration.joint_names, 3 * PERIOD_S, task_sites(task))
        self.names = task.calibration.joint_names

    def reset(self, event: dict) -> None:
        self.twin.reset(np.asarray(event["joint_positions_rad"]), event["object_position"],
                        seed=event["seed"])

    def publish(self, now_s: float) -> None:
        self.latest.on_joints(self.names, self.twin.joint_positions_rad(),
                              self.twin.joint_velocities_rad_s(), now_s, now_s)
        self.latest.on_object([self.twin.object_position()], [self.twin.object_velocity()],
                              now_s)


def run_episode(machine: EpisodeMachine, robot: TwinRobot, policy, max_ticks: int = 500,
                frame=None):
    """Ticks the machine on the in-process twin until an episode finishes; ``frame(now_s)``:
    the view each tick hands over (a pixel task's)."""
    now, events, commands = 0.0, [], 0
    for _ in range(max_ticks):
        now += PERIOD_S
        robot.publish(now)
        out = machine.tick(now, robot.latest.task_state(now), robot.latest.received_s, policy,
                           frame=None if frame is None else frame(now))
        for name, fields in out.events:
            events.append(name)
            if name == "reset":
                robot.reset(fields)
                machine.on_status({"event": "reset_done", "episode": machine.episode}, now)
        if out.targets_rad is not None:
            commands += 1
            robot.twin.set_joint_targets(out.targets_rad)
        robot.twin.advance(PERIOD_S)
        if out.finished is not None:
            return out.finished, events, commands
    raise AssertionError(f"no episode finished in {max_ticks} ticks; events {events}")


@pytest.fixture(scope="module")
def task() -> ValveTask:
    return ValveTask(load_robot("dclaw"), ValveTaskConfig(episode_length_steps=12))


def test_episode_follows_the_environment_semantics(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig(seed=3), first_episode=5, tag="/hand")
    robot = TwinRobot(task)
    rng = np.random.default_rng(0)
    episode, events, commands = run_episode(machine, robot,
                                            lambda obs: rng.uniform(-1, 1, task.n_joints))
    assert events == ["reset", "start", "end"]
    steps = episode.steps
    n = episode.length
    assert commands == n and 1 <= n <= 12
    np.testing.assert_array_equal(steps["next_observation"][:-1], steps["observation"][1:])
    # the observation carries the previous action (its last slice)
    np.testing.assert_allclose(task.field(steps["observation"][1:], "previous_action"),
                               steps["action"][:-1])
    assert set(np.unique(steps["reward"])) <= {-1.0, 0.0}
    assert not steps["terminated"][:-1].any() and not steps["truncated"][:-1].any()
    assert steps["terminated"][-1] or steps["truncated"][-1]
    assert episode.info["episode"] == 5 and episode.info["robot_namespace"] == "/hand"
    assert episode.success == bool((steps["reward"] == 0.0).any())
    assert machine.phase is Phase.IDLE


def test_same_seed_same_resets_and_next_episode_gets_a_new_one(task: ValveTask) -> None:
    a = EpisodeMachine(task, EpisodeConfig(seed=1))
    b = EpisodeMachine(task, EpisodeConfig(seed=1))
    out_a, out_b = a.tick(0.0, None, 0.0, ZERO), b.tick(0.0, None, 0.0, ZERO)
    assert out_a.events[0][1]["goal"] == out_b.events[0][1]["goal"]
    c = EpisodeMachine(task, EpisodeConfig(seed=1), first_episode=1)
    assert c.tick(0.0, None, 0.0, ZERO).events[0][1]["goal"] != \
        out_a.events[0][1]["goal"]


def test_no_policy_sends_nothing(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig())
    out = machine.tick(1.0, None, 0.0, None)
    assert out.events == [] and out.targets_rad is None and machine.phase is Phase.IDLE


def test_reset_is_resent_until_done_and_start_waits_for_a_fresh_state(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig(reset_timeout_s=0.5))
    robot = TwinRobot(task)
    assert [e for e, _ in machine.tick(0.0, None, 0.0, ZERO).events] == ["reset"]
    assert machine.tick(0.4, None, 0.0, ZERO).events == []
    again = machine.tick(0.6, None, 0.0, ZERO)
    assert [e for e, _ in again.events] == ["reset"] and again.warnings
    assert machine.resets_sent == 2 and machine.episode == 0
    # a reply for another episode is ignored
    machine.on_status({"event": "reset_done", "episode": 7}, 0.7)
    robot.publish(0.65)  # measured before the reset was done
    machine.on_status({"event": "reset_done", "episode": 0}, 0.7)
    stale = machine.tick(0.75, robot.latest.task_state(0.75), robot.latest.received_s,
                         ZERO)
    assert stale.events == [] and machine.phase is Phase.RESETTING
    robot.publish(0.8)
    out = machine.tick(0.8, robot.latest.task_state(0.8), robot.latest.received_s, ZERO)
    assert [e for e, _ in out.events] == ["start"] and out.targets_rad is not None


def test_stale_state_skips_then_discards(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig(max_stale_s=0.3))
    robot = TwinRobot(task)
    machine.tick(0.0, None, 0.0, ZERO)
    machine.on_status({"event": "reset_done", "episode": 0}, 0.0)
    robot.publish(0.05)
    assert machine.tick(0.05, robot.latest.task_state(0.05), 0.05, ZERO).targets_rad \
        is not None
    skipped = machine.tick(0.25, robot.latest.task_state(0.25), 0.05, ZERO,
                           robot.latest.staleness(0.25))
    assert skipped.targets_rad is None and "old" in skipped.warnings[0]
    assert machine.tick(0.4, None, 0.05, ZERO, "old").events == []
    out = machine.tick(0.6, None, 0.05, ZERO, "old")
    assert [e for e, _ in out.events] == ["discard"] and machine.phase is Phase.IDLE


def test_a_policy_of_the_wrong_size_is_named(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig())
    robot = TwinRobot(task)
    machine.tick(0.0, None, 0.0, ZERO)
    machine.on_status({"event": "reset_done", "episode": 0}, 0.0)
    robot.publish(0.05)
    with pytest.raises(ValueError, match="expected 9 actions"):
        machine.tick(0.05, robot.latest.task_state(0.05), 0.05, lambda obs: np.zeros(32))


def test_relative_actions_step_from_the_supervisors_command() -> None:
    """As the twin's environment steps from its gated targets: a step the supervisor cut short is
    not remembered at full length (the node's own integration ran ahead of the robot)."""
    task = ValveTask(load_robot("dclaw"), ValveTaskConfig(action_mode="relative",
                                                          episode_length_steps=12))
    machine = EpisodeMachine(task, EpisodeConfig())
    robot = TwinRobot(task)
    step = np.full(9, 0.8, np.float32)  # 0.2 rad: more than the velocity limit lets through
    reset = machine.tick(0.0, None, 0.0, ZERO).events[0][1]
    robot.reset(reset)
    machine.on_command(np.full(9, 5.0))  # before the episode runs: the last one's, ignored
    machine.on_status({"event": "reset_done", "episode": 0}, 0.0)
    robot.publish(0.05)
    first = machine.tick(0.05, robot.latest.task_state(0.05), 0.05, lambda obs: step).targets_rad
    start = np.asarray(reset["joint_positions_rad"])
    np.testing.assert_allclose(first, task.action_to_targets(step, start))
    gated = start + 0.15  # the supervisor let 0.15 rad through
    machine.on_command(gated)
    robot.publish(0.10)
    second = machine.tick(0.10, robot.latest.task_state(0.10), 0.10, lambda obs: step).targets_rad
    np.testing.assert_allclose(second, task.action_to_targets(step, gated))
    # no command since the last action (lost or late): the node's own targets
    robot.publish(0.15)
    third = machine.tick(0.15, robot.latest.task_state(0.15), 0.15, lambda obs: step).targets_rad
    np.testing.assert_allclose(third, task.action_to_targets(step, second))


def test_absolute_actions_ignore_the_command(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig())
    robot = TwinRobot(task)
    robot.reset(machine.tick(0.0, None, 0.0, ZERO).events[0][1])
    machine.on_status({"event": "reset_done", "episode": 0}, 0.0)
    robot.publish(0.05)
    half = np.full(9, 0.5, np.float32)
    machine.tick(0.05, robot.latest.task_state(0.05), 0.05, lambda obs: half)
    machine.on_command(np.zeros(9))
    robot.publish(0.10)
    out = machine.tick(0.10, robot.latest.task_state(0.10), 0.10, lambda obs: half)
    np.testing.assert_allclose(out.targets_rad, task.action_to_targets(half, np.zeros(9)))


def drive(machine: EpisodeMachine, robot: TwinRobot, policy, operator, gate: bool = True,
          max_ticks: int = 200):
    """Ticks until an episode ends; ``operator(k)`` gives the operator's targets at running tick k
    (None: the policy's turn). With ``gate`` the supervisor's COMMAND echoes each target sent.
    Returns the episode, the targets sent and the COMMAND before each."""
    now, k, sent, gated_before = 0.0, 0, [], []
    last_gated = None
    for _ in range(max_ticks):
        now += PERIOD_S
        robot.publish(now)
        running = machine.phase is Phase.RUNNING or machine.reset is not None
        out = machine.tick(now, robot.latest.task_state(now), robot.latest.received_s, policy,
                           None, operator_rad=operator(k) if running else None)
        for name, fields in out.events:
            if name == "reset":
                robot.reset(fields)
                machine.on_status({"event": "reset_done", "episode": machine.episode}, now)
                last_gated = np.asarray(fields["joint_positions_rad"])
        if out.targets_rad is not None:
            k += 1
            gated_before.append(last_gated)
            sent.append(out.targets_rad.copy())
            robot.twin.set_joint_targets(out.targets_rad)
            if gate:
                last_gated = out.targets_rad.copy()
                machine.on_command(last_gated)
        robot.twin.advance(PERIOD_S)
        if out.finished is not None:
            return out.finished, np.asarray(sent), gated_before
    raise AssertionError(f"no episode finished in {max_ticks} ticks")


def test_operator_targets_replace_the_policys_within_one_step_and_are_recorded() -> None:
    """On the graph the teleop node's targets arrive as ``operator_rad``: they are sent instead of
    the policy's (which is not asked), held to one step from the last gated command, and the step
    records the action that yields them and that the operator acted."""
    task = ValveTask(load_robot("dclaw"), ValveTaskConfig(action_mode="relative",
                                                          episode_length_steps=10))
    machine = EpisodeMachine(task, EpisodeConfig(seed=2))
    robot = TwinRobot(task)
    asked = []

    def policy(obs: np.ndarray) -> np.ndarray:
        asked.append(1)
        return np.zeros(9, np.float32)
    far = np.full(9, 0.9)  # far from the reset pose: the rule must hold it
    episode, sent, gated = drive(machine, robot, policy, lambda k: far if 2 <= k < 5 else None)
    flags = episode.steps["intervention"]
    np.testing.assert_array_equal(flags[:6], [False, False, True, True, True, False])
    assert len(asked) == episode.length - 3  # never asked while the operator acts
    step = task.actions.step_rad
    for k in (2, 3, 4):
        assert np.all(np.abs(sent[k] - gated[k]) <= step + 1e-6)       # within one step
        assert np.all(np.sign(sent[k] - gated[k]) == np.sign(far - gated[k]))  # toward it
        np.testing.assert_allclose(task.action_to_targets(episode.steps["action"][k], gated[k]),
                                   sent[k], atol=1e-6)                 # the action recorded
    assert episode.info["takeovers"] == 1


def test_the_policys_first_command_after_a_handback_is_one_step_from_the_last_gated() -> None:
    """Absolute actions: the policy's target may lie across the range; after the operator hands
    back it is reached one step at a time from the operator's last gated command, not jumped to
    (checked by removing the rule for the policy: this test then fails)."""
    task = ValveTask(load_robot("dclaw"), ValveTaskConfig(action_mode="absolute",
                                                          episode_length_steps=10))
    machine = EpisodeMachine(task, EpisodeConfig(seed=4))
    robot = TwinRobot(task)
    episode, sent, gated = drive(machine, robot, lambda obs: np.ones(9, np.float32),
                                 lambda k: gated_hold[0] if k < 3 else None)
    assert episode.steps["intervention"][:4].tolist() == [True, True, True, False]
    step = task.actions.step_rad
    assert np.all(np.abs(sent[3] - gated[3]) <= step + 1e-6)  # float32 actions: 1e-6
    assert np.any(np.abs(task.action_to_targets(np.ones(9), gated[3]) - gated[3]) > step)
    np.testing.assert_allclose(task.action_to_targets(episode.steps["action"][3], gated[3]),
                               sent[3], atol=1e-6)
    # the step after the handback: the policy's own target again
    np.testing.assert_allclose(sent[4], task.action_to_targets(np.ones(9), sent[3]))


gated_hold = [np.zeros(9)]


class ScriptedDetector:
    """A success model that fires at its ``at``-th frame (the protocol ``reward.SuccessDetector``
    implements; the real detector is tested in test_reward_classifier)."""

    def __init__(self, at: int) -> None:
        self.at, self.frames, self.resets = at, 0, 0

    def reset(self) -> None:
        self.frames, self.resets = 0, self.resets + 1

    def step(self, observation: np.ndarray) -> bool:
        self.frames += 1
        return self.frames >= self.at


def test_a_success_model_gives_reward_success_and_termination(task: ValveTask) -> None:
    detector = ScriptedDetector(at=4)
    machine = EpisodeMachine(task, EpisodeConfig(seed=3), success_model=detector)
    episode, _, _ = drive(machine, TwinRobot(task), ZERO, lambda k: None)
    assert detector.resets == 1
    assert episode.length == 4 and episode.success and episode.steps["terminated"][-1]
    np.testing.assert_array_equal(episode.steps["reward"], [-1.0, -1.0, -1.0, 0.0])
    assert episode.info["true_success"] is False  # the valve did not turn in 4 zero actions
    assert not episode.steps["intervention"].any() and episode.info["takeovers"] == 0


class ObjectlessRobot(TwinRobot):
    """The twin as a cell with no sensor on the object: nothing publishes its state."""

    def __init__(self, task: ValveTask) -> None:
        super().__init__(task)
        self.latest = LatestState(task.calibration.joint_names, 3 * PERIOD_S, task_sites(task),
                                  object_optional=True)

    def publish(self, now_s: float) -> None:
        self.latest.on_joints(self.names, self.twin.joint_positions_rad(),
                              self.twin.joint_velocities_rad_s(), now_s, now_s)


def test_with_a_success_model_no_object_state_is_needed_and_none_is_invented(
        task: ValveTask) -> None:
    """A pixel task's policy and a classifier's reward read no object: episodes run on joints
    alone, and the info claims no true success it could not measure."""
    pixels = task.with_observation("pixels")
    detector = ScriptedDetector(at=3)
    machine = EpisodeMachine(pixels, EpisodeConfig(seed=3), success_model=detector)
    episode, _, _ = run_episode(machine, ObjectlessRobot(pixels), ZERO, frame=blank_view)
    assert episode.length == 3 and episode.success
    np.testing.assert_array_equal(episode.steps["reward"], [-1.0, -1.0, 0.0])
    assert "true_success" not in episode.info


def test_without_a_success_model_a_missing_object_state_is_an_error(task: ValveTask) -> None:
    """The task's rule reads the object: without a measurement of it that is named, not a NaN
    reward."""
    pixels = task.with_observation("pixels")
    machine = EpisodeMachine(pixels, EpisodeConfig(seed=3), tag="/hand")
    with pytest.raises(ValueError, match=r"/hand: the task's reward needs the object's state"):
        run_episode(machine, ObjectlessRobot(pixels), ZERO, frame=blank_view)


def blank_view(now_s: float) -> ViewFrame:
    return ViewFrame(stamp_s=now_s, color=np.zeros((64, 64, 3), np.uint8), depth=None)
