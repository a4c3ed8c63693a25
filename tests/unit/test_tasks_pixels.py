"""Pixel tasks' observation vectors (no object state may reach them) and the camera view's crop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.config import ConfigError, from_dict
from robot_rl.robot_config import load_robot
from robot_rl.tasks import DrawerTask, DrawerTaskConfig, TaskState, ValveTask, ValveTaskConfig
from robot_rl.tasks.camera import (
    ImageObservationConfig,
    crop_box,
    network_image,
    preprocess_color,
    preprocess_depth,
)


def _valve(observation: str = "pixels") -> ValveTask:
    return ValveTask(load_robot("dclaw"), {"observation": observation})  # over the robot's


def _drawer(observation: str = "pixels") -> DrawerTask:
    return DrawerTask(load_robot("arm6"), {"observation": observation})  # over the robot's


def _state(n: int, object_position: float, object_velocity: float, sites: dict) -> TaskState:
    rng = np.random.default_rng(0)  # the same joints for every call
    return TaskState(rng.normal(size=n), rng.normal(size=n), object_position, object_velocity,
                     sites_m=sites)


def _sites(names: tuple[str, ...], offset: float) -> dict[str, np.ndarray]:
    return {name: np.array([0.1 + offset, -0.05 * i, 0.05]) for i, name in enumerate(names)}


@pytest.mark.parametrize("make", [_valve, _drawer])
def test_a_pixel_task_never_reads_the_object(make) -> None:
    """Two states that differ only in the object (its position, velocity and every site derived
    from it) give the same observation; so does an object that was never measured (NaN)."""
    task = make()
    n, sites = task.n_joints, task.state_variant().required_sites
    action = np.linspace(-1, 1, n)
    first = task.observation(_state(n, 0.3, 0.1, _sites(sites, 0.0)), 1.0, action)
    second = task.observation(_state(n, -2.0, -4.0, _sites(sites, 0.3)), 1.0, action)
    unmeasured = task.observation(_state(n, math.nan, math.nan, {}), 1.0, action)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, unmeasured)
    # ...while the same change reaches a state task's observation
    state_task = task.state_variant()
    assert not np.array_equal(
        state_task.observation(_state(n, 0.3, 0.1, _sites(sites, 0.0)), 1.0, action),
        state_task.observation(_state(n, -2.0, -4.0, _sites(sites, 0.3)), 1.0, action))


def test_valve_pixel_layout_is_proprioception_and_the_goal() -> None:
    task = _valve()
    assert list(task.layout) == ["joint_position_rad", "joint_velocity_rad_s", "previous_action",
                                 "goal_cos_sin"]
    assert task.observation_size == 29 and task.uses_pixels and task.image is not None
    state = _state(9, 0.3, 0.0, {})
    obs = task.observation(state, goal=2.0, previous_action=np.full(9, 0.5))
    np.testing.assert_allclose(task.field(obs, "goal_cos_sin"), [math.cos(2.0), math.sin(2.0)],
                               rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "joint_position_rad"),
                               state.joint_positions_rad, rtol=1e-6)
    np.testing.assert_allclose(task.field(obs, "previous_action"), 0.5)
    # the goal moves the observation: it is the one thing a pixel valve task is told
    other = task.observation(state, goal=-1.0, previous_action=np.full(9, 0.5))
    assert not np.array_equal(obs, other)


def test_drawer_pixel_layout() -> None:
    task = _drawer()
    assert list(task.layout) == ["joint_position_rad", "joint_velocity_rad_s", "previous_action",
                                 "goal_opening_m"]
    assert task.observation_size == 19


def test_state_variant_is_the_same_task_with_the_state_layout() -> None:
    pixels, state = _valve(), _valve("state")
    variant = pixels.state_variant()
    assert variant.layout == state.layout and not variant.uses_pixels and variant.image is None
    assert variant.config.image == pixels.config.image and state.state_variant() is state
    assert state.image is None  # a state task has no view, whatever its config's image says


def test_image_declaration_loads_from_yaml_data_and_bad_crops_are_named() -> None:
    config = from_dict(ValveTaskConfig, {"observation": "pixels",
                                         "image": {"width": 48, "height": 40, "depth": True}},
                       source="valve.yaml")
    assert (config.image.width, config.image.height, config.image.channels) == (48, 40, 4)
    # a view that does not name its crop keeps the task's framing of the valve
    task = ValveTask(load_robot("dclaw"), config)
    assert task.image is not None and task.image.crop == ValveTask.default_crop != (0, 0, 1, 1)
    with pytest.raises(ConfigError, match=r"valve.yaml: image: crop .* x0 < x1"):
        from_dict(ValveTaskConfig, {"image": {"crop": [0.5, 0.0, 0.4, 1.0]}},
                  source="valve.yaml")
    with pytest.raises(ConfigError, match=r"x: image.crop: 1.5 is out of range"):
        from_dict(ValveTaskConfig, {"image": {"crop": [0.0, 0.0, 1.5, 1.0]}}, source="x")
    with pytest.raises(ConfigError, match="observation: 'camera' is not one of"):
        from_dict(DrawerTaskConfig, {"observation": "camera"}, source="x")


def test_crop_and_resize_keep_the_geometry() -> None:
    """A bright square inside the crop lands where the crop maps it, averaged by area."""
    view = ImageObservationConfig(width=20, height=10, crop=(0.25, 0.5, 0.75, 1.0))
    frame = np.zeros((40, 80, 3), np.uint8)
    assert crop_box(80, 40, view.crop) == (20, 20, 60, 40)
    frame[30:34, 40:44] = 200  # inside the crop at (20..24, 10..14): 2x2 px at the view's scale
    out = preprocess_color(frame, view)
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8
    assert out[5, 10, 0] == 200 and out[5:7, 10:12].min() == 200
    assert out.sum() == 4 * 200 * 3  # area averaging: nothing spreads, nothing is lost
    frame[0:20] = 255  # outside the crop: not seen
    np.testing.assert_array_equal(preprocess_color(frame, view), out)


def test_depth_resizes_by_nearest_and_keeps_no_return_as_zero() -> None:
    view = ImageObservationConfig(width=4, height=4, depth=True)
    depth = np.zeros((8, 8), np.uint16)
    depth[:, 4:] = 1500
    out = preprocess_depth(depth, view)
    assert out.dtype == np.uint16 and set(np.unique(out)) == {0, 1500}
    with pytest.raises(ValueError, match=r"depth frame: expected \(H, W\) uint16 mm"):
        preprocess_depth(depth.astype(np.float32), view)


def test_network_image_stacks_colour_and_scaled_depth() -> None:
    view = ImageObservationConfig(width=2, height=2, depth=True, depth_range_m=2.0)
    color = np.full((2, 2, 3), 7, np.uint8)
    depth = np.array([[0, 1000], [2000, 9000]], np.uint16)
    out = network_image(color, depth, view)
    assert out.shape == (2, 2, 4) == view.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 3], [[0, 128], [255, 255]])
    np.testing.assert_array_equal(out[..., :3], color)
    with pytest.raises(ValueError, match="no depth frame"):
        network_image(color, None, view)
    assert network_image(color, None, ImageObservationConfig(width=2, height=2)).shape == (2, 2, 3)
