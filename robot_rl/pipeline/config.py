"""The pipeline's config: which task and robot, how much data, how long to train, how to evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_rl.config import ConfigError, apply_overrides, from_dict, load_yaml, named_yaml
from robot_rl.learning.config import AWACConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


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
        "range": (1, 1_000_000), "help": "a row of metrics every this many updates"})


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
    env_id: str = field(default="robot_rl/ValveTurn-v0",
                        metadata={"choices": ("robot_rl/ValveTurn-v0", "robot_rl/DrawerOpen-v0"),
                                  "help": "the task, as a gymnasium id"})
    robot: str = field(default="dclaw", metadata={
        "help": "calibration: a name in calibration/ or a YAML path"})
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


def config_path(name_or_path: str | Path) -> Path:
    """``valve`` -> robot_rl/configs/valve.yaml; a path is returned as is."""
    return named_yaml(name_or_path, CONFIG_DIR, "pipeline config")


def load_pipeline_config(name_or_path: str | Path, overrides: list[str] | None = None,
                         profile: str | None = None) -> PipelineConfig:
    """Loads a pipeline config; ``profile`` picks a section under ``profiles:`` merged on top."""
    path = config_path(name_or_path)
    data = load_yaml(path)
    profiles = data.pop("profiles", {}) or {}
    if profile is not None:
        if profile not in profiles:
            raise ConfigError(f"{path}: profiles: no profile '{profile}'; known: {sorted(profiles)}")
        data = _merge(data, profiles[profile])
    data = apply_overrides(data, overrides or [])
    return from_dict(PipelineConfig, data, source=str(path))


def check_graph_config(config: PipelineConfig, where: str) -> None:
    """The graph's nodes build their task from its defaults (``agent.tasks.make_task``), so a
    config whose ``env_kwargs`` change the environment would train on one task and act on another.
    """
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
