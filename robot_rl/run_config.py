"""The pipeline's config: which task and robot, how much data, how long to train, how to evaluate."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_rl.config import ConfigError, apply_overrides, from_dict, load_yaml, named_yaml
from robot_rl.learning.config import TOOLKIT_FIELDS, AWACConfig
from robot_rl.learning.encoders import EncoderConfig
from robot_rl.registry import task_spec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class DatasetConfig:
    """Demonstrations like the AWAC paper's: clean expert runs plus noisy ones (paper: 25 + 500)."""

    demonstrations: int = field(default=25, metadata={"range": (0, 100_000),
                                                      "help": "clean runs of the scripted expert"})
    noisy_trajectories: int = field(default=500, metadata={
        "range": (0, 1_000_000), "help": "runs of the expert with noise added to its actions"})
    noise_std: float = field(default=0.5, metadata={"range": (0.0, 5.0),
                                                    "help": "expert action noise of the noisy runs"})


@dataclass(frozen=True)
class PretrainConfig:
    """Offline AWAC on the dataset."""

    updates: int = field(default=25_000, metadata={"range": (0, 10_000_000),
                                                   "help": "offline gradient updates"})
    log_every_updates: int = field(default=500, metadata={
        "range": (1, 1_000_000), "help": "a row of metrics every this many updates, and at the last"})


@dataclass(frozen=True)
class FinetuneConfig:
    """Online fine-tuning in the twin, every command gated by the safety supervisor."""

    env_steps: int = field(default=20_000, metadata={"range": (0, 100_000_000),
                                                     "help": "online control steps in all"})
    updates_per_env_step: int = field(default=1, metadata={
        "range": (1, 100), "help": "gradient updates per online step, made after each episode"})
    eval_every_env_steps: int = field(default=1_000, metadata={
        "range": (1, 10_000_000), "help": "evaluate the policy every this many online steps"})
    stop_at_success_rate: float = field(default=0.0, metadata={
        "range": (0.0, 1.0), "help": "end the online phase at the first evaluation at or above "
                                     "this success rate; 0: run the whole budget"})


OPERATORS = ("none", "scripted", "keyboard", "joystick")
REGION_EPISODES = ("successful", "clean", "all")


@dataclass(frozen=True)
class InterventionConfig:
    """An operator who takes over during in-process fine-tuning (on the graph: the teleop node).

    ``scripted``: the task's expert stands in for a person (sim_twin.operator): it takes over when
    the policy made no progress for stuck_steps steps or left the demonstrations' region, acts for
    hold_steps steps, and hands back. Its steps are recorded as interventions and go to both sides
    of the replay (to_offline)."""

    operator: str = field(default="none", metadata={
        "choices": OPERATORS, "help": "none: the policy alone; scripted: the task's expert takes "
                                      "over by the rules below; keyboard (this terminal, t "
                                      "toggles) or joystick (a gamepad at joystick_path, hold "
                                      "the right trigger): a person (in-process runs; on the "
                                      "graph: the teleop node, role intervene)"})
    joystick_path: str = field(default="/dev/input/js0", metadata={
        "help": "operator joystick: the gamepad's device file"})
    realtime: bool = field(default=True, metadata={
        "help": "operator keyboard/joystick: online episodes at the control rate, so that a "
                "person can follow them"})
    stuck_steps: int = field(default=20, metadata={
        "range": (1, 10_000), "help": "take over after this many steps without progress"})
    min_progress: float = field(default=0.02, metadata={
        "range": (0.0, 1.0), "help": "progress (the task's dense reward, in [-1, 0]) that counts "
                                     "within stuck_steps"})
    region: bool = field(default=True, metadata={
        "help": "also take over when the observation leaves the demonstrations' region"})
    region_fields: tuple[str, ...] = field(default=("joint_position_rad",), metadata={
        "help": "observation fields the region is measured on"})
    region_episodes: str = field(default="successful", metadata={
        "choices": REGION_EPISODES, "help": "dataset episodes that make the region (successful: "
                                            "those whose info says success)"})
    region_quantile: float = field(default=0.99, metadata={
        "range": (0.01, 1.0), "help": "radius: this quantile of the demonstrations' own "
                                      "nearest-neighbour distances between episodes"})
    region_margin: float = field(default=1.5, metadata={
        "range": (0.1, 100.0), "help": "radius multiplier"})
    hold_steps: int = field(default=20, metadata={
        "range": (1, 10_000), "help": "steps the operator keeps control once it took over"})
    max_takeovers_per_episode: int = field(default=2, metadata={
        "range": (0, 1000), "help": "takeovers allowed in one episode"})
    until_env_steps: int = field(default=0, metadata={
        "range": (0, 100_000_000), "help": "the operator watches the first this many online steps "
                                           "only; 0: the whole run"})
    to_offline: bool = field(default=True, metadata={
        "help": "operator transitions also go to the offline (demonstration) side of the replay "
                "(HIL-SERL's rule); with uniform replay: stored twice"})
    trend_window: int = field(default=20, metadata={
        "range": (1, 100_000), "help": "episodes in the logged intervention_rate_mean"})


@dataclass(frozen=True)
class EvalConfig:
    """Success rate of the deterministic policy on seeds never used for data."""

    episodes: int = field(default=50, metadata={"range": (1, 100_000),
                                                "help": "episodes per evaluation"})


REWARD_SOURCES = ("rule", "classifier")


@dataclass(frozen=True)
class RewardConfig:
    """Where online episodes take their reward and success from (in process; on the graph the
    learner node's reward_classifier parameter). Evaluations always measure the twin's success."""

    source: str = field(default="rule", metadata={
        "choices": REWARD_SOURCES, "help": "rule: the task's own; classifier: a success "
                                           "classifier (robot-rl reward train)"})
    classifier: str = field(default="", metadata={"help": "the classifier file (source: "
                                                          "classifier)"})
    threshold: float = field(default=0.0, metadata={
        "range": (0.0, 1.0), "help": "success when p >= threshold; 0: the classifier's own"})
    debounce_frames: int = field(default=0, metadata={
        "range": (0, 1000), "help": "success once this many frames in a row show it; 0: the "
                                    "classifier's own"})


@dataclass(frozen=True)
class PipelineConfig:
    env_id: str = field(default="robot_rl/ValveTurn-v0", metadata={
        "help": "the task, as a registered gymnasium id (robot_rl/ValveTurn-v0, "
                "robot_rl/DrawerOpen-v0, or a plugin's: robot_rl.registry)"})
    robot: str = field(default="dclaw", metadata={
        "help": "calibration: a name in robot_rl/calibration/ or a YAML path"})
    seed: int = field(default=0, metadata={"range": (0, 2**31 - 1),
                                           "help": "seeds the data, the networks and the evaluation"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "keyword arguments of the environment, e.g. {config: {action_mode: absolute}}"})
    dataset: DatasetConfig = DatasetConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    eval: EvalConfig = EvalConfig()
    intervention: InterventionConfig = InterventionConfig()
    reward: RewardConfig = RewardConfig()
    awac: AWACConfig = AWACConfig()
    encoder: EncoderConfig = field(default_factory=EncoderConfig, metadata={
        "help": "the image encoder of a pixel task (env_kwargs {config: {observation: pixels}}); "
                "state tasks ignore it"})


def toolkit_off_overrides() -> list[str]:
    """``--set`` overrides that put the offline-to-online toolkit's switches at AWACConfig's
    defaults (the paper's AWAC: uniform replay, two critics and their minimum, no LayerNorm, no
    warm start, the final policy handed over), one update per env step and the conservative
    collapse guard on (every task file had it then; the valve's is off since 2026-12-06); sizes
    and budgets stay. The AWAC the studies measured before the task files turned the toolkit on
    (bench/hil_study.py, bench/pixel_study.py), as ``make demo``'s profile pins it; overrides
    given after them still apply."""
    paper = AWACConfig()
    return [*(f"awac.{name}={json.dumps(getattr(paper, name))}" for name in TOOLKIT_FIELDS),
            "finetune.updates_per_env_step=1", "awac.collapse_guard.conservative=true"]


def config_path(name_or_path: str | Path) -> Path:
    """``valve`` -> robot_rl/configs/valve.yaml; a path is returned as is."""
    return named_yaml(name_or_path, CONFIG_DIR, "pipeline config")


EXTENDS = "extends"
MAX_EXTENDS_DEPTH = 16


def load_pipeline_config(name_or_path: str | Path, overrides: list[str] | None = None,
                         profile: str | None = None) -> PipelineConfig:
    """Loads a pipeline config; ``profile`` picks a section under ``profiles:`` merged on top.

    A config may start from another: ``extends: valve`` (a name in robot_rl/configs, or a path,
    relative to the file) takes that config's settings and profiles, and the file's own settings
    and profiles go on top. A config of one's own must say where it starts: a file outside
    robot_rl/configs that leaves settings unset and names no ``extends`` is refused, since it
    would silently take the library's bare defaults (500 noisy runs, batch 1024, the guard off)
    instead of a task's; ``extends: null`` asks for those defaults explicitly.
    """
    path = config_path(name_or_path)
    data = _resolved_yaml(path, [])
    profiles = data.pop("profiles", {}) or {}
    if profile is not None:
        if profile not in profiles:
            raise ConfigError(f"{path}: profiles: no profile '{profile}'; known: {sorted(profiles)}")
        data = _merge(data, profiles[profile])
    data = apply_overrides(data, overrides or [])
    config = from_dict(PipelineConfig, data, source=str(path))
    check_env_id(config, str(path))
    return config


def check_env_id(config: PipelineConfig, where: str) -> None:
    """The config's env_id must be a registered task's (a plugin's once its package is
    installed); the error lists the known ones."""
    try:
        task_spec(config.env_id)
    except ValueError as err:
        raise ConfigError(f"{where}: env_id: {err}") from None


def extends_value(name_or_path: str | Path) -> str:
    """What a printout of this config writes as its ``extends``: a shipped config's name, or the
    file's absolute path (so that the printout keeps its settings' origin and its profiles)."""
    path = config_path(name_or_path)
    if path.resolve().parent == CONFIG_DIR:
        return path.stem
    return str(path.resolve())


def _resolved_yaml(path: Path, chain: list[Path]) -> dict[str, Any]:
    """The file's data on top of what it extends (recursively); profiles merged by name."""
    if path.resolve() in chain or len(chain) >= MAX_EXTENDS_DEPTH:
        loop = " -> ".join(str(p) for p in [*chain, path.resolve()])
        raise ConfigError(f"{path}: {EXTENDS}: configs extend each other in a loop: {loop}")
    data = load_yaml(path)
    if EXTENDS not in data:
        _check_complete(path, data)
        return data
    base_name = data.pop(EXTENDS)
    if base_name is None:  # explicitly the library's defaults
        return data
    if not isinstance(base_name, str) or not base_name:
        raise ConfigError(f"{path}: {EXTENDS}: expected a config name (valve, drawer) or a "
                          f"YAML path, got {base_name!r}")
    base_path = Path(base_name)
    if base_path.suffix in (".yaml", ".yml") and not base_path.is_absolute():
        base_path = path.parent / base_path
    try:
        base_path = config_path(base_path if base_path.suffix in (".yaml", ".yml")
                                else base_name)
    except ConfigError as err:
        raise ConfigError(f"{path}: {EXTENDS}: {err}") from err
    if not base_path.exists():
        raise ConfigError(f"{path}: {EXTENDS}: {base_path} does not exist")
    base = _resolved_yaml(base_path, [*chain, path.resolve()])
    profiles = {**(base.pop("profiles", {}) or {})}
    for name, section in (data.pop("profiles", {}) or {}).items():
        profiles[name] = _merge(profiles.get(name, {}), section or {})
    merged = _merge(base, data)
    if profiles:
        merged["profiles"] = profiles
    return merged


def _check_complete(path: Path, data: dict[str, Any]) -> None:
    """Refuses a config of one's own (outside robot_rl/configs) that leaves settings to the
    library's defaults without saying so (no ``extends``)."""
    if path.resolve().parent == CONFIG_DIR:
        return  # the shipped configs are the roots: their unset settings are meant
    unset = _unset(PipelineConfig, data)
    if unset:
        shown = ", ".join(unset[:3]) + (f" and {len(unset) - 3} more" if len(unset) > 3 else "")
        raise ConfigError(f"{path}: sets no '{EXTENDS}' and leaves {shown} unset: a config "
                          f"starts from a task's config; add '{EXTENDS}: valve' (or drawer, or "
                          f"another config's path) at the top, or '{EXTENDS}: null' to take the "
                          f"library's bare defaults for what it does not set")


def _unset(cls: Any, data: Any, prefix: str = "") -> list[str]:
    """The dotted names of ``cls``'s settings that ``data`` does not set."""
    if not isinstance(data, dict):
        return []  # a wrong type is from_dict's to report, with its own message
    missing = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in data:
            missing.append(name)
        elif _is_config_class(cls, f.name):
            missing += _unset(_field_type(cls, f.name), data[f.name], f"{name}.")
    return missing


def _field_type(cls: Any, name: str) -> Any:
    import typing
    return typing.get_type_hints(cls)[name]


def _is_config_class(cls: Any, name: str) -> bool:
    hint = _field_type(cls, name)
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def check_graph_config(config: PipelineConfig, where: str, *,
                       observation_allowed: bool = False) -> None:
    """The graph's nodes build their task from its defaults (``agent.tasks.make_task``), so a
    config whose ``env_kwargs`` change the environment would train on one task and act on another.
    ``observation_allowed``: the caller (the learner) passes ``env_kwargs: {config: {observation:
    ...}}`` on as its ``observation`` parameter, the one task setting the nodes take.
    """
    if observation_allowed and set(config.env_kwargs) == {"config"} and \
            set(config.env_kwargs["config"] or {}) == {"observation"}:
        return
    if config.env_kwargs:
        raise ConfigError(
            f"{where}: env_kwargs {config.env_kwargs} apply to in-process runs only (robot-rl demo "
            f"--in-process, the stage commands, bench/experiments.py); the graph's nodes act on "
            f"the task's defaults")


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = {**base}
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
