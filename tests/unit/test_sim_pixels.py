"""The twin's camera views for pixel tasks: visible fingers and valve marker, the Dict observation,
seeded camera randomisation, one renderer per view size (real MuJoCo rendering, headless EGL)."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robot_rl.sim_twin  # noqa: F401  (registers robot_rl/*)
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.experts import make_expert, run_episode
from robot_rl.sim_twin.randomization import RandomizationConfig
from robot_rl.sim_twin.twin import Twin

VALVE = "robot_rl/ValveTurn-v0"
DRAWER = "robot_rl/DrawerOpen-v0"
PIXELS = {"config": {"observation": "pixels"}}
RENDERED_GROUPS = (0, 1, 2)  # what mjv_defaultOption draws


def _pixel_env(env_id: str, **kwargs) -> gym.Env:
    env = gym.make(env_id, **PIXELS, **kwargs)
    try:
        env.reset(seed=0)
    except Exception as err:  # no EGL/OSMesa on this machine
        pytest.skip(f"no headless GL backend: {err}")
    return env


@pytest.mark.parametrize("env_id", [VALVE, DRAWER])
def test_pixel_env_passes_the_checker_with_a_dict_observation(env_id: str) -> None:
    env = _pixel_env(env_id)
    space = env.observation_space
    task = env.unwrapped.task
    assert isinstance(space, gym.spaces.Dict) and set(space) == {"state", "rgb"}
    assert space["state"].shape == (task.observation_size,)
    assert space["rgb"].shape == (task.image.height, task.image.width, 3)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_depth_joins_the_observation_when_the_view_declares_it() -> None:
    env = gym.make(VALVE, config={"observation": "pixels", "image": {"depth": True}})
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["depth"].dtype == np.uint16
    # the valve is about half a metre from the camera, the table behind it farther
    assert 300 < np.median(obs["depth"]) < 1000
    env.close()


def test_the_policy_vector_does_not_see_the_valve_but_the_image_does() -> None:
    """The same reset with the valve turned a third of a turn: the policy's vector is unchanged,
    the image changes (the red spoke moved), though the spokes alone look the same."""
    env = _pixel_env(VALVE)
    start = {"object_position": 0.3, "goal": 1.0}
    first, info = env.reset(seed=5, options=start)
    turned, turned_info = env.reset(seed=5, options={**start, "object_position": 0.3 + 2 * math.pi / 3})
    np.testing.assert_array_equal(first["state"], turned["state"])
    again, _ = env.reset(seed=5, options=start)
    np.testing.assert_array_equal(first["rgb"], again["rgb"])  # rendering is deterministic
    changed = np.abs(first["rgb"].astype(int) - turned["rgb"].astype(int)).max(axis=-1)
    assert (changed > 60).sum() >= 10
    # the privileged state layout, for experts and baselines, does see it
    assert not np.array_equal(info["state_observation"], turned_info["state_observation"])
    env.close()


def test_every_finger_link_is_visible() -> None:
    """Each proximal and distal link carries a rendered capsule, so the fingertip spheres are
    attached to something a camera sees (the collision capsules are group 3, not drawn)."""
    model = mujoco.MjModel.from_xml_path(str(load_robot("dclaw").model_path()))
    for finger in range(3):
        for link, min_length_m in (("proximal", 0.05), ("distal", 0.05)):
            body = model.body(f"f{finger}_{link}_link").id
            visible = [g for g in range(model.ngeom) if model.geom_bodyid[g] == body
                       and model.geom_group[g] in RENDERED_GROUPS and model.geom_rgba[g, 3] > 0
                       and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE]
            assert visible, f"f{finger}_{link}_link has no rendered link geometry"
            assert max(2 * model.geom_size[g, 1] for g in visible) >= min_length_m


def _view(twin: Twin) -> np.ndarray:
    from robot_rl.tasks import ValveTask

    task = ValveTask(twin.calibration, {"observation": "pixels"})
    return twin.render_view(task.image)[0]


def test_camera_randomisation_is_seeded_and_moves_the_view() -> None:
    calibration = load_robot("dclaw")
    config = RandomizationConfig(camera_position_m=0.01, camera_target_m=0.01,
                                 camera_fovy_deg=2.0)
    views, models = [], []
    for seed in (1, 1, 2):
        twin = Twin(calibration, randomization=config)
        twin.reset(np.zeros(9), 0.0, seed=seed)
        try:
            views.append(_view(twin))
        except Exception as err:  # no EGL/OSMesa on this machine
            pytest.skip(f"no headless GL backend: {err}")
        models.append((twin.model.cam_pos.copy(), twin.model.cam_fovy.copy(),
                       twin.model.body("view_target").pos.copy()))
        twin.close()
    np.testing.assert_array_equal(views[0], views[1])
    for same, other in zip(models[0], models[2]):
        assert not np.array_equal(same, other)
    assert not np.array_equal(views[0], views[2])
    nominal = Twin(calibration)
    nominal.reset(np.zeros(9), 0.0, seed=1)
    assert nominal.model.cam_fovy[0] == pytest.approx(42.5)
    np.testing.assert_allclose(nominal.model.body("view_target").pos, [0, 0, 0.06])
    nominal.close()


def test_only_an_empty_target_body_is_moved() -> None:
    """A camera aimed at a body with geometry (the valve's rotor) must not move that body."""
    twin = Twin(load_robot("dclaw"), randomization=RandomizationConfig(camera_target_m=0.05))
    randomizer = twin._randomizer
    assert [twin.model.body(int(b)).name for b in randomizer.camera_targets] == ["view_target"]
    rotor = twin.model.body("valve_rotor").pos.copy()
    twin.reset(np.zeros(9), 0.0, seed=3)
    np.testing.assert_array_equal(twin.model.body("valve_rotor").pos, rotor)
    twin.close()


def test_views_reuse_their_renderer() -> None:
    twin = Twin(load_robot("dclaw"))
    try:
        first = _view(twin)
    except Exception as err:  # no EGL/OSMesa on this machine
        pytest.skip(f"no headless GL backend: {err}")
    for _ in range(3):
        _view(twin)
    assert len(twin._renderers) == 1 and first.shape == (64, 64, 3)
    # the fast settings were for that renderer only: the model keeps its own
    assert twin.model.vis.quality.offsamples == 4 and twin.model.vis.quality.numslices == 28
    twin.close()


@pytest.mark.parametrize("env_id", [VALVE, DRAWER])
def test_expert_acts_on_the_twin_state_and_episodes_hold_the_frames(env_id: str) -> None:
    """The scripted expert reads the privileged state (the policy's vector has no valve), so it
    succeeds as it does in a state task; its episode keeps one frame per step and the state
    layout beside the policy's vector."""
    env = _pixel_env(env_id)
    expert = make_expert(env, 0.0, seed=0)
    episode = run_episode(env, expert, seed=0)
    n = len(episode["reward"])
    task = env.unwrapped.task
    assert episode["info"]["success"]
    assert episode["observation"].shape == episode["next_observation"].shape == \
        (n, task.observation_size)
    assert episode["camera_color"].shape == (n, 64, 64, 3)
    assert episode["camera_color"].dtype == np.uint8
    assert episode["state_observation"].shape == (n, task.state_variant().observation_size)
    np.testing.assert_array_equal(episode["state_observation"][1:],
                                  episode["next_state_observation"][:-1])
    np.testing.assert_array_equal(episode["observation"][1:], episode["next_observation"][:-1])
    assert not np.array_equal(episode["camera_color"][0], episode["camera_color"][-1])
    env.close()
