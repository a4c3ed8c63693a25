"""Robots and tasks by name: a robot and a task defined outside robot_rl (docs/your-robot.md's
steps, in a temporary folder), gymnasium ids after ``import robot_rl``, lookup order and errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from robot_rl.config import ConfigError
from robot_rl.registry import RegistryError, TaskSpec, register_robot, register_task, task_spec
from robot_rl.robot_config import load_robot

REPO = Path(__file__).resolve().parents[2]

# A task of the user's own: bring the hook tip to a point. Written as docs/your-robot.md says a
# task is written: a Task subclass with its config dataclass, registered by a TaskSpec.
REACH_MODULE = '''
"""A cell of the user's: its robot (an entry point) and a reach task (another one)."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.registry import TaskSpec
from robot_rl.tasks.base import ResetSample, ResetStep, Task, TaskState, layout_from_sizes
from robot_rl.sim_twin.robot import TwinRobot


class MyBus(TwinRobot):
    """The cell's driver (here its hardware is the twin): kind my_bus, an entry point."""


def calibration_file() -> Path:
    return Path(__file__).with_name("my_ur5e.yaml")


@dataclass(frozen=True)
class ReachConfig:
    control_period_s: float = 0.05
    episode_length_steps: int = field(default=30, metadata={"range": (1, 1000)})
    reward: str = "sparse"
    action_mode: str = "relative"
    terminate_on_success: bool = True
    home_rad: tuple[float, ...] = ()
    goal_m: tuple[float, float, float] = (0.40, 0.10, 0.36)
    tolerance_m: float = 0.03


class ReachTask(Task):
    name = "reach"
    config_class = ReachConfig
    required_sites = ("ee_site",)

    def observation_layout(self):
        n = self.n_joints
        return layout_from_sizes([("joint_position_rad", n), ("joint_velocity_rad_s", n),
                                  ("goal_from_ee_m", 3), ("previous_action", n)])

    def observation(self, state, goal, previous_action):
        ee = state.sites_m["ee_site"]
        return np.concatenate([state.joint_positions_rad, state.joint_velocities_rad_s,
                               np.asarray(self.config.goal_m) - ee,
                               previous_action]).astype(np.float32)

    def is_success(self, state, goal):
        error = np.asarray(self.config.goal_m) - state.sites_m["ee_site"]
        return bool(np.linalg.norm(error) < self.config.tolerance_m)

    def dense_reward(self, state, goal):
        return -float(np.linalg.norm(np.asarray(self.config.goal_m) - state.sites_m["ee_site"]))

    def sample_reset(self, rng):
        return ResetSample(np.asarray(self.config.home_rad, dtype=float), 0.0, 0.0)

    def real_reset_procedure(self):
        return [ResetStep("home", "move_joints", "back to the home pose",
                          tuple(self.config.home_rad), 2.0)]


REACH = TaskSpec("reach", "my_cell:ReachTask", "my_cell/Reach-v0", default_robot="my_ur5e",
                 description="bring the hook tip to a point")
'''

ENTRY_POINTS = """\
[robot_rl.robots]
my_ur5e = my_cell:calibration_file

[robot_rl.tasks]
reach = my_cell:REACH

[robot_rl.drivers]
my_bus = my_cell:MyBus
"""

# What the child process checks, printed as JSON: nothing of robot_rl's own was changed.
CHILD = '''
import json, sys
import numpy as np
import robot_rl
assert "gymnasium" not in sys.modules, "import robot_rl imported gymnasium"
import gymnasium as gym
from robot_rl.safety.gate import SupervisorGate
from robot_rl.robot_config import load_robot
from robot_rl.sim_twin.experts import make_expert, run_episode

out = {"ids": sorted(k for k in gym.registry if k.startswith(("robot_rl/", "my_cell/")))}
arm = load_robot("my_ur5e")
gate = SupervisorGate(arm)
env = gym.make("robot_rl/DrawerOpen-v0", calibration="my_ur5e", command_gate=gate)
out["drawer_joints"] = list(env.unwrapped.twin.joint_names)
out["drawer_model"] = str(env.unwrapped.twin.model_path)
episode = run_episode(env, make_expert(env, 0.0, seed=0), seed=0)
out["drawer_success"] = bool(episode["info"]["success"])
out["drawer_statuses"] = dict(gate.statuses)
out["workspace_sites"] = list(gate.supervisor.workspace.sites)
env.close()
gate = SupervisorGate(arm)
env = gym.make("my_cell/Reach-v0", command_gate=gate)
obs, _ = env.reset(seed=0)
rng = np.random.default_rng(0)
for _ in range(10):
    obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 6))
out["reach_obs"] = int(obs.shape[0])
out["reach_robot"] = env.unwrapped.task.calibration.robot
out["reach_verdicts"] = sum(gate.statuses.values())
from robot_rl.registry import driver_class
with driver_class("my_bus")(arm, task="drawer") as robot:
    out["driver"] = [type(robot).__name__, int(robot.read().position_rad.shape[0])]
print(json.dumps(out))
'''


def cell_package(root: Path) -> Path:
    """docs/your-robot.md's layout: the UR5e's files copied out of robot_rl under another name,
    with paths relative to the calibration's folder, and a package declaring the entry points
    (as `pip install` would: a dist-info folder on the path)."""
    models = REPO / "robot_rl" / "sim_twin" / "models"
    shutil.copy(models / "ur5e.xml", root / "ur5e.xml")
    shutil.copy(models / "ur5e_drawer.xml", root / "ur5e_drawer.xml")
    text = (REPO / "robot_rl" / "calibration" / "ur5e.yaml").read_text()
    text = (text.replace("robot: ur5e", "robot: my_ur5e")
            .replace("model_mjcf: robot_rl/sim_twin/models/ur5e.xml", "model_mjcf: ur5e.xml")
            .replace("scene: robot_rl/sim_twin/models/ur5e_drawer.xml", "scene: ur5e_drawer.xml"))
    text += ("  reach:\n    scene: ur5e_drawer.xml\n"
             "    config: {home_rad: [-0.34, -1.84, 1.87, -1.6, -1.57, -1.91]}\n")
    (root / "my_ur5e.yaml").write_text(text)
    (root / "my_cell.py").write_text(REACH_MODULE)
    info = root / "my_cell-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cell\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def test_a_robot_and_a_task_from_outside_the_package_run_in_the_twin_through_the_supervisor(
        tmp_path: Path) -> None:
    """Nothing in robot_rl names them: entry points of an installed package do. Before the
    registry the twin was the task's fixed robot and no task could be added."""
    cell = cell_package(tmp_path)
    env = {"PYTHONPATH": f"{cell}:{REPO}", "PATH": "/usr/bin:/bin", "MUJOCO_GL": "egl"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ids"] == ["my_cell/Reach-v0", "robot_rl/DrawerOpen-v0", "robot_rl/ValveTurn-v0"]
    assert out["drawer_joints"] == list(load_robot("ur5e").joint_names)
    assert out["drawer_model"] == str(cell / "ur5e_drawer.xml")  # the user's copy, not ours
    assert out["drawer_success"]
    assert set(out["drawer_statuses"]) <= {"pass", "clipped", "hold"}
    assert sum(out["drawer_statuses"].values()) > 10
    assert out["workspace_sites"] == ["ee_site", "flange_site"]
    assert out["reach_robot"] == "my_ur5e" and out["reach_obs"] == 6 + 6 + 3 + 6
    assert out["reach_verdicts"] == 10  # every step's command went through the supervisor
    assert out["driver"] == ["MyBus", 6]  # a driver kind of the package's own


def test_gym_ids_exist_after_import_robot_rl_without_importing_gymnasium_or_the_twin() -> None:
    """They existed only after `import sim_twin`. Registered with entry-point strings, the twin
    is imported by gymnasium.make only; gymnasium imported first works too."""
    code = textwrap.dedent('''
        import sys
        first = "gymnasium" in sys.modules
        import robot_rl
        assert ("gymnasium" in sys.modules) == first and "robot_rl.sim_twin" not in sys.modules
        import gymnasium as gym
        assert "robot_rl/DrawerOpen-v0" in gym.registry and "robot_rl.sim_twin" not in sys.modules
        spec = gym.registry["robot_rl/ValveTurn-v0"]
        assert spec.entry_point == "robot_rl.sim_twin.envs:TaskEnv" and spec.kwargs == {"task": "valve"}
        env = gym.make("robot_rl/DrawerOpen-v0")
        assert env.unwrapped.task.calibration.robot == "arm6" and "robot_rl.sim_twin" in sys.modules
    ''')
    for prelude in ("", "import gymnasium\n"):  # robot_rl first (the hook), or gymnasium first
        done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                              text=True, timeout=120, cwd=REPO,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, (prelude, done.stderr[-2000:])


def test_calibrations_are_found_by_name_on_the_search_path_and_by_registration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cell = cell_package(tmp_path)
    monkeypatch.setenv("ROBOT_RL_CALIBRATION_PATH", str(cell))
    arm = load_robot("my_ur5e")  # the file's stem, on the path
    assert arm.source == str(cell / "my_ur5e.yaml")
    assert arm.model_file == cell / "ur5e.xml"  # relative to the calibration's folder
    assert arm.scene_path("drawer") == cell / "ur5e_drawer.xml"
    monkeypatch.delenv("ROBOT_RL_CALIBRATION_PATH")
    name = f"arm_{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigError, match=rf"no calibration named '{name}'.*known: .*ur5e"):
        load_robot(name)
    register_robot(name, cell / "my_ur5e.yaml")
    assert load_robot(name).model_file == cell / "ur5e.xml"
    register_robot(name, cell / "my_ur5e.yaml")  # the same file again: fine
    other = cell / "other.yaml"
    other.write_text((cell / "my_ur5e.yaml").read_text())
    with pytest.raises(RegistryError, match=rf"robot '{name}' is already registered as"):
        register_robot(name, other)
    with pytest.raises(RegistryError, match=r"robot name 'dclaw' is taken by the bundled"):
        register_robot("dclaw", other)


def test_task_registrations_that_clash_or_point_nowhere_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"task 'valve' \(robot_rl/Valve-v1\) clashes with "
                                            r"task 'valve'"):
        register_task(TaskSpec("valve", "x:Y", "robot_rl/Valve-v1"))
    with pytest.raises(RegistryError, match=r"expected 'module:attribute'"):
        register_task(TaskSpec("twist", "my_tasks.TwistTask", "mine/Twist-v0"))
    with pytest.raises(RegistryError, match=r"task 'nope' is not registered; known: valve "
                                            r"\(robot_rl/ValveTurn-v0\), drawer"):
        task_spec("nope")
    name = f"t{uuid.uuid4().hex[:8]}"
    register_task(TaskSpec(name, "no_such_module:Task", f"mine/{name}-v0"))
    from robot_rl.registry import make_task
    with pytest.raises(RegistryError, match=rf"task '{name}': cannot load 'no_such_module:Task'"):
        make_task(name, load_robot("arm6"))
    import gymnasium as gym  # registered with gymnasium at once, as gymnasium is imported
    assert gym.registry[f"mine/{name}-v0"].kwargs == {"task": name}


def test_robot_settings_come_between_the_task_defaults_and_a_run_s_overrides(
        tmp_path: Path) -> None:
    from robot_rl.tasks.drawer import DrawerTask, DrawerTaskConfig

    ur5e = load_robot("ur5e")
    task = DrawerTask(ur5e)
    assert task.config.home_rad == (-0.34, -1.84, 1.87, -1.6, -1.57, -1.91)  # the robot's
    assert task.config.action_mode == "relative" and task.config.start_noise_rad == 0.05
    assert task.config.goal_opening_m == DrawerTaskConfig().goal_opening_m  # the task's
    task = DrawerTask(ur5e, {"action_mode": "absolute"})  # a run's (env_kwargs config)
    assert task.config.action_mode == "absolute" and task.config.start_noise_rad == 0.05
    assert task.scene_path().name == "ur5e_drawer.xml"
    # a bad value in the robot's settings names the calibration file and the key
    text = (REPO / "robot_rl" / "calibration" / "ur5e.yaml").read_text().replace(
        "start_noise_rad: 0.05", "start_noise_rad: 5.0").replace(
        "robot_rl/sim_twin/models/", str(REPO / "robot_rl" / "sim_twin" / "models") + "/")
    path = tmp_path / "ur5e_bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: tasks.drawer.config.start_noise_rad: 5.0 is "
                                          r"out of range"):
        DrawerTask(load_robot(path))


def test_a_scene_is_checked_against_the_robot_at_load(tmp_path: Path) -> None:
    """A task's scene must hold the robot's joints, driven: else load_robot says which scene."""
    scene = tmp_path / "scene.xml"
    scene.write_text(f'<mujoco><include file="{REPO}/robot_rl/sim_twin/models/arm_drawer.xml"/></mujoco>')
    text = (REPO / "robot_rl" / "calibration" / "ur5e.yaml").read_text().replace(
        "scene: robot_rl/sim_twin/models/ur5e_drawer.xml", f"scene: {scene}")
    path = tmp_path / "ur5e_wrong_scene.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: joints do not match tasks.drawer.scene "
                                          rf"{scene}: not in the model: shoulder_pan_joint"):
        load_robot(path)


def test_the_pipeline_plays_the_config_s_robot_not_the_task_s_default() -> None:
    """GatedEnv gave the supervisor config.robot but made the env on the task's default robot:
    `robot: ur5e` changed the limits while the twin stayed the arm6."""
    from robot_rl.pipeline.rollout import GatedEnv
    from robot_rl.run_config import load_pipeline_config

    env = GatedEnv(load_pipeline_config("drawer", overrides=["robot=ur5e"]))
    try:
        assert env.env.unwrapped.twin.joint_names == load_robot("ur5e").joint_names
        assert env.env.unwrapped.twin.model_path.name == "ur5e_drawer.xml"
        assert env.action_mode == "relative"  # the UR5e's drawer settings
        episode = env.run_episode(env.expert(0.0, seed=0), seed=0)
        assert episode.success and sum(env.gate.statuses.values()) == episode.length
    finally:
        env.close()


def test_a_dataset_replays_on_its_own_robot(tmp_path: Path) -> None:
    """The dynamic replay made the env on the task's default robot too: a UR5e dataset's
    actions were played by the arm6 (same action size, so nothing said so)."""
    from robot_rl.pipeline.stages import record
    from robot_rl.run_config import load_pipeline_config
    from robot_rl.sim_twin.episode_replay import Replay, plan_replay

    config = load_pipeline_config("drawer", overrides=[
        "robot=ur5e", "dataset.demonstrations=1", "dataset.noisy_trajectories=0"])
    record(config, tmp_path / "ur5e.zarr", progress=False)
    plan = plan_replay(tmp_path / "ur5e.zarr", 0, source="actions")
    assert plan.calibration.robot == "ur5e"
    replay = Replay(plan, width=32, height=24)
    frames = list(replay.frames())
    assert len(frames) == plan.n_frames
    assert replay.max_observation_error is not None and replay.max_observation_error < 1e-6


def test_the_ur5e_twin_matches_its_published_dh_kinematics() -> None:
    """The model's flange (tool0) against the UR5e's DH table, computed here in closed form."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(load_robot("ur5e").model_path()))
    data = mujoco.MjData(model)
    rows = [(0.1625, 0.0, np.pi / 2), (0.0, -0.425, 0.0), (0.0, -0.3922, 0.0),
            (0.1333, 0.0, np.pi / 2), (0.0997, 0.0, -np.pi / 2), (0.0996, 0.0, 0.0)]
    rng = np.random.default_rng(0)
    for q in rng.uniform(-np.pi, np.pi, size=(50, 6)):
        pose = np.diag([-1.0, -1.0, 1.0, 1.0])  # the DH base frame: turned 180 deg about z
        for (d, a, alpha), theta in zip(rows, q):
            ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
            pose = pose @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st],
                                    [0, sa, ca, d], [0, 0, 0, 1]])
        data.qpos[:6] = q
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(data.site("flange_site").xpos, pose[:3, 3], atol=1e-12)
        np.testing.assert_allclose(data.site("flange_site").xmat.reshape(3, 3), pose[:3, :3],
                                   atol=1e-12)
    masses = [model.body(n).mass[0] for n in ("shoulder_link", "upper_arm_link", "forearm_link",
                                              "wrist_1_link", "wrist_2_link", "wrist_3_link")]
    np.testing.assert_allclose(masses, [3.761, 8.058, 2.846, 1.37, 1.3, 0.365])
    limits = {a: model.actuator(a).forcerange[1] for a in ("elbow", "wrist_1")}
    assert limits == {"elbow": 150.0, "wrist_1": 28.0}
    for joint in load_robot("ur5e").joints:  # software limits inside the model's range
        lo, hi = model.joint(joint.name).range
        assert lo < joint.position_limits_rad[0] and joint.position_limits_rad[1] < hi


def test_a_procedure_writing_elsewhere_keeps_the_model_paths(tmp_path: Path) -> None:
    """Homing and limit discovery write an updated calibration (--out): paths relative to the
    source's folder would name nothing from another folder."""
    from robot_rl.calibration.robot_yaml import write_updated

    cell = cell_package(tmp_path)
    out = tmp_path / "elsewhere" / "my_ur5e.homed.yaml"
    written = write_updated(cell / "my_ur5e.yaml", {"elbow_joint": {"offset_rad": 0.01}}, out)
    assert written.joints[2].offset_rad == 0.01
    assert written.model_file.resolve() == (cell / "ur5e.xml").resolve()
    assert written.scene_path("drawer").resolve() == (cell / "ur5e_drawer.xml").resolve()
    bundled = write_updated("ur5e", {"elbow_joint": {"offset_rad": 0.01}}, tmp_path / "u.yaml")
    assert bundled.model_file == REPO / "robot_rl" / "sim_twin" / "models" / "ur5e.xml"  # the bundled form


def test_the_catalog_lists_what_is_found_and_describes_a_task_on_a_robot(
        capsys: pytest.CaptureFixture[str]) -> None:
    from robot_rl import catalog

    assert catalog.main([]) == 0
    listing = capsys.readouterr().out
    for line in ("ur5e ", "drawer ", "robot_rl/DrawerOpen-v0", "twin ", "robot_rl.sim_twin.robot:TwinRobot"):
        assert line in listing
    assert catalog.main(["--task", "robot_rl/DrawerOpen-v0", "--robot", "ur5e"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("task drawer (robot_rl/DrawerOpen-v0) on robot ur5e")
    assert "action: 6 values in [-1, 1], mode relative" in text  # the UR5e's drawer setting
    assert "ur5e_drawer.xml" in text and "5. home (move_joints)" in text
