"""The demo's report: numbers as JSON and Markdown, and the learning curve as a PNG."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report is a file, never a window
import matplotlib.pyplot as plt


@dataclass
class CurvePoint:
    env_steps: int
    success_rate: float
    mean_return: float
    episodes: int = 0  # how many episodes the point measures (0: not recorded)


@dataclass
class Report:
    task: str
    seed: int
    demo_success_rate: float
    noisy_success_rate: float
    offline_success_rate: float
    finetuned_success_rate: float
    eval_episodes: int
    curve: list[CurvePoint] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    safety: dict[str, int] = field(default_factory=dict)
    # how the run was made: "in-process" (one process, the supervisor as a gate) or "graph:
    # processes over DDS" (twin, safety and learner nodes); the graph's curve of online episodes
    mode: str = "in-process"
    online_curve: list[CurvePoint] = field(default_factory=list)
    online_window_episodes: int = 0  # 0: online_curve points are the intervals between evaluations
    robot: str = ""  # the calibration the run used (a name or a path)
    # per fine-tuning session in which an operator took over: pipeline.hil.OnlineHooks.summary()
    interventions: list[dict] = field(default_factory=list)
    backend: str = ""    # the graph's ROS 2 backend: dds or rclpy
    time_mode: str = ""  # the graph's time: wall clock (real time), or the twin's sim time
    clock: dict[str, float] = field(default_factory=dict)  # the twin's counters, the speed-up

    @property
    def improvement(self) -> float:
        return self.finetuned_success_rate - self.offline_success_rate

    def write(self, run_dir: Path) -> dict[str, Path]:
        run_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": run_dir / "report.json", "markdown": run_dir / "report.md",
                 "plot": run_dir / "learning_curve.png"}
        paths["json"].write_text(json.dumps({**asdict(self), "improvement": self.improvement},
                                            indent=2))
        paths["markdown"].write_text(self.markdown())
        self.plot(paths["plot"])
        return paths

    def markdown(self) -> str:
        verdict = ("better than" if self.improvement > _noise(self.eval_episodes)
                   else "not measurably better than")
        lines = [
            f"# robot_rl demo: {self.task}{f' on {self.robot}' if self.robot else ''} "
            f"(seed {self.seed})",
            "",
            f"Run: {self.mode}.",
            *self._run_lines(),
            "",
            f"Success rates over {self.eval_episodes} evaluation episodes each "
            "(scripted data: over the recorded episodes):",
            "",
            "| policy | success rate |",
            "|---|---|",
            f"| scripted demonstrations | {_percent(self.demo_success_rate)} |",
            f"| scripted with noise (the rest of the dataset) | "
            f"{_percent(self.noisy_success_rate)} |",
            f"| AWAC after offline pretraining | {self.offline_success_rate:.0%} |",
            f"| AWAC after online fine-tuning | {self.finetuned_success_rate:.0%} |",
            "",
            f"The fine-tuned policy is {verdict} the offline one "
            f"({self.improvement:+.0%}; one standard error of a rate here is about "
            f"{_noise(self.eval_episodes):.0%}).",
            "",
            *self._curve_table(),
            *(["Time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in
                                              self.timings_s.items()), ""]
              if self.timings_s else []),
            "Safety supervisor verdicts during the run: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.safety.items())) or "none"),
            "",
            *[_intervention_line(k, s) for k, s in enumerate(self.interventions, 1)],
            *([""] if self.interventions else []),
            "![learning curve](learning_curve.png)",
        ]
        return "\n".join(lines) + "\n"

    def _run_lines(self) -> list[str]:
        if not (self.backend or self.time_mode):
            return []
        line = f"Backend: {self.backend or '?'}; time: {self.time_mode or '?'}"
        speedup = self.clock.get("speedup")
        if speedup:
            line += (f"; the online phase ran {speedup:.1f}x real time "
                     f"({self.clock['online_sim_s']:.0f} s of simulated time in "
                     f"{self.clock['online_wall_s']:.0f} s)")
        if "lockstep_steps_answered" in self.clock:
            c = self.clock
            line += (f"; lockstep: {c['lockstep_steps_answered']:.0f} steps answered and "
                     f"gated, {c.get('lockstep_resets', 0):.0f} resets, "
                     f"{c.get('lockstep_steps_ungated', 0):.0f} answered with no command from "
                     f"the supervisor, {c.get('lockstep_steps_unanswered', 0):.0f} without an "
                     f"answer (before the learner acted), {c.get('lockstep_timeouts', 0):.0f} "
                     "timeouts")
        return ["", line + "."]

    def _curve_table(self) -> list[str]:
        if len(self.curve) < 3:
            return []
        rows = ["Evaluations (deterministic policy, the same starts each time):", "",
                "| online env steps | success rate | mean return |", "|---|---|---|"]
        rows += [f"| {p.env_steps} | {p.success_rate:.0%} | {p.mean_return:.1f} |"
                 for p in self.curve]
        return [*rows, ""]

    def plot(self, path: Path) -> None:
        fig = self.figure()
        fig.savefig(path)
        plt.close(fig)

    def figure(self) -> plt.Figure:
        """The learning curve; the caller saves and closes it. Each measured point as a marker
        (with its standard error where the episode count is known); nothing drawn between
        measurements."""
        # constrained layout with the legend outside, below the axes: it never covers a curve
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120, layout="constrained")
        if self.online_curve:
            label = (f"exploring episodes, last {self.online_window_episodes}"
                     if self.online_window_episodes else
                     "exploring episodes (stochastic policy), per interval")
            _points(ax, self.online_curve, "tab:orange", "s", label, filled=False)
        if self.curve:
            _points(ax, self.curve, "tab:blue", "o", "AWAC, deterministic evaluation",
                    filled=True)
        ax.axhline(self.demo_success_rate, color="tab:green", ls="--", label="demonstrations")
        ax.axhline(self.offline_success_rate, color="tab:gray", ls=":", label="offline AWAC")
        ax.set(xlabel="online environment steps", ylabel="success rate", ylim=(-0.02, 1.02),
               title=f"{self.task}: offline pretraining, then online fine-tuning")
        ax.grid(alpha=0.3)
        fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
        return fig


def _intervention_line(session: int, summary: dict) -> str:
    """One fine-tuning session's operator interventions, as the report states them."""
    return (f"Operator interventions (session {session}): {summary.get('takeovers', 0)} "
            f"takeovers in {summary.get('episodes_with_takeover', 0)} of "
            f"{summary.get('episodes', 0)} episodes, {summary.get('intervention_steps', 0)} "
            f"operator steps; intervention rate {summary.get('rate_first_window', 0.0):.1%} in "
            f"the first episodes -> {summary.get('rate_last_window', 0.0):.1%} in the last "
            f"(slope {summary.get('slope_per_1000_steps', 0.0):+.4f} per 1000 steps).")


def _percent(rate: float) -> str:
    """A rate, or '-' when there was nothing to rate (a dataset without such episodes)."""
    return "-" if rate != rate else f"{rate:.0%}"


def _points(ax: plt.Axes, points: list[CurvePoint], color: str, marker: str, label: str,
            filled: bool) -> None:
    x = [p.env_steps for p in points]
    y = [p.success_rate for p in points]
    errors = [_standard_error(p.success_rate, p.episodes) for p in points]
    ax.errorbar(x, y, yerr=errors if any(errors) else None, fmt=marker, color=color,
                markerfacecolor=color if filled else "none", capsize=3, label=label,
                linestyle="none")


def _standard_error(rate: float, episodes: int) -> float:
    if episodes <= 0 or not math.isfinite(rate):
        return 0.0
    return math.sqrt(max(rate * (1.0 - rate), 0.0) / episodes)


def _noise(episodes: int) -> float:
    """One standard error of a success rate near 50% (the widest), for an honest verdict."""
    return 0.5 / max(episodes, 1) ** 0.5
