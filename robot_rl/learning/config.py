"""Hyperparameters of the learning core: AWAC, its replay schemes, critics and online schedule.

Defaults follow rlkit's AWAC settings for the dexterous hand tasks (Nair et al. 2020) unless a field
says otherwise: the library's default is the paper's AWAC. Each option from the offline-to-online
literature (symmetric sampling, LayerNorm critics, a random-subset ensemble minimum, an actor
updated every k critic updates, a warm start) is a switch that is off here and carries its
source's value where it has one; the task configs (robot_rl/configs/*.yaml) turn on the measured
best. Validation lives in field metadata so the project's YAML loader can check it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

DEVICE_NAMES = "cpu, cuda, cuda:N or auto"
_DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")


def _num(default: Any, lo: float, hi: float, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text, "range": (lo, hi)})


def _choice(default: str, choices: tuple[str, ...], help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text, "choices": choices})


@dataclass(frozen=True)
class BalancedReplayConfig:
    """Balanced replay (Lee et al. 2021): priorities from a learned ratio d_online/d_offline."""

    hidden_sizes: tuple[int, ...] = _num((256, 256), 1, 4096, "density-ratio MLP hidden widths")
    lr: float = _num(3e-4, 1e-6, 1e-1, "density-ratio network learning rate")
    batch_size: int = _num(256, 1, 65536, "offline and online batch size for the ratio network")
    temperature: float = _num(5.0, 0.1, 100.0, "T in priority = w ** (1 / T)")
    priority_min: float = _num(1e-3, 1e-9, 1.0, "lower clamp of a self-normalised priority")
    priority_max: float = _num(1e3, 1.0, 1e9, "upper clamp of a self-normalised priority")
    online_initial_priority: float = _num(
        1e3, 1e-3, 1e9, "priority a new online transition enters with (before the ratio sees it)"
    )


@dataclass(frozen=True)
class CollapseGuardConfig:
    """Guard against policy collapse when online fine-tuning starts (Luo et al. 2023)."""

    conservative: bool = field(
        default=False, metadata={"help": "pull the actor toward the frozen offline policy"}
    )
    conservative_term: str = _choice(
        "kl", ("kl", "logp"), "kl: KL(snapshot || policy); logp: -log pi(snapshot mean | s)"
    )
    conservative_weight: float = _num(1.0, 0.0, 1e3, "initial weight of the conservative term")
    conservative_decay_updates: int = _num(
        10_000, 1, 10_000_000, "online updates over which the weight decays linearly to 0"
    )
    fallback: bool = field(
        default=False, metadata={"help": "act with the offline snapshot while online is worse"}
    )
    fallback_margin: float = _num(
        0.1, 0.0, 1.0, "online success may trail the offline success by this much"
    )
    fallback_window: int = _num(5, 1, 1000, "recent online evaluations averaged by the rule")


# The offline-to-online toolkit's switches (RLPD, REDQ, WSRL; docs/results.md): the task files
# turn them on, AWACConfig's defaults leave them off (the paper's AWAC). Studies measured before
# the task files turned them on reproduce with them off again (run_config.toolkit_off_overrides).
TOOLKIT_FIELDS = ("replay", "symmetric_offline_fraction", "keep_offline_data", "warm_start_steps",
                  "n_critics", "critic_aggregation", "critic_subset", "critic_layer_norm",
                  "actor_update_every", "critic_warmup_updates", "handed_policy")


@dataclass(frozen=True)
class AWACConfig:
    """AWAC (Nair et al. 2020) with the options the fine-tuning literature found to matter."""

    actor_hidden_sizes: tuple[int, ...] = _num((256, 256), 1, 4096, "policy MLP hidden widths")
    critic_hidden_sizes: tuple[int, ...] = _num((256, 256), 1, 4096, "Q MLP hidden widths")
    batch_size: int = _num(1024, 1, 65536, "transitions per gradient update")
    actor_lr: float = _num(3e-4, 1e-6, 1e-1, "policy Adam learning rate")
    critic_lr: float = _num(3e-4, 1e-6, 1e-1, "Q-ensemble Adam learning rate")
    gamma: float = _num(0.99, 0.0, 1.0, "discount per control step")
    tau: float = _num(5e-3, 0.0, 1.0, "soft target update rate")
    beta: float = _num(0.5, 0.01, 10.0, "AWAC temperature lambda: weights softmax(A / beta)")
    policy_weight_decay: float = _num(1e-4, 0.0, 1.0, "L2 weight decay of the policy (Adam)")
    log_std_range: tuple[float, float] = _num(
        (-6.0, 0.0), -20.0, 5.0, "state-independent policy log-std bounds"
    )
    max_weight: float = _num(
        100.0, 1.0, 1e6, "clip of a batch-normalised advantage weight softmax(A/beta)*B"
    )
    normalize_weights: bool = field(
        default=True, metadata={"help": "softmax over the batch (rlkit); else exp(A/beta) (CORL)"}
    )
    n_critics: int = _num(2, 1, 64, "Q-ensemble size")
    critic_aggregation: str = _choice(
        "min", ("min", "mean_minus_std", "subset_min"),
        "how the ensemble is reduced to one Q in the TD target. subset_min (REDQ, RLPD): the "
        "minimum over critic_subset members drawn at random for each update; the actor then "
        "reads the mean of all members, as REDQ and RLPD do",
    )
    std_coef: float = _num(1.0, 0.0, 10.0, "k in mean - k * std")
    critic_subset: int = _num(
        2, 1, 64, "subset_min: members drawn per update (RLPD and REDQ: 2 of 10)"
    )
    critic_layer_norm: bool = field(
        default=False,
        metadata={"help": "LayerNorm after each hidden layer of the critics, before the ReLU "
                          "(RLPD): keeps Q bounded on actions far from the data"},
    )
    actor_update_every: int = _num(
        1, 1, 1000,
        "online: the actor steps on every k-th update only, the critics on every one (with "
        "finetune.updates_per_env_step G, k = G is RLPD's and HIL-SERL's one actor step per env "
        "step); offline updates always step both",
    )
    critic_warmup_updates: int = _num(
        0, 0, 10_000_000,
        "online: the first this many updates step the critics only, so the actor leaves the "
        "pretrained policy only once the critics have fitted the first online data (the actor "
        "weighs its own samples by advantages a critic that has never seen them gets wrong)",
    )
    actor_objective: str = _choice(
        "awr", ("awr", "bc", "sac"), "awr: AWAC; bc: behaviour cloning; sac: reparameterised max Q"
    )
    sac_alpha: float = _num(0.2, 0.0, 100.0, "entropy weight (initial value when learned)")
    sac_learn_alpha: bool = field(
        default=True, metadata={"help": "tune alpha toward entropy -act_dim (sac objective only)"}
    )
    q_clamp_max: float | None = field(
        default=None,
        metadata={"help": "clamp Q outputs to <= this (rlkit: 0 when rewards <= 0)",
                  "range": (-1e9, 1e9)},
    )
    normalize_obs: bool = field(
        default=True, metadata={"help": "apply the dataset observation normaliser"}
    )
    matmul_precision: str = _choice(
        "fp32", ("fp32", "bf16"), "bf16 autocasts the network matmuls (CPU or GPU)"
    )
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the loss computation: faster updates after 15-60 s of "
                          "compilation at the first update of each process and batch size (on CPU "
                          "it needs a C++ compiler; where compilation fails it warns and trains "
                          "uncompiled); off by default so short runs and tests start at once"},
    )
    device: str = field(
        default="cpu",
        metadata={"help": f"where the learner trains: {DEVICE_NAMES} (the first GPU torch sees, "
                          "else the CPU). The CPU by default: every published figure was made "
                          "there, and a robot's computer may have no GPU"},
    )
    handed_policy: str = _choice(
        "final", ("final", "best"),
        "the policy fine-tuning hands over at its end: final (the last actor) or best (the actor "
        "at its best measurement, the offline policy's included; ties to the later one: "
        "learning.keeper)",
    )
    keeper_window_episodes: int = _num(
        10, 1, 100_000,
        "on the graph (no evaluations): exploring episodes per measurement the keeper gets",
    )
    replay: str = _choice(
        "uniform", ("uniform", "balanced", "symmetric"),
        "replay sampling: uniform over one buffer that grows (rlkit); balanced (Lee et al.: "
        "priorities from a learned density ratio); symmetric (RLPD: a fixed share of each batch "
        "from the offline data, the rest from online experience)",
    )
    symmetric_offline_fraction: float = _num(
        0.5, 0.0, 1.0, "symmetric replay: share of each batch from the offline data (RLPD 0.5); "
        "a batch is all offline while nothing online is stored yet"
    )
    keep_offline_data: bool = field(
        default=True,
        metadata={"help": "online batches keep drawing on the offline data; false (WSRL): once "
                          "online experience is stored, batches come from it alone"},
    )
    warm_start_steps: int = _num(
        0, 0, 10_000_000,
        "WSRL: online env steps acted by the pretrained policy before the first online update; "
        "the update schedule (updates_per_env_step) counts env steps from there on",
    )
    balanced_replay: BalancedReplayConfig = field(default_factory=BalancedReplayConfig)
    collapse_guard: CollapseGuardConfig = field(default_factory=CollapseGuardConfig)

    def __post_init__(self) -> None:
        lo, hi = self.log_std_range
        if not lo < hi:
            raise ValueError(
                f"AWACConfig.log_std_range: expected lo < hi, got {self.log_std_range}"
            )
        check_device_name(self.device, "AWACConfig.device")
        if self.critic_aggregation == "subset_min" and self.critic_subset > self.n_critics:
            raise ValueError(f"AWACConfig.critic_subset: {self.critic_subset} members drawn from "
                             f"n_critics {self.n_critics}; it must be at most n_critics")
        if not self.keep_offline_data and self.replay == "balanced":
            raise ValueError("AWACConfig.keep_offline_data: false needs replay uniform or "
                             "symmetric (balanced replay weighs offline against online data)")


def check_device_name(name: str, where: str = "device") -> None:
    """ValueError unless ``name`` is one of DEVICE_NAMES (``learning.device`` resolves it)."""
    if not isinstance(name, str) or _DEVICE_PATTERN.fullmatch(name) is None:
        raise ValueError(f"{where}: {name!r} is not one of {DEVICE_NAMES}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (tuples become lists) that round-trips through YAML and torch.save."""
    return _plain(dataclasses.asdict(config))


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from `config_to_dict` output."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = cls.__dataclass_fields__[f.name]
        nested = _nested_type(cls, default)
        if nested is not None:
            value = config_from_dict(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise KeyError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**kwargs)


def _nested_type(cls: type, f: dataclasses.Field) -> type | None:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        made = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(made):
            return type(made)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
