"""Latest-state assembly, joint reordering, freshness, topic names and episode events."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.agent.events import EventError, decode_event, encode_event
from robot_rl.agent.observation import LatestState
from robot_rl.nodes.topics import robot_topics


def test_joints_are_reordered_into_calibration_order() -> None:
    latest = LatestState(["a", "b", "c"], max_age_s=0.1)
    latest.on_joints(["c", "a", "b"], [3.0, 1.0, 2.0], [], stamp_s=5.0, received_s=10.0)
    latest.on_object([0.5], [0.25], received_s=10.0)
    state = latest.task_state(10.05)
    assert state is not None
    np.testing.assert_array_equal(state.joint_positions_rad, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(state.joint_velocities_rad_s, [0.0, 0.0, 0.0])
    assert (state.object_position, state.object_velocity) == (0.5, 0.25)


def test_missing_joint_is_named() -> None:
    latest = LatestState(["a", "b"], max_age_s=0.1)
    with pytest.raises(ValueError, match=r"lacks joints \['b'\]"):
        latest.on_joints(["a", "x"], [1.0, 2.0], [], 0.0, 0.0)


def test_stale_or_missing_state_is_reported() -> None:
    latest = LatestState(["a"], max_age_s=0.15)
    assert latest.staleness(0.0) == "no joint state received yet"
    latest.on_joints(["a"], [1.0], [0.0], 0.0, received_s=1.0)
    assert latest.staleness(1.0) == "no object state received yet"
    latest.on_object([0.0], [], received_s=1.1)
    assert latest.staleness(1.1) is None and latest.received_s == 1.0
    reason = latest.staleness(1.2)
    assert reason is not None and reason.startswith("joint state is 200 ms old")
    assert latest.task_state(1.2) is None


def test_robot_topics() -> None:
    one = robot_topics("hand")
    assert (one.joint_states, one.command_raw, one.object_state, one.episode_status) == (
        "/hand/joint_states", "/hand/command_raw", "/object/state", "/hand/episode_status")
    two = robot_topics("/r2/hand/")
    assert (two.command, two.object_state) == ("/r2/hand/command", "/r2/object/state")
    assert robot_topics("/r2/hand", "/valve2").object_state == "/valve2"
    with pytest.raises(ValueError):
        robot_topics("/")


def test_events_round_trip_and_bad_ones_are_named() -> None:
    text = encode_event("reset", 3, joint_positions_rad=np.zeros(2), goal=np.float32(0.5))
    assert decode_event(text) == {"event": "reset", "episode": 3,
                                  "joint_positions_rad": [0.0, 0.0], "goal": 0.5}
    with pytest.raises(EventError, match="/hand/episode: not JSON"):
        decode_event("{", "/hand/episode")
    with pytest.raises(EventError, match="'episode' must be an integer"):
        decode_event('{"event": "end", "episode": "3"}')
    with pytest.raises(EventError):
        encode_event("explode", 1)


@pytest.mark.parametrize(("env_id", "object_joint", "object_range"), [
    ("robot_rl/DrawerOpen-v0", "drawer", (0.0, 0.2)),
    ("robot_rl/ValveTurn-v0", "valve", (-3.0, 3.0))])
def test_sites_on_the_graph_match_the_twins_mujoco_sites(
        env_id: str, object_joint: str, object_range: tuple[float, float]) -> None:
    """The acting side computes the hook tip and handle, or the fingertips, by FK (no simulator
    on a real cell); they must be where MuJoCo puts them, with the object and the robot anywhere,
    so that the learner's observations over DDS equal the env's."""
    import gymnasium as gym

    import robot_rl.sim_twin  # noqa: F401 - registers the envs
    from robot_rl.agent.sites import task_sites

    env = gym.make(env_id).unwrapped
    env.reset(seed=3)
    task, twin = env.task, env.twin
    sites = task_sites(task)  # what the acting side and the recorder use
    assert sites is not None
    assert sites.object_joint == twin.object_joint == object_joint
    rng = np.random.default_rng(0)
    latest = LatestState(task.calibration.joint_names, 1.0, sites)
    for _ in range(5):
        joints = rng.uniform(task.actions.lower_rad, task.actions.upper_rad)
        position = float(rng.uniform(*object_range))
        twin.reset(joints, position)  # MuJoCo's forward pass puts the sites
        mujoco_sites = twin.site_positions_m(task.required_sites)
        latest.on_joints(task.calibration.joint_names, joints, np.zeros(len(joints)), 0.0, 0.0)
        latest.on_object([position], [0.0], 0.0)
        state = latest.task_state(0.0)
        for name, expected in zip(task.required_sites, mujoco_sites):
            np.testing.assert_allclose(state.sites_m[name], expected, atol=1e-9)
        np.testing.assert_allclose(task.observation(state, 0.5, np.zeros(task.n_joints)),
                                   task.observation(env.state(), 0.5, np.zeros(task.n_joints)),
                                   atol=1e-6)
    env.close()


def test_an_optional_object_state_is_never_invented() -> None:
    """``object_optional``: a state on joints alone, its object NaN until a fresh sample comes
    and again once that sample is older than the limit; a required one still waits for it."""
    latest = LatestState(["a"], max_age_s=0.15, object_optional=True)
    latest.on_joints(["a"], [1.0], [0.0], stamp_s=0.9, received_s=1.0)
    state = latest.task_state(1.0)
    assert state is not None and np.isnan(state.object_position) and state.sites_m == {}
    assert latest.stamp_s == 0.9 and latest.received_s == 1.0
    latest.on_object([0.5], [0.1], received_s=1.05)
    state = latest.task_state(1.1)
    assert state is not None and state.object_position == 0.5
    latest.on_joints(["a"], [1.0], [0.0], stamp_s=1.2, received_s=1.3)
    state = latest.task_state(1.3)  # the object sample is 250 ms old: not a measurement now
    assert state is not None and np.isnan(state.object_position)
