"""The demo's report: numbers as JSON and Markdown, and the learning curve as a PNG."""

from __future__ import annotations

import json
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
    online_window_episodes: int = 0
    robot: str = ""  # the calibration the run used (a name or a path)
    # per fine-tuning session in which an operator took over: pipeline.hil.OnlineHooks.summary()
    interventions: list[dict] = field(default_factory=list)

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

    def plot(self, path: Path) -> None:
        fig = self.figure()
        fig.savefig(path)
        plt.close(fig)

    def figure(self) -> plt.Figure:
        """The learning curve; the caller saves and closes it."""
        # constrained layout with the legend outside, below the axes: it never covers a curve
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120, layout="constrained")
        if self.online_curve:
            ax.plot([p.env_steps for p in self.online_curve],
                    [p.success_rate for p in self.online_curve], color="tab:orange", alpha=0.8,
                    label=f"online episodes (exploring), last {self.online_window_episodes}")
        if self.curve:
            ax.plot([p.env_steps for p in self.curve], [p.success_rate for p in self.curve],
                    marker="o", label="AWAC, deterministic evaluation")
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


def _noise(episodes: int) -> float:
    """One standard error of a success rate near 50% (the widest), for an honest verdict."""
    return 0.5 / max(episodes, 1) ** 0.5
