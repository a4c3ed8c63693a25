"""The pipeline's steps: record demonstrations, pretrain offline, fine-tune online, evaluate, report.

Each step reads what the step before wrote to disk (a zarr dataset, a checkpoint), so each can be run on
its own from the CLI, resumed, or swapped for the real robot's version of it.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

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
    batch_from_steps,
    hand_over,
    make_replay,
    new_agent,
    train_step,
)
from robot_rl.learning.factory import (
    load_agent as load_agent_from,
)
from robot_rl.pipeline.config import PipelineConfig
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
    checkpoint: Path          # the last agent, to resume from
    curve: list[CurvePoint]
    safety: dict[str, int]
    handed: Path | None = None  # the policy handed over (awac.handed_policy), as a checkpoint
    handed_point: CurvePoint | None = None  # the measurement the keeper chose it by


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
             progress: bool = False, fallback: bool = True,
             first_seed: int | None = None) -> EvalResult:
    """Success rate of the deterministic policy on seeds never used for data. ``fallback=False``
    evaluates the policy being fine-tuned, not the guard's snapshot standing in for it.
    ``first_seed``: episodes on first_seed, first_seed + 1, ... instead of the evaluation seeds
    (e.g. a held-out check of a policy chosen by its evaluations)."""
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
    """``handed``: evaluate the policy the checkpoint hands over (``awac.handed_policy``; the
    learner node's ``learner.pt`` keeps the keeper's choice), not its last actor."""
    agent = load_agent_from(checkpoint, config.awac, seed=config.seed, handed=handed)
    return evaluate(config, agent, episodes, progress=progress)


def finetune(config: PipelineConfig, run_dir: Path, dataset_path: Path, *,
             progress: bool = True, agent: AWAC | None = None) -> FinetuneResult:
    """Online AWAC in the twin: act, store the episode, update; the dataset stays in the buffer.

    ``agent``: start from this agent instead of RUN/offline.pt (experiments use it for an agent
    built from scratch, or one whose actor objective was switched after pretraining)."""
    with closing(GatedEnv(config)) as env:  # closed however the run ends
        data = task_transitions(config, dataset_path, env)
        agent = agent if agent is not None else load_agent(config, run_dir / "offline.pt")
        return _run_online(config, run_dir, data, agent, env, progress)


def _run_online(config: PipelineConfig, run_dir: Path, data: dict[str, np.ndarray], agent: AWAC,
                env: GatedEnv, progress: bool) -> FinetuneResult:
    replay = make_replay(config.awac, data, online_capacity=config.finetune.env_steps,
                         seed=config.seed)
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
    agent.keeper.record(offline_eval.success_rate, 0, agent.actor)
    curve = [curve_point(0, offline_eval)]
    schedule = UpdateSchedule(config.finetune.updates_per_env_step, config.awac.warm_start_steps)
    env_steps, episode_index, next_eval = 0, 0, config.finetune.eval_every_env_steps
    metrics: dict[str, float] = {}
    bar = tqdm(total=config.finetune.env_steps, desc="finetune", disable=not progress)
    while env_steps < config.finetune.env_steps:
        episode = env.run_episode(lambda obs: agent.act(obs, deterministic=False),
                                  seed=ONLINE_SEED_OFFSET + config.seed * 100_003 + episode_index)
        online_store.add_episode(episode.steps, {"success": episode.success, "seed": episode.seed,
                                                 "kind": "online"})
        replay.add_episode(batch_from_steps(episode.steps))
        blocks = schedule.blocks(env_steps, env_steps + episode.length)
        with rate.timing(sum(blocks)):
            for n in blocks:  # G updates per env step, in fused blocks of G
                metrics = train_step(agent, replay, n * config.awac.batch_size, generator)
        env_steps += episode.length
        episode_index += 1
        bar.update(episode.length)
        logger.log(env_steps, {**metrics, UPDATES_PER_S: rate.read(),
                               **episode_metrics(episode.episode_return, episode.success)})
        if env_steps >= next_eval or env_steps >= config.finetune.env_steps:
            point = _evaluate_online(config, agent, env, env_steps, logger)
            curve.append(point)
            bar.set_postfix(success=f"{point.success_rate:.0%}")
            next_eval += config.finetune.eval_every_env_steps
    bar.close()
    logger.close()
    path = run_dir / "finetuned.pt"
    counters = {"offline_updates": config.pretrain.updates, "online_env_steps": env_steps}
    save_checkpoint(path, agent, agent.normalizer, to_dict(config), counters)
    handed, handed_point = path, curve[-1]
    if config.awac.handed_policy == "best" and agent.keeper.kept is not None:
        handed = save_handed(run_dir / "handed.pt", agent, config, counters)
        kept = agent.keeper.kept
        handed_point = next(p for p in reversed(curve) if p.env_steps == kept.label)
    return FinetuneResult(checkpoint=path, curve=curve, safety=dict(env.gate.statuses),
                          handed=handed, handed_point=handed_point)


def save_handed(path: Path, agent: AWAC, config: PipelineConfig,
                counters: dict[str, int]) -> Path:
    """The agent with the keeper's actor: loads and acts like any checkpoint."""
    last = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    hand_over(agent)
    try:
        save_checkpoint(path, agent, agent.normalizer, to_dict(config), counters,
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
    final = evaluate(config, load_agent(config, tuned.handed or tuned.checkpoint),
                     config.eval.episodes, progress=progress)
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
