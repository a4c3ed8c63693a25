"""The intervention rate per episode and its trend, named alike in every learner's log.

Per episode: ``intervention_rate`` (the share of its steps the operator commanded) and
``interventions`` (how many times the operator took over). The trend: ``intervention_rate_mean``,
the mean rate over the last ``window`` episodes, logged with every episode so that a CSV or
TensorBoard plot of it falls as the policy needs the operator less; ``slope_per_1000_steps``
summarises a whole run for its report (least squares over the episodes, against env steps).
"""

from __future__ import annotations

import csv
from collections import deque
from pathlib import Path

import numpy as np

INTERVENTION_RATE = "intervention_rate"
INTERVENTIONS = "interventions"
INTERVENTION_RATE_MEAN = "intervention_rate_mean"


def intervention_metrics(intervention: np.ndarray | None, takeovers: int) -> dict[str, float]:
    """One episode's scalars; ``intervention`` is its per-step flag (None: nobody intervened)."""
    flags = np.zeros(0) if intervention is None else np.asarray(intervention, dtype=np.float64)
    rate = float(flags.mean()) if flags.size else 0.0
    return {INTERVENTION_RATE: rate, INTERVENTIONS: float(takeovers)}


def misdetection_metrics(detected: bool, true_success: bool) -> dict[str, float]:
    """A learned reward's errors on one episode, where the task's own rule is known (the twin):
    ``episode_true_success``, a false success (the classifier ended or rewarded an episode the
    rule does not call a success) and a missed success (the rule saw one the classifier never
    reported)."""
    detected, truth = bool(detected), bool(true_success)
    return {"episode_true_success": float(truth),
            "reward_false_success": float(detected and not truth),
            "reward_missed_success": float(truth and not detected)}


class InterventionTrend:
    """Rates of the last ``window`` episodes (for the log) and all of them (for the report)."""

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"InterventionTrend: window must be >= 1, got {window}")
        self.window = int(window)
        self._recent: deque[float] = deque(maxlen=self.window)
        self.env_steps: list[int] = []    # env steps at each episode's end
        self.rates: list[float] = []
        self.takeovers: list[int] = []

    def add(self, env_steps: int, rate: float, takeovers: int) -> dict[str, float]:
        """Records an episode; the scalars to log beside its own."""
        self._recent.append(float(rate))
        self.env_steps.append(int(env_steps))
        self.rates.append(float(rate))
        self.takeovers.append(int(takeovers))
        return {INTERVENTION_RATE_MEAN: float(np.mean(self._recent))}

    def slope_per_1000_steps(self) -> float:
        """d(rate)/d(env steps) x 1000 by least squares; nan with fewer than two episodes."""
        if len(self.rates) < 2 or len(set(self.env_steps)) < 2:
            return float("nan")
        return float(np.polyfit(np.asarray(self.env_steps, float), self.rates, 1)[0] * 1000.0)

    def summary(self) -> dict[str, float]:
        """Totals and first/last windows, for a run's report."""
        rates = np.asarray(self.rates)
        first = rates[:self.window]
        last = rates[-self.window:]
        return {"episodes": len(rates), "takeovers": int(np.sum(self.takeovers)),
                "episodes_with_takeover": int(np.count_nonzero(self.takeovers)),
                "rate_first_window": float(first.mean()) if first.size else float("nan"),
                "rate_last_window": float(last.mean()) if last.size else float("nan"),
                "slope_per_1000_steps": self.slope_per_1000_steps()}


def misdetection_counts(metrics_csv: Path) -> dict[str, float]:
    """A learned-reward run's online episodes: the classifier's successes, the twin's, and the
    false and missed ones (summed from finetune's per-episode metrics); {} without the file."""
    if not metrics_csv.exists():
        return {}
    names = ("episode_success", "episode_true_success", "reward_false_success",
             "reward_missed_success")
    sums = dict.fromkeys(names, 0.0)
    episodes = 0
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["name"] in sums:
                sums[row["name"]] += float(row["value"])
                episodes += row["name"] == "episode_success"
    return {**sums, "episodes": episodes}
