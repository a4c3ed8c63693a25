"""Training in a background thread while the control loop acts with a snapshot of the policy.

Double buffering: the trainer owns the AWAC agent and is the only thread that touches it. Every
``publish_every_updates`` it copies the acting policy (and the observation normaliser) into a new
:class:`PolicySnapshot` and swaps one attribute; the acting side reads that attribute and runs
the copy. Acting therefore never waits for a gradient step and never takes a lock. Episodes
travel the other way through a queue; the trainer adds them to its replay buffer between updates,
so the buffer needs no lock either.
"""

from __future__ import annotations

import copy
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robot_rl.learning.awac import AWAC
from robot_rl.learning.logger import UPDATES_PER_S, UpdateRate
from robot_rl.learning.networks import MLP, GaussianPolicy
from robot_rl.learning.normalizer import Normalizer


class PolicySnapshot:
    """A frozen copy of a Gaussian policy (and its input normaliser) for acting only.

    ``act`` runs the forward pass in numpy on weights copied once here: for one observation,
    torch's per-op dispatch costs more than the arithmetic (about 0.9 ms against 0.3 ms for a
    2x256 MLP on the project's 2-core machine), and each of its ops hands the GIL to the trainer
    thread and waits to get it back. The numpy pass is checked against the torch forward on a
    probe observation when the snapshot is made; a policy of another shape acts through torch.
    """

    def __init__(self, policy: GaussianPolicy, normalizer: Normalizer | None, version: int,
                 hidden_sizes: tuple[int, ...]) -> None:
        self.policy = policy.eval().requires_grad_(False)
        self.normalizer = normalizer
        self.version = int(version)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        first = policy.trunk.layers[0]
        self.obs_dim = int(first.in_features)
        self.act_dim = int(policy.trunk.layers[-1].out_features)
        with torch.inference_mode():
            self._std = np.exp(policy.log_std().numpy().astype(np.float64))
        self._numpy = _NumpyPolicy.of(policy, normalizer)

    @classmethod
    def from_agent(cls, agent: AWAC, version: int | None = None) -> PolicySnapshot:
        """Copy what ``agent.act`` would use (the collapse guard may pick the offline policy)."""
        acting = agent.guard.acting_policy(agent.actor)
        policy = copy.deepcopy(acting).to("cpu")
        normalizer = None
        if agent.normalizer is not None and agent.config.normalize_obs:
            normalizer = Normalizer.from_state_dict(agent.normalizer.state_dict())
        return cls(policy, normalizer, agent.num_updates if version is None else version,
                   agent.config.actor_hidden_sizes)

    def arrays(self) -> dict[str, np.ndarray]:
        """The acting policy as named arrays: ``layers.{i}.weight`` (out, in) and ``.bias`` as in
        ``torch.nn.Linear``, ``obs_mean`` and ``obs_std`` (the normaliser's), ``action_std``."""
        if self._numpy is None:
            raise ValueError(f"PolicySnapshot v{self.version}: no numpy forward pass for this "
                             f"policy ({type(self.policy).__name__}); it acts through torch only")
        out = {"obs_mean": self._numpy.offset, "obs_std": self._numpy.scale,
               "action_std": self._std}
        for i, (weight, bias) in enumerate(self._numpy.layers):
            out[f"layers.{i}.weight"], out[f"layers.{i}.bias"] = weight.T, bias
        return out

    @classmethod
    def from_arrays(cls, version: int, hidden_sizes: tuple[int, ...],
                    arrays: dict[str, np.ndarray]) -> PolicySnapshot:
        """A numpy-only snapshot from ``arrays()``'s names; ValueError naming what is missing,
        misshapen or not finite (weights from the network are checked before they act)."""
        hidden = tuple(int(h) for h in hidden_sizes)
        try:
            layers = [(np.ascontiguousarray(np.asarray(arrays[f"layers.{i}.weight"],
                                                       np.float32).T),
                       np.asarray(arrays[f"layers.{i}.bias"], np.float32))
                      for i in range(len(hidden) + 1)]
            mean, std = (np.asarray(arrays[k], np.float32) for k in ("obs_mean", "obs_std"))
            action_std = np.asarray(arrays["action_std"], np.float64)
        except KeyError as err:
            raise ValueError(f"policy v{version}: no array {err}") from None
        if mean.ndim != 1 or action_std.ndim != 1:
            raise ValueError(f"policy v{version}: obs_mean {mean.shape} and action_std "
                             f"{action_std.shape} must be vectors")
        sizes = [mean.shape[0], *hidden, action_std.shape[0]]
        checked = {"obs_mean": mean, "obs_std": std, "action_std": action_std}
        for i, (weight, bias) in enumerate(layers):
            if weight.shape != (sizes[i], sizes[i + 1]) or bias.shape != (sizes[i + 1],):
                raise ValueError(f"policy v{version}: layers.{i} is {weight.T.shape}, bias "
                                 f"{bias.shape}; sizes {sizes} need ({sizes[i + 1]}, {sizes[i]})")
            checked[f"layers.{i}.weight"], checked[f"layers.{i}.bias"] = weight, bias
        bad = [name for name, value in checked.items() if not np.all(np.isfinite(value))]
        if bad:
            raise ValueError(f"policy v{version}: values that are not finite in {', '.join(bad)}")
        if std.shape != mean.shape or np.any(std <= 0) or np.any(action_std < 0):
            raise ValueError(f"policy v{version}: obs_std must be positive and shaped like "
                             f"obs_mean {mean.shape}, action_std non-negative")
        snapshot = object.__new__(cls)
        snapshot.__dict__.update(policy=None, normalizer=None, version=int(version),
                                 hidden_sizes=hidden, obs_dim=sizes[0], act_dim=sizes[-1],
                                 _std=action_std, _numpy=_NumpyPolicy(mean, std, layers))
        return snapshot

    @property
    def uses_numpy(self) -> bool:
        """Whether ``act`` runs the numpy forward pass (False: torch's)."""
        return self._numpy is not None

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Action in [-1, 1] for one observation: the mean, or a Gaussian sample when ``rng``."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1)
        if x.shape[0] != self.obs_dim:
            raise ValueError(f"PolicySnapshot v{self.version}: observation has {x.shape[0]} "
                             f"values, the policy expects {self.obs_dim}")
        action = (self._numpy.mean(x) if self._numpy is not None
                  else self.torch_mean(x)).astype(np.float64)
        if rng is not None:
            action = action + self._std * rng.standard_normal(action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def torch_mean(self, obs: np.ndarray) -> np.ndarray:
        """The policy's mean action (float32) from the torch modules: the reference forward."""
        if self.policy is None:
            raise ValueError(f"PolicySnapshot v{self.version} is numpy-only: no torch forward")
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
        with torch.inference_mode():
            if self.normalizer is not None:
                x = self.normalizer.normalize(x)
            mean, _ = self.policy(x)
        return mean[0].numpy()


class _NumpyPolicy:
    """The mean of a ``GaussianPolicy``: tanh of a Linear-ReLU stack, on normalised input."""

    # float32 sums in another order than torch's differ by ~1e-6; another structure by far more
    PROBE_TOLERANCE = 1e-4

    def __init__(self, offset: np.ndarray, scale: np.ndarray,
                 layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.offset, self.scale, self.layers = offset, scale, layers

    @classmethod
    def of(cls, policy: GaussianPolicy, normalizer: Normalizer | None) -> _NumpyPolicy | None:
        """The numpy copy, or None when ``policy`` is not the plain structure it mirrors (the
        probe disagrees with torch)."""
        linears = list(policy.trunk.layers)
        if type(policy) is not GaussianPolicy or type(policy.trunk) is not MLP or \
                not all(type(layer) is torch.nn.Linear for layer in linears):
            return None
        n_in = linears[0].in_features
        with torch.inference_mode():
            layers = [(layer.weight.numpy().T.astype(np.float32, order="C"),
                       layer.bias.numpy().astype(np.float32)) for layer in linears]
            offset = np.zeros(n_in, np.float32) if normalizer is None else \
                normalizer.mean.numpy().astype(np.float32)
            scale = np.ones(n_in, np.float32) if normalizer is None else \
                normalizer.std.numpy().astype(np.float32)
            probe = torch.linspace(-2.0, 2.0, n_in).reshape(1, -1)  # a normalised observation
            expected = policy(probe)[0][0].numpy()
        numpy_policy = cls(offset, scale, layers)
        got = numpy_policy.mean(offset + scale * probe[0].numpy())
        if not np.allclose(got, expected, rtol=0.0, atol=cls.PROBE_TOLERANCE):
            return None
        return numpy_policy

    def mean(self, obs: np.ndarray) -> np.ndarray:
        x = (obs - self.offset) / self.scale
        for weight, bias in self.layers[:-1]:
            x = np.maximum(x @ weight + bias, 0.0)
        weight, bias = self.layers[-1]
        return np.tanh(x @ weight + bias)


@dataclass(frozen=True)
class BackgroundConfig:
    batch_size: int = field(default=256, metadata={"range": (1, 65536)})
    publish_every_updates: int = field(default=50, metadata={
        "range": (1, 1_000_000), "help": "a fresh acting snapshot every this many updates"})
    updates_per_env_step: float = field(default=0.0, metadata={
        "range": (0.0, 100.0), "help": "online updates per stored env step; 0: train continuously"})
    checkpoint_every_updates: int = field(default=0, metadata={
        "range": (0, 10_000_000), "help": "call on_checkpoint every this many updates; 0: never"})
    log_every_updates: int = field(default=250, metadata={"range": (1, 1_000_000)})
    num_threads: int = field(default=1, metadata={
        "range": (0, 256), "help": "torch intra-op threads of the trainer; 0: leave as is"})
    idle_wait_s: float = field(default=0.02, metadata={
        "range": (0.001, 1.0), "help": "wait for an episode when there is nothing to train"})


@dataclass
class TrainerCounters:
    """Progress that a checkpoint keeps (``agent.num_updates`` counts all updates)."""

    offline_updates: int = 0
    online_updates: int = 0
    env_steps: int = 0
    episodes: int = 0
    online_started: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class BackgroundTrainer:
    """Pretrain (optionally), then train online, in a daemon thread.

    ``train_step(rows)`` runs the updates of one call (sampling ``rows`` rows, and whatever the
    replay learns alongside, e.g. balanced replay's density ratio) and returns the last one's
    metrics: with ``updates_per_env_step`` G > 1 the trainer asks for G x batch_size rows, which
    ``factory.train_step`` makes into G updates in one fused call (what the call made is read
    from ``agent.num_updates``); ``ingest(episode)``
    adds an episode's transitions and returns how many env steps it held (both run in the
    trainer thread). Callbacks also run in the trainer thread: ``on_snapshot(snapshot)`` after
    each swap, ``on_checkpoint(counters)``, ``on_pretrained(counters)`` once pretraining is
    complete and before online training starts (an offline snapshot), ``on_metrics(update,
    metrics)`` (the update's metrics and updates_per_s since the last call), ``on_log(text)``,
    ``on_progress()`` after every update and every idle wait, and ``on_error(error)`` if the
    thread dies.
    """

    def __init__(self, agent: AWAC, train_step: Callable[[int], Mapping[str, float]],
                 ingest: Callable[[Any], int], config: BackgroundConfig, *,
                 pretrain_updates: int = 0, train: bool = True,
                 counters: TrainerCounters | None = None, buffer_transitions: int = 0,
                 on_snapshot: Callable[[PolicySnapshot], None] | None = None,
                 on_checkpoint: Callable[[TrainerCounters], None] | None = None,
                 on_pretrained: Callable[[TrainerCounters], None] | None = None,
                 on_metrics: Callable[[int, Mapping[str, float]], None] | None = None,
                 on_log: Callable[[str], None] | None = None,
                 on_progress: Callable[[], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.agent, self.config = agent, config
        self._train_step, self._ingest = train_step, ingest
        self.pretrain_updates, self.train = int(pretrain_updates), train
        self.counters = counters or TrainerCounters()
        self.buffer_transitions = int(buffer_transitions)
        self._on_snapshot, self._on_checkpoint = on_snapshot, on_checkpoint
        self._on_pretrained = on_pretrained
        self._on_metrics, self._on_log = on_metrics, on_log or (lambda _text: None)
        self._on_progress = on_progress or (lambda: None)
        self._on_error = on_error or (lambda _error: None)
        self._episodes: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="awac-trainer", daemon=True)
        self.snapshot: PolicySnapshot | None = None  # read by the acting thread
        self.error: BaseException | None = None
        self.update_seconds: list[float] = []  # recent update durations (bench)
        self._rate = UpdateRate()  # for the logs' updates/s
        self._window: list[bool] = []  # the keeper's current window of exploring episodes
        self._window_policy: PolicySnapshot | None = None

    # ---- acting side -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit_episode(self, episode: Any) -> None:
        """Hand a finished episode to the trainer; never blocks."""
        self._episodes.put_nowait(episode)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the current update, ingest queued episodes, then return."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- trainer thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.config.num_threads:
                torch.set_num_threads(self.config.num_threads)
            self._pretrain()
            if self._pretrained_now() and self._on_pretrained is not None:
                self._on_pretrained(self.counters)
            self._publish()
            if self.train and not self.counters.online_started:
                self.agent.start_online()
                self.counters.online_started = True
            while not self._stop.is_set():
                self._drain_episodes()
                if self._may_update():
                    self._update(online=True)
                else:
                    self._wait_for_episode()
                self._on_progress()
            self._drain_episodes()
            self._on_progress()
        except BaseException as err:  # surfaced to the node, which logs and exits
            self.error = err
            self._on_log(f"trainer stopped: {type(err).__name__}: {err}")
            self._on_error(err)

    def _pretrain(self) -> None:
        remaining = self.pretrain_updates - self.counters.offline_updates
        if not self.train or remaining <= 0:
            return
        self._on_log(f"pretraining: {remaining} offline updates to go "
                     f"(of {self.pretrain_updates}), {self.buffer_transitions} transitions")
        report_every = max(1, self.pretrain_updates // 10)
        while self.counters.offline_updates < self.pretrain_updates and not self._stop.is_set():
            self._update(online=False)
            self._on_progress()
            done = self.counters.offline_updates
            if done % report_every == 0 or done == self.pretrain_updates:
                self._on_log(f"pretraining: {done}/{self.pretrain_updates} updates")

    def _pretrained_now(self) -> bool:
        """Pretraining is complete and online training has not started (also after a resume)."""
        return (self.train and not self.counters.online_started
                and self.counters.offline_updates >= self.pretrain_updates > 0)

    def updates_owed(self) -> float:
        """Online updates the schedule allows by now (inf: train continuously). With a warm
        start (``awac.warm_start_steps``, WSRL) none before that many env steps are stored, and
        the ratio counts env steps from there."""
        warm = self.agent.config.warm_start_steps
        if self.counters.env_steps < warm:
            return 0.0
        ratio = self.config.updates_per_env_step
        return math.inf if ratio <= 0.0 else ratio * (self.counters.env_steps - warm)

    def _may_update(self) -> bool:
        if not self.train or self.buffer_transitions < self.config.batch_size:
            return False
        return self.counters.online_updates < self.updates_owed()

    def _block(self, online: bool) -> int:
        """Updates in the next fused call: G (floor of updates_per_env_step) or what is owed,
        whichever is less; continuous training goes by actor_update_every (one actor step per
        call); offline, one."""
        if not online:
            return 1
        ratio = self.config.updates_per_env_step
        if ratio <= 0.0:
            return self.agent.config.actor_update_every
        owed = math.ceil(self.updates_owed() - self.counters.online_updates)
        return max(1, min(int(ratio), owed))

    def _update(self, online: bool) -> None:
        n_updates = self._block(online)
        before = self.agent.num_updates
        started = time.perf_counter()
        metrics = self._train_step(self.config.batch_size * n_updates)
        # what the call made: factory.train_step makes n updates of rows n x batch_size; a
        # train_step that samples the rows as one batch makes one
        n_updates = max(1, self.agent.num_updates - before)
        self._record_duration(time.perf_counter() - started, n_updates)
        if online:
            self.counters.online_updates += n_updates
        else:
            self.counters.offline_updates += n_updates
        n = self.agent.num_updates

        def crossed(every: int) -> bool:  # a block may step past a multiple of `every`
            return every > 0 and n // every > before // every

        if self._on_metrics is not None and crossed(self.config.log_every_updates):
            self._on_metrics(n, {**metrics, UPDATES_PER_S: self._rate.read()})
        if online and crossed(self.config.publish_every_updates):
            self._publish()
        if crossed(self.config.checkpoint_every_updates) and self._on_checkpoint is not None:
            self._on_checkpoint(self.counters)

    def _record_duration(self, seconds: float, n_updates: int = 1) -> None:
        self._rate.add(n_updates, seconds)
        self.update_seconds.append(seconds / n_updates)
        if len(self.update_seconds) > 2000:
            del self.update_seconds[:1000]

    def _publish(self) -> None:
        from robot_rl.learning.pixel_agent import PixelAgent, PixelPolicySnapshot

        snapshot = (PixelPolicySnapshot.from_agent(self.agent)  # the encoder acts too
                    if isinstance(self.agent, PixelAgent) else PolicySnapshot.from_agent(self.agent))
        self.snapshot = snapshot  # one reference swap: the acting thread sees old or new
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)

    def _drain_episodes(self) -> None:
        while True:
            try:
                episode = self._episodes.get_nowait()
            except queue.Empty:
                return
            self._take(episode)

    def _wait_for_episode(self) -> None:
        try:
            episode = self._episodes.get(timeout=self.config.idle_wait_s)
        except queue.Empty:
            return
        self._take(episode)

    def _take(self, episode: Any) -> None:
        steps = int(self._ingest(episode))
        self.counters.env_steps += steps
        self.counters.episodes += 1
        self.buffer_transitions += steps
        success = getattr(episode, "success", None)
        if success is not None and self.counters.online_started:
            self._measure(bool(success))

    def _measure(self, success: bool) -> None:
        """The keeper's measurements on the graph: the success of the exploring episodes, in
        windows of ``awac.keeper_window_episodes``. A window is credited to the snapshot that was
        acting when it began (``_window_policy``): its episodes ran on it or on the few that
        followed within the window. The first window's policy is the offline one."""
        if self._window_policy is None:
            self._window_policy = self.snapshot
        self._window.append(success)
        if len(self._window) < self.agent.config.keeper_window_episodes:
            return
        policy = self._window_policy.policy if self._window_policy is not None else None
        if policy is not None:
            self.agent.keeper.record(sum(self._window) / len(self._window),
                                     self.counters.env_steps, policy)
        self._window, self._window_policy = [], self.snapshot
