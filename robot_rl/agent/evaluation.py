"""When an acting learner evaluates its policy: rounds of deterministic episodes between exploring
ones, as the in-process pipeline evaluates between its online episodes.

A round opens at the first episode boundary at or after each multiple of ``every_env_steps``
online steps (0 included, so the first round measures the pretrained policy), and once more when
the online budget is reached if the last round was not at that step count. A round is
``episodes`` episodes acting with the policy's mean from draws 0..episodes-1 of the evaluation
stream (``EpisodeMachine.plan``): every round starts from the same states, so rounds differ only
by the policy. Evaluation episodes are not training data. Pure bookkeeping: the node asks
``next_episode`` before each episode and reports each finished evaluation episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvaluationRound:
    index: int
    env_steps: int  # online env steps stored when the round opened
    episodes: int
    planned: int = 0
    successes: list[bool] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.successes) >= self.episodes

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / len(self.successes) if self.successes else float("nan")

    @property
    def mean_return(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else float("nan")


class EvaluationSchedule:
    def __init__(self, every_env_steps: int, episodes: int, acted_env_steps: int = 0) -> None:
        if every_env_steps < 0 or episodes < 1:
            raise ValueError(f"evaluation: every_env_steps must be >= 0 (0: never) and episodes "
                             f">= 1, got {every_env_steps}, {episodes}")
        self.every_env_steps, self.episodes = every_env_steps, episodes
        # a run resumed past step 0 evaluates at the next multiple, not at once
        self._next_mark = 0 if acted_env_steps == 0 else \
            (acted_env_steps // max(every_env_steps, 1) + 1) * every_env_steps
        self.rounds: list[EvaluationRound] = []
        self._retry: list[int] = []  # draws of the open round whose episode was discarded

    @property
    def enabled(self) -> bool:
        return self.every_env_steps > 0

    @property
    def open_round(self) -> EvaluationRound | None:
        last = self.rounds[-1] if self.rounds else None
        return last if last is not None and not last.complete else None

    def next_episode(self, acted_env_steps: int, budget_reached: bool) -> tuple[str, int] | None:
        """The next episode: ("online", -1), ("eval", draw), or None when there is none to run
        now (the budget is spent and the evaluations are done, or a round's last episodes are
        still running on another robot)."""
        current = self.open_round
        if current is not None:
            if self._retry:
                return "eval", self._retry.pop(0)
            if current.planned < current.episodes:
                current.planned += 1
                return "eval", current.planned - 1
            return None if budget_reached else ("online", -1)
        due = acted_env_steps >= self._next_mark if not budget_reached else \
            self._final_owed(acted_env_steps)
        if self.enabled and due:
            self.rounds.append(EvaluationRound(len(self.rounds), acted_env_steps, self.episodes,
                                               planned=1))
            self._next_mark = (acted_env_steps // self.every_env_steps + 1) * \
                self.every_env_steps
            return "eval", 0
        return None if budget_reached else ("online", -1)

    def done(self, acted_env_steps: int, budget_reached: bool) -> bool:
        """Nothing more to run: the budget is spent and no evaluation is open or owed."""
        return budget_reached and self.open_round is None and \
            not self._final_owed(acted_env_steps)

    def _final_owed(self, acted_env_steps: int) -> bool:
        """The last evaluation is not at this step count (the budget's end is evaluated)."""
        return self.enabled and (not self.rounds or
                                 self.rounds[-1].env_steps != acted_env_steps)

    def discarded(self, draw: int) -> None:
        """An evaluation episode was discarded (its state went stale): run its draw again."""
        if self.open_round is not None:
            self._retry.append(draw)

    def finished(self, success: bool, episode_return: float) -> EvaluationRound | None:
        """An evaluation episode ended; the round it belongs to (complete or not), or None when
        no round is open (the episode is not counted)."""
        current = self.open_round
        if current is None:
            return None
        current.successes.append(bool(success))
        current.returns.append(float(episode_return))
        return current
