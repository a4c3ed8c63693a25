"""``robot-rl deploy CHECKPOINT``: a finished policy on the robot, without training, and a report.

Runs ``launch/deploy.launch.yaml`` under the launch runner: the mode's hardware (the twin, the
real drivers against emulated hardware, or the robot), the safety node and the actor node acting
with the checkpoint's policy (its mean, unless told otherwise) through the supervisor. This process
follows the actor's episode log until ``episodes`` episodes are done, reads the safety node's
verdict counters from /diagnostics, stops the launch, checks that no node is left, and writes
OUT/deploy.md and OUT/deploy.json: the success rate, each episode, and the supervisor's verdicts.
The task and robot come from the checkpoint's own config; the robot namespace from the task's
launch file.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from robot_rl.agent.tasks import env_id_task
from robot_rl.learning.checkpoint import CheckpointError, load_checkpoint
from robot_rl.pipeline.outputs import refuse_existing

LAUNCH_FILE = "deploy.launch.yaml"
EPISODE_LOG = "episodes.csv"
LOG = "graph.log"
OUTPUTS = ("deploy.md", "deploy.json", EPISODE_LOG, LOG)
POLL_PERIOD_S = 0.25
DIAGNOSTICS_WAIT_S = 1.2  # the safety node publishes its counters at least every 1 s
# No finished episode for this long: the graph is stuck (an episode is 100-400 steps at 20 Hz,
# and the first one waits for the nodes to start).
STALL_TIMEOUT_S = 180.0


class DeployError(RuntimeError):
    """The deployment did not run its episodes through; the message names the run's log."""


@dataclass
class DeployReport:
    checkpoint: str
    task: str
    robot: str
    mode: str
    episodes: list[dict[str, Any]] = field(default_factory=list)
    safety: dict[str, int] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def success_rate(self) -> float:
        return (sum(int(e["success"]) for e in self.episodes) / len(self.episodes)
                if self.episodes else float("nan"))

    @property
    def mean_return(self) -> float:
        return (sum(float(e["episode_return"]) for e in self.episodes) / len(self.episodes)
                if self.episodes else float("nan"))

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "deploy.json").write_text(json.dumps(
            {**asdict(self), "success_rate": self.success_rate, "mean_return": self.mean_return},
            indent=2))
        (out / "deploy.md").write_text(self.markdown())

    def markdown(self) -> str:
        rows = [f"| {e['episode']} | {e['steps']} | {'yes' if int(e['success']) else 'no'} | "
                f"{float(e['episode_return']):.1f} |" for e in self.episodes]
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.safety.items())) or "none"
        return "\n".join([
            f"# robot_rl deploy: {self.task} on {self.robot} ({self.mode})", "",
            f"Policy: {self.checkpoint}, acting without training through the safety "
            f"supervisor.", "",
            f"Success: {self.success_rate:.0%} of {len(self.episodes)} episodes; mean return "
            f"{self.mean_return:.1f}; {self.wall_time_s:.0f} s.", "",
            f"Safety supervisor verdicts: {verdicts}", "",
            "| episode | steps | success | return |", "|---|---|---|---|", *rows, ""])


def deploy(checkpoint: Path, out: Path, *, episodes: int, launch_args: dict[str, str],
           progress: bool = True, overwrite: bool = False) -> DeployReport:
    """Run the checkpoint's policy for ``episodes`` episodes on the graph; the report."""
    from robot_rl.pipeline.graph_demo import SafetyMonitor, _Graph

    if episodes < 1:
        raise ValueError(f"deploy needs at least 1 episode, got {episodes}")
    refuse_existing([(out / name, "the output of an earlier deploy") for name in OUTPUTS],
                    overwrite, "pass --overwrite to replace it, or --out another folder")
    checkpoint = checkpoint.resolve()
    task, robot = checkpoint_task(checkpoint)
    args = {"task": task, "robot": robot, "namespace": task_namespace(task), "mode": "twin",
            **launch_args}
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in (EPISODE_LOG, LOG):
        (out / name).unlink(missing_ok=True)  # refused above unless --overwrite
    args.update({"checkpoint": str(checkpoint), "episode_log": str(out / EPISODE_LOG),
                 "max_episodes": str(episodes)})
    command = [sys.executable, "-m", "robot_rl.ros.launch", "robot_rl", LAUNCH_FILE,
               *(f"{k}:={v}" for k, v in args.items())]
    started = time.monotonic()
    with _Graph(command, out / LOG) as graph:
        monitor = SafetyMonitor()
        try:
            rows = _follow(graph, monitor, out / EPISODE_LOG, episodes, progress)
            monitor.spin_for(DIAGNOSTICS_WAIT_S)  # the counters after the last command
            safety = monitor.counters
        finally:
            monitor.destroy()
    report = DeployReport(checkpoint=str(checkpoint), task=task, robot=args["robot"],
                          mode=args["mode"], episodes=rows[:episodes], safety=safety,
                          wall_time_s=time.monotonic() - started)
    report.write(out)
    return report


def checkpoint_task(checkpoint: Path) -> tuple[str, str]:
    """(task name, robot) of the config a checkpoint stores; one line naming the file if none."""
    state = load_checkpoint(checkpoint)
    config = state.get("config")
    env_id = config.get("env_id") if isinstance(config, dict) else None
    task = env_id_task(env_id or "")
    if not task:
        raise CheckpointError(checkpoint, f"stores no task a launch file runs (env_id "
                                          f"{env_id!r}): deploy runs checkpoints of robot-rl "
                                          f"pretrain, finetune or the learner node")
    return task, str(config.get("robot") or "")


def task_namespace(task: str) -> str:
    """The robot namespace the task's launch file uses by default (its one home)."""
    from robot_rl.ros.launch import share_directory

    path = share_directory() / "launch" / f"{task}.launch.yaml"
    for entry in yaml.safe_load(path.read_text())["launch"]:
        arg = entry.get("arg") if isinstance(entry, dict) else None
        if arg and arg.get("name") == "namespace":
            return str(arg["default"])
    raise DeployError(f"{path}: declares no namespace argument")


def _follow(graph: Any, monitor: Any, log: Path, episodes: int,
            progress: bool) -> list[dict[str, str]]:
    """The actor's episode rows, until ``episodes`` of them (a bar counts them)."""
    rows: list[dict[str, str]] = []
    last_change = time.monotonic()
    with tqdm(total=episodes, desc="deploy", unit="episode", disable=not progress) as bar:
        while len(rows) < episodes:
            monitor.spin(POLL_PERIOD_S)
            fresh = _read_rows(log)
            if len(fresh) != len(rows):
                rows, last_change = fresh, time.monotonic()
                bar.update(len(rows) - bar.n)
                bar.set_postfix(success=f"{sum(int(r['success']) for r in rows) / len(rows):.0%}")
                continue
            if not graph.running():
                raise DeployError(f"the launch ended after {len(rows)} of {episodes} episodes; "
                                  f"{graph.log_path}:\n{graph.log_tail()}")
            died = graph.died()  # a node that exited with an error: the actor's own end is 0
            if died:
                raise DeployError(f"node(s) {sorted(set(died))} died after {len(rows)} "
                                  f"episodes; {graph.log_path}:\n{graph.log_tail()}")
            if time.monotonic() - last_change > STALL_TIMEOUT_S:
                raise DeployError(f"no episode finished for {STALL_TIMEOUT_S:g} s ({len(rows)} "
                                  f"of {episodes} done); {graph.log_path}:\n{graph.log_tail()}")
    return rows


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of the actor's episode log (a half-written last line is left)."""
    if not path.exists():
        return []
    text = path.read_text()
    text = text[:text.rfind("\n") + 1]
    return list(csv.DictReader(text.splitlines()))
