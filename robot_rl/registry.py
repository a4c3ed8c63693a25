"""Robots and tasks by name: the bundled ones, the ones a user's package registers, gymnasium ids.

Adding a robot or a task needs no change to robot_rl. A package declares entry points (in its
``setup.cfg``/``pyproject.toml``), or a script calls ``register_robot`` / ``register_task``:

- group ``robot_rl.robots``: ``my_arm = my_pkg.robots:my_arm_calibration``; the object is a path
  to the robot's calibration YAML, or a function returning one. ``load_robot("my_arm")`` then finds
  it. Calibrations are also found by name in the folders of ``ROBOT_RL_CALIBRATION_PATH``
  (separated by ``os.pathsep``), and any ``.yaml`` path is taken as it is.
- group ``robot_rl.tasks``: ``my_task = my_pkg.tasks:MY_TASK``; the object is a ``TaskSpec``, a
  list of them, or a function returning either.
- group ``robot_rl.drivers``: ``my_bus = my_pkg.driver:MyRobot``, a ``robot_rl.robot.Robot``
  subclass driving the robots whose calibration says ``kind: my_bus``.

Lookup order for a robot name: a ``register_robot`` call or an entry point, then each folder of
ROBOT_RL_CALIBRATION_PATH, then the bundled ``robot_rl/calibration/``. A registered name may not be one of
the bundled robots' (one name, one robot: a dataset records the robot by name).

Gymnasium: every task's env id is registered with an entry-point string
(``robot_rl.sim_twin.envs:TaskEnv``), so gymnasium imports the twin only when an env is made. Importing
robot_rl arranges it: at once if gymnasium is already imported, otherwise the moment it is (a
post-import hook), so that a process that never uses gymnasium (a node) does not import it
(about 0.2 s here).

This module is light on purpose (stdlib only): ``import robot_rl`` imports it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROBOT_ENTRY_POINTS = "robot_rl.robots"
TASK_ENTRY_POINTS = "robot_rl.tasks"
DRIVER_ENTRY_POINTS = "robot_rl.drivers"
CALIBRATION_PATH_ENV = "ROBOT_RL_CALIBRATION_PATH"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # model paths in calibrations are relative to it
BUNDLED_CALIBRATIONS = PACKAGE_ROOT / "robot_rl" / "calibration"
TASK_ENV_ENTRY_POINT = "robot_rl.sim_twin.envs:TaskEnv"


class RegistryError(ValueError):
    """A name that is not registered, or a registration that is wrong; the message says which
    and where it came from."""


# ---- robots ----------------------------------------------------------------------------------

_robots: dict[str, tuple[Path, str]] = {}  # name -> (calibration file, who registered it)
_lock = threading.RLock()
_entry_points_loaded: set[str] = set()


def register_robot(name: str, calibration: str | os.PathLike[str], *, origin: str = "") -> None:
    """Makes ``load_robot(name)`` find ``calibration`` (a YAML path). Registering the same file
    again is allowed; another file under a taken name is an error."""
    path = Path(calibration).expanduser().resolve()
    with _lock:
        _load_entry_points(ROBOT_ENTRY_POINTS)
        _add_robot(name, path, origin or "register_robot()")


def _add_robot(name: str, path: Path, origin: str) -> None:
    if not name or "/" in name or name.endswith((".yaml", ".yml")):
        raise RegistryError(f"{origin}: robot name {name!r}: expected a plain name like 'my_arm'")
    bundled = BUNDLED_CALIBRATIONS / f"{name}.yaml"
    if bundled.exists() and bundled.resolve() != path:
        raise RegistryError(f"{origin}: robot name {name!r} is taken by the bundled {bundled}; "
                            "register yours under another name")
    known = _robots.get(name)
    if known is not None and known[0] != path:
        raise RegistryError(f"{origin}: robot {name!r} is already registered as {known[0]} "
                            f"by {known[1]}")
    _robots[name] = (path, origin)


def calibration_folders() -> list[Path]:
    """Where calibrations are looked up by name, in order: ROBOT_RL_CALIBRATION_PATH's folders,
    then the bundled robot_rl/calibration/."""
    extra = [Path(p).expanduser() for p in os.environ.get(CALIBRATION_PATH_ENV, "").split(
        os.pathsep) if p]
    return [*extra, BUNDLED_CALIBRATIONS]


def registered_robots() -> dict[str, Path]:
    """Every robot name that ``load_robot`` finds, with its calibration file."""
    with _lock:
        _load_entry_points(ROBOT_ENTRY_POINTS)
        found = {name: path for name, (path, _) in _robots.items()}
    for folder in calibration_folders():  # in lookup order: the first one found wins
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def robot_calibration_file(name_or_path: str | os.PathLike[str]) -> Path:
    """``dclaw`` -> its calibration YAML (see the lookup order above); a ``.yaml``/``.yml`` path
    is returned as it is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    name = str(name_or_path)
    with _lock:
        _load_entry_points(ROBOT_ENTRY_POINTS)
        if name in _robots:
            return _robots[name][0]
    for folder in calibration_folders():
        path = folder / f"{name}.yaml"
        if path.exists():
            return path
    folders = ", ".join(str(f) for f in calibration_folders())
    raise RegistryError(f"no calibration named '{name}': no robot registered so (entry points "
                        f"'{ROBOT_ENTRY_POINTS}', register_robot) and no {name}.yaml in {folders}"
                        f"; known: {', '.join(registered_robots())}")


# ---- tasks -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """A task as the rest of robot_rl finds it by name.

    ``task`` is the ``robot_rl.tasks.base.Task`` subclass ("module:Class") that states the task's
    observation keys, action mode, reward and success rule, episode length and real-robot reset.
    The other fields say how the twin plays it and who demonstrates it; each "module:attr" string
    is imported only when it is needed.
    """

    name: str
    task: str
    env_id: str
    default_robot: str = ""  # the robot an env id makes when no calibration is given
    expert: str = ""  # a scripted expert ("module:Class", a sim_twin.experts.Expert); '' none
    pipeline_config: str = ""  # the task's pipeline config: a name in robot_rl/configs or a path
    launch_file: str = ""  # the graph's launch file (a name in launch/, or a path)
    env_entry_point: str = TASK_ENV_ENTRY_POINT
    description: str = ""


BUILTIN_TASKS = (
    TaskSpec("valve", "robot_rl.tasks.valve:ValveTask", "robot_rl/ValveTurn-v0",
             default_robot="dclaw", expert="robot_rl.sim_twin.experts:ValveExpert",
             pipeline_config="valve", launch_file="valve.launch.yaml",
             description="turn a three-spoke valve to a goal angle with a three-finger hand"),
    TaskSpec("drawer", "robot_rl.tasks.drawer:DrawerTask", "robot_rl/DrawerOpen-v0",
             default_robot="arm6", expert="robot_rl.sim_twin.experts:DrawerExpert",
             pipeline_config="drawer", launch_file="drawer.launch.yaml",
             description="hook a drawer's handle with an arm and pull it open"),
)
_tasks: dict[str, TaskSpec] = {spec.name: spec for spec in BUILTIN_TASKS}
_task_origins: dict[str, str] = {spec.name: "robot_rl (built in)" for spec in BUILTIN_TASKS}


def register_task(spec: TaskSpec, *, origin: str = "") -> None:
    """Makes the task known by its name and env id (and registers the env id with gymnasium if
    gymnasium is imported; otherwise that happens when it is)."""
    with _lock:
        _load_entry_points(TASK_ENTRY_POINTS)
        _add_task(spec, origin or "register_task()")
    if "gymnasium" in sys.modules:
        _register_gym_ids([spec])


def _add_task(spec: Any, origin: str) -> None:
    if not isinstance(spec, TaskSpec):
        raise RegistryError(f"{origin}: expected a robot_rl.registry.TaskSpec, got {spec!r}")
    for field_name in ("task", "expert", "env_entry_point"):
        value = getattr(spec, field_name)
        if value and ":" not in value:
            raise RegistryError(f"{origin}: task {spec.name!r}: {field_name} {value!r}: expected "
                                "'module:attribute'")
    for other in _tasks.values():
        clash = other.name == spec.name or other.env_id == spec.env_id
        if clash and other != spec:
            raise RegistryError(f"{origin}: task {spec.name!r} ({spec.env_id}) clashes with task "
                                f"{other.name!r} ({other.env_id}) from "
                                f"{_task_origins[other.name]}")
    _tasks[spec.name] = spec
    _task_origins[spec.name] = origin


def registered_tasks() -> dict[str, TaskSpec]:
    with _lock:
        _load_entry_points(TASK_ENTRY_POINTS)
        return dict(_tasks)


def task_spec(name_or_env_id: str) -> TaskSpec:
    """The task named ``name_or_env_id``, or whose gymnasium id it is."""
    tasks = registered_tasks()
    if name_or_env_id in tasks:
        return tasks[name_or_env_id]
    for spec in tasks.values():
        if spec.env_id == name_or_env_id:
            return spec
    known = ", ".join(f"{s.name} ({s.env_id})" for s in tasks.values())
    raise RegistryError(f"task {name_or_env_id!r} is not registered; known: {known} (a package "
                        f"adds tasks through the '{TASK_ENTRY_POINTS}' entry points, a script "
                        "through robot_rl.registry.register_task)")


def make_task(name_or_env_id: str, calibration: Any, config: Any = None) -> Any:
    """The registered task on ``calibration``'s robot (a ``robot_rl.tasks.base.Task``), with its
    config from the task's defaults, the robot's settings for it and ``config`` (a mapping of
    overrides, or the task's config itself)."""
    spec = task_spec(name_or_env_id)
    cls = load_object(spec.task, f"task {spec.name!r}")
    if getattr(cls, "name", None) != spec.name:
        raise RegistryError(f"task {spec.name!r}: {spec.task} is named "
                            f"{getattr(cls, 'name', None)!r}; a task's class and its "
                            "registration must use one name")
    return cls(calibration, config)


def load_object(reference: str, what: str) -> Any:
    """The object a "module:attr" string names; an error says what it was for."""
    module_name, _, attribute = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"{what}: cannot load {reference!r}: {err}") from err
    return obj


# ---- drivers ---------------------------------------------------------------------------------

BUILTIN_DRIVERS = {
    "dynamixel_hand": "robot_rl.drivers.dynamixel.robot:DynamixelRobot",
    "dynamixel_arm": "robot_rl.drivers.dynamixel.robot:DynamixelRobot",
    "twin": "robot_rl.sim_twin.robot:TwinRobot",
}
_drivers: dict[str, tuple[str, str]] = {k: (v, "robot_rl (built in)")
                                        for k, v in BUILTIN_DRIVERS.items()}


def register_driver(kind: str, reference: str, *, origin: str = "") -> None:
    """Makes ``kind`` (a calibration's ``kind``) name the driver ``reference``
    ("module:Class", a robot_rl.robot.Robot subclass), imported when it is first used."""
    with _lock:
        _load_entry_points(DRIVER_ENTRY_POINTS)
        _add_driver(kind, reference, origin or "register_driver()")


def _add_driver(kind: str, reference: str, origin: str) -> None:
    if ":" not in reference:
        raise RegistryError(f"{origin}: driver {kind!r}: {reference!r}: expected "
                            "'module:Class'")
    known = _drivers.get(kind)
    if known is not None and known[0] != reference:
        raise RegistryError(f"{origin}: driver kind {kind!r} is already {known[0]} "
                            f"(from {known[1]})")
    _drivers[kind] = (reference, origin)


def driver_class(kind: str) -> type:
    """The ``Robot`` subclass that drives robots of ``kind``."""
    with _lock:
        _load_entry_points(DRIVER_ENTRY_POINTS)
        found = _drivers.get(kind)
        known = ", ".join(sorted(_drivers))
    if found is None:
        raise RegistryError(f"no driver for kind {kind!r}; known: {known} (a package adds one "
                            f"through the '{DRIVER_ENTRY_POINTS}' entry points)")
    return load_object(found[0], f"driver {kind!r}")


# ---- entry points ----------------------------------------------------------------------------

def _load_entry_points(group: str) -> None:
    """Reads a group's entry points once per process (call with the lock held)."""
    if group in _entry_points_loaded:
        return
    _entry_points_loaded.add(group)
    for entry in importlib.metadata.entry_points(group=group):
        origin = f"entry point '{entry.name} = {entry.value}' (group {group}" + (
            f", package {entry.dist.name})" if entry.dist is not None else ")")
        if group == DRIVER_ENTRY_POINTS:  # a class, imported when a robot of its kind starts
            _add_driver(entry.name, entry.value, origin)
            continue
        try:
            value = entry.load()
            if callable(value) and not isinstance(value, (str, os.PathLike, TaskSpec)):
                value = value()
        except Exception as err:  # a broken plugin is named, not a mystery
            raise RegistryError(f"{origin}: loading it failed: {type(err).__name__}: {err}"
                                ) from err
        if group == ROBOT_ENTRY_POINTS:
            if not isinstance(value, (str, os.PathLike)):
                raise RegistryError(f"{origin}: expected a calibration YAML path, got {value!r}")
            _add_robot(entry.name, Path(value).expanduser().resolve(), origin)
        else:
            for spec in value if isinstance(value, (list, tuple)) else (value,):
                _add_task(spec, origin)


def reload_entry_points() -> None:
    """Reads the entry points again (after installing a package into the running process)."""
    with _lock:
        _entry_points_loaded.clear()


# ---- gymnasium -------------------------------------------------------------------------------

def register_gym_envs() -> None:
    """Registers every task's env id with gymnasium (entry-point strings: nothing is imported
    until ``gymnasium.make``). Safe to call again."""
    _register_gym_ids(registered_tasks().values())


def _register_gym_ids(specs: Iterable[TaskSpec]) -> None:
    import gymnasium as gym

    for spec in specs:
        if spec.env_id not in gym.registry:
            gym.register(spec.env_id, entry_point=spec.env_entry_point,
                         kwargs={"task": spec.name})


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` once a module named ``name`` has been imported (a post-import hook)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and so that the search below finds the real module
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, callback: Callable[[ModuleType], None]) -> None:
        self.loader, self.callback = loader, callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader  # the module keeps its real loader (resources, reload)
        self.loader.exec_module(module)
        self.callback(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)


def install_gym_registration() -> None:
    """Gymnasium ids for every task: now if gymnasium is imported, else right after it is."""
    if "gymnasium" in sys.modules:
        register_gym_envs()
        return
    if not any(isinstance(f, _AfterImport) and f.name == "gymnasium" for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport("gymnasium", lambda _: register_gym_envs()))


# ---- what is registered, for people -----------------------------------------------------------

def describe_task(name_or_env_id: str, robot: str | None = None) -> str:
    """A task on a robot as text: observation keys (sizes), action mode, reward and success,
    episode length, the twin's scene, the real robot's reset procedure."""
    from robot_rl.robot_config import load_robot

    spec = task_spec(name_or_env_id)
    calibration = load_robot(robot or spec.default_robot)
    task = make_task(spec.name, calibration)
    config = task.config
    lines = [f"task {spec.name} ({spec.env_id}) on robot {calibration.robot}: "
             f"{spec.description or type(task).__name__}",
             f"  class: {spec.task}; expert: {spec.expert or 'none'}; pipeline config: "
             f"{spec.pipeline_config or 'none'}; launch: {spec.launch_file or 'none'}",
             f"  observation ({task.observation_size} floats): " + ", ".join(
                 f"{key} ({s.stop - s.start})" for key, s in task.layout.items()),
             f"  action: {task.n_joints} values in [-1, 1], mode {config.action_mode}",
             f"  reward: {config.reward}; success: {type(task).__name__}.is_success; "
             f"terminate on success: {config.terminate_on_success}",
             f"  episode: {config.episode_length_steps} steps of {config.control_period_s} s",
             f"  sites: {', '.join(task.required_sites) or 'none'}; twin scene: "
             f"{calibration.scene_file(spec.name)}",
             "  real-robot reset:"]
    lines += [f"    {i}. {step.name} ({step.kind}): {step.description}"
              for i, step in enumerate(task.real_reset_procedure(), 1)]
    return "\n".join(lines)


def task_origin(name: str) -> str:
    """Who registered a task (robot_rl, an entry point, a register_task call)."""
    registered_tasks()
    return _task_origins[name]


def registered_drivers() -> dict[str, tuple[str, str]]:
    """Driver kind -> ("module:Class", who registered it)."""
    with _lock:
        _load_entry_points(DRIVER_ENTRY_POINTS)
        return dict(_drivers)


def env_id_task(env_id: str) -> str:
    """The task name of a pipeline env id (robot_rl/ValveTurn-v0 -> valve); '' if none."""
    try:
        return task_spec(env_id).name
    except ValueError:
        return ""
