"""Online episodes in process with a human in the loop: an operator who may take over, and a reward
that may come from a learned success classifier instead of the task's rule.

``run_online_episode`` is the in-process twin of the learner node's acting loop: each step the
operator (if any) may take over; ``teleop.takeover.Handover`` decides what goes to the supervisor
gate and holds every change of hands to one step from the last gated command; every step records
who acted (``intervention``). With a reward model, reward, termination and the episode's success
are the classifier's (as on a robot without a sensor for them), and the twin's own success is kept
beside them (``true_success``) so that misdetections can be counted. Without an operator or a
reward model it takes the same steps as ``GatedEnv.run_episode``.

``OnlineHooks`` is what the fine-tuning loop (``stages.finetune``) asks of all this: the episode,
where its transitions go in the replay, and the scalars to log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from robot_rl.agent.episode import STEP_KEYS, SuccessModel, success_frame
from robot_rl.data import EpisodeStore
from robot_rl.hil import DemoRegion, InterventionTrend, add_online_episode, intervention_metrics
from robot_rl.hil.metrics import misdetection_metrics
from robot_rl.hil.replay import INTERVENTION_KEY
from robot_rl.learning.factory import Replay
from robot_rl.pipeline.rollout import Episode, GatedEnv
from robot_rl.run_config import PipelineConfig
from robot_rl.sim_twin.experts import step_dtype, step_vector, step_views
from robot_rl.sim_twin.operator import OperatorRules, ScriptedOperator
from robot_rl.teleop.takeover import OPERATOR, Handover

Policy = Callable[[np.ndarray], np.ndarray]


class Operator(Protocol):
    """Anyone who may take over: ``act`` returns an action while in control, else None."""

    takeovers: int

    def reset(self) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray | None: ...


def run_online_episode(env: GatedEnv, policy: Policy, seed: int, operator: Operator | None = None,
                       success_model: SuccessModel | None = None) -> Episode:
    """One online episode; ``steps`` also holds ``intervention`` (bool per step)."""
    gym_env = env.env
    twin_env = gym_env.unwrapped
    task = twin_env.task
    env.gate.reset()
    obs, info = gym_env.reset(seed=seed)
    handover = Handover(task.actions.step_rad)
    for part in (operator, success_model):
        if part is not None:
            part.reset()
    rows: dict[str, list[Any]] = {key: [] for key in STEP_KEYS}
    success = done = False
    true_flags: list[bool] = []
    while not done:
        last = twin_env.commanded_targets_rad
        corrected = operator.act(obs) if operator is not None else None
        action = corrected if corrected is not None else np.asarray(policy(obs), np.float32)
        targets = task.action_to_targets(action, last)
        command = handover.command(None if corrected is not None else targets,
                                   targets if corrected is not None else None, last)
        assert command is not None
        if command.limited:  # the change of hands held it to one step: record what was sent
            action = task.targets_to_action(command.targets_rad, last)
        action = np.asarray(action, np.float32)
        next_obs, reward, terminated, truncated, next_info = gym_env.step(action)
        true_flags.append(bool(next_info["success"]))
        detected = bool(next_info["success"])
        if success_model is not None:  # the classifier's word stands for the twin's rule
            detected = success_model.step(_judged(next_obs))
            reward = 0.0 if detected else -1.0
            terminated = bool(detected and task.config.terminate_on_success)
        values = (step_vector(obs), action, reward, step_vector(next_obs), terminated, truncated,
                  command.actor == OPERATOR)
        for key, value in zip(STEP_KEYS, values):
            rows[key].append(value)
        if isinstance(obs, dict):  # a pixel task: its views beside, as the plain episode keeps
            for key, value in step_views(obs, info, next_info).items():
                rows.setdefault(key, []).append(value)
        success = success or detected
        obs, info, done = next_obs, next_info, bool(terminated or truncated)
    steps = {key: np.asarray(value, dtype=step_dtype(key, value[0]))
             for key, value in rows.items()}
    episode_info = {"success": success, "seed": seed, "takeovers": handover.takeovers,
                    "true_success": any(true_flags),
                    "true_success_steps": np.asarray(true_flags)}
    return Episode(steps=steps, success=success, seed=seed, info=episode_info)


def _judged(next_obs: Any) -> Any:
    """What the success model judges after a step: a state task's vector, or a pixel task's
    {"observation": vector, "camera_color": the view after the action} (the env's {"state",
    "rgb"})."""
    if isinstance(next_obs, dict):
        return success_frame(np.asarray(next_obs["state"]), np.asarray(next_obs["rgb"]))
    return success_frame(next_obs, None)


@dataclass
class OnlineHooks:
    """The fine-tuning loop's human-in-the-loop parts (all optional)."""

    operator: Operator | None = None
    success_model: SuccessModel | None = None
    to_offline: bool = True
    until_env_steps: int = 0
    trend: InterventionTrend = field(default_factory=InterventionTrend)
    offline_added: int = 0       # operator transitions put on the offline side of the replay
    intervention_steps: int = 0

    @classmethod
    def from_config(cls, config: PipelineConfig, env: GatedEnv, dataset_path: Path,
                    success_model: SuccessModel | None = None) -> OnlineHooks:
        hil = config.intervention
        operator = None
        if hil.operator == "scripted":
            rules = OperatorRules(stuck_steps=hil.stuck_steps, min_progress=hil.min_progress,
                                  hold_steps=hil.hold_steps,
                                  max_takeovers_per_episode=hil.max_takeovers_per_episode)
            region = demo_region(config, env, dataset_path) if hil.region else None
            operator = ScriptedOperator(env.env, rules, region, seed=config.seed)
        elif hil.operator in ("keyboard", "joystick"):
            from robot_rl.pipeline.device_operator import DeviceOperator
            operator = DeviceOperator(env, hil.operator, joystick_path=hil.joystick_path,
                                      realtime=hil.realtime)
        if success_model is None and config.reward.source == "classifier":
            success_model = configured_detector(config, env.task.image is not None)
        return cls(operator=operator, success_model=success_model, to_offline=hil.to_offline,
                   until_env_steps=hil.until_env_steps,
                   trend=InterventionTrend(hil.trend_window))

    def close(self) -> None:
        """Gives back what the operator holds (a terminal in cbreak mode, a device)."""
        close = getattr(self.operator, "close", None)
        if close is not None:
            close()

    def offline_room(self, online_capacity: int) -> int:
        """Offline replay capacity to reserve for operator transitions."""
        return online_capacity if self.operator is not None and self.to_offline else 0

    def run_episode(self, env: GatedEnv, policy: Policy, seed: int, env_steps: int) -> Episode:
        watching = self.operator is not None and (not self.until_env_steps or
                                                  env_steps < self.until_env_steps)
        if not watching and self.success_model is None:
            # the plain episode, as the rollout records it (a pixel task's frames included)
            episode = env.run_episode(policy, seed=seed)
            episode.steps[INTERVENTION_KEY] = np.zeros(episode.length, dtype=bool)
            return episode
        return run_online_episode(env, policy, seed, self.operator if watching else None,
                                  self.success_model)

    def add_to_replay(self, replay: Replay, episode: Episode) -> None:
        self.offline_added += add_online_episode(replay, episode.steps, self.to_offline)
        self.intervention_steps += int(episode.steps["intervention"].sum())

    def episode_info(self, episode: Episode) -> dict[str, Any]:
        """What the online store's episode row records beyond success and seed."""
        info = {"takeovers": int(episode.info.get("takeovers", 0)),
                "intervention_steps": int(episode.steps["intervention"].sum())}
        if self.success_model is not None:
            info["true_success"] = bool(episode.info["true_success"])
        return info

    def summary(self) -> dict[str, Any]:
        """The run's interventions for its result and report: totals, the first and last
        windows' rates, the slope, why the scripted operator took over."""
        out: dict[str, Any] = {**self.trend.summary(), "offline_added": self.offline_added,
                               "intervention_steps": self.intervention_steps}
        reasons = getattr(self.operator, "reasons", None)
        if reasons is not None:
            out["reasons"] = dict(reasons)
        return out

    def episode_scalars(self, episode: Episode, env_steps: int) -> dict[str, float]:
        """The episode's intervention scalars (and the trend), plus misdetection counts when the
        classifier gives the reward."""
        takeovers = int(episode.info.get("takeovers", 0))
        scalars = intervention_metrics(episode.steps["intervention"], takeovers)
        scalars.update(self.trend.add(env_steps, scalars["intervention_rate"], takeovers))
        if self.success_model is not None:
            scalars.update(misdetections(episode))
        return scalars


def configured_detector(config: PipelineConfig, task_has_view: bool | None = None
                        ) -> SuccessModel:
    """The detector the ``reward`` section names, its threshold and debounce applied;
    ``task_has_view`` (when known): an image classifier is refused for a task without a view."""
    from robot_rl.reward import SuccessDetector, load_classifier
    from robot_rl.reward.image_classifier import check_task_view

    reward = config.reward
    if not reward.classifier:
        raise ValueError("reward.source is classifier but reward.classifier names no file "
                         "(robot-rl reward train writes one)")
    classifier = load_classifier(reward.classifier)
    if task_has_view is not None:
        check_task_view(classifier, task_has_view, reward.classifier)
    return SuccessDetector(classifier, reward.threshold or None, reward.debounce_frames or None)


def misdetections(episode: Episode) -> dict[str, float]:
    """The classifier's misdetections on one episode against the twin's success
    (``hil.metrics.misdetection_metrics``)."""
    return misdetection_metrics(episode.success, episode.info["true_success"])


def demo_region(config: PipelineConfig, env: GatedEnv, dataset_path: Path) -> DemoRegion:
    """The region of the dataset's demonstrations (``intervention.region_episodes``), on the
    observation fields ``intervention.region_fields``."""
    hil, task = config.intervention, env.env.unwrapped.task
    unknown = [name for name in hil.region_fields if name not in task.layout]
    if unknown:
        raise ValueError(f"intervention.region_fields: {unknown} are not fields of the "
                         f"{task.name} observation; known: {sorted(task.layout)}")
    columns = np.concatenate([np.arange(task.observation_size)[task.layout[name]]
                              for name in hil.region_fields])
    observations, ids = [], []
    with EpisodeStore.open(dataset_path, "r") as store:
        for index in range(store.n_episodes):
            info = store.episode_info(index)
            keep = (hil.region_episodes == "all" or
                    (hil.region_episodes == "clean" and info.get("kind") == "clean") or
                    (hil.region_episodes == "successful" and bool(info.get("success"))))
            if keep:
                observations.append(store.episode(index, ["observation"])["observation"])
                ids.append(np.full(len(observations[-1]), index))
    if len(ids) < 2:
        raise ValueError(f"{dataset_path}: intervention.region_episodes "
                         f"{hil.region_episodes!r} selects {len(ids)} episode(s); the region "
                         "needs at least two")
    return DemoRegion(np.concatenate(observations), np.concatenate(ids), columns=columns,
                      quantile=hil.region_quantile, margin=hil.region_margin)
