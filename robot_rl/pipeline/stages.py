"""The pipeline's steps: record demonstrations, pretrain offline, fine-tune online, evaluate, report.

Each step reads what the step before wrote to disk (a zarr dataset, a checkpoint), so each can be run on
its own from the CLI, resumed, or swapped for the real robot's version of it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.config import ConfigError, annotated_yaml, apply_overrides, from_dict, to_dict
from robot_rl.data import EpisodeStore, transitions
from robot_rl.data.transition_arrays import (
    PIXEL_UNITS,
    TRANSITION_UNITS,
    action_mode_extra,
    check_action_mode,
    check_observation_size,
    observation_extra,
    store_observation,
)
from robot_rl.hil.replay import INTERVENTION_KEY, add_online_episode
from robot_rl.learning import (
    AWAC,
    UPDATES_PER_S,
    MetricsLogger,
    UpdateRate,
    episode_metrics,
    save_checkpoint,
)
from robot_rl.learning.checkpoint import (
    RUNTIME_SETTINGS,
    CheckpointError,
    check_checkpoint_action_mode,
    load_checkpoint,
    stored_awac_settings,
)
from robot_rl.learning.config import AWACConfig
from robot_rl.learning.factory import (
    Replay,
    agent_from_checkpoint,
    hand_over,
    make_replay,
    new_agent,
    train_step,
)
from robot_rl.learning.keeper import Kept
from robot_rl.learning.pixel_agent import PixelAgent, checkpoint_view, is_pixel_checkpoint
from robot_rl.learning.pixel_data import PixelReplay, check_pixel_store, new_pixel_agent, pixel_replay
from robot_rl.pipeline.hil import OnlineHooks, SuccessModel
from robot_rl.pipeline.outputs import clear_log, refuse_existing
from robot_rl.pipeline.report import CurvePoint, Report
from robot_rl.pipeline.rollout import Episode, GatedEnv
from robot_rl.robot_config import load_robot, robot_digest
from robot_rl.run_config import PipelineConfig, load_pipeline_config

# Seeds of evaluation episodes never overlap the seeds used to record or to explore.
EVAL_SEED_OFFSET = 1_000_000
ONLINE_SEED_OFFSET = 2_000_000
# What each stage writes into its run folder.
OFFLINE_CHECKPOINT = "offline.pt"
FINETUNED_CHECKPOINT = "finetuned.pt"
HANDED_CHECKPOINT = "handed.pt"  # the policy handed over (awac.handed_policy: best)
ONLINE_STORE = "online.zarr"
DATASET = "dataset.zarr"
FINETUNE_SUMMARY = "finetune/summary.json"
REPORT_OUTPUTS = ("report.md", "report.json", "learning_curve.png")


@dataclass
class RecordSummary:
    """What one ``record`` wrote (episodes, steps) and the dataset it wrote into holds now."""

    episodes: int
    steps: int
    demo_success_rate: float
    noisy_success_rate: float
    total_episodes: int = 0
    total_steps: int = 0

    @property
    def appended(self) -> bool:
        return self.total_episodes > self.episodes


@dataclass
class EvalResult:
    success_rate: float
    mean_return: float
    episodes: int


@dataclass
class FinetuneResult:
    checkpoint: Path          # the last agent, to resume from
    curve: list[CurvePoint]
    safety: dict[str, int]
    handed: Path | None = None  # the policy handed over (awac.handed_policy), as a checkpoint
    handed_point: CurvePoint | None = None  # the measurement the keeper chose it by
    interventions: dict[str, Any] = field(default_factory=dict)  # OnlineHooks.summary()


def record(config: PipelineConfig, dataset_path: Path, *, progress: bool = True,
           append: bool = False, overwrite: bool = False) -> RecordSummary:
    """Scripted expert episodes (clean, then noisy) into a zarr dataset, one commit per episode.

    A new dataset; with ``append`` an existing one of the same robot, task, calibration and
    action mode is added to (another is refused, one line, before any episode runs), and the
    episode seeds continue after its episodes so that nothing is recorded twice; ``overwrite``
    replaces an existing dataset (a zarr store only).
    """
    robot = load_robot(config.robot)
    with closing(GatedEnv(config)) as env:
        source = {"robot": robot.robot, "task": config.env_id,
                  "calibration_digest": robot_digest(config.robot), **store_source(env)}
        open_store = EpisodeStore.create_or_append if append else EpisodeStore.create
        with open_store(dataset_path, **source, overwrite=overwrite) as store:
            first = store.n_episodes
            successes = _record_episodes(config, env, store, first, progress)
            return RecordSummary(episodes=store.n_episodes - first,
                                 steps=store.n_steps - _steps_before(store, first),
                                 demo_success_rate=_rate(successes["clean"]),
                                 noisy_success_rate=_rate(successes["noisy"]),
                                 total_episodes=store.n_episodes, total_steps=store.n_steps)


def _record_episodes(config: PipelineConfig, env: GatedEnv, store: EpisodeStore, first: int,
                     progress: bool) -> dict[str, list[bool]]:
    """The config's plan of episodes, numbered from ``first``: a dataset appended to gets the
    episodes one longer recording would have had after its own (same seed streams)."""
    successes: dict[str, list[bool]] = {"clean": [], "noisy": []}
    plan = [("clean", 0.0)] * config.dataset.demonstrations
    plan += [("noisy", config.dataset.noise_std)] * config.dataset.noisy_trajectories
    rng = np.random.default_rng(config.seed)
    for _ in range(first):  # the expert seeds the episodes already there were recorded with
        rng.integers(2**31)
    for offset, (kind, noise_std) in enumerate(tqdm(plan, desc="record", disable=not progress)):
        index = first + offset
        expert = env.expert(noise_std, seed=int(rng.integers(2**31)))
        episode = env.run_episode(expert, seed=config.seed * 100_003 + index)
        store.add_episode(episode.steps, {"success": episode.success, "seed": episode.seed,
                                          "kind": kind, "noise_std": noise_std,
                                          "operator": "scripted expert"})
        successes[kind].append(episode.success)
    return successes


def _steps_before(store: EpisodeStore, episodes: int) -> int:
    return int(store.episode_ends[episodes - 1]) if episodes else 0


def pretrain(config: PipelineConfig, dataset_path: Path, run_dir: Path, *,
             progress: bool = True, overwrite: bool = False) -> Path:
    """Offline AWAC on every transition of the dataset; writes RUN/offline.pt, refusing (before
    training) to replace one unless ``overwrite``."""
    path = run_dir / OFFLINE_CHECKPOINT
    refuse_existing([(path, "the offline policy of an earlier pretrain")], overwrite,
                    "pass --overwrite to replace it, or --out another run folder")
    with closing(GatedEnv(config)) as env:
        data = task_transitions(config, dataset_path, env)
        task, action_mode = env.task, env.action_mode
    run_dir.mkdir(parents=True, exist_ok=True)
    if task.uses_pixels:
        agent = new_pixel_agent(config, task, data)
    else:
        agent = new_agent(config.awac, data, config.seed)
    replay = agent_replay(config, agent, data, dataset_path, online_capacity=0)
    if overwrite:
        clear_log(run_dir / "pretrain")
    logger = MetricsLogger(run_dir / "pretrain")
    logger.log_config(annotated_yaml(config))
    rate = UpdateRate()
    generator = np.random.default_rng(config.seed)
    for step in tqdm(range(1, config.pretrain.updates + 1), desc="pretrain",
                     disable=not progress):
        with rate.timing():
            metrics = train_step(agent, replay, config.awac.batch_size, generator)
        # and at the last update: a run shorter than the period (the quick profile's 200
        # updates, logged every 250) still leaves its metrics
        if step % config.pretrain.log_every_updates == 0 or step == config.pretrain.updates:
            logger.log(step, {**metrics, UPDATES_PER_S: rate.read()})
    logger.close()
    save_checkpoint(path, agent, agent.normalizer, to_dict(config),
                    {"offline_updates": config.pretrain.updates, "online_env_steps": 0},
                    action_mode=action_mode)
    return path


def evaluate(config: PipelineConfig, agent: AWAC, episodes: int, *, env: GatedEnv | None = None,
             progress: bool = False, fallback: bool = True,
             first_seed: int | None = None) -> EvalResult:
    """Success rate of the deterministic policy on seeds never used for data. ``fallback=False``
    evaluates the policy being fine-tuned, not the guard's snapshot standing in for it.
    ``first_seed``: episodes on first_seed, first_seed + 1, ... instead of the evaluation seeds
    (e.g. a held-out check of a policy chosen by its evaluations)."""
    if episodes < 1:
        raise ValueError(f"evaluation needs at least 1 episode, got {episodes}")
    if first_seed is None:
        first_seed = EVAL_SEED_OFFSET + config.seed * 10_007
    own_env = env is None
    env = env or GatedEnv(config)
    results: list[Episode] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, deterministic=True, fallback=fallback)

    for index in tqdm(range(episodes), desc="eval", disable=not progress, leave=False):
        results.append(env.run_episode(policy, seed=first_seed + index))
    if own_env:
        env.close()
    return EvalResult(success_rate=_rate([e.success for e in results]),
                      mean_return=float(np.mean([e.episode_return for e in results])),
                      episodes=episodes)


def evaluate_checkpoint(config: PipelineConfig, checkpoint: Path, episodes: int, *,
                        progress: bool = True, handed: bool = False) -> EvalResult:
    """The checkpoint's policy on ``config``'s task. Its networks are rebuilt from the AWAC
    settings stored in the checkpoint (where and how to run them from ``config``), so a
    checkpoint evaluates whatever the config's network settings are; a checkpoint of another
    task is refused, one line. ``handed``: evaluate the policy the checkpoint hands over
    (``awac.handed_policy``; the learner node's ``learner.pt`` keeps the keeper's choice), not
    its last actor."""
    with closing(GatedEnv(config)) as env:
        state = load_checkpoint(checkpoint)
        check_checkpoint_task(state, config, env)
        agent = agent_from_checkpoint(state, checkpoint_awac(state, config), seed=config.seed)
        if handed:
            hand_over(agent)
        return evaluate(config, agent, episodes, env=env, progress=progress)


def checkpoint_awac(state: dict, config: PipelineConfig) -> AWACConfig:
    """The AWAC settings the checkpoint was trained with (``config.awac`` for one that does not
    store them), run where and as ``config`` says (device, compile, matmul precision)."""
    stored = stored_awac_settings(state)
    if stored is None:
        return config.awac
    awac = from_dict(AWACConfig, stored, source=f"{state['path']} (its stored config)",
                     prefix="awac")
    return dataclasses.replace(awac, **{k: getattr(config.awac, k) for k in RUNTIME_SETTINGS})


def eval_config(checkpoint: Path, config_name: str | None, overrides: list[str],
                profile: str | None) -> PipelineConfig:
    """The config ``robot-rl eval`` runs on: ``config_name`` (with its profile) if given, else
    the config stored in the checkpoint; ``--set`` overrides on top of either."""
    if config_name is not None:
        return load_pipeline_config(config_name, overrides, profile)
    if profile is not None:
        raise ConfigError(f"--profile {profile} needs --config: the config stored in "
                          f"{checkpoint} has no profiles")
    state = load_checkpoint(checkpoint)
    if not isinstance(state["config"], dict) or "env_id" not in state["config"]:
        raise CheckpointError(checkpoint, "stores no pipeline config to evaluate it on: pass "
                                          "--config")
    data = apply_overrides(state["config"], overrides)
    return from_dict(PipelineConfig, data, source=f"{checkpoint} (its stored config)")


def check_checkpoint_task(state: dict, config: PipelineConfig, env: GatedEnv) -> None:
    """Refuses (one line naming the file) a checkpoint trained for another task than
    ``config``'s: another environment, other environment settings (e.g. the action mode) or
    networks of other observation or action sizes."""
    path, stored = state["path"], state.get("config")
    stored = stored if isinstance(stored, dict) else {}
    sizes = f"{state['obs_dim']} observation values, {state['act_dim']} actions"
    here = f"{env.obs_dim} observation values, {env.act_dim} actions"
    if stored.get("env_id", config.env_id) != config.env_id:
        raise CheckpointError(path, f"trained for {stored['env_id']} ({sizes}), not for "
                                    f"{config.env_id} ({here})")
    view = env.task.image
    if is_pixel_checkpoint(state) != (view is not None):
        kinds = ("pixels" if is_pixel_checkpoint(state) else "state",
                 "pixels" if view is not None else "state")
        raise CheckpointError(path, f"a policy from {kinds[0]}; {config.env_id} here gives "
                                    f"{kinds[1]} observations")
    if stored.get("env_kwargs", config.env_kwargs) != config.env_kwargs:
        raise CheckpointError(path, f"trained with env_kwargs {stored['env_kwargs']}, this run "
                                    f"has {config.env_kwargs}: its actions mean something else "
                                    f"here")
    check_checkpoint_action_mode(state, env.action_mode, config.env_id,
                                 env.task.unnamed_action_mode)
    if (int(state["obs_dim"]), int(state["act_dim"])) != (env.obs_dim, env.act_dim):
        raise CheckpointError(path, f"its networks take {sizes}; {config.env_id} has {here} "
                                    f"(trained before the task's observation changed?)")
    if view is not None and checkpoint_view(state) != view:
        raise CheckpointError(path, f"trained on the view {checkpoint_view(state)}, the task's "
                                    f"is {view}")


def finetune(config: PipelineConfig, run_dir: Path, dataset_path: Path, *,
             progress: bool = True, agent: AWAC | None = None,
             overwrite: bool = False, resume: bool = False,
             success_model: SuccessModel | None = None) -> FinetuneResult:
    """Online AWAC in the twin: act, store the episode, update; the dataset stays in the buffer.

    Writes RUN/online.zarr and RUN/finetuned.pt, refusing (before anything runs) to replace
    those of an earlier run unless ``overwrite``. ``resume`` is the third choice: continue the
    earlier run for another ``finetune.env_steps`` steps, from RUN/finetuned.pt (weights,
    optimisers, the collapse guard's state) with RUN/online.zarr's episodes back in the replay
    and new ones appended to it, the step count, the episode seeds and the curve carrying on
    where they stopped: session after session on a robot. ``agent``: start from this agent
    instead of RUN/offline.pt (experiments use it for an agent built from scratch, or one whose
    actor objective was switched after pretraining). ``success_model``: reward and success of
    the online episodes from this detector instead of the task's rule (evaluations still measure
    the twin's success); by default the config's ``reward`` section decides (pipeline.hil)."""
    if resume and (overwrite or agent is not None):
        raise ConfigError("finetune: --resume continues the earlier run; it cannot also "
                          "--overwrite it (or start from another agent)")
    if resume:
        for path, what in ((run_dir / FINETUNED_CHECKPOINT, "finetuned.pt"),
                           (run_dir / ONLINE_STORE, "online.zarr")):
            if not path.exists():
                raise CheckpointError(path, f"missing: --resume continues a finetune run, and "
                                            f"this folder has no {what} (run finetune without "
                                            f"--resume first)")
    else:
        refuse_existing([(run_dir / ONLINE_STORE, "the online episodes of an earlier finetune"),
                         (run_dir / FINETUNED_CHECKPOINT, "the policy of an earlier finetune")],
                        overwrite, "pass --overwrite to start over from the offline policy "
                                   "and replace it, --resume to continue that run, or use "
                                   "another run folder")
    with closing(GatedEnv(config)) as env:  # closed however the run ends
        data = task_transitions(config, dataset_path, env)
        if resume:
            agent = load_agent(config, run_dir / FINETUNED_CHECKPOINT, env)
        elif agent is None:
            agent = load_agent(config, run_dir / OFFLINE_CHECKPOINT, env)
        with closing(OnlineHooks.from_config(config, env, dataset_path, success_model)) as hooks:
            return _run_online(config, run_dir, data, dataset_path, agent, env, progress,
                               overwrite, resume, hooks)


def _open_online_store(config: PipelineConfig, run_dir: Path, env: GatedEnv, overwrite: bool,
                       resume: bool) -> EpisodeStore:
    """RUN/online.zarr: new (or replaced with ``overwrite``); with ``resume`` the earlier one,
    opened for append, refused (one line) if another robot, task, action mode or view wrote
    it."""
    source = {"robot": config.robot, "task": config.env_id,
              "calibration_digest": robot_digest(config.robot), **store_source(env)}
    path = run_dir / ONLINE_STORE
    if resume:
        return EpisodeStore.create_or_append(path, **source)
    return EpisodeStore.create(path, **source, overwrite=overwrite)


def _run_online(config: PipelineConfig, run_dir: Path, data: dict[str, np.ndarray],
                dataset_path: Path, agent: AWAC, env: GatedEnv, progress: bool, overwrite: bool,
                resume: bool = False, hooks: OnlineHooks | None = None) -> FinetuneResult:
    hooks = hooks or OnlineHooks()
    online_store = _open_online_store(config, run_dir, env, overwrite, resume)
    start_steps, first_episode = online_store.n_steps, online_store.n_episodes
    # a store from before the 'intervention' key keeps its schema (its episodes share one)
    record_flags = first_episode == 0 or INTERVENTION_KEY in online_store.keys
    capacity = start_steps + config.finetune.env_steps
    replay = agent_replay(config, agent, data, dataset_path, online_capacity=capacity,
                          extra_offline_capacity=hooks.offline_room(capacity))
    for _, steps in online_store.iter_episodes():  # the earlier sessions' episodes, in order
        add_online_episode(replay, steps, hooks.to_offline)  # their corrections on both sides
    if overwrite:
        clear_log(run_dir / "finetune")
    logger = MetricsLogger(run_dir / "finetune")
    logger.log_config(annotated_yaml(config))
    rate = UpdateRate()
    generator = np.random.default_rng(config.seed + 1 + first_episode)
    summary = read_finetune_summary(run_dir) if resume else FinetuneSummary()
    if not agent.guard.armed:  # a resumed agent's guard keeps its snapshot and its count
        agent.start_online()
    first_eval = evaluate(config, agent, config.eval.episodes, env=env)
    if not resume:  # a resumed agent's keeper measured this policy at the end of its session
        agent.guard.record_offline_success(first_eval.success_rate)
        agent.keeper.record(first_eval.success_rate, 0, agent.actor)
    curve = [curve_point(start_steps, first_eval)]
    # counted from the run's first online step: a resumed run past its warm start makes G per step
    schedule = UpdateSchedule(config.finetune.updates_per_env_step, config.awac.warm_start_steps)
    total = start_steps + config.finetune.env_steps
    env_steps, episode_index = start_steps, first_episode
    next_eval = start_steps + config.finetune.eval_every_env_steps
    metrics: Mapping[str, float] = {}
    bar = tqdm(total=config.finetune.env_steps, desc="finetune", disable=not progress)
    while env_steps < total:
        episode = hooks.run_episode(env, lambda obs: agent.act(obs, deterministic=False),
                                    ONLINE_SEED_OFFSET + config.seed * 100_003 + episode_index,
                                    env_steps)
        stored = {k: v for k, v in episode.steps.items() if record_flags or k != INTERVENTION_KEY}
        online_store.add_episode(stored, {"success": episode.success, "seed": episode.seed,
                                          "kind": "online", **hooks.episode_info(episode)})
        hooks.add_to_replay(replay, episode)
        blocks = schedule.blocks(env_steps, env_steps + episode.length)
        with rate.timing(sum(blocks)):
            for n in blocks:  # G updates per env step, in fused blocks of G
                metrics = train_step(agent, replay, n * config.awac.batch_size, generator)
        env_steps += episode.length
        episode_index += 1
        bar.update(episode.length)
        logger.log(env_steps, {**metrics, UPDATES_PER_S: rate.read(),
                               **episode_metrics(episode.episode_return, episode.success),
                               **hooks.episode_scalars(episode, env_steps)})
        if env_steps >= next_eval or env_steps >= total:
            point = _evaluate_online(config, agent, env, env_steps, logger)
            curve.append(point)
            bar.set_postfix(success=f"{point.success_rate:.0%}")
            next_eval += config.finetune.eval_every_env_steps
            if 0 < config.finetune.stop_at_success_rate <= point.success_rate:
                break
    bar.close()
    logger.close()
    online_store.close()
    path = run_dir / FINETUNED_CHECKPOINT
    counters = {"offline_updates": config.pretrain.updates, "online_env_steps": env_steps}
    save_checkpoint(path, agent, agent.normalizer, to_dict(config), counters,
                    action_mode=env.action_mode)
    safety = dict(env.gate.statuses)
    summary.add_session(curve if not resume else curve[1:], safety, env_steps, hooks.summary())
    summary.write(run_dir)
    handed, handed_point = path, curve[-1]
    if config.awac.handed_policy == "best" and agent.keeper.kept is not None:
        handed = save_handed(run_dir / HANDED_CHECKPOINT, agent, config, counters,
                             env.action_mode)
        handed_point = kept_point(agent.keeper.kept, summary.curve or curve)
    return FinetuneResult(checkpoint=path, curve=curve, safety=safety, handed=handed,
                          handed_point=handed_point, interventions=hooks.summary())


def kept_point(kept: Kept, curve: list[CurvePoint]) -> CurvePoint:
    """The curve's point of the keeper's policy (the whole run's curve: a resumed run's keeper
    may keep an earlier session's); one from the keeper's own record where the curve lacks it
    (a run folder from before finetune summaries)."""
    for point in reversed(curve):
        if point.env_steps == kept.label:
            return point
    return CurvePoint(env_steps=kept.label, success_rate=kept.success, mean_return=float("nan"))


def save_handed(path: Path, agent: AWAC, config: PipelineConfig,
                counters: dict[str, int], action_mode: str) -> Path:
    """The agent with the keeper's actor: loads and acts like any checkpoint."""
    last = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    hand_over(agent)
    try:
        save_checkpoint(path, agent, agent.normalizer, to_dict(config), counters,
                        action_mode=action_mode,
                        extra={"handed_from_env_steps": agent.keeper.kept.label})
    finally:
        agent.actor.load_state_dict(last)
    return path


class UpdateSchedule:
    """Updates owed online: G per env step, counted from the end of the warm start (WSRL: the
    pretrained policy acts ``warm_start_steps`` env steps before the first update; no updates
    are owed for them). Made in blocks of at most G (one fused call each)."""

    def __init__(self, updates_per_env_step: int, warm_start_steps: int = 0) -> None:
        self.g, self.warm = int(updates_per_env_step), int(warm_start_steps)

    def owed(self, env_steps: int) -> int:
        return self.g * max(0, env_steps - self.warm)

    def blocks(self, before: int, after: int) -> list[int]:
        """Block sizes of the updates owed for the env steps from ``before`` to ``after``."""
        n = self.owed(after) - self.owed(before)
        return [self.g] * (n // self.g) + ([n % self.g] if n % self.g else [])


@dataclass
class FinetuneSummary:
    """RUN/finetune/summary.json: the evaluation curve and the safety supervisor's verdicts of
    every finetune session in the run folder (what ``robot-rl report`` reads; ``--resume``
    extends it)."""

    curve: list[CurvePoint] = dataclasses.field(default_factory=list)
    safety: dict[str, int] = dataclasses.field(default_factory=dict)
    env_steps: int = 0
    sessions: int = 0
    # per session with an operator: OnlineHooks.summary() (takeovers, rates, slope)
    interventions: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add_session(self, curve: list[CurvePoint], safety: Mapping[str, int],
                    env_steps: int, interventions: Mapping[str, Any] | None = None) -> None:
        if interventions and interventions.get("takeovers"):
            self.interventions.append(dict(interventions))
        self.curve += curve
        for key, count in safety.items():
            self.safety[key] = self.safety.get(key, 0) + int(count)
        self.env_steps, self.sessions = env_steps, self.sessions + 1

    def write(self, run_dir: Path) -> None:
        path = run_dir / FINETUNE_SUMMARY
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        os.replace(tmp, path)  # a reader never sees half of it


def read_finetune_summary(run_dir: Path) -> FinetuneSummary:
    """The run's summary; an empty one for a run folder written before summaries existed."""
    path = run_dir / FINETUNE_SUMMARY
    if not path.exists():
        return FinetuneSummary()
    try:
        data = json.loads(path.read_text())
        return FinetuneSummary(curve=[CurvePoint(**p) for p in data["curve"]],
                               safety={k: int(v) for k, v in data["safety"].items()},
                               env_steps=int(data["env_steps"]), sessions=int(data["sessions"]),
                               interventions=list(data.get("interventions", [])))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(path, f"unreadable finetune summary ({err}); move it away to "
                                    f"start a new one") from err


def _evaluate_online(config: PipelineConfig, agent: AWAC, env: GatedEnv, env_steps: int,
                     logger: MetricsLogger) -> CurvePoint:
    """The curve's point: the policy that acted since the last evaluation. The collapse guard's
    fallback rule decides at each evaluation, from the policy being fine-tuned: were the snapshot
    evaluated while it acts, the rule would read its success as the online policy's and let go.
    The two evaluations differ only while the rule holds."""
    acting = None
    if agent.guard.use_snapshot():  # the snapshot acted: evaluate it before the rule moves on
        acting = evaluate(config, agent, config.eval.episodes, env=env, fallback=True)
    online = evaluate(config, agent, config.eval.episodes, env=env, fallback=False)
    agent.guard.record_online_success(online.success_rate)
    agent.keeper.record(online.success_rate, env_steps, agent.actor)
    acting = acting if acting is not None else online
    logger.log(env_steps, {"eval_success_rate": acting.success_rate,
                           "eval_online_policy_success_rate": online.success_rate})
    return curve_point(env_steps, acting)


def run_demo(config: PipelineConfig, run_dir: Path, *, progress: bool = True,
             overwrite: bool = False) -> Report:
    """The whole pipeline on the twin, ending in RUN/report.md, report.json, learning_curve.png.
    ``overwrite`` replaces the outputs of an earlier demo in ``run_dir``; without it each stage
    refuses an output that is there."""
    timings: dict[str, float] = {}
    clock = Laps(timings)
    dataset = run_dir / DATASET
    summary = record(config, dataset, progress=progress, overwrite=overwrite)
    clock.lap("record")
    offline_checkpoint = pretrain(config, dataset, run_dir, progress=progress,
                                  overwrite=overwrite)
    clock.lap("pretrain")
    offline = evaluate_checkpoint(config, offline_checkpoint, config.eval.episodes,
                                  progress=progress)
    tuned = finetune(config, run_dir, dataset, progress=progress, overwrite=overwrite)
    final = evaluate_checkpoint(config, tuned.handed or tuned.checkpoint, config.eval.episodes,
                                progress=progress)
    clock.lap("finetune and evaluate")
    report = Report(task=config.env_id, robot=config.robot, seed=config.seed,
                    demo_success_rate=summary.demo_success_rate,
                    noisy_success_rate=summary.noisy_success_rate,
                    offline_success_rate=offline.success_rate,
                    finetuned_success_rate=final.success_rate,
                    eval_episodes=config.eval.episodes, curve=tuned.curve,
                    timings_s=timings, safety=tuned.safety,
                    interventions=[tuned.interventions] if tuned.interventions.get("takeovers")
                    else [])
    report.write(run_dir)
    return report


def report_run(config: PipelineConfig, run_dir: Path, *, dataset_path: Path | None = None,
               progress: bool = True, overwrite: bool = False) -> Report:
    """The demo's report (RUN/report.md, report.json, learning_curve.png) for a run made step by
    step: the dataset's success rates (its clean and noisy episodes), RUN/offline.pt and
    RUN/finetuned.pt evaluated as ``demo`` evaluates them (the fine-tuned one's handed policy:
    ``awac.handed_policy``), and the curve and safety verdicts
    that finetune kept in RUN/finetune/summary.json (every session of a resumed run). An
    earlier report is replaced only with ``overwrite``."""
    refuse_existing([(run_dir / name, "an earlier report") for name in REPORT_OUTPUTS],
                    overwrite, "pass --overwrite to replace it")
    for path in (run_dir / OFFLINE_CHECKPOINT, run_dir / FINETUNED_CHECKPOINT):
        if not path.exists():
            raise CheckpointError(path, "missing: a report needs pretrain's offline.pt and "
                                        "finetune's finetuned.pt in the run folder")
    dataset = dataset_path or run_dir / DATASET
    clean, noisy = dataset_success_rates(dataset) if dataset.exists() else ([], [])
    offline = evaluate_checkpoint(config, run_dir / OFFLINE_CHECKPOINT, config.eval.episodes,
                                  progress=progress)
    final = evaluate_checkpoint(config, run_dir / FINETUNED_CHECKPOINT, config.eval.episodes,
                                progress=progress, handed=True)  # as demo: the policy handed over
    summary = read_finetune_summary(run_dir)
    final_steps = int(load_checkpoint(run_dir / FINETUNED_CHECKPOINT)["counters"].get(
        "online_env_steps", summary.env_steps))
    curve = summary.curve or [curve_point(0, offline), curve_point(final_steps, final)]
    report = Report(task=config.env_id, seed=config.seed, demo_success_rate=_rate(clean),
                    noisy_success_rate=_rate(noisy), offline_success_rate=offline.success_rate,
                    finetuned_success_rate=final.success_rate,
                    eval_episodes=config.eval.episodes, curve=curve, safety=summary.safety,
                    interventions=summary.interventions,
                    mode=f"step by step (record, pretrain, finetune: {summary.sessions} "
                         f"session(s), {final_steps} online steps; report)")
    report.write(run_dir)
    return report


def dataset_success_rates(dataset: Path) -> tuple[list[bool], list[bool]]:
    """Success of the dataset's clean and noisy episodes, as ``record`` labelled them."""
    with EpisodeStore.open(dataset, "r") as store:
        infos = store.episode_infos()
    return ([bool(i.get("success")) for i in infos if i.get("kind") == "clean"],
            [bool(i.get("success")) for i in infos if i.get("kind") == "noisy"])


def task_transitions(config: PipelineConfig, dataset_path: Path,
                     env: GatedEnv | None = None) -> dict[str, np.ndarray]:
    """The dataset's transitions, refused by name unless they fit the config's task: its
    observation size and action mode (``env`` gives them when the caller has one open; else one
    is built for it)."""
    if env is None:
        with closing(GatedEnv(config)) as sized:
            return task_transitions(config, dataset_path, sized)
    size, mode, task = env.obs_dim, env.action_mode, env.task
    with EpisodeStore.open(dataset_path, "r") as store:  # opened once for every check
        if task.uses_pixels:  # first: a store without frames is named as such
            check_pixel_store(store, task, config.env_id)
        # a state task reads a pixel task's episodes by their state layout (same episodes)
        key = ("state_observation" if not task.uses_pixels
               and store_observation(store)[0] == "pixels" else "observation")
        data = transitions(store, observation_key=key)
        check_observation_size(data, str(dataset_path), size, config.env_id)
        check_action_mode(store, mode, config.env_id)
    return data


def store_source(env: GatedEnv) -> dict:
    """A new store's units and extra attributes for ``env``'s task (a pixel task's name its
    view, so that a dataset recorded with another is refused)."""
    task = env.task
    view = to_dict(task.image) if task.image is not None else None
    units = TRANSITION_UNITS | (PIXEL_UNITS if view is not None else {})
    extra = action_mode_extra(env.action_mode)
    if view is not None:
        extra |= observation_extra("pixels", view)
    return {"units": units, "extra": extra}


def agent_replay(config: PipelineConfig, agent: AWAC, data: dict[str, np.ndarray],
                 dataset_path: Path, online_capacity: int,
                 extra_offline_capacity: int = 0) -> Replay | PixelReplay:
    """The replay ``agent`` trains from, holding the dataset: the config's (uniform, balanced
    or symmetric), or a pixel agent's (frames, or frozen features), streamed from the store.
    ``extra_offline_capacity``: room on the offline side for an operator's corrections."""
    if isinstance(agent, PixelAgent):
        if extra_offline_capacity:  # a pixel replay has no offline side to add them to
            raise ConfigError(f"{config.env_id}: an operator's takeovers (intervention.operator) "
                              f"are not supported on a pixel task yet; set intervention.operator "
                              f"to none")
        return pixel_replay(agent, dataset_path, data, online_capacity)
    return make_replay(config.awac, data, online_capacity=online_capacity, seed=config.seed,
                       extra_offline_capacity=extra_offline_capacity)


def load_agent(config: PipelineConfig, checkpoint: Path, env: GatedEnv | None = None) -> AWAC:
    """The checkpoint's agent with ``config.awac``'s settings (fine-tuning may change e.g. beta;
    networks of another shape are refused, one line naming the file and the settings that
    differ). With ``env``, a checkpoint of another task is refused too."""
    state = load_checkpoint(checkpoint)
    if env is not None:
        check_checkpoint_task(state, config, env)
    return agent_from_checkpoint(state, config.awac, seed=config.seed)


def curve_point(env_steps: int, result: EvalResult) -> CurvePoint:
    """An evaluation as a point of the learning curve."""
    return CurvePoint(env_steps=env_steps, success_rate=result.success_rate,
                      mean_return=result.mean_return)


def _rate(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


class Laps:
    """Wall time per stage into ``timings``, each measured from the end of the one before."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings, self._last = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._last
        self._last = now
