"""Replay: a uniform ring buffer; symmetric sampling (RLPD, Ball et al. 2023) and balanced replay
(Lee et al. 2021) over offline + online data.

Symmetric sampling draws a fixed share of every batch from the offline data and the rest from the
online experience, each uniformly, however the two buffers' sizes compare: the few online
transitions of the first minutes weigh as much as the whole dataset.

Balanced replay trains a density-ratio network w(s, a) ~ d_online(s, a) / d_offline(s, a) with the
Jensen-Shannon f-divergence bound and samples each transition with priority w^(1/T), self-normalised
by the offline mean and clamped. Offline transitions that look on-policy are replayed more; online
transitions enter with a high default priority so the first online batches are seen at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.learning.config import BalancedReplayConfig
from robot_rl.learning.networks import MLP

KEYS = ("obs", "action", "reward", "next_obs", "done")
Generator = np.random.Generator | torch.Generator  # either drives sampling


class ReplayBuffer:
    """Preallocated float32 ring buffer of transitions."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be >= 1, got {capacity}")
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, capacity
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "done": np.zeros(capacity, np.float32),
        }
        self.position = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float | np.ndarray,
            next_obs: np.ndarray, done: float | np.ndarray) -> np.ndarray:
        """Add one transition or a batch (leading axis); returns the slots written."""
        obs = np.asarray(obs, np.float32).reshape(-1, self.obs_dim)
        n = obs.shape[0]
        columns = {
            "obs": obs,
            "action": np.asarray(action, np.float32).reshape(n, self.act_dim),
            "reward": np.asarray(reward, np.float32).reshape(n),
            "next_obs": np.asarray(next_obs, np.float32).reshape(n, self.obs_dim),
            "done": np.asarray(done, np.float32).reshape(n),
        }
        if n > self.capacity:  # only the newest `capacity` survive, in the slots they'd reach
            self.position = int((self.position + n - self.capacity) % self.capacity)
            columns = {k: v[-self.capacity:] for k, v in columns.items()}
            n = self.capacity
        slots = (self.position + np.arange(n)) % self.capacity
        for key, value in columns.items():
            self.data[key][slots] = value
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return slots

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> np.ndarray:
        """Add an episode: arrays keyed like a batch (obs, action, reward, next_obs, done)."""
        missing = [k for k in KEYS if k not in episode]
        if missing:
            raise KeyError(f"ReplayBuffer.add_episode: missing keys {missing}, expected {KEYS}")
        return self.add(*(episode[k] for k in KEYS))

    def indices(self, batch_size: int, generator: Generator) -> np.ndarray:
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty")
        if isinstance(generator, torch.Generator):
            return torch.randint(0, self.size, (batch_size,), generator=generator).numpy()
        return generator.integers(0, self.size, size=batch_size)

    def gather(
        self, idx: np.ndarray, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v).to(device) for k, v in self.data_rows(idx).items()}

    def data_rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The rows at ``idx`` of every column, as numpy arrays (copies)."""
        return {k: v[idx] for k, v in self.data.items()}

    def sample(self, batch_size: int, generator: Generator,
               device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Uniform sample with replacement, as float32 tensors."""
        return self.gather(self.indices(batch_size, generator), device)

    def state_dict(self) -> dict:
        n = self.size
        return {"capacity": self.capacity, "position": self.position, "size": n,
                **{k: torch.from_numpy(v[:n].copy()) for k, v in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"ReplayBuffer.load_state_dict: capacity {state['capacity']} "
                             f"!= {self.capacity}")
        n = int(state["size"])
        for k in KEYS:
            self.data[k][:n] = state[k].numpy()
        self.size, self.position = n, int(state["position"])


class EpisodeReplay(Protocol):
    """What symmetric sampling needs of each of its two buffers."""

    def __len__(self) -> int: ...

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> object: ...

    def sample(self, batch_size: int, generator: Generator,
               device: str | torch.device = "cpu") -> dict[str, torch.Tensor]: ...


class SymmetricReplay:
    """Offline and online buffers; each batch takes round(B * offline_fraction) rows from the
    offline buffer and the rest from the online one, each drawn uniformly with replacement
    (RLPD's symmetric sampling at 0.5). While one buffer is empty the whole batch comes from the
    other (pretraining sees only offline data). ``offline_fraction`` 0 is an online-only replay
    (WSRL, once online data exists). Offline rows come first in each batch; it also carries
    ``is_online`` (float 0/1), as balanced replay's does.

    A sample of ``slices`` batches at once (the G updates of an update-to-data ratio, which
    ``AWAC.update`` takes as consecutive slices) splits every slice, not the whole block: a
    block of ten split once would give five updates on offline data alone and five on online
    data alone. The two buffers are ``ReplayBuffer``s (``of_transitions``) or any other
    ``EpisodeReplay``, e.g. a pixel task's frames or features."""

    def __init__(self, offline: EpisodeReplay, online: EpisodeReplay,
                 offline_fraction: float = 0.5, device: str | torch.device = "cpu") -> None:
        if not 0.0 <= offline_fraction <= 1.0:
            raise ValueError(f"SymmetricReplay: offline_fraction must be in [0, 1], got "
                             f"{offline_fraction}")
        self.offline, self.online = offline, online
        self.offline_fraction, self.device = float(offline_fraction), torch.device(device)

    @classmethod
    def of_transitions(cls, obs_dim: int, act_dim: int, offline_capacity: int,
                       online_capacity: int, offline_fraction: float = 0.5,
                       device: str | torch.device = "cpu") -> SymmetricReplay:
        """Over two ``ReplayBuffer``s of vector transitions (a state task's)."""
        return cls(ReplayBuffer(obs_dim, act_dim, offline_capacity),
                   ReplayBuffer(obs_dim, act_dim, online_capacity), offline_fraction, device)

    def add_offline(self, obs: np.ndarray, action: np.ndarray, reward: float | np.ndarray,
                    next_obs: np.ndarray, done: float | np.ndarray) -> None:
        self.offline.add(obs, action, reward, next_obs, done)

    def add_offline_episode(self, episode: Mapping[str, np.ndarray]) -> None:
        self.offline.add_episode(episode)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float | np.ndarray,
            next_obs: np.ndarray, done: float | np.ndarray) -> None:
        """Online transition(s)."""
        self.online.add(obs, action, reward, next_obs, done)

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> None:
        self.online.add_episode(episode)

    def __len__(self) -> int:
        return len(self.offline) + len(self.online)

    def split(self, batch_size: int) -> tuple[int, int]:
        """(offline rows, online rows) of a batch of ``batch_size``."""
        if len(self.online) == 0:
            return batch_size, 0
        if len(self.offline) == 0:
            return 0, batch_size
        n_offline = int(round(batch_size * self.offline_fraction))
        return n_offline, batch_size - n_offline

    def sample(self, batch_size: int, generator: Generator,
               device: str | torch.device | None = None, slices: int = 1
               ) -> dict[str, torch.Tensor]:
        """``batch_size`` rows: ``slices`` consecutive batches of batch_size / slices rows,
        each offline rows first, then online."""
        if len(self) == 0:
            raise ValueError("SymmetricReplay.sample: both buffers are empty")
        if slices < 1 or batch_size % slices:
            raise ValueError(f"SymmetricReplay.sample: {batch_size} rows do not split into "
                             f"{slices} equal batches")
        n_offline, n_online = self.split(batch_size // slices)
        parts = []
        if n_offline:
            parts.append(self.offline.sample(n_offline * slices, generator))
        if n_online:
            parts.append(self.online.sample(n_online * slices, generator))
        target = self.device if device is None else device
        batch = {k: _interleave([p[k] for p in parts], slices).to(target)
                 for k in parts[0] if all(k in p for p in parts)}
        is_online = torch.cat([torch.zeros(slices, n_offline), torch.ones(slices, n_online)], 1)
        batch["is_online"] = is_online.reshape(-1).to(target)
        return batch

    def state_dict(self) -> dict:
        return {"offline": self.offline.state_dict(), "online": self.online.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.offline.load_state_dict(state["offline"])
        self.online.load_state_dict(state["online"])


def _interleave(parts: list[torch.Tensor], slices: int) -> torch.Tensor:
    """Rows of each part cut into ``slices`` equal runs, run k of every part side by side."""
    if len(parts) == 1:
        return parts[0]
    runs = [p.reshape(slices, -1, *p.shape[1:]) for p in parts]
    return torch.cat(runs, dim=1).reshape(-1, *parts[0].shape[1:])


class SumTree:
    """Sum tree over `capacity` leaf priorities; updates and sampling are vectorised per level."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.n_leaves = 1 << max(0, int(np.ceil(np.log2(max(capacity, 1)))))
        self.tree = np.zeros(2 * self.n_leaves, np.float64)  # node i has children 2i, 2i+1

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self) -> np.ndarray:
        return self.tree[self.n_leaves:self.n_leaves + self.capacity]

    def set(self, index: np.ndarray, priority: np.ndarray) -> None:
        node = np.asarray(index, np.int64) + self.n_leaves
        self.tree[node] = priority  # with repeated indices the last write wins
        node = np.unique(node >> 1)
        while node.size and node[0] >= 1:
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]
            node = np.unique(node >> 1)
            if node[0] == 0:
                break

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index whose cumulative-priority interval holds each mass in [0, total)."""
        mass = np.array(mass, np.float64)
        node = np.ones(mass.shape, np.int64)
        while node[0] < self.n_leaves:
            left = 2 * node
            go_right = mass >= self.tree[left]
            mass = np.where(go_right, mass - self.tree[left], mass)
            node = np.where(go_right, left + 1, left)
        return np.minimum(node - self.n_leaves, self.capacity - 1)


class BalancedReplay:
    """Offline and online buffers sampled through one sum tree of priorities.

    Leaves [0, offline_capacity) are offline slots, the rest online slots. Call `update_density`
    once per learner update (after `sample`): it trains the ratio network one step and refreshes
    the priorities of the transitions just sampled.
    """

    def __init__(self, obs_dim: int, act_dim: int, offline_capacity: int, online_capacity: int,
                 config: BalancedReplayConfig, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        self.config, self.device = config, torch.device(device)
        self.offline = ReplayBuffer(obs_dim, act_dim, offline_capacity)
        self.online = ReplayBuffer(obs_dim, act_dim, online_capacity)
        self.tree = SumTree(offline_capacity + online_capacity)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.ratio_net = MLP(obs_dim + act_dim, 1, config.hidden_sizes).to(self.device)
        torch.nn.init.constant_(self.ratio_net.layers[-1].bias, 1.0)  # w starts near 1
        self.optimizer = torch.optim.Adam(self.ratio_net.parameters(), lr=config.lr)
        self.max_priority = config.online_initial_priority
        self.last_indices: np.ndarray | None = None

    # ---- filling ---------------------------------------------------------------------------
    def add_offline(self, obs: np.ndarray, action: np.ndarray, reward: float | np.ndarray,
                    next_obs: np.ndarray, done: float | np.ndarray) -> None:
        slots = self.offline.add(obs, action, reward, next_obs, done)
        self.tree.set(slots, np.ones(len(slots)))  # w = 1 before the ratio is learned

    def add_offline_episode(self, episode: Mapping[str, np.ndarray]) -> None:
        self.add_offline(*(episode[k] for k in KEYS))

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float | np.ndarray,
            next_obs: np.ndarray, done: float | np.ndarray) -> None:
        """Online transition(s): they enter with the highest priority seen so far."""
        slots = self.online.add(obs, action, reward, next_obs, done) + self.offline.capacity
        self.tree.set(slots, np.full(len(slots), self.max_priority))

    def add_episode(self, episode: Mapping[str, np.ndarray]) -> None:
        self.add(*(episode[k] for k in KEYS))

    def __len__(self) -> int:
        return len(self.offline) + len(self.online)

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, batch_size: int, generator: Generator) -> dict[str, torch.Tensor]:
        """Sample by priority; the batch also carries `is_online` (float 0/1)."""
        total = self.tree.total
        if total <= 0.0:
            raise ValueError("BalancedReplay.sample: both buffers are empty")
        # stratified masses: one uniform draw per equal slice of the total
        mass = (np.arange(batch_size) + _uniform(generator, batch_size)) * (total / batch_size)
        idx = self.tree.find(np.minimum(mass, np.nextafter(total, 0.0)))
        self.last_indices = idx
        return self._gather(idx)

    def _gather(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        is_online = idx >= self.offline.capacity
        batch = {}
        for key in KEYS:
            off, on = self.offline.data[key], self.online.data[key]
            rows = np.where(is_online.reshape(-1, *([1] * (off.ndim - 1))),
                            on[np.where(is_online, idx - self.offline.capacity, 0)],
                            off[np.where(is_online, 0, idx)])
            batch[key] = torch.from_numpy(rows).to(self.device)
        batch["is_online"] = torch.from_numpy(is_online.astype(np.float32)).to(self.device)
        return batch

    def online_share(self) -> float:
        """Fraction of the total priority mass held by online transitions."""
        leaves = self.tree.leaves()
        total = leaves.sum()
        return float(leaves[self.offline.capacity:].sum() / total) if total > 0 else 0.0

    # ---- the density ratio -----------------------------------------------------------------
    def ratio(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """w(s, a) >= 0, shape (B,)."""
        return F.softplus(self.ratio_net(torch.cat([obs, action], dim=-1))).squeeze(-1)

    def update_density(self, generator: Generator,
                       transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                       ) -> dict[str, float]:
        """One step on the JS bound, then new priorities for the last sampled transitions.

        maximise E_online[log(2w / (w + 1))] + E_offline[log(2 / (w + 1))]; its optimum is
        w = d_online / d_offline. `transform` normalises observations like the agent does.
        """
        if len(self.offline) == 0 or len(self.online) == 0:
            return {}
        n = self.config.batch_size
        off = self.offline.sample(n, generator, self.device)
        on = self.online.sample(n, generator, self.device)
        tf = transform or (lambda x: x)
        w_off = self.ratio(tf(off["obs"]), off["action"])
        w_on = self.ratio(tf(on["obs"]), on["action"])
        eps = 1e-8
        js_bound = (torch.log(2 * w_on / (w_on + 1) + eps).mean()
                    + torch.log(2 / (w_off + 1) + eps).mean())
        self.optimizer.zero_grad(set_to_none=True)
        (-js_bound).backward()
        self.optimizer.step()
        if self.last_indices is not None:
            self._refresh(self.last_indices, tf, w_off.detach())
        return {"density_js_bound": float(js_bound.detach()),
                "density_w_offline": float(w_off.detach().mean()),
                "density_w_online": float(w_on.detach().mean()),
                "online_share": self.online_share()}

    @torch.no_grad()
    def _refresh(self, idx: np.ndarray, tf: Callable[[torch.Tensor], torch.Tensor],
                 w_offline: torch.Tensor) -> None:
        batch = self._gather(idx)
        w = self.ratio(tf(batch["obs"]), batch["action"])
        self.tree.set(idx, self.priorities(w, w_offline))

    def priorities(self, w: torch.Tensor, w_offline: torch.Tensor) -> np.ndarray:
        """w^(1/T) / mean_offline(w^(1/T)), clamped; the offline mean comes from a uniform batch."""
        inv_t = 1.0 / self.config.temperature
        scaled = w.pow(inv_t) / w_offline.pow(inv_t).mean().clamp_min(1e-12)
        p = scaled.clamp(self.config.priority_min, self.config.priority_max).cpu().numpy()
        self.max_priority = max(self.max_priority, float(p.max(initial=0.0)))
        return p

    @torch.no_grad()
    def refresh_all(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    chunk: int = 65536) -> None:
        """Recompute every stored priority (chunked), e.g. before the first online update."""
        tf = transform or (lambda x: x)
        slots = np.concatenate([np.arange(len(self.offline)),
                                self.offline.capacity + np.arange(len(self.online))])
        w = torch.cat([self.ratio(tf(b["obs"]), b["action"])
                       for b in (self._gather(s) for s in np.array_split(
                           slots, max(1, len(slots) // chunk)))])
        self.tree.set(slots, self.priorities(w, w[: len(self.offline)]))

    def state_dict(self) -> dict:
        return {"offline": self.offline.state_dict(), "online": self.online.state_dict(),
                "priorities": torch.from_numpy(self.tree.leaves().copy()),
                "ratio_net": self.ratio_net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        self.offline.load_state_dict(state["offline"])
        self.online.load_state_dict(state["online"])
        self.tree.set(np.arange(self.tree.capacity), state["priorities"].numpy())
        self.ratio_net.load_state_dict(state["ratio_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.max_priority = float(state["max_priority"])


def _uniform(generator: Generator, n: int) -> np.ndarray:
    if isinstance(generator, torch.Generator):
        return torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    return generator.random(n)
