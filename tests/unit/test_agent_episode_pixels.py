"""The episode state machine on a pixel task, against the real twin and its rendered views: the
policy acts on {vector without the object, view}, the episode keeps each step's view, and a step
without a view is skipped by name."""

from __future__ import annotations

import math

import numpy as np
from test_agent_episode import PERIOD_S, TwinRobot

from robot_rl.agent.episode import EpisodeConfig, EpisodeMachine, Phase
from robot_rl.agent.frames import NO_FRAME, LatestFrames, ViewFrame
from robot_rl.robot_config import load_robot
from robot_rl.tasks.base import TaskState
from robot_rl.tasks.camera import network_image
from robot_rl.tasks.valve import ValveTask


def pixel_task() -> ValveTask:
    return ValveTask(load_robot("dclaw"), {"observation": "pixels", "episode_length_steps": 20})


def without_object(state: TaskState) -> TaskState:
    """The state as a cell without a valve sensor has it: no object, no site."""
    return TaskState(state.joint_positions_rad, state.joint_velocities_rad_s,
                     object_position=math.nan, object_velocity=math.nan, sites_m={})


def test_the_policy_acts_on_the_view_and_a_vector_without_the_object() -> None:
    task = pixel_task()
    robot = TwinRobot(task)
    machine = EpisodeMachine(task, EpisodeConfig(seed=3))
    seen: list[dict] = []
    expected_vectors: list[np.ndarray] = []
    now, finished = 0.0, None
    try:
        for _ in range(200):
            now += PERIOD_S
            robot.publish(now)
            state = robot.latest.task_state(now)
            color, _ = robot.twin.render_view(task.image)
            frame = ViewFrame(now, color, None)
            if machine.phase is Phase.RUNNING or machine.reset_done_s is not None:
                expected_vectors.append(task.observation(
                    without_object(state), machine.reset.goal, machine._previous_action))
            out = machine.tick(now, state, robot.latest.received_s,
                               lambda obs: seen.append(obs) or np.zeros(9, np.float32),
                               frame=frame)
            for name, fields in out.events:
                if name == "reset":
                    robot.reset(fields)
                    machine.on_status({"event": "reset_done", "episode": machine.episode}, now)
            if out.targets_rad is not None:
                robot.twin.set_joint_targets(out.targets_rad)
            robot.twin.advance(PERIOD_S)
            if (finished := out.finished) is not None:
                break
    finally:
        robot.twin.close()
    assert finished is not None and finished.length == task.episode_length_steps
    assert all(set(obs) == {"state", "image"} for obs in seen)
    assert seen[0]["image"].shape == task.image.shape and seen[0]["image"].dtype == np.uint8
    # the vector is what the task makes of the state with no object in it (the object's state
    # leaking into the policy's input, e.g. through the state layout, fails here)
    for obs, vector in zip(seen, expected_vectors):
        np.testing.assert_array_equal(obs["state"], vector)
    steps = finished.steps
    assert steps["camera_color"].dtype == np.uint8
    assert steps["camera_color"].shape == (finished.length, *task.image.shape)
    for t in range(finished.length):  # each step keeps the view its action answered
        np.testing.assert_array_equal(network_image(steps["camera_color"][t], None, task.image),
                                      seen[t]["image"])
        np.testing.assert_array_equal(steps["observation"][t], seen[t]["state"])
    assert len({c.tobytes() for c in steps["camera_color"]}) > 1  # the fingers moved


def test_a_step_without_a_view_is_skipped_and_named() -> None:
    task = pixel_task()
    robot = TwinRobot(task)
    machine = EpisodeMachine(task, EpisodeConfig(seed=3, max_stale_s=10.0), tag="/hand")
    calls: list[dict] = []
    try:
        robot.publish(0.0)
        out = machine.tick(0.0, robot.latest.task_state(0.0), 0.0, calls.append)  # reset
        robot.reset(out.events[0][1])
        machine.on_status({"event": "reset_done", "episode": 0}, 0.0)
        robot.publish(0.05)
        reason = f"{NO_FRAME}: no camera frame received yet"
        out = machine.tick(0.05, robot.latest.task_state(0.05), 0.05, calls.append, reason)
        assert machine.phase is Phase.RESETTING and out.targets_rad is None and not calls
        assert out.warnings == [f"/hand: episode 0 waits to start: {reason}"]
        color, _ = robot.twin.render_view(task.image)
        out = machine.tick(0.1, robot.latest.task_state(0.1), 0.05,
                           lambda obs: calls.append(obs) or np.zeros(9, np.float32),
                           frame=ViewFrame(0.05, color, None))
        assert machine.phase is Phase.RUNNING and out.targets_rad is not None and len(calls) == 1
        out = machine.tick(0.15, robot.latest.task_state(0.15), 0.05, calls.append, reason)
        assert out.targets_rad is None and len(calls) == 1
        assert out.warnings == [f"/hand: episode 0: skipping a step: {reason}"]
    finally:
        robot.twin.close()


def test_an_episode_start_takes_no_frame_from_before_its_reset() -> None:
    view = pixel_task().image
    frames = LatestFrames(view, full_frames=False)
    old = np.zeros(view.shape, np.uint8)
    frames.on_color(old, 10.00)
    frame, reason = frames.pair(10.02, not_before_s=10.01)
    assert frame is None and reason.startswith(NO_FRAME) and "reset" in reason
    new = np.full(view.shape, 7, np.uint8)
    frames.on_color(new, 10.04)
    frame, reason = frames.pair(10.02, not_before_s=10.01)
    assert reason is None and frame.stamp_s == 10.04  # the older frame was closer in time
    assert frames.pair(10.02)[0].stamp_s == 10.00
