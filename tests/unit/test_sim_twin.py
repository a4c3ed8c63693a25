"""The Twin: calibration order, effort units, randomisation, latency, rendering."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import robot_rl.sim_twin  # noqa: F401  (sets MUJOCO_GL before mujoco renders)
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin import RandomizationConfig, Twin
from robot_rl.sim_twin.servos import SERVO_SPECS


@pytest.fixture(scope="module")
def cal():
    return load_robot("dclaw")


def test_calibration_order_and_state(cal) -> None:
    twin = Twin(cal)
    assert twin.joint_names == cal.joint_names and twin.object_joint == "valve"
    start = np.linspace(-0.3, 0.3, 9)
    twin.reset(start, 1.0)
    np.testing.assert_allclose(twin.joint_positions_rad(), start)
    assert twin.object_position() == pytest.approx(1.0) and twin.time_s == 0.0
    twin.set_joint_targets(start + 0.1)
    twin.advance(0.05)
    assert twin.time_s == pytest.approx(0.05)
    assert np.all(twin.joint_positions_rad() > start + 0.02)
    assert twin.site_positions_m(["f0_tip_site", "f2_tip_site"]).shape == (2, 3)
    with pytest.raises(ValueError, match="expected shape"):
        twin.set_joint_targets(np.zeros(8))


def test_effort_is_servo_current(cal) -> None:
    twin = Twin(cal)
    spec = SERVO_SPECS["XM430-W210"]
    # moving freely (at the profile velocity) takes little current, as on a real servo
    twin.reset(np.zeros(9), 0.0)
    twin.set_joint_targets(np.full(9, 0.6))
    peak_a = 0.0
    for _ in range(8):
        twin.advance(0.05)
        peak_a = max(peak_a, float(np.abs(twin.joint_efforts_a()).max()))
    np.testing.assert_allclose(twin.joint_positions_rad(), 0.6, atol=0.02)
    assert peak_a < 0.25 * spec.stall_current_a
    # a joint held by a stop while its goal is far away saturates at the stall current
    twin.model.jnt_range[twin.model.joint("f0_mid").id] = (-0.01, 0.01)
    twin.reset(np.zeros(9), 0.0)
    twin.set_joint_targets(np.full(9, 0.6))
    twin.advance(0.5)
    assert abs(twin.joint_efforts_a()[1]) == pytest.approx(spec.stall_current_a, rel=1e-3)
    assert abs(twin.joint_efforts_a()[0]) < 0.25 * spec.stall_current_a


def test_servo_goals_are_followed_at_the_profile_velocity(cal) -> None:
    twin = Twin(cal)
    twin.reset(np.zeros(9), 0.0)
    twin.set_joint_targets(np.full(9, 0.6))
    twin.advance(0.05)
    # the setpoint ramps at the joint's velocity limit (the Profile Velocity the driver writes)
    np.testing.assert_allclose(twin.joint_targets_rad(), cal.velocity_limit_rad_s * 0.05,
                               rtol=1e-6)
    twin.advance(0.5)
    np.testing.assert_allclose(twin.joint_targets_rad(), 0.6)


def test_randomisation_is_seeded_and_in_range(cal) -> None:
    config = RandomizationConfig(friction_scale=(0.5, 1.5), damping_scale=(0.8, 1.2),
                                 mass_scale=(0.9, 1.1), actuator_gain_scale=(0.7, 1.3),
                                 camera_position_m=0.01, joint_position_noise_rad=0.01)
    nominal = Twin(cal)
    twin = Twin(cal, randomization=config, seed=1)
    m, n = twin.model, nominal.model
    for a, b, (lo, hi) in [(m.geom_friction[:, 0], n.geom_friction[:, 0], config.friction_scale),
                           (m.dof_damping, n.dof_damping, config.damping_scale),
                           (m.body_mass[1:], n.body_mass[1:], config.mass_scale)]:
        ratio = a[b > 0] / b[b > 0]
        assert np.all((ratio >= lo) & (ratio <= hi)) and np.std(ratio) > 0
    kp = m.actuator_gainprm[:, 0] / n.actuator_gainprm[:, 0]
    assert np.all((kp >= 0.7) & (kp <= 1.3))
    np.testing.assert_allclose(m.actuator_biasprm[:, 1], -m.actuator_gainprm[:, 0])
    assert not np.allclose(m.cam_pos, n.cam_pos)
    assert not np.allclose(twin.joint_positions_rad(), nominal.joint_positions_rad())
    drawn = m.dof_damping.copy()
    twin.reset(np.zeros(9), 0.0, seed=1)
    np.testing.assert_array_equal(m.dof_damping, drawn)        # same seed, same draw
    twin.reset(np.zeros(9), 0.0, seed=2)
    assert not np.array_equal(m.dof_damping, drawn)


def test_action_latency_delays_the_target(cal) -> None:
    def move_after(latency_s: float) -> float:
        config = RandomizationConfig(action_latency_s=(latency_s, latency_s))
        twin = Twin(cal, randomization=config, seed=0)
        twin.reset(np.zeros(9), 0.0)
        twin.set_joint_targets(np.full(9, 0.3))
        twin.advance(0.06)
        return float(twin.joint_positions_rad()[0])
    assert move_after(0.0) > 0.05             # the setpoint ramps at 3 rad/s: 0.18 rad by now
    assert abs(move_after(0.06)) < 0.01       # contacts at this pose nudge it a little
    assert 0.0 < move_after(0.02) < move_after(0.0)


def test_default_config_is_off() -> None:
    assert not RandomizationConfig().enabled
    assert dataclasses.replace(RandomizationConfig(), mass_scale=(0.9, 1.1)).enabled


def test_render_rgb_and_depth(cal) -> None:
    twin = Twin(cal)
    try:
        rgb, depth = twin.render(160, 120, depth=True)
    except Exception as err:  # no EGL/OSMesa on this machine
        pytest.skip(f"no headless GL backend: {err}")
    assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8 and rgb.std() > 5
    assert depth.shape == (120, 160) and depth.dtype == np.float32
    assert 0.2 < np.median(depth) < 1.5          # the camera is about half a metre away
    twin.close()
