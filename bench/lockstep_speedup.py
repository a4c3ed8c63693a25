"""The twin graph's speed-up over real time in sim time lockstep, with and without the learner
training; the same steps and updates in one process as the peer.

    python bench/lockstep_speedup.py [--steps 1200] [--domain 61] [--profile demo]

The graph: the twin (``use_sim_time:=true lockstep:=true``, 20 Hz control steps), the safety node
and the learner (``use_sim_time:=true``), each its own process over loopback DDS, as
``valve.launch.yaml use_sim_time:=true lockstep:=true`` starts them; the learner acts on every
state, so the twin steps as fast as the slowest node of the chain twin -> learner -> safety ->
twin. Two runs of ``--steps`` online env steps each:
- acting only (``train:=false``: the initial policy, no updates);
- training (the profile's networks and batch, ``updates_per_env_step`` 1 in the learner's training
  process, ``wait_for_updates``: after each episode the learner waits for the updates it owes, as
  the in-process pipeline updates after each episode; what ``make demo`` does).
Each prints steps per wall second, the speed-up (sim seconds per wall second, real time = 1x),
the CPU milliseconds per step of each process, and the speed-up a machine would reach if nothing
else ran on it: lockstep is one chain of processes taking turns, so its wall time is at least the
sum of their CPU times (sim seconds / CPU seconds of all the graph's processes; this is a bound,
the DDS hops' latencies come on top). The peer: the same number of env steps (and updates) in one
process (``GatedEnv``: the twin's gymnasium environment with the supervisor as a gate).
Figures from a loaded machine are not figures: the load average is printed; compare the CPU-bound
column across machines, the wall columns only on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

CONTROL_PERIOD_S = 0.05  # the valve task's (20 Hz): one lockstep step of sim time
CLK_TCK = os.sysconf("SC_CLK_TCK")


def node_cmd(module: str, namespace: str, **params: Any) -> list[str]:
    """``module.main()`` with ``--ros-args``, as a launch file starts it."""
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{name}:={text}"]
    return [sys.executable, "-c", f"import sys, {module} as m; sys.exit(m.main())", *args]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and of its children (the learner's trainer)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def record_dataset(profile: str, out: Path) -> Path:
    dataset = out / "data.zarr"
    subprocess.run([sys.executable, "-m", "robot_rl.cli", "record", "--profile", profile,
                    "--quiet", "--out", str(dataset), "--set", "dataset.noisy_trajectories=5"],
                   check=True, cwd=REPO_ROOT)
    return dataset


def run_graph(label: str, train: bool, steps: int, profile: str, dataset: Path,
              out: Path) -> dict[str, float]:
    run_dir = out / label
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = {"robot": "dclaw", "use_sim_time": True}
    procs = {
        "twin": subprocess.Popen(node_cmd("robot_rl.sim_twin.node", "/hand", **common, lockstep=True),
                                 env=env, stderr=subprocess.DEVNULL, start_new_session=True),
        "safety": subprocess.Popen(node_cmd("robot_rl.nodes.safety", "/hand", **common),
                                   env=env, stderr=subprocess.DEVNULL, start_new_session=True),
        "learner": subprocess.Popen(node_cmd(
            "robot_rl.nodes.learner", "/hand", **common, profile=profile,
            pretrain_dataset=dataset, pretrain_updates=200, run_dir=run_dir, train=train,
            updates_per_env_step=1.0, wait_for_updates=train, max_online_env_steps=steps,
            eval_every_env_steps=0), env=env, stderr=subprocess.DEVNULL,
            start_new_session=True)}
    status_path = run_dir / "status.json"
    # (sim time s, wall time s, CPU s per process, acted env steps) at the start and the end
    start: tuple[float, float, dict[str, float], int] | None = None
    end: tuple[float, float, dict[str, float], int] | None = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = read_status(status_path)
            if status is not None:
                acted = status.get("acted_env_steps", 0)
                if start is None and status["phase"] == "online" and acted > 0:
                    start = (float(status["time_s"]), time.monotonic(), _cpu(procs), acted)
                if status["phase"] in ("finishing", "done") and start is not None:
                    end = (float(status["time_s"]), time.monotonic(), _cpu(procs), acted)
                    break
            if procs["learner"].poll() is not None:
                raise RuntimeError(f"{label}: the learner ended early (exit "
                                   f"{procs['learner'].returncode})")
            time.sleep(0.05)
        if start is None or end is None:
            raise RuntimeError(f"{label}: no online phase within 600 s")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    sim_s, wall_s = end[0] - start[0], end[1] - start[1]
    steps_done = end[3] - start[3]
    cpu = {name: end[2][name] - start[2][name] for name in procs}
    return {"steps": steps_done, "sim_s": sim_s, "wall_s": wall_s,
            "cpu_ms_per_step": {k: 1e3 * v / max(steps_done, 1) for k, v in cpu.items()},
            "cpu_s": sum(cpu.values())}


def _cpu(procs: dict[str, subprocess.Popen]) -> dict[str, float]:
    return {name: cpu_s(proc.pid) for name, proc in procs.items()}


def in_process(steps: int, profile: str, dataset: Path, train: bool) -> dict[str, float]:
    """The peer: env steps (and one update per step, after each episode) in this process."""
    import torch

    from robot_rl.learning.factory import batch_from_steps, make_replay, new_agent, train_step
    from robot_rl.pipeline.rollout import GatedEnv
    from robot_rl.pipeline.stages import task_transitions
    from robot_rl.run_config import load_pipeline_config

    torch.set_num_threads(1)  # as the learner's training process
    config = load_pipeline_config("valve", profile=profile)
    env = GatedEnv(config)
    data = task_transitions(config, dataset, env)
    agent = new_agent(config.awac, data, config.seed)
    replay = make_replay(config.awac, data, online_capacity=steps + 100, seed=config.seed)
    generator = np.random.default_rng(0)
    done, episode = 0, 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while done < steps:
        result = env.run_episode(lambda obs: agent.act(obs, deterministic=False), seed=episode)
        episode += 1
        done += result.length
        if train:
            replay.add_episode(batch_from_steps(result.steps))
            for _ in range(result.length):
                train_step(agent, replay, config.awac.batch_size, generator)
    wall_s, cpu_s_ = time.perf_counter() - wall0, time.process_time() - cpu0
    env.close()
    return {"steps": done, "sim_s": done * CONTROL_PERIOD_S, "wall_s": wall_s, "cpu_s": cpu_s_}


def show(label: str, r: dict[str, Any]) -> None:
    per_wall = r["steps"] / r["wall_s"]
    line = (f"{label:<36} {r['steps']:6d} steps  {per_wall:7.1f} steps/s  "
            f"{r['sim_s'] / r['wall_s']:6.1f}x real time  CPU-bound {r['sim_s'] / r['cpu_s']:6.1f}x")
    print(line)
    if "cpu_ms_per_step" in r:
        print(" " * 38 + "CPU per step: " + ", ".join(
            f"{k} {v:.2f} ms" for k, v in r["cpu_ms_per_step"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1200, help="online env steps per run")
    parser.add_argument("--profile", default="demo", help="valve config profile (networks, "
                        "batch): %(default)s")
    parser.add_argument("--domain", type=int, default=61, help="ROS_DOMAIN_ID for the graph")
    args = parser.parse_args()
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROBOT_RL_DDS_LOOPBACK="1",
                      ROBOT_RL_BACKEND=os.environ.get("ROBOT_RL_BACKEND", "dds"),
                      MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    from robot_rl.ros.runtime import backend_name

    print(f"valve, sim time lockstep, {backend_name()} backend, profile {args.profile}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="lockstep_bench_") as tmp:
        out = Path(tmp)
        dataset = record_dataset(args.profile, out)
        results = {
            "graph, learner acting only": run_graph("acting", False, args.steps, args.profile,
                                                   dataset, out),
            "graph, learner training (UTD 1)": run_graph("training", True, args.steps,
                                                        args.profile, dataset, out),
            "in process, acting only": in_process(args.steps, args.profile, dataset, False),
            "in process, training (UTD 1)": in_process(args.steps, args.profile, dataset, True),
        }
    for label, result in results.items():
        show(label, result)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; real time is 1x "
          f"(one {CONTROL_PERIOD_S * 1e3:.0f} ms control period per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
