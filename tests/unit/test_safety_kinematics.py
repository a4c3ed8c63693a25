"""The safety kinematics (pure numpy) against MuJoCo's own mj_kinematics on the same MJCF."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from robot_rl.robot_config import load_robot
from robot_rl.safety.kinematics import Kinematics, MjcfError

# Nested bodies, every orientation form, a frame, default classes with inheritance and childclass,
# hinge and slide joints with anchors and refs, a multi-joint body, a free body and a ball joint
# that are not controlled, sites with their own orientation.
TEST_MJCF = """
<mujoco model="kin_test">
  <compiler angle="{angle}" eulerseq="zyx"/>
  <default>
    <joint axis="0 1 0" type="hinge"/>
    <site size="0.01"/>
    <default class="twist">
      <joint axis="0 0 1" pos="0.01 0 0"/>
      <default class="slider">
        <joint type="slide" axis="1 1 0"/>
      </default>
    </default>
  </default>
  <worldbody>
    <site name="world_site" pos="0.1 0.2 0.3"/>
    <body name="base" pos="0.1 -0.05 0.2" euler="{e1}">
      <joint name="j0" class="twist" ref="{ref}"/>
      <geom type="box" size="0.02 0.02 0.02"/>
      <body name="upper" pos="0 0 0.1" quat="0.9238795 0.3826834 0 0">
        <joint name="j1" pos="0 0 -0.02"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.1" size="0.01"/>
        <frame pos="0.01 0.02 0.05" axisangle="1 1 0 {a30}">
          <body name="lower" pos="0 0 0.1" xyaxes="0 1 0 -1 0.2 0" childclass="twist">
            <joint name="j2"/>
            <joint name="j3" class="slider" range="-0.05 0.05"/>
            <joint name="j_passive" axis="1 0 0"/>
            <geom type="sphere" size="0.01"/>
            <site name="tip" pos="0.03 0.0 0.08" quat="0 1 0 0"/>
            <frame euler="{e2}">
              <site name="tip_side" pos="0.0 0.04 0.0"/>
            </frame>
          </body>
        </frame>
        <body name="side" pos="0.02 0 0.05" zaxis="0 1 1">
          <joint name="j4" type="slide" axis="0 0 1" pos="0.5 0.5 0.5"/>
          <geom type="sphere" size="0.01"/>
          <site name="side_site" pos="0.01 0.01 0.01"/>
        </body>
      </body>
    </body>
    <body name="loose" pos="0.3 0 0.1">
      <freejoint name="free"/>
      <geom type="sphere" size="0.02"/>
      <site name="loose_site" pos="0 0 0.05"/>
      <body name="balljoint" pos="0 0 0.1">
        <joint name="ball" type="ball"/>
        <geom type="sphere" size="0.01"/>
        <site name="ball_site" pos="0.05 0 0"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""

JOINTS = ("j0", "j1", "j2", "j3", "j4")
SITES = ("world_site", "tip", "tip_side", "side_site", "loose_site", "ball_site")


def _write(tmp_path: Path, degrees: bool) -> Path:
    if degrees:
        text = TEST_MJCF.format(angle="degree", e1="10 20 30", e2="0 45 -30", a30="30", ref="15")
    else:
        text = TEST_MJCF.format(angle="radian", e1="0.1 0.2 0.3", e2="0 0.7 -0.5", a30="0.5",
                                ref="0.25")
    path = tmp_path / "kin_test.xml"
    path.write_text(text)
    return path


def _mujoco_sites(path: Path, joints: tuple[str, ...], sites: tuple[str, ...],
                  q: np.ndarray) -> np.ndarray:
    model = mujoco.MjModel.from_xml_path(str(path))
    data = mujoco.MjData(model)
    out = []
    for row in q:
        data.qpos[:] = model.qpos0
        for name, value in zip(joints, row):
            data.qpos[model.jnt_qposadr[model.joint(name).id]] = value
        mujoco.mj_kinematics(model, data)
        out.append([data.site(s).xpos.copy() for s in sites])
    return np.array(out)


@pytest.mark.parametrize("degrees", [True, False])
def test_site_positions_match_mujoco(tmp_path: Path, degrees: bool) -> None:
    path = _write(tmp_path, degrees)
    kin = Kinematics.from_mjcf(path, JOINTS)
    rng = np.random.default_rng(0)
    q = rng.uniform(-3.0, 3.0, size=(60, len(JOINTS)))
    q[:, 3:] *= 0.02  # slides in metres
    expected = _mujoco_sites(path, JOINTS, SITES, q)
    np.testing.assert_allclose(kin.site_positions_m(q, SITES), expected, atol=1e-10)
    # the unbatched call and a single configuration agree with the batch
    np.testing.assert_allclose(kin.site_positions_m(q[7], SITES), expected[7], atol=1e-10)


def test_joint_order_is_the_callers(tmp_path: Path) -> None:
    path = _write(tmp_path, True)
    shuffled = ("j4", "j2", "j0", "j3", "j1")
    kin = Kinematics.from_mjcf(path, shuffled)
    q = np.array([[0.01, -0.4, 0.9, 0.02, 1.2]])
    expected = _mujoco_sites(path, shuffled, ("tip", "side_site"), q)
    np.testing.assert_allclose(kin.site_positions_m(q, ["tip", "side_site"]), expected, atol=1e-10)


def test_errors_name_the_file_and_the_element(tmp_path: Path) -> None:
    path = _write(tmp_path, True)
    with pytest.raises(MjcfError, match=r"kin_test.xml: no joint named nope"):
        Kinematics.from_mjcf(path, ("j0", "nope"))
    with pytest.raises(MjcfError, match=r"ball \(ball\).*not hinge or slide"):
        Kinematics.from_mjcf(path, ("j0", "ball"))
    kin = Kinematics.from_mjcf(path, JOINTS)
    with pytest.raises(MjcfError, match=r"kin_test.xml: no site named f0_tip_site"):
        kin.site_positions_m(np.zeros(5), ("tip", "f0_tip_site"))
    with pytest.raises(ValueError, match=r"expected 5 joint positions"):
        kin.site_positions_m(np.zeros(4), ("tip",))
    bad = tmp_path / "bad.xml"
    bad.write_text('<mujoco><worldbody><body pos="0 0"><joint name="a"/></body></worldbody>'
                   '</mujoco>')
    with pytest.raises(MjcfError, match=r"bad.xml: <body name=''> pos='0 0': expected 3 numbers"):
        Kinematics.from_mjcf(bad, ("a",))
    with pytest.raises(MjcfError, match=r"missing.xml: cannot read"):
        Kinematics.from_mjcf(tmp_path / "missing.xml", ("a",))


def test_include_is_spliced(tmp_path: Path) -> None:
    (tmp_path / "arm.xml").write_text(
        '<mujoco><worldbody><body name="l" pos="0 0 0.1"><joint name="a" axis="1 0 0"/>'
        '<geom size="0.01"/><site name="s" pos="0 0.2 0"/></body></worldbody></mujoco>')
    main = tmp_path / "main.xml"
    main.write_text('<mujoco><compiler angle="radian"/><include file="arm.xml"/></mujoco>')
    kin = Kinematics.from_mjcf(main, ("a",))
    q = np.array([[0.3], [-1.0]])
    np.testing.assert_allclose(kin.site_positions_m(q, ("s",)),
                               _mujoco_sites(main, ("a",), ("s",), q), atol=1e-12)


@pytest.mark.parametrize("robot", ["dclaw", "arm6"])
def test_real_models_match_mujoco(robot: str) -> None:
    calibration = load_robot(robot)
    path = calibration.model_path()
    if not path.exists():
        pytest.skip(f"{path} is not written yet (the twin's MJCF, another engineer's part)")
    joints = calibration.joint_names
    model = mujoco.MjModel.from_xml_path(str(path))
    sites = tuple(model.site(i).name for i in range(model.nsite) if model.site(i).name)
    kin = Kinematics.from_mjcf(path, joints)
    rng = np.random.default_rng(1)
    q = rng.uniform(calibration.lower_rad, calibration.upper_rad, size=(40, len(joints)))
    expected = _mujoco_sites(path, joints, sites, q)
    np.testing.assert_allclose(kin.site_positions_m(q, sites), expected, atol=1e-9)
    # the supervisor's call: one configuration, the workspace sites
    workspace = calibration.safety.workspace.sites
    positions = kin.site_positions_m(q[3], workspace)
    np.testing.assert_allclose(positions, expected[3, [sites.index(s) for s in workspace]],
                               atol=1e-9)


def test_any_batch_shape_and_site_order(tmp_path: Path) -> None:
    """Chains are padded to a common length: sites with 0 to 4 controlled joints in one call, in
    any order, for batches of any shape, each row as if computed alone."""
    path = _write(tmp_path, False)
    kin = Kinematics.from_mjcf(path, JOINTS)
    rng = np.random.default_rng(2)
    q = rng.uniform(-2.0, 2.0, size=(2, 3, len(JOINTS)))
    sites = ("ball_site", "tip", "world_site", "side_site", "tip_side", "loose_site")
    expected = _mujoco_sites(path, JOINTS, sites, q.reshape(-1, len(JOINTS)))
    got = kin.site_positions_m(q, sites)
    assert got.shape == (2, 3, len(sites), 3)
    np.testing.assert_allclose(got.reshape(6, len(sites), 3), expected, atol=1e-10)
    for i, site in enumerate(sites):
        np.testing.assert_allclose(kin.site_positions_m(q[1, 2], (site,))[0], expected[5, i],
                                   atol=1e-10)


def test_no_controlled_joints_is_the_reference_pose(tmp_path: Path) -> None:
    path = _write(tmp_path, True)
    kin = Kinematics.from_mjcf(path, ())
    expected = _mujoco_sites(path, (), SITES, np.zeros((1, 0)))
    np.testing.assert_allclose(kin.site_positions_m(np.zeros(0), SITES), expected[0], atol=1e-10)
    np.testing.assert_allclose(kin.site_positions_m(np.zeros((4, 0)), SITES),
                               np.repeat(expected, 4, axis=0), atol=1e-10)
