"""The robot's calibration: joint order, servo ids, offsets, limits and safety settings.

A robot is described by data: one calibration YAML plus a MuJoCo model of it (``model_mjcf``: MJCF,
or a URDF MuJoCo compiles), read by the twin, the supervisor's kinematics and the workspace check;
``tasks`` adds, per task, the twin's scene (the robot with the task's objects) and the task's
settings for this robot (e.g. the drawer's home pose). The YAML is the single home of the joint
order and of every limit the safety supervisor enforces. ``load_robot("dclaw")`` (a name:
registered, on ROBOT_RL_CALIBRATION_PATH or bundled in ``robot_rl/calibration/``; see robot_rl.registry)
or ``load_robot("path/to/file.yaml")``. Model and scene paths are absolute, or relative to the
calibration file's folder (the bundled calibrations' form, relative to the robot_rl installation,
is read too). Everything that can be checked is checked at load, and every error names the file:
keys and values, the supervisor's limits, and the joints against the robot's model and scenes
when they exist.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robot_rl.config import ConfigError, from_dict, load_yaml
from robot_rl.data.calibration import calibration_digest
from robot_rl.registry import BUNDLED_CALIBRATIONS, PACKAGE_ROOT, robot_calibration_file

CALIBRATION_DIR = BUNDLED_CALIBRATIONS

SERVO_MODELS = ("XM430-W210", "XM430-W350", "XH430-W350", "XL430-W250", "XM540-W270", "XL330-M288")


@dataclass(frozen=True)
class JointCalibration:
    """One joint. joint_rad = direction * servo_rad + offset_rad, servo_rad = 0 at the servo's centre.

    A robot joint must state its velocity and current limits (``RobotCalibration`` checks it); a
    sensor (an encoder that is only read) needs neither."""

    name: str
    position_limits_rad: tuple[float, float] = field(metadata={"range": (-6.3, 6.3)})
    velocity_limit_rad_s: float | None = field(default=None, metadata={
        "range": (0.01, 20.0), "help": "required for a joint"})
    current_limit_a: float | None = field(default=None, metadata={
        "range": (0.01, 20.0), "help": "required for a joint"})
    id: int | None = field(default=None, metadata={"range": (0, 252), "help": "servo bus id"})
    model: str | None = field(default=None, metadata={"choices": (None, *SERVO_MODELS)})
    direction: int = field(default=1, metadata={"choices": (1, -1)})
    offset_rad: float = field(default=0.0, metadata={"range": (-6.3, 6.3)})
    torque_constant_nm_a: float | None = field(default=None, metadata={
        "range": (0.001, 1000.0),
        "help": "joint torque per A of reported current, for the twin to report current where "
                "no servo model gives it; None: the servo model's (robot_rl/sim_twin/servos.py), else 1"})

    def __post_init__(self) -> None:
        lo, hi = self.position_limits_rad
        if not lo < hi:
            raise ConfigError(f"joint {self.name}: position_limits_rad lower {lo} must be < upper {hi}")


@dataclass(frozen=True)
class BusConfig:
    """A serial servo bus (Dynamixel Protocol 2.0)."""

    port: str = "/dev/ttyUSB0"
    baudrate: int = field(default=1_000_000, metadata={"choices": (57_600, 115_200, 1_000_000,
                                                                   2_000_000, 3_000_000, 4_000_000)})
    latency_timer_ms: int = field(default=1, metadata={"range": (1, 16)})


@dataclass(frozen=True)
class WorkspaceBounds:
    """An axis-aligned box (world frame, m) that the named MJCF sites must stay inside."""

    sites: tuple[str, ...]
    lower_m: tuple[float, float, float]
    upper_m: tuple[float, float, float]

    def __post_init__(self) -> None:
        if not self.sites:
            raise ConfigError("workspace.sites: name at least one site")
        if not all(lo < hi for lo, hi in zip(self.lower_m, self.upper_m)):
            raise ConfigError(f"workspace: lower_m {self.lower_m} must be below upper_m {self.upper_m}")


@dataclass(frozen=True)
class SafetyConfig:
    """Limits applied by the supervisor to every command (see docs/safety.md)."""

    position_margin_rad: float = field(metadata={"range": (0.0, 0.5)})
    max_step_rad: float = field(metadata={"range": (0.001, 1.0),
                                          "help": "largest change of a target per command"})
    acceleration_limit_rad_s2: float = field(metadata={"range": (0.1, 1000.0)})
    temperature_limit_c: float = field(metadata={"range": (20.0, 90.0)})
    state_timeout_s: float = field(metadata={"range": (0.005, 5.0)})
    command_timeout_s: float = field(metadata={"range": (0.005, 5.0)})
    workspace: WorkspaceBounds | None = None
    temperature_resume_c: float | None = field(default=None, metadata={
        "range": (0.0, 90.0),
        "help": "an overtemperature hold ends at or below this; None: temperature_limit_c - 5"})
    telemetry_timeout_s: float = field(default=2.0, metadata={
        "range": (0.01, 60.0),
        "help": "temperature / hardware error older than this holds, once the stream was seen"})
    stamp_tolerance_s: float = field(default=0.1, metadata={
        "range": (0.0, 1.0),
        "help": "a state stamped further ahead of the receiver's clock is invalid (holds)"})


@dataclass(frozen=True)
class RobotTaskSettings:
    """What one task needs of this robot: the twin's scene and the task's settings for it."""

    scene: str | None = field(default=None, metadata={
        "help": "MJCF of the robot with the task's objects (the twin's world for this task); "
                "None: model_mjcf is that scene"})
    config: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "the task's config values for this robot (e.g. the drawer's home_rad); a run's "
                "own task config overrides them"})


@dataclass(frozen=True)
class RobotCalibration:
    robot: str
    kind: str = field(metadata={
        "help": "what drives it: dynamixel_hand, dynamixel_arm (robot_rl/drivers/dynamixel), "
                "ros2_control_arm (robot_rl/drivers/ros2_control), or a name a driver package uses"})
    model_mjcf: str = field(metadata={
        "help": "the robot's MuJoCo model (MJCF or URDF): absolute, or relative to this file's "
                "folder"})
    joints: tuple[JointCalibration, ...]
    safety: SafetyConfig
    sensors: tuple[JointCalibration, ...] = ()
    bus: BusConfig | None = None
    tasks: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "per task name: scene and config (RobotTaskSettings)"})
    # not a key of the file: load_robot sets it, so that errors found later name the file
    source: str = field(default="", compare=False, metadata={"loader": True})

    def __post_init__(self) -> None:
        names = [j.name for j in (*self.joints, *self.sensors)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"robot {self.robot}: joint names repeat: {', '.join(dupes)}")
        ids = [j.id for j in (*self.joints, *self.sensors) if j.id is not None]
        dupe_ids = sorted({i for i in ids if ids.count(i) > 1})
        if dupe_ids:
            raise ConfigError(f"robot {self.robot}: servo ids repeat: {dupe_ids}")
        if self.kind.startswith("dynamixel"):  # the chain drives joints and reads sensors
            lacking = [f"{j.name} ({'id' if j.id is None else 'model'})"
                       for j in (*self.joints, *self.sensors) if j.id is None or j.model is None]
            if lacking:
                raise ConfigError(f"robot {self.robot}: every joint and sensor of a {self.kind} "
                                  f"needs an id and a servo model; missing: {', '.join(lacking)}")
        for i, joint in enumerate(self.joints):  # no default limit: it would be a guess
            for key in ("velocity_limit_rad_s", "current_limit_a"):
                if getattr(joint, key) is None:
                    raise ConfigError(f"joints[{i}].{key}: required key is missing "
                                      f"(joint {joint.name})")

    @property
    def where(self) -> str:
        """What an error about this calibration names: its file, or the robot if not from one."""
        return self.source or f"calibration '{self.robot}'"

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    @property
    def lower_rad(self) -> np.ndarray:
        return np.array([j.position_limits_rad[0] for j in self.joints])

    @property
    def upper_rad(self) -> np.ndarray:
        return np.array([j.position_limits_rad[1] for j in self.joints])

    @property
    def velocity_limit_rad_s(self) -> np.ndarray:
        return np.array([j.velocity_limit_rad_s for j in self.joints])

    @property
    def current_limit_a(self) -> np.ndarray:
        return np.array([j.current_limit_a for j in self.joints])

    def model_path(self) -> Path:
        """The robot's model (``model_mjcf``), for whatever needs it: the twin, the workspace
        check, site kinematics. A ConfigError naming this file if the model does not exist, so
        that a robot whose model is not written yet runs wherever no model is needed."""
        path = self.model_file
        if not path.exists():
            raise ConfigError(f"{self.where}: model_mjcf {self.model_mjcf} does not exist (the "
                              "twin, the workspace check and site kinematics need it)")
        return path

    @property
    def model_file(self) -> Path:
        """Where ``model_mjcf`` points, existing or not."""
        return self.resolve(self.model_mjcf)

    def resolve(self, relative: str) -> Path:
        """A path of this file (a model, a scene): absolute, or relative to the calibration's
        folder; failing that, relative to the robot_rl installation (the bundled calibrations
        name ``robot_rl/sim_twin/models/...`` so). A calibration not loaded from a file (no ``source``)
        resolves against the installation."""
        path = Path(relative).expanduser()
        if path.is_absolute():
            return path
        if not self.source:
            return PACKAGE_ROOT / path
        local = Path(self.source).parent / path
        return PACKAGE_ROOT / path if not local.exists() and (PACKAGE_ROOT / path).exists() \
            else local

    def task_settings(self, task: str) -> RobotTaskSettings:
        """This robot's settings for ``task`` (empty settings if the file names none)."""
        settings = self.tasks.get(task, {})
        if isinstance(settings, RobotTaskSettings):
            return settings
        return from_dict(RobotTaskSettings, settings, source=self.where, prefix=f"tasks.{task}")

    def scene_file(self, task: str | None) -> Path:
        """The twin's world for ``task`` (``tasks.<task>.scene``), or the model itself when the
        file names no scene (or no task is given); existing or not."""
        scene = self.task_settings(task).scene if task else None
        return self.model_file if scene is None else self.resolve(scene)

    def scene_path(self, task: str | None) -> Path:
        """``scene_file``, which must exist: a ConfigError naming this file otherwise."""
        scene = self.task_settings(task).scene if task else None
        if scene is None:
            return self.model_path()
        path = self.resolve(scene)
        if not path.exists():
            raise ConfigError(f"{self.where}: tasks.{task}.scene {scene} does not exist (the "
                              f"twin's world for task {task})")
        return path

    def object_joint(self, model_joint_names: Sequence[str], where: str) -> str:
        """The model's object joint (the valve's hinge, the drawer's slide): its one joint besides
        the robot's. ``where`` names the model in the error."""
        others = [n for n in model_joint_names if n not in self.joint_names]
        if len(others) != 1:
            raise ValueError(f"{where}: expected exactly one object joint besides the robot's, "
                             f"found {others} (a task's scene holds the robot and its object: "
                             "tasks.<task>.scene in the calibration, and the task named)")
        return others[0]


def calibration_path(name_or_path: str | Path) -> Path:
    """``dclaw`` -> robot_rl/calibration/dclaw.yaml (or a registered robot's file, see robot_rl.registry);
    a .yaml path is returned as is."""
    try:
        return robot_calibration_file(name_or_path)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_robot(name_or_path: str | Path) -> RobotCalibration:
    """The calibration, checked: keys and values, the supervisor's limits (``JointLimits``, the
    one home of those rules), and its joints against the robot's model where the model exists.
    Every error is a ConfigError naming the file."""
    path = calibration_path(name_or_path)
    data = load_yaml(path)
    try:
        calibration = from_dict(RobotCalibration, data, source=str(path))
        calibration = dataclasses.replace(calibration, source=str(path))
        calibration = dataclasses.replace(calibration, tasks={
            task: calibration.task_settings(task) for task in calibration.tasks})
        from robot_rl.safety.limits import JointLimits  # here: safety imports this module
        JointLimits.from_calibration(calibration)
        check_model_joints(calibration)
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    return calibration


def check_model_joints(calibration: RobotCalibration) -> None:
    """The calibration's joints must be the joints its model drives: each one a joint of the
    model, and, if the model has actuators, exactly the joints they drive (the model's other
    joints are its objects: the valve's hinge, the drawer's slide); the workspace's sites must be
    the model's. Each task's scene is checked the same way. A model or scene that does not exist
    is not checked (``RobotCalibration.model_path``/``scene_path`` say so where it is needed)."""
    path = calibration.model_file
    if path.exists():
        sites = _check_joints(calibration, path, calibration.model_mjcf, "the model")
        workspace = calibration.safety.workspace
        unknown = [s for s in workspace.sites if s not in sites] if workspace else []
        if unknown:
            raise ConfigError(f"{calibration.where}: safety.workspace.sites: "
                              f"{', '.join(unknown)} not in the model {calibration.model_mjcf}; "
                              f"its sites: {', '.join(sites)}")
    for task in calibration.tasks:
        scene = calibration.task_settings(task).scene
        if scene is not None and calibration.resolve(scene).exists():
            _check_joints(calibration, calibration.resolve(scene), scene,
                          f"tasks.{task}.scene")


def _check_joints(calibration: RobotCalibration, path: Path, named: str, what: str
                  ) -> tuple[str, ...]:
    """The checks of ``check_model_joints`` on one model file; its sites."""
    joints, driven, sites = model_names(path)
    where = f"{calibration.where}: joints do not match {what} {named}"
    problems = []
    missing = [n for n in calibration.joint_names if n not in joints]
    if missing:
        problems.append(f"not in the model: {', '.join(missing)}")
    if driven:
        lacking = [n for n in driven if n not in calibration.joint_names]
        undriven = [n for n in calibration.joint_names if n in joints and n not in driven]
        if lacking:
            problems.append(f"the model drives {', '.join(lacking)}, which the calibration lacks")
        if undriven:
            problems.append(f"no actuator drives {', '.join(undriven)}")
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)} (model joints: {', '.join(joints)})")
    return sites


class ModelNames(NamedTuple):
    joints: tuple[str, ...]
    driven: tuple[str, ...]  # the joints an actuator drives
    sites: tuple[str, ...]


def model_names(path: Path) -> ModelNames:
    """The joints and sites of a MuJoCo model (MJCF, or URDF), as MuJoCo itself reads it: the
    same parser as the twin's, not a second one. Cached per file version; MuJoCo is imported
    only here, on the first call (bench/calibration_load.py measures the cost)."""
    stat = path.stat()
    return _model_names(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _model_names(path: str, _mtime_ns: int, _size: int) -> ModelNames:
    import mujoco
    try:
        model = mujoco.MjModel.from_xml_path(path)
    except ValueError as err:  # MuJoCo's parse and compile errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"model_mjcf {path}: MuJoCo cannot load it: {first}") from None
    joints = tuple(model.joint(i).name for i in range(model.njnt))
    driven = {int(model.actuator_trnid[a, 0]) for a in range(model.nu)
              if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT}
    sites = tuple(model.site(i).name for i in range(model.nsite))
    return ModelNames(joints, tuple(joints[i] for i in sorted(driven)), sites)


def robot_digest(name_or_path: str | Path) -> str:
    """The calibration file's digest, stored with every recorded episode."""
    return calibration_digest(calibration_path(name_or_path))
