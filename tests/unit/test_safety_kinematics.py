"""The safety kinematics: MuJoCo's mj_kinematics on the robot's model, bound to the caller's joints.

Checked against closed-form kinematics (independent of MuJoCo), against the twin's own state, and
on models the former numpy MJCF subset parser refused (replicate, a URDF).
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from robot_rl.robot_config import load_robot
from robot_rl.safety.kinematics import Kinematics, MjcfError

# A free body and a ball joint come first, so the robot's joints do not start at qpos address 0;
# default classes, a frame, degrees, a ref and a slide.
TEST_MJCF = """
<mujoco model="kin_test">
  <compiler angle="degree"/>
  <default>
    <joint axis="0 1 0" type="hinge"/>
    <default class="slider"><joint type="slide" axis="1 0 0"/></default>
  </default>
  <worldbody>
    <site name="world_site" pos="0.1 0.2 0.3"/>
    <body name="loose" pos="0.3 0 0.1">
      <freejoint name="free"/>
      <geom type="sphere" size="0.02"/>
      <site name="loose_site" pos="0 0 0.05"/>
      <body name="balljoint" pos="0 0 0.1">
        <joint name="ball" type="ball"/>
        <geom type="sphere" size="0.01"/>
      </body>
    </body>
    <body name="base" pos="0 0 {h}">
      <joint name="shoulder" ref="{ref_deg}"/>
      <geom type="capsule" fromto="0 0 0 {l1} 0 0" size="0.01"/>
      <frame pos="{l1} 0 0">
        <body name="fore">
          <joint name="elbow"/>
          <geom type="capsule" fromto="0 0 0 {l2} 0 0" size="0.01"/>
          <body name="slider" pos="{l2} 0 0">
            <joint name="extend" class="slider"/>
            <geom type="sphere" size="0.01"/>
            <site name="tip" pos="0 0 0"/>
          </body>
        </body>
      </frame>
    </body>
  </worldbody>
</mujoco>
"""
H, L1, L2, REF_DEG = 0.1, 0.3, 0.2, 15.0
JOINTS = ("shoulder", "elbow", "extend")


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "kin_test.xml"
    path.write_text(TEST_MJCF.format(h=H, l1=L1, l2=L2, ref_deg=REF_DEG))
    return path


def planar_tip(q: np.ndarray) -> np.ndarray:
    """Closed form: two hinges about +y (x toward -z for a positive angle), then a slide along
    the forearm. The shoulder's angle counts from its ref, as MuJoCo's qpos does."""
    a1 = q[..., 0] - np.deg2rad(REF_DEG)
    a12 = a1 + q[..., 1]
    reach = L2 + q[..., 2]
    x = L1 * np.cos(a1) + reach * np.cos(a12)
    z = H - L1 * np.sin(a1) - reach * np.sin(a12)
    return np.stack([x, np.zeros_like(x), z], axis=-1)


def test_site_positions_match_closed_form(tmp_path: Path) -> None:
    kin = Kinematics.from_mjcf(_write(tmp_path), JOINTS)
    rng = np.random.default_rng(0)
    q = rng.uniform(-3.0, 3.0, size=(60, 3))
    q[:, 2] *= 0.02  # the slide, in m
    got = kin.site_positions_m(q, ("tip",))
    np.testing.assert_allclose(got[:, 0], planar_tip(q), atol=1e-12)
    np.testing.assert_allclose(kin.site_positions_m(q[7], ("tip",))[0], planar_tip(q[7]),
                               atol=1e-12)


def test_joint_order_is_the_callers(tmp_path: Path) -> None:
    """Joints given in another order than the model's (an index array, not a slice)."""
    kin = Kinematics.from_mjcf(_write(tmp_path), ("extend", "shoulder", "elbow"))
    q = np.array([[0.01, -0.4, 0.9], [0.0, 1.2, -0.3]])
    np.testing.assert_allclose(kin.site_positions_m(q, ["tip"])[:, 0],
                               planar_tip(q[:, [1, 2, 0]]), atol=1e-12)


def test_other_joints_stay_at_their_reference(tmp_path: Path) -> None:
    """The free body and the ball joint keep qpos0 whatever the robot's joints do."""
    kin = Kinematics.from_mjcf(_write(tmp_path), JOINTS)
    q = np.random.default_rng(1).uniform(-1.0, 1.0, size=(5, 3))
    got = kin.site_positions_m(q, ("loose_site", "world_site"))
    np.testing.assert_allclose(got[:, 0], np.tile([0.3, 0.0, 0.15], (5, 1)), atol=1e-12)
    np.testing.assert_allclose(got[:, 1], np.tile([0.1, 0.2, 0.3], (5, 1)), atol=1e-12)


def test_errors_name_the_file_and_the_element(tmp_path: Path) -> None:
    path = _write(tmp_path)
    with pytest.raises(MjcfError, match=r"kin_test.xml: no joint named nope"):
        Kinematics.from_mjcf(path, ("shoulder", "nope"))
    with pytest.raises(MjcfError, match=r"ball \(ball\).*not hinge or slide"):
        Kinematics.from_mjcf(path, ("shoulder", "ball"))
    kin = Kinematics.from_mjcf(path, JOINTS)
    with pytest.raises(MjcfError, match=r"kin_test.xml: no site named f0_tip_site"):
        kin.site_positions_m(np.zeros(3), ("tip", "f0_tip_site"))
    with pytest.raises(ValueError, match=r"expected 3 joint positions"):
        kin.site_positions_m(np.zeros(4), ("tip",))
    bad = tmp_path / "bad.xml"
    bad.write_text('<mujoco><worldbody><body pos="0 0"><joint name="a"/></body></worldbody>'
                   '</mujoco>')
    with pytest.raises(MjcfError, match=r"bad.xml: MuJoCo cannot load the model: .*pos"):
        Kinematics.from_mjcf(bad, ("a",))
    with pytest.raises(MjcfError, match=r"missing.xml: cannot read the model"):
        Kinematics.from_mjcf(tmp_path / "missing.xml", ("a",))


def test_include_is_followed(tmp_path: Path) -> None:
    (tmp_path / "arm.xml").write_text(
        '<mujoco><worldbody><body name="l" pos="0 0 0.1"><joint name="a" axis="1 0 0"/>'
        '<geom size="0.01"/><site name="s" pos="0 0.2 0"/></body></worldbody></mujoco>')
    main = tmp_path / "main.xml"
    main.write_text('<mujoco><compiler angle="radian"/><include file="arm.xml"/></mujoco>')
    kin = Kinematics.from_mjcf(main, ("a",))
    q = np.array([[0.3], [-1.0]])
    expected = np.stack([np.zeros(2), 0.2 * np.cos(q[:, 0]), 0.1 + 0.2 * np.sin(q[:, 0])], -1)
    np.testing.assert_allclose(kin.site_positions_m(q, ("s",))[:, 0], expected, atol=1e-12)


def test_models_the_numpy_parser_refused(tmp_path: Path) -> None:
    """``<replicate>`` (the former parser: 'not supported by the safety kinematics') and a URDF
    (its root is not <mujoco>): MuJoCo compiles both, so the workspace check takes both."""
    replicated = tmp_path / "fingers.xml"
    replicated.write_text(
        '<mujoco><compiler angle="radian"/><worldbody>'
        '<replicate count="3" euler="0 0 2.0943951">'
        '<body name="finger" pos="0.1 0 0"><joint name="flex" axis="0 1 0"/><geom size="0.01"/>'
        '<site name="fingertip" pos="0 0 0.05"/></body></replicate></worldbody></mujoco>')
    model = mujoco.MjModel.from_xml_path(str(replicated))
    joints = tuple(model.joint(i).name for i in range(model.njnt))
    tips = tuple(model.site(i).name for i in range(model.nsite))
    assert len(joints) == 3 and len(tips) == 3
    kin = Kinematics.from_mjcf(replicated, joints)
    p = kin.site_positions_m(np.full(3, np.pi / 2), tips)  # each tip swings outward, radius 0.15
    np.testing.assert_allclose(np.hypot(p[:, 0], p[:, 1]), 0.15, atol=1e-12)
    np.testing.assert_allclose(p[:, 2], 0.0, atol=1e-12)

    urdf = tmp_path / "two_link.urdf"
    urdf.write_text(
        '<robot name="two_link">'
        '<link name="base"/><link name="upper"><inertial><mass value="1"/>'
        '<inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>'
        '<joint name="shoulder" type="revolute"><parent link="base"/><child link="upper"/>'
        '<origin xyz="0 0 0.1"/><axis xyz="0 1 0"/><limit lower="-3" upper="3" effort="1" '
        'velocity="1"/></joint></robot>')
    kin = Kinematics.from_mjcf(urdf, ("shoulder",))
    assert kin.model_joint_names == ("shoulder",)
    with pytest.raises(MjcfError, match=r"no site named tip"):
        kin.site_positions_m(np.zeros(1), ("tip",))


@pytest.mark.parametrize("robot", ["dclaw", "arm6", "ur5e"])
def test_real_models_match_the_twin(robot: str) -> None:
    """The supervisor's site positions are the twin's, at the same joint positions."""
    import robot_rl.sim_twin  # noqa: F401  (headless GL settings)
    from robot_rl.sim_twin.twin import Twin

    calibration = load_robot(robot)
    kin = Kinematics.from_mjcf(calibration.model_path(), calibration.joint_names)
    twin = Twin(calibration, task=next(iter(calibration.tasks), None))  # ur5e: its drawer scene
    sites = calibration.safety.workspace.sites
    rng = np.random.default_rng(1)
    for q in rng.uniform(calibration.lower_rad, calibration.upper_rad,
                         size=(10, calibration.n_joints)):
        twin.reset(q, 0.0)
        np.testing.assert_allclose(kin.site_positions_m(q, sites), twin.site_positions_m(sites),
                                   atol=1e-12)


def test_any_batch_shape_and_site_order(tmp_path: Path) -> None:
    kin = Kinematics.from_mjcf(_write(tmp_path), JOINTS)
    rng = np.random.default_rng(2)
    q = rng.uniform(-0.5, 0.5, size=(2, 3, 3))
    sites = ("world_site", "tip", "loose_site")
    got = kin.site_positions_m(q, sites)
    assert got.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(got[..., 1, :], planar_tip(q), atol=1e-12)
    for i, site in enumerate(sites):
        np.testing.assert_allclose(kin.site_positions_m(q[1, 2], (site,))[0], got[1, 2, i],
                                   atol=1e-12)


def test_no_controlled_joints_is_the_reference_pose(tmp_path: Path) -> None:
    kin = Kinematics.from_mjcf(_write(tmp_path), ())
    one = kin.site_positions_m(np.zeros(0), ("tip",))
    np.testing.assert_allclose(one[0], planar_tip(np.array([np.deg2rad(REF_DEG), 0.0, 0.0])),
                               atol=1e-12)
    np.testing.assert_allclose(kin.site_positions_m(np.zeros((4, 0)), ("tip",)),
                               np.repeat(one[None], 4, axis=0), atol=1e-12)
