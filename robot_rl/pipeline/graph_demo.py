"""``robot-rl demo`` on the ROS 2 graph: the twin, the safety node and the learner as processes.

Demonstrations are recorded in this process (``stages.record``: the scripted expert through the
supervisor gate). Then ``<task>.launch.yaml mode:=twin`` runs under the launch runner, by default
in simulated time and lockstep (``use_sim_time:=true lockstep:=true``: the twin steps one control
period per gated command, so the graph runs as fast as its slowest node; ``realtime=True`` runs
it on the wall clock instead). The learner node pretrains on the dataset, writes ``offline.pt``,
acts on the twin through the safety node while AWAC trains in its training process (waiting
after each episode for the updates it owes, so learning per step is the in-process pipeline's),
evaluates its deterministic policy every ``finetune.eval_every_env_steps`` online steps on the
graph (``evaluations.csv``), and exits by itself after the config's ``finetune.env_steps`` and a
last evaluation, leaving ``learner.pt``. This process follows the learner's ``status.json``,
reads the safety node's and the twin's counters from ``/diagnostics``, stops the launch with
SIGINT, checks that no node is left, and writes the report from what the nodes measured.
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
from robot_rl.pipeline.report import CurvePoint, Report
from robot_rl.registry import task_spec
from robot_rl.ros.launch import died_processes, pid_alive, started_pids
from robot_rl.ros.runtime import backend_name
from robot_rl.run_config import PipelineConfig, check_graph_config

MODE = "graph: processes over DDS (twin, safety and learner nodes, started from launch/)"
SIM_TIME = "simulated (the twin's /clock), lockstep"
WALL_TIME = "wall clock, real time"
LOG = "graph.log"
CONFIG_COPY = "config.yaml"
POLL_PERIOD_S = 0.25
STALL_TIMEOUT_S = 180.0   # no learner progress for this long: the graph is stuck
DIAGNOSTICS_WAIT_S = 1.2  # the safety node publishes its counters at least every 1 s
STOP_TIMEOUT_S = 20.0     # the runner's own SIGINT -> SIGTERM -> SIGKILL ladder takes < 10 s
LEARNER_OUTPUTS = (learner_training.CHECKPOINT, learner_training.OFFLINE_CHECKPOINT,
                   learner_training.ONLINE_STORE, learner_node.EPISODE_LOG,
                   learner_node.EVAL_LOG, learner_node.STATUS, "learner", LOG)


class GraphError(RuntimeError):
    """The graph did not run the demo through; the message names the run's log."""


def run_graph_demo(config: PipelineConfig, run_dir: Path, progress: bool = True,
                   realtime: bool = False) -> Report:
    """The pipeline with fine-tuning on the graph; RUN/report.md, report.json, learning_curve.png.
    ``realtime``: the graph on the wall clock (today's robot pace) instead of sim time lockstep."""
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
    command = launch_command(config, config_file, dataset, run_dir, realtime)
    with _Graph(command, run_dir / LOG) as graph:
        monitor = SafetyMonitor()
        try:
            pace = _follow(graph, monitor, run_dir, config, clock, progress, realtime)
            monitor.spin_for(DIAGNOSTICS_WAIT_S)  # the counters after the last command
            safety = monitor.counters
        finally:
            monitor.destroy()
    clock.lap("stop graph")
    rounds = evaluation_curve(read_episode_log(run_dir / learner_node.EVAL_LOG))
    if len(rounds) < 2:
        raise GraphError(f"the learner evaluated {len(rounds)} times (at least the pretrained "
                         f"and the fine-tuned policy were due); see {run_dir / LOG}")
    episodes = read_episode_log(run_dir / learner_node.EPISODE_LOG)
    report = Report(task=config.env_id, robot=config.robot, seed=config.seed,
                    demo_success_rate=summary.demo_success_rate,
                    noisy_success_rate=summary.noisy_success_rate,
                    offline_success_rate=rounds[0].success_rate,
                    finetuned_success_rate=rounds[-1].success_rate,
                    eval_episodes=config.eval.episodes, curve=rounds,
                    timings_s=timings, safety=safety, mode=MODE,
                    online_curve=interval_curve(episodes, [p.env_steps for p in rounds]),
                    online_window_episodes=0, backend=backend_name(),
                    time_mode=WALL_TIME if realtime else SIM_TIME,
                    clock=pace)
    report.write(run_dir)
    return report


# ---- the launch ------------------------------------------------------------------------------
def launch_command(config: PipelineConfig, config_file: Path, dataset: Path,
                   run_dir: Path, realtime: bool = False) -> list[str]:
    """``robot-rl launch robot_rl <task>.launch.yaml mode:=twin ...`` as an argv."""
    spec = task_spec(config.env_id)
    if not spec.launch_file:
        raise ValueError(f"env_id {config.env_id!r}: task {spec.name!r} names no launch file "
                         "(TaskSpec.launch_file); run it in-process")
    sim = "false" if realtime else "true"
    args = {"mode": "twin", "robot": config.robot, "config": config_file, "profile": "",
            "pretrain_dataset": dataset, "run_dir": run_dir, "seed": config.seed,
            "max_online_env_steps": -1, "updates_per_env_step": -1,  # -1: the config's
            "eval_every_env_steps": -1, "use_sim_time": sim, "lockstep": sim}
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
    """The safety node's counters and the twin's clock counters (sim time), as they publish
    them on /diagnostics (over DDS)."""

    def __init__(self) -> None:
        from robot_rl.ros import messages as m
        from robot_rl.ros.qos import QOS_DEFAULT
        from robot_rl.ros.runtime import make_node
        self.node = make_node("demo_monitor", "/", argv=[])
        self.counters: dict[str, int] = {}
        self.clock: dict[str, float] = {}
        self.node.create_subscription(m.DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics,
                                      QOS_DEFAULT)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:  # the summary has the verdict counters; telemetry has none
            values = [(kv.key, kv.value) for kv in status.values]
            if status.name.startswith("safety:") and any(k == "status" for k, _ in values):
                self.counters = safety_counters(values)
            elif status.name.startswith("twin:") and status.name.endswith(" clock"):
                self.clock = twin_clock_counters(values)

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


def twin_clock_counters(values: Any) -> dict[str, float]:
    """The twin's clock diagnostics as numbers: lockstep steps answered (by the controller,
    gated), resets, answered with nothing gated, not answered, and timeouts."""
    keep = ("lockstep_steps_answered", "lockstep_resets", "lockstep_steps_ungated",
            "lockstep_steps_unanswered", "lockstep_timeouts", "clock_steps", "sim_time_s")
    return {key: float(value) for key, value in values if key in keep}


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet (the learner writes it by rename, never half)


def _follow(graph: _Graph, monitor: SafetyMonitor, run_dir: Path, config: PipelineConfig,
            clock: stages.Laps, progress: bool, realtime: bool) -> dict[str, float]:
    """Progress bars from status.json until the learner says done; the online phase's pace
    (its node time and wall time, and their ratio)."""
    where = "twin, real time" if realtime else "twin, sim time lockstep"
    bars = {"pretrain": tqdm(total=config.pretrain.updates, desc="pretrain (learner node)",
                             disable=not progress),
            "online": tqdm(total=config.finetune.env_steps, desc=f"online ({where})",
                           unit="step", disable=not progress)}
    status_path = run_dir / learner_node.STATUS
    last_change, last_seen, phase = time.monotonic(), None, "starting"
    pace = OnlinePace()
    try:
        while True:
            monitor.spin(POLL_PERIOD_S)
            status = read_status(status_path)
            if status is not None:
                pace.observe(status, monitor.clock)
                phase = _phase_change(phase, status["phase"], clock)
                _update_bars(bars, status)
                seen = (status["phase"], status["offline_updates"], status["online_updates"],
                        status["env_steps"], status.get("evaluation_rounds"))
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
    return pace.summary()


class OnlinePace:
    """How fast the online phase went: the learner's node time (sim seconds under sim time)
    against wall time, between the first status in phase online and the last one in it; and the
    twin's clock counters as they stood when acting ended (after it, the twin waits for
    answers that no longer come and times out: not the run's doing)."""

    def __init__(self) -> None:
        self.first: tuple[float, float] | None = None  # (node time, wall time)
        self.last: tuple[float, float] | None = None
        self.clock: dict[str, float] = {}

    def observe(self, status: dict[str, Any], twin_clock: dict[str, float]) -> None:
        if status.get("phase") == "online" and "time_s" in status:
            point = (float(status["time_s"]), float(status["wall_time_s"]))
            self.first = self.first or point
            self.last = point
            self.clock = dict(twin_clock)

    def summary(self) -> dict[str, float]:
        if self.first is None or self.last is None or self.last[1] <= self.first[1]:
            return dict(self.clock)
        sim_s, wall_s = self.last[0] - self.first[0], self.last[1] - self.first[1]
        return {**self.clock, "online_sim_s": sim_s, "online_wall_s": wall_s,
                "speedup": sim_s / wall_s}


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
    postfix = {"episodes": status["episodes"], "updates": status["online_updates"],
               "evaluations": status.get("evaluation_rounds", 0)}
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


def evaluation_curve(rows: list[dict[str, str]]) -> list[CurvePoint]:
    """One point per complete evaluation round of ``evaluations.csv``, at the online env steps
    it was made at (episodes of a round cut short by the end of the run are left out)."""
    by_round: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_round.setdefault(int(row["round"]), []).append(row)
    sizes = [len(r) for r in by_round.values()]
    complete = max(sizes, default=0)
    points = []
    for index in sorted(by_round):
        round_rows = by_round[index]
        if len(round_rows) < complete:
            continue
        points.append(CurvePoint(
            env_steps=int(round_rows[0]["env_steps"]),
            success_rate=float(np.mean([float(r["success"]) for r in round_rows])),
            mean_return=float(np.mean([float(r["episode_return"]) for r in round_rows])),
            episodes=len(round_rows)))
    return points


def interval_curve(episodes: list[dict[str, str]], marks: list[int]) -> list[CurvePoint]:
    """The exploring episodes' success per interval between evaluations: one point at the end
    of each interval that holds episodes (an episode belongs to the interval its last step is
    in)."""
    bounds = sorted(set(marks))
    points = []
    for lo, hi in zip(bounds, bounds[1:]):
        inside = [e for e in episodes if lo < int(e["env_steps"]) <= hi]
        if not inside:
            continue
        points.append(CurvePoint(
            env_steps=hi, success_rate=float(np.mean([float(e["success"]) for e in inside])),
            mean_return=float(np.mean([float(e["episode_return"]) for e in inside])),
            episodes=len(inside)))
    return points
