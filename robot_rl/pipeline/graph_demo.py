"""``robot-rl demo`` on the ROS 2 graph: the twin, the safety node and the learner as processes.

Demonstrations are recorded in this process (``stages.record``: the scripted expert through the
supervisor gate). Then ``<task>.launch.yaml mode:=twin`` runs under the launch runner: the learner
node pretrains on the dataset, writes ``offline.pt``, acts on the twin in real time through the
safety node while AWAC trains in its training process, and exits by itself after the config's
``finetune.env_steps`` (and the updates they are owed), leaving ``learner.pt``. This process
follows the learner's ``status.json``, reads the safety node's counters from ``/diagnostics``,
stops the launch with SIGINT, checks that no node is left, and evaluates both checkpoints here on
the same seeds as the in-process pipeline.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from robot_rl.config import annotated_yaml
from robot_rl.nodes import learner as learner_node
from robot_rl.nodes import learner_training, topics
from robot_rl.pipeline import stages
from robot_rl.pipeline.config import PipelineConfig, check_graph_config
from robot_rl.pipeline.report import CurvePoint, Report
from robot_rl.registry import task_spec
from robot_rl.ros.launch import died_processes, pid_alive, started_pids

MODE = "graph: processes over DDS (twin, safety and learner nodes, started from launch/)"
LOG = "graph.log"
CONFIG_COPY = "config.yaml"
POLL_PERIOD_S = 0.25
STALL_TIMEOUT_S = 180.0   # no learner progress for this long: the graph is stuck
DIAGNOSTICS_WAIT_S = 1.2  # the safety node publishes its counters at least every 1 s
STOP_TIMEOUT_S = 20.0     # the runner's own SIGINT -> SIGTERM -> SIGKILL ladder takes < 10 s
LEARNER_OUTPUTS = (learner_training.CHECKPOINT, learner_training.OFFLINE_CHECKPOINT,
                   learner_training.ONLINE_STORE, learner_node.EPISODE_LOG, learner_node.STATUS,
                   "learner", LOG)


class GraphError(RuntimeError):
    """The graph did not run the demo through; the message names the run's log."""


def run_graph_demo(config: PipelineConfig, run_dir: Path, progress: bool = True) -> Report:
    """The pipeline with fine-tuning on the graph; RUN/report.md, report.json, learning_curve.png."""
    check_graph_config(config, "robot-rl demo (the graph)")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = stages.Laps(timings)
    dataset = run_dir / "dataset.zarr"
    summary = stages.record(config, dataset, progress=progress)
    clock.lap("record")
    _clear_learner_outputs(run_dir)
    config_file = run_dir / CONFIG_COPY  # the learner trains with exactly this config
    config_file.write_text(annotated_yaml(config))
    with _Graph(launch_command(config, config_file, dataset, run_dir), run_dir / LOG) as graph:
        monitor = SafetyMonitor()
        try:
            _follow(graph, monitor, run_dir, config, clock, progress)
            monitor.spin_for(DIAGNOSTICS_WAIT_S)  # the counters after the last command
            safety = monitor.counters
        finally:
            monitor.destroy()
    clock.lap("stop graph")
    offline = stages.evaluate_checkpoint(config, run_dir / learner_training.OFFLINE_CHECKPOINT,
                                         config.eval.episodes, progress=progress)
    final = stages.evaluate_checkpoint(config, run_dir / learner_training.CHECKPOINT,
                                       config.eval.episodes, progress=progress)
    clock.lap("evaluate")
    episodes = read_episode_log(run_dir / learner_node.EPISODE_LOG)
    window = curve_window(len(episodes))
    env_steps = int(episodes[-1]["env_steps"]) if episodes else 0
    report = Report(task=config.env_id, robot=config.robot, seed=config.seed,
                    demo_success_rate=summary.demo_success_rate,
                    noisy_success_rate=summary.noisy_success_rate,
                    offline_success_rate=offline.success_rate,
                    finetuned_success_rate=final.success_rate,
                    eval_episodes=config.eval.episodes,
                    curve=[stages.curve_point(0, offline), stages.curve_point(env_steps, final)],
                    timings_s=timings, safety=safety, mode=MODE,
                    online_curve=online_curve(episodes, window), online_window_episodes=window)
    report.write(run_dir)
    return report


# ---- the launch ------------------------------------------------------------------------------
def launch_command(config: PipelineConfig, config_file: Path, dataset: Path,
                   run_dir: Path) -> list[str]:
    """``robot-rl launch robot_rl <task>.launch.yaml mode:=twin ...`` as an argv."""
    spec = task_spec(config.env_id)
    if not spec.launch_file:
        raise ValueError(f"env_id {config.env_id!r}: task {spec.name!r} names no launch file "
                         "(TaskSpec.launch_file); run it in-process")
    args = {"mode": "twin", "robot": config.robot, "config": config_file, "profile": "",
            "pretrain_dataset": dataset, "run_dir": run_dir, "seed": config.seed,
            "max_online_env_steps": -1, "updates_per_env_step": -1}  # -1: the config's
    # a bare name is a launch file of robot_rl's own (launch/); a plugin's task gives a path
    where = ["robot_rl", spec.launch_file] if Path(spec.launch_file).name == spec.launch_file \
        else [spec.launch_file]
    return [sys.executable, "-m", "robot_rl.ros.launch", *where,
            *(f"{k}:={v}" for k, v in args.items())]


class _Graph:
    """The launch runner as a child process; leaving the block stops it and checks its nodes."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command, self.log_path = command, log_path
        self.proc: subprocess.Popen | None = None
        self._log_read = 0  # bytes of the log that died() has scanned
        self._died: list[str] = []

    def __enter__(self) -> _Graph:
        with open(self.log_path, "w") as log:  # the child keeps its own copy of the handle
            # its own session: a Ctrl-C here reaches it once, through stop(), not twice
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:])

    def node_pids(self) -> list[int]:
        return started_pids(self._log_text())

    def died(self) -> list[str]:
        """The nodes the runner reported dead so far. Polled several times a second, so it reads
        only the whole lines the log gained since the last call, not the whole log again."""
        if not self.log_path.exists():
            return self._died
        with open(self.log_path, "rb") as log:
            log.seek(self._log_read)
            gained = log.read()
        lines = gained[:gained.rfind(b"\n") + 1]
        self._log_read += len(lines)
        self._died += died_processes(lines.decode(errors="replace"))
        return self._died

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGINT, as Ctrl-C would; then make sure that no node outlives the runner."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait(timeout=5)
        left = [pid for pid in self.node_pids() if pid_alive(pid)]
        for pid in left:
            _kill_group(pid)
        if left:
            raise GraphError(f"nodes still running after the launch stopped: pids {left} "
                             f"(killed); see {self.log_path}")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _clear_learner_outputs(run_dir: Path) -> None:
    """A demo starts over: the learner would otherwise resume an older run from run_dir."""
    for name in LEARNER_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# ---- following the learner -------------------------------------------------------------------
class SafetyMonitor:
    """The safety node's counters, as it publishes them on /diagnostics (over DDS)."""

    def __init__(self) -> None:
        from robot_rl.ros import messages as m
        from robot_rl.ros.qos import QOS_DEFAULT
        from robot_rl.ros.runtime import make_node
        self.node = make_node("demo_monitor", "/", argv=[])
        self.counters: dict[str, int] = {}
        self.node.create_subscription(m.DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics,
                                      QOS_DEFAULT)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:  # the summary has the verdict counters; telemetry has none
            values = [(kv.key, kv.value) for kv in status.values]
            if status.name.startswith("safety:") and any(k == "status" for k, _ in values):
                self.counters = safety_counters(values)

    def spin(self, seconds: float) -> None:
        self.node.spin_once(seconds)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.node.spin_once(min(POLL_PERIOD_S, max(0.0, deadline - time.monotonic())))

    def destroy(self) -> None:
        self.node.destroy()


def safety_counters(values: Any) -> dict[str, int]:
    """The integer counters among a safety status's key/values (not its ages or names)."""
    return {key: int(value) for key, value in values if re.fullmatch(r"\d+", value)}


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet (the learner writes it by rename, never half)


def _follow(graph: _Graph, monitor: SafetyMonitor, run_dir: Path, config: PipelineConfig,
            clock: stages.Laps, progress: bool) -> dict[str, Any]:
    """Progress bars from status.json until the learner says done; the last status."""
    bars = {"pretrain": tqdm(total=config.pretrain.updates, desc="pretrain (learner node)",
                             disable=not progress),
            "online": tqdm(total=config.finetune.env_steps, desc="online (twin, real time)",
                           unit="step", disable=not progress)}
    status_path = run_dir / learner_node.STATUS
    last_change, last_seen, phase = time.monotonic(), None, "starting"
    try:
        while True:
            monitor.spin(POLL_PERIOD_S)
            status = read_status(status_path)
            if status is not None:
                phase = _phase_change(phase, status["phase"], clock)
                _update_bars(bars, status)
                seen = (status["phase"], status["offline_updates"], status["online_updates"],
                        status["env_steps"])
                if seen != last_seen:
                    last_seen, last_change = seen, time.monotonic()
                if status["phase"] in ("done", "failed"):
                    break
            if not graph.running():
                raise GraphError(f"the launch ended before the learner finished; "
                                 f"{graph.log_path}:\n{graph.log_tail()}")
            if "learner" in graph.died():  # the others keep running without it: stop now
                raise GraphError(f"the learner node died; {graph.log_path}:\n"
                                 f"{graph.log_tail()}")
            if time.monotonic() - last_change > STALL_TIMEOUT_S:
                raise GraphError(f"no progress from the learner for {STALL_TIMEOUT_S:g} s "
                                 f"(phase {phase}); {graph.log_path}:\n{graph.log_tail()}")
    finally:
        for bar in bars.values():
            bar.close()
    if status["phase"] == "failed":
        raise GraphError(f"the learner failed; {graph.log_path}:\n{graph.log_tail()}")
    return status


def _phase_change(old: str, new: str, clock: stages.Laps) -> str:
    names = {"starting": "graph: start and pretrain", "pretraining": "graph: start and pretrain",
             "online": "graph: online", "finishing": "graph: updates owed and checkpoint"}
    if new != old and names.get(old) != names.get(new, new):
        clock.lap(names[old])
    return new


def _update_bars(bars: dict[str, Any], status: dict[str, Any]) -> None:
    """Bars move to the learner's counters; redrawn only when they change."""
    pretrain, online = bars["pretrain"], bars["online"]
    done = min(int(status["offline_updates"]), pretrain.total)
    if done != pretrain.n:
        pretrain.update(done - pretrain.n)
    postfix = {"episodes": status["episodes"], "updates": status["online_updates"]}
    steps = int(status["env_steps"])
    if steps != online.n or postfix != getattr(online, "_shown", None):
        online._shown = postfix
        online.set_postfix(postfix, refresh=False)
        online.update(steps - online.n)


# ---- the learning curve ----------------------------------------------------------------------
def read_episode_log(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def curve_window(n_episodes: int) -> int:
    """Episodes per moving-window point: about an eighth of the run, 3 to 20."""
    return max(1, min(n_episodes, max(3, min(20, n_episodes // 8))))


def online_curve(episodes: list[dict[str, str]], window: int) -> list[CurvePoint]:
    """Success and return of the online (exploring) episodes over a moving window, by env step;
    points start once the window is full, so the first episode alone never reads as 0% or 100%."""
    success = np.array([float(e["success"]) for e in episodes])
    returns = np.array([float(e["episode_return"]) for e in episodes])
    points = []
    for i, episode in enumerate(episodes[window - 1:], start=window - 1):
        lo = i + 1 - window
        points.append(CurvePoint(env_steps=int(episode["env_steps"]),
                                 success_rate=float(success[lo:i + 1].mean()),
                                 mean_return=float(returns[lo:i + 1].mean())))
    return points
