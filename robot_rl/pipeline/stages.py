"""The pipeline's steps: record demonstrations, pretrain offline, fine-tune online, evaluate, report.

Each step reads what the step before wrote to disk (a zarr dataset, a checkpoint), so each can be run on
its own from the CLI, resumed, or swapped for the real robot's version of it.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.config import annotated_yaml, to_dict
from robot_rl.data import EpisodeStore, transitions
from robot_rl.data.replay import (
    TRANSITION_UNITS,
    action_mode_extra,
    check_action_mode,
    check_observation_size,
)
from robot_rl.learning import (
    AWAC,
    UPDATES_PER_S,
    MetricsLogger,
    UpdateRate,
    episode_metrics,
    save_checkpoint,
)
from robot_rl.learning.factory import (
    load_agent as load_agent_from,
)
from robot_rl.learning.factory import (
    make_replay,
    new_agent,
    train_step,
)
from robot_rl.pipeline.config import PipelineConfig
from robot_rl.pipeline.hil import OnlineHooks, SuccessModel
from robot_rl.pipeline.report import CurvePoint, Report
from robot_rl.pipeline.rollout import Episode, GatedEnv
from robot_rl.robot_config import load_robot, robot_digest

# Seeds of evaluation episodes never overlap the seeds used to record or to explore.
EVAL_SEED_OFFSET = 1_000_000
ONLINE_SEED_OFFSET = 2_000_000


@dataclass
class RecordSummary:
    episodes: int
    steps: int
    demo_success_rate: float
    noisy_success_rate: float


@dataclass
class EvalResult:
    success_rate: float
    mean_return: float
    episodes: int


@dataclass
class FinetuneResult:
    checkpoint: Path
    curve: list[CurvePoint]
    safety: dict[str, int]
    interventions: dict[str, Any] = field(default_factory=dict)  # OnlineHooks.summary()


def record(config: PipelineConfig, dataset_path: Path, *, progress: bool = True) -> RecordSummary:
    """Scripted expert episodes (clean, then noisy) into a new zarr dataset, one commit per episode."""
    robot = load_robot(config.robot)
    env = GatedEnv(config)
    store = EpisodeStore.create(dataset_path, robot=robot.robot, task=config.env_id,
                                calibration_digest=robot_digest(config.robot),
                                units=TRANSITION_UNITS, extra=action_mode_extra(env.action_mode),
                                overwrite=True)
    successes = {"clean": [], "noisy": []}
    plan = [("clean", 0.0)] * config.dataset.demonstrations
    plan += [("noisy", config.dataset.noise_std)] * config.dataset.noisy_trajectories
    rng = np.random.default_rng(config.seed)
    for index, (kind, noise_std) in enumerate(tqdm(plan, desc="record", disable=not progress)):
        expert = env.expert(noise_std, seed=int(rng.integers(2**31)))
        episode = env.run_episode(expert, seed=config.seed * 100_003 + index)
        store.add_episode(episode.steps, {"success": episode.success, "seed": episode.seed,
                                          "kind": kind, "noise_std": noise_std,
                                          "operator": "scripted expert"})
        successes[kind].append(episode.success)
    env.close()
    return RecordSummary(episodes=store.n_episodes, steps=store.n_steps,
                         demo_success_rate=_rate(successes["clean"]),
                         noisy_success_rate=_rate(successes["noisy"]))


def pretrain(config: PipelineConfig, dataset_path: Path, run_dir: Path, *,
             progress: bool = True) -> Path:
    """Offline AWAC on every transition of the dataset; writes RUN/offline.pt."""
    data = task_transitions(config, dataset_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    agent = new_agent(config.awac, data, config.seed)
    replay = make_replay(config.awac, data, online_capacity=0, seed=config.seed)
    logger = MetricsLogger(run_dir / "pretrain")
    logger.log_config(annotated_yaml(config))
    rate = UpdateRate()
    generator = np.random.default_rng(config.seed)
    for step in tqdm(range(1, config.pretrain.updates + 1), desc="pretrain",
                     disable=not progress):
        with rate.timing():
            metrics = train_step(agent, replay, config.awac.batch_size, generator)
        if step % config.pretrain.log_every_updates == 0:
            logger.log(step, {**metrics, UPDATES_PER_S: rate.read()})
    logger.close()
    path = run_dir / "offline.pt"
    save_checkpoint(path, agent, agent.normalizer, to_dict(config),
                    {"offline_updates": config.pretrain.updates, "online_env_steps": 0})
    return path


def evaluate(config: PipelineConfig, agent: AWAC, episodes: int, *, env: GatedEnv | None = None,
             progress: bool = False, fallback: bool = True) -> EvalResult:
    """Success rate of the deterministic policy on seeds never used for data. ``fallback=False``
    evaluates the policy being fine-tuned, not the guard's snapshot standing in for it."""
    own_env = env is None
    env = env or GatedEnv(config)
    results: list[Episode] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, deterministic=True, fallback=fallback)

    for index in tqdm(range(episodes), desc="eval", disable=not progress, leave=False):
        results.append(env.run_episode(policy, seed=EVAL_SEED_OFFSET + config.seed * 10_007 + index))
    if own_env:
        env.close()
    return EvalResult(success_rate=_rate([e.success for e in results]),
                      mean_return=float(np.mean([e.episode_return for e in results])),
                      episodes=episodes)


def evaluate_checkpoint(config: PipelineConfig, checkpoint: Path, episodes: int, *,
                        progress: bool = True) -> EvalResult:
    agent = load_agent(config, checkpoint)
    return evaluate(config, agent, episodes, progress=progress)


def finetune(config: PipelineConfig, run_dir: Path, dataset_path: Path, *,
             progress: bool = True, agent: AWAC | None = None,
             success_model: SuccessModel | None = None) -> FinetuneResult:
    """Online AWAC in the twin: act, store the episode, update; the dataset stays in the buffer.

    ``agent``: start from this agent instead of RUN/offline.pt (experiments use it for an agent
    built from scratch, or one whose actor objective was switched after pretraining).
    ``success_model``: reward and success of the online episodes from this detector instead of
    the task's rule (evaluations still measure the twin's success); by default the config's
    ``reward`` section decides (pipeline.hil)."""
    with closing(GatedEnv(config)) as env:  # closed however the run ends
        data = task_transitions(config, dataset_path, env)
        agent = agent if agent is not None else load_agent(config, run_dir / "offline.pt")
        hooks = OnlineHooks.from_config(config, env, dataset_path, success_model)
        return _run_online(config, run_dir, data, agent, env, progress, hooks)


def _run_online(config: PipelineConfig, run_dir: Path, data: dict[str, np.ndarray], agent: AWAC,
                env: GatedEnv, progress: bool, hooks: OnlineHooks | None = None) -> FinetuneResult:
    hooks = hooks or OnlineHooks()
    replay = make_replay(config.awac, data, online_capacity=config.finetune.env_steps,
                         seed=config.seed,
                         extra_offline_capacity=hooks.offline_room(config.finetune.env_steps))
    online_store = EpisodeStore.create(run_dir / "online.zarr", robot=config.robot,
                                       task=config.env_id,
                                       calibration_digest=robot_digest(config.robot),
                                       units=TRANSITION_UNITS,
                                       extra=action_mode_extra(env.action_mode), overwrite=True)
    logger = MetricsLogger(run_dir / "finetune")
    logger.log_config(annotated_yaml(config))
    rate = UpdateRate()
    generator = np.random.default_rng(config.seed + 1)
    agent.start_online()
    offline_eval = evaluate(config, agent, config.eval.episodes, env=env)
    agent.guard.record_offline_success(offline_eval.success_rate)
    curve = [curve_point(0, offline_eval)]
    env_steps, episode_index, next_eval = 0, 0, config.finetune.eval_every_env_steps
    bar = tqdm(total=config.finetune.env_steps, desc="finetune", disable=not progress)
    while env_steps < config.finetune.env_steps:
        episode = hooks.run_episode(env, lambda obs: agent.act(obs, deterministic=False),
                                    ONLINE_SEED_OFFSET + config.seed * 100_003 + episode_index,
                                    env_steps)
        online_store.add_episode(episode.steps, {"success": episode.success, "seed": episode.seed,
                                                 "kind": "online", **hooks.episode_info(episode)})
        hooks.add_to_replay(replay, episode)
        updates = episode.length * config.finetune.updates_per_env_step
        with rate.timing(updates):
            for _ in range(updates):
                metrics = train_step(agent, replay, config.awac.batch_size, generator)
        env_steps += episode.length
        episode_index += 1
        bar.update(episode.length)
        logger.log(env_steps, {**metrics, UPDATES_PER_S: rate.read(),
                               **episode_metrics(episode.episode_return, episode.success),
                               **hooks.episode_scalars(episode, env_steps)})
        if env_steps >= next_eval or env_steps >= config.finetune.env_steps:
            point = _evaluate_online(config, agent, env, env_steps, logger)
            curve.append(point)
            bar.set_postfix(success=f"{point.success_rate:.0%}")
            next_eval += config.finetune.eval_every_env_steps
            if 0 < config.finetune.stop_at_success_rate <= point.success_rate:
                break
    bar.close()
    logger.close()
    path = run_dir / "finetuned.pt"
    save_checkpoint(path, agent, agent.normalizer, to_dict(config),
                    {"offline_updates": config.pretrain.updates, "online_env_steps": env_steps})
    return FinetuneResult(checkpoint=path, curve=curve, safety=dict(env.gate.statuses),
                          interventions=hooks.summary())


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
    acting = acting if acting is not None else online
    logger.log(env_steps, {"eval_success_rate": acting.success_rate,
                           "eval_online_policy_success_rate": online.success_rate})
    return curve_point(env_steps, acting)


def run_demo(config: PipelineConfig, run_dir: Path, *, progress: bool = True) -> Report:
    """The whole pipeline on the twin, ending in RUN/report.md, report.json, learning_curve.png."""
    timings: dict[str, float] = {}
    clock = Laps(timings)
    dataset = run_dir / "dataset.zarr"
    summary = record(config, dataset, progress=progress)
    clock.lap("record")
    offline_checkpoint = pretrain(config, dataset, run_dir, progress=progress)
    clock.lap("pretrain")
    offline = evaluate(config, load_agent(config, offline_checkpoint), config.eval.episodes,
                       progress=progress)
    tuned = finetune(config, run_dir, dataset, progress=progress)
    final = evaluate(config, load_agent(config, tuned.checkpoint), config.eval.episodes,
                     progress=progress)
    clock.lap("finetune and evaluate")
    report = Report(task=config.env_id, seed=config.seed,
                    demo_success_rate=summary.demo_success_rate,
                    noisy_success_rate=summary.noisy_success_rate,
                    offline_success_rate=offline.success_rate,
                    finetuned_success_rate=final.success_rate,
                    eval_episodes=config.eval.episodes, curve=tuned.curve,
                    timings_s=timings, safety=tuned.safety)
    report.write(run_dir)
    return report


def task_transitions(config: PipelineConfig, dataset_path: Path,
                     env: GatedEnv | None = None) -> dict[str, np.ndarray]:
    """The dataset's transitions, refused by name unless they fit the config's task: its
    observation size and action mode (``env`` gives them when the caller has one open; else one
    is built for it)."""
    if env is None:
        with closing(GatedEnv(config)) as sized:
            size, mode = sized.obs_dim, sized.action_mode
    else:
        size, mode = env.obs_dim, env.action_mode
    with EpisodeStore.open(dataset_path, "r") as store:  # opened once for both checks
        data = transitions(store)
        check_observation_size(data, str(dataset_path), size, config.env_id)
        check_action_mode(store, mode, config.env_id)
    return data


def load_agent(config: PipelineConfig, checkpoint: Path) -> AWAC:
    return load_agent_from(checkpoint, config.awac, seed=config.seed)


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
