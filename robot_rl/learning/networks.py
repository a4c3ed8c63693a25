"""Networks: a plain MLP, a Q-ensemble as one batched network, and a Gaussian policy.

Action convention: actions live in [-1, 1]. The policy's mean is tanh-squashed; its distribution is
an ordinary (unsquashed) diagonal Gaussian around that mean, and sampled actions are clipped to
[-1, 1] (rlkit's GaussianPolicy). So log pi(a|s) is a plain Gaussian density, finite and exact for
every buffer action including those on the bounds; no atanh is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
LAST_LAYER_INIT = 3e-3  # rlkit: small uniform init of the output layer


def _uniform_(tensor: torch.Tensor, bound: float) -> None:
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


class MLP(nn.Module):
    """Linear-ReLU stack; the output layer starts near zero."""

    def __init__(self, in_dim: int, out_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        _uniform_(self.layers[-1].weight, LAST_LAYER_INIT)
        _uniform_(self.layers[-1].bias, LAST_LAYER_INIT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.linear, not layer(x): at small batches nn.Module's call machinery and ModuleList
        # slicing cost as much as the products. relu_ in place: addmm keeps no output for backward.
        *hidden, head = self.layers
        for layer in hidden:
            x = F.linear(x, layer.weight, layer.bias).relu_()
        return F.linear(x, head.weight, head.bias)


class EnsembleMLP(nn.Module):
    """N independent MLPs evaluated as one network: weights stacked as (N, in, out), one baddbmm
    per layer for all members. Input (B, in) is shared by all members; (N, B, in) gives each
    member its own. Output (N, B, out).

    ``layer_norm`` (RLPD): each hidden layer is Linear -> LayerNorm -> ReLU, the LayerNorm with a
    gain and shift per member (initialised to 1 and 0, as nn.LayerNorm's). Normalised features
    keep a critic's output within the reach of its last layer's weights wherever its input goes,
    which is what bounds Q on actions far from the data (Ball et al. 2023)."""

    LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default

    def __init__(
        self, in_dim: int, out_dim: int, hidden_sizes: Sequence[int], n_members: int,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.n_members = n_members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(a)  # nn.Linear's default init, per member
            w, bias = torch.empty(n_members, a, b), torch.empty(n_members, 1, b)
            _uniform_(w, bound)
            _uniform_(bias, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))
        _uniform_(self.weights[-1], LAST_LAYER_INIT)
        _uniform_(self.biases[-1], LAST_LAYER_INIT)
        self.layer_norm = layer_norm
        self.norm_gains = nn.ParameterList()
        self.norm_shifts = nn.ParameterList()
        if layer_norm:  # registered after the linear layers: parameters() lists them last
            for h in hidden_sizes:
                self.norm_gains.append(nn.Parameter(torch.ones(n_members, 1, h)))
                self.norm_shifts.append(nn.Parameter(torch.zeros(n_members, 1, h)))

    def forward(
        self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """`params` (weights, biases, then the LayerNorm gains and shifts, as `parameters()`
        orders them) lets a caller evaluate the ensemble with detached weights (a loss flows into
        x without touching the critic), or only some members (each tensor indexed by them on its
        first axis: the output has as many rows)."""
        n_layers = len(self.weights)
        if params is None:  # parameters(), not the ParameterLists' own (slower) iteration
            params = list(self.parameters())
        weights, biases = params[:n_layers], params[n_layers:2 * n_layers]
        n_norms = n_layers - 1 if self.layer_norm else 0
        gains = params[2 * n_layers:2 * n_layers + n_norms]
        shifts = params[2 * n_layers + n_norms:2 * n_layers + 2 * n_norms]
        if x.dim() == 2:  # as many members as the weights hold (a caller may pass a subset's)
            x = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
        for i, (w, b) in enumerate(zip(weights[:-1], biases[:-1])):
            x = torch.baddbmm(b, x, w)  # x_{k+1}[n] = b[n] + x_k[n] @ W[n]
            if n_norms:
                x = F.layer_norm(x, x.shape[-1:], eps=self.LAYER_NORM_EPS)
                x = torch.addcmul(shifts[i], x, gains[i])
            x = x.relu_()
        return _ensemble_head(x, weights[-1], biases[-1])

    def member_state(self, index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight as nn.Linear stores it (out, in), bias (out,)) for each layer of one member."""
        return [(w[index].T.contiguous(), b[index, 0]) for w, b in zip(self.weights, self.biases)]


def _ensemble_head(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """b[n] + x[n] @ W[n]. A one-output head (a Q-value) as multiply-and-sum: MKL's batched GEMM
    takes several times longer on (B, H) @ (H, 1) and on its backward's outer product."""
    if w.shape[-1] == 1:
        return (x * w.transpose(1, 2)).sum(dim=-1, keepdim=True) + b
    return torch.baddbmm(b, x, w)


class QEnsemble(nn.Module):
    """N critics Q_n(s, a) as one EnsembleMLP; output (N, B), optionally clamped from above."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        n_critics: int,
        q_clamp_max: float | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim + act_dim, 1, hidden_sizes, n_critics, layer_norm)
        self.q_clamp_max = q_clamp_max

    def forward(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        params: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        q = self.net(torch.cat([obs, action], dim=-1), params).squeeze(-1).float()
        if self.q_clamp_max is not None:
            q = q.clamp(max=self.q_clamp_max)
        return q


def aggregate_q(q: torch.Tensor, how: str, std_coef: float,
                subset: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce an ensemble's (N, B) values to (B,): the minimum, mean - k * std, or (subset_min)
    the minimum over the members indexed by ``subset`` (REDQ's in-target minimisation)."""
    if how == "min":
        return q.min(dim=0).values
    if how == "subset_min":
        if subset is None:
            raise ValueError("critic_aggregation subset_min: no subset of members given")
        return q.index_select(0, subset).min(dim=0).values
    if how == "mean_minus_std":
        std = q.std(dim=0, unbiased=False) if q.shape[0] > 1 else torch.zeros_like(q[0])
        return q.mean(dim=0) - std_coef * std
    raise ValueError(f"critic_aggregation: {how!r} is not one of 'min', 'mean_minus_std', "
                     "'subset_min'")


class GaussianPolicy(nn.Module):
    """pi(a|s) = N(tanh(f(s)), diag(exp(log_std))^2) with a state-independent log-std kept inside
    [lo, hi] smoothly: log_std = lo + (hi - lo) * sigmoid(theta) (rlkit's "values" std)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        log_std_range: tuple[float, float] = (-6.0, 0.0),
    ) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, act_dim, hidden_sizes)
        self.log_std_logits = nn.Parameter(torch.zeros(act_dim))
        self.log_std_lo, self.log_std_hi = float(log_std_range[0]), float(log_std_range[1])

    def log_std(self) -> torch.Tensor:
        span = self.log_std_hi - self.log_std_lo
        return self.log_std_lo + span * torch.sigmoid(self.log_std_logits)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (B, act_dim) in [-1, 1], log_std (act_dim,))."""
        return torch.tanh(self.trunk(obs).float()), self.log_std()


def gaussian_log_prob(
    action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log N(a; mean, exp(log_std)^2) summed over action dimensions -> (B,)."""
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - LOG_SQRT_2PI).sum(dim=-1)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians, summed over action dimensions -> (B,)."""
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    mean_term = ((mean_p - mean_q) * torch.exp(-log_std_q)).pow(2)
    return 0.5 * (var_ratio + mean_term - 1.0).sum(dim=-1) + (log_std_q - log_std_p).sum(dim=-1)
