"""The MJCF models load and step in plain MuJoCo and agree with the calibration files."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.servos import SERVO_SPECS

MODELS = ["dclaw_valve", "dclaw_knob"]


@pytest.mark.parametrize("name", MODELS)
def test_model_loads_and_steps(name: str) -> None:
    cal = load_robot("dclaw")
    model = mujoco.MjModel.from_xml_path(str(cal.model_path().with_name(f"{name}.xml")))
    data = mujoco.MjData(model)
    data.ctrl[:] = 0.3
    mujoco.mj_step(model, data, nstep=200)
    assert np.all(np.isfinite(data.qpos))
    assert data.time == pytest.approx(0.4)
    for i in range(3):  # each fingertip site rides on its own finger's distal link
        assert model.body(model.site(f"f{i}_tip_site").bodyid[0]).name == f"f{i}_distal_link"
    assert model.camera("realsense").fovy[0] == pytest.approx(42.5)
    assert model.joint("valve").type == mujoco.mjtJoint.mjJNT_HINGE


def test_dclaw_joints_match_calibration() -> None:
    cal = load_robot("dclaw")
    model = mujoco.MjModel.from_xml_path(str(cal.model_path()))
    robot_joints = [model.joint(i).name for i in range(model.njnt)][: cal.n_joints]
    assert tuple(robot_joints) == cal.joint_names
    for joint in cal.joints:
        lo, hi = model.joint(joint.name).range
        cal_lo, cal_hi = joint.position_limits_rad
        assert lo < cal_lo and cal_hi < hi, f"{joint.name}: software limits outside the MJCF range"
        actuator = model.actuator(joint.name)
        stall = SERVO_SPECS[joint.model].stall_torque_nm
        np.testing.assert_allclose(actuator.forcerange, [-stall, stall])
        np.testing.assert_allclose(actuator.ctrlrange, [lo, hi])
    for site in cal.safety.workspace.sites:  # on the robot (moving with it), not on the world
        assert model.body(model.site(site).bodyid[0]).name.startswith(("f0_", "f1_", "f2_")), site


def test_servo_holds_target_and_saturates() -> None:
    cal = load_robot("dclaw")
    model = mujoco.MjModel.from_xml_path(str(cal.model_path()))
    data = mujoco.MjData(model)
    data.ctrl[0] = 0.5
    mujoco.mj_step(model, data, nstep=500)
    assert data.qpos[0] == pytest.approx(0.5, abs=0.03)
    stall = SERVO_SPECS["XM430-W210"].stall_torque_nm
    assert np.all(np.abs(data.actuator_force) <= stall + 1e-9)


def test_arm_drawer_model_matches_calibration() -> None:
    cal = load_robot("arm6")
    model = mujoco.MjModel.from_xml_path(str(cal.model_path()))
    assert tuple(model.joint(i).name for i in range(cal.n_joints)) == cal.joint_names
    for joint in cal.joints:
        lo, hi = model.joint(joint.name).range
        assert lo < joint.position_limits_rad[0] and joint.position_limits_rad[1] < hi
        stall = SERVO_SPECS[joint.model].stall_torque_nm
        np.testing.assert_allclose(model.actuator(joint.name).forcerange, [-stall, stall])
    drawer = model.joint("drawer")
    assert drawer.type == mujoco.mjtJoint.mjJNT_SLIDE and drawer.frictionloss[0] > 0
    assert model.body(model.site("ee_site").bodyid[0]).name == "hand_link"
    assert model.body(model.site("handle_site").bodyid[0]).name == "drawer_body"
    data = mujoco.MjData(model)
    mujoco.mj_step(model, data, nstep=100)
    assert np.all(np.isfinite(data.qpos)) and abs(data.qpos[model.joint("drawer").qposadr[0]]) < 1e-3
