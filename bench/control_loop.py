"""Control-loop latency with training running: measurement to gated command, and policy inference.

    python bench/control_loop.py [--dataset quick.zarr] [--seconds 20] [--rates 20 100]
                                 [--modes timer joint_states] [--trainers process thread off actor]
                                 [--backends dds rclpy] [--domain 57]
                                 [--skip-graph] [--skip-inference]

0. Weights (in this process): decoding a POLICY message into a snapshot, side by side with the
   torch.save path it replaced.
1. Inference (in this process): ``PolicySnapshot.act`` p50/p99 while a ``BackgroundTrainer``
   runs AWAC updates in its thread, for trainer torch threads 1 and the default, and idle; with
   ``--pixels`` also the valve pixel policy's ``act`` on one torch thread and on torch's default.
2. Graph (processes over loopback DDS): twin (joint states at 100 Hz) + safety + learner (training
   on), for each control rate, each ``act_on`` mode and each ``trainer`` (the learner's own
   process, a thread of the node sharing its GIL, no training; or ``actor``: the actor node acts
   with the weights that a training learner streams to it, as next to a remote robot), side by
   side. The learner stamps each
   COMMAND_RAW with the stamp of the joint state it answers; this process receives COMMAND_RAW
   and the safety node's COMMAND and reports (receipt - that stamp), p50/p99, for the raw command
   and for the gated command that follows it, and the command rate. ``act_on:=timer`` includes up
   to one control period of waiting for the learner's timer (not aligned with the states);
   ``act_on:=joint_states`` acts in the joint-state callback, so it measures the loop itself
   (DDS hops, policy inference, the safety filter) plus the GIL and scheduling delays. Each
   setup runs on each of ``--backends`` (every node and this process on it; rclpy where it can
   be imported), discovery on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).
   ``--pixels``: the valve from pixels (``PIXEL_CONFIG``): the twin also renders and publishes the
   task's 64x64 view stream (30 Hz; ``--view-rates`` runs each setup at each rate given, to
   see what the renders cost), the learner (or the actor) pairs each joint state with a
   frame and runs the conv encoder and the policy on it in the loop, and pretrains on a dataset
   recorded with the view.
Figures from a loaded machine are not figures: re-run on a quiet one.
"""

from __future__ import annotations

import argparse
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


def cpu_ticks() -> tuple[int, int] | None:
    """(all, steal) clock ticks of every core since boot, from /proc/stat; None where absent."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[7]


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    """CPU time the hypervisor gave to other guests during a run, in % (a virtual machine's
    noisy neighbours: runs with a few % of it have tails that are the host's, not ours)."""
    if before is None or after is None or after[0] == before[0]:
        return float("nan")
    return 100.0 * (after[1] - before[1]) / (after[0] - before[0])


def percentiles(values_s: list[float]) -> str:
    if not values_s:
        return "no samples"
    ms = np.asarray(values_s) * 1e3
    return (f"p50 {np.percentile(ms, 50):7.3f} ms  p99 {np.percentile(ms, 99):7.3f} ms  "
            f"(n={ms.size})")


# ---- 0. policy weights as the actor receives them ---------------------------------------------
def valve_shapes() -> tuple[int, int]:
    """The valve task's observation and action sizes on the D'Claw: what the graph bench acts on."""
    from robot_rl.robot_config import load_robot
    from robot_rl.tasks.valve import ValveTask

    task = ValveTask(load_robot("dclaw"))
    return task.observation_size, task.n_joints


def bench_weights(hidden: int, calls: int = 200) -> None:
    """Decoding one POLICY message (agent.weights, safetensors into a numpy-only snapshot) next to
    the torch path it replaced: torch.load with weights_only, a GaussianPolicy built and loaded,
    the snapshot made from it. Both run on the acting node's thread, holding its GIL."""
    import io

    import torch

    from robot_rl.agent.weights import snapshot_from_bytes, snapshot_to_bytes
    from robot_rl.learning import AWAC, AWACConfig, Normalizer
    from robot_rl.learning.background import PolicySnapshot
    from robot_rl.learning.networks import GaussianPolicy

    obs_dim, act_dim = valve_shapes()
    config = AWACConfig(actor_hidden_sizes=(hidden, hidden), critic_hidden_sizes=(hidden, hidden))
    agent = AWAC(obs_dim, act_dim, config)
    agent.set_normalizer(Normalizer.identity(obs_dim))
    snapshot = PolicySnapshot.from_agent(agent)
    data = snapshot_to_bytes(snapshot, task="valve")
    buffer = io.BytesIO()
    torch.save({"policy": snapshot.policy.state_dict(),
                "normalizer": snapshot.normalizer.state_dict()}, buffer)
    torch_data = buffer.getvalue()

    def torch_decode() -> PolicySnapshot:
        payload = torch.load(io.BytesIO(torch_data), weights_only=True)
        policy = GaussianPolicy(obs_dim, act_dim, config.actor_hidden_sizes, config.log_std_range)
        policy.load_state_dict(payload["policy"])
        return PolicySnapshot(policy, Normalizer.from_state_dict(payload["normalizer"]), 0,
                              config.actor_hidden_sizes)

    for label, decode, size in (("safetensors (agent.weights)", lambda: snapshot_from_bytes(data),
                                 len(data)),
                                ("torch.load + GaussianPolicy", torch_decode, len(torch_data))):
        decode()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            decode()
            times.append(time.perf_counter() - started)
        print(f"  weights decode {hidden}x{hidden}, {label}, {size / 1e3:.0f} kB: "
              f"{percentiles(times)}")


# ---- 1. inference while training -------------------------------------------------------------
def bench_inference(seconds: float, hidden: int) -> None:
    import torch

    from robot_rl.learning import AWAC, AWACConfig, Normalizer
    from robot_rl.learning.background import BackgroundConfig, BackgroundTrainer, PolicySnapshot

    (obs_dim, act_dim), batch = valve_shapes(), 256
    config = AWACConfig(actor_hidden_sizes=(hidden, hidden), critic_hidden_sizes=(hidden, hidden),
                        batch_size=batch)
    generator = torch.Generator().manual_seed(0)

    def sample(b: int) -> dict[str, torch.Tensor]:
        return {"obs": torch.randn(b, obs_dim, generator=generator),
                "action": torch.rand(b, act_dim, generator=generator) * 2 - 1,
                "reward": -torch.ones(b), "done": torch.zeros(b),
                "next_obs": torch.randn(b, obs_dim, generator=generator)}

    obs = np.zeros(obs_dim, np.float32)
    rng = np.random.default_rng(0)
    for threads in (None, 1, 0):
        agent = AWAC(obs_dim, act_dim, config)
        agent.set_normalizer(Normalizer.identity(obs_dim))
        trainer = None
        snapshot = PolicySnapshot.from_agent(agent)
        if threads is not None:
            trainer = BackgroundTrainer(agent, lambda b, agent=agent: agent.update(sample(b)),
                                        lambda ep: 0,
                                        BackgroundConfig(batch_size=batch, num_threads=threads),
                                        buffer_transitions=10 * batch)
            trainer.start()
            while trainer.snapshot is None:
                time.sleep(0.01)
        latencies: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            current = trainer.snapshot if trainer is not None else snapshot
            started = time.perf_counter()
            current.act(obs, rng)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)  # a 100 Hz control loop
        label = "idle (no training)" if threads is None else (
            f"training, trainer threads {threads or 'default'}")
        updates = ""
        if trainer is not None:
            trainer.stop()
            updates = f", {agent.num_updates / seconds:.0f} updates/s"
        print(f"  inference {hidden}x{hidden}, {label}: {percentiles(latencies)}{updates}")


def bench_pixel_inference(seconds: float) -> None:
    """The valve pixel policy's ``act`` (conv encoder on the 64x64 view + the 64x64 actor), one
    call every 10 ms with nothing else running, on one torch thread (what the acting nodes use)
    and on torch's default, side by side."""
    import torch

    from robot_rl.agent.tasks import make_task
    from robot_rl.learning import AWACConfig
    from robot_rl.learning.encoders import EncoderConfig
    from robot_rl.learning.pixel_agent import PixelAgent, PixelPolicySnapshot
    from robot_rl.robot_config import load_robot

    task = make_task("valve", load_robot("dclaw")).with_observation("pixels")
    assert task.image is not None
    config = AWACConfig(actor_hidden_sizes=(64, 64), critic_hidden_sizes=(64, 64))
    agent = PixelAgent(task.observation_size, task.n_joints, task.image, config, EncoderConfig())
    snapshot = PixelPolicySnapshot.from_agent(agent)
    rng = np.random.default_rng(0)
    obs = {"state": np.zeros(task.observation_size, np.float32),
           "image": rng.integers(0, 256, task.image.shape, dtype=np.uint8)}
    default = torch.get_num_threads()
    results = {}
    for threads in (1, default):
        torch.set_num_threads(threads)
        latencies: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            snapshot.act(obs, rng)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
        results[threads] = latencies
        print(f"  pixel policy act (64x64 view, 64x64 actor), torch threads {threads}: "
              f"{percentiles(latencies)}")
    torch.set_num_threads(default)
    ratio = np.percentile(results[default], 99) / np.percentile(results[1], 99)
    print(f"  pixel policy act p99, torch's default {default} threads / 1 thread: {ratio:.2f}x")
    from robot_rl.agent.weights import snapshot_from_bytes, snapshot_to_bytes

    torch.set_num_threads(1)
    payload = snapshot_to_bytes(snapshot, task="valve")
    decode: list[float] = []
    for _ in range(50):  # what each weights message costs the acting process
        started = time.perf_counter()
        snapshot_from_bytes(payload)
        decode.append(time.perf_counter() - started)
    torch.set_num_threads(default)
    print(f"  pixel policy weights message ({len(payload)} bytes) decoded, 1 thread: "
          f"{percentiles(decode)}")


# ---- 2. the graph ----------------------------------------------------------------------------
# The valve from pixels at the quick profile's sizes, the default conv encoder (the task file's
# learning settings otherwise: the learner trains as shipped)
PIXEL_CONFIG = """\
extends: valve
env_kwargs: {config: {observation: pixels}}
dataset: {demonstrations: 5, noisy_trajectories: 3}
pretrain: {updates: 50}
awac: {batch_size: 64, actor_hidden_sizes: [64, 64], critic_hidden_sizes: [64, 64],
       warm_start_steps: 0}
"""
def over_share(latencies_s: list[float], limit_s: float) -> str:
    """The share of latencies over ``limit_s``, as a table cell; a dash where none came."""
    if not latencies_s:
        return f"{'-':>6}{'':<39}"
    return f"{100 * np.mean(np.asarray(latencies_s) > limit_s):6.2f} %{'':<37}"


def node_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-c", f"import sys, {module} as m; sys.exit(m.main())",
            "--ros-args", *args]


def bench_graph(dataset: Path, rate_hz: float, seconds: float, act_on: str, trainer: str,
                backend: str = "dds", pixel_config: Path | None = None,
                view_rate_hz: float = 30.0) -> tuple[list[float], list[float], float]:
    """(raw, gated) latencies in seconds: joint state stamp -> COMMAND_RAW / COMMAND received;
    and the host's steal time during the measurement, in %."""
    from robot_rl.ros import messages as m
    from robot_rl.ros.qos import QOS_DEFAULT
    from robot_rl.ros.runtime import make_node

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ROBOT_RL_BACKEND": backend}
    run_dir = Path(tempfile.mkdtemp(prefix="control_loop_"))
    ns = ["-r", "__ns:=/hand"]
    acting = ["-p", f"control_rate_hz:={rate_hz}", "-p", f"act_on:={act_on}"]
    if trainer == "off":
        learner_args = ["-p", "train:=false", *acting]
    elif trainer == "actor":  # the learner trains (and streams weights) for a robot not here
        learner_args = ["-p", "namespaces:=[/elsewhere]"]
    else:
        learner_args = ["-p", f"trainer:={trainer}", *acting]
    config = ["-p", "profile:=quick"]
    view = []
    if pixel_config is not None:
        config = ["-p", f"config:={pixel_config}"]
        view = ["-p", "view_task:=valve", "-p", f"view_rate_hz:={view_rate_hz}"]
        acting += ["-p", "observation:=pixels"] if trainer == "actor" else []
    commands = [
        node_cmd("robot_rl.sim_twin.node", *ns, "-p", "publish_rate_hz:=100.0", *view),
        node_cmd("robot_rl.nodes.safety", *ns),
        node_cmd("robot_rl.nodes.learner", *config,
                 "-p", f"pretrain_dataset:={dataset}", "-p", "pretrain_updates:=50",
                 "-p", f"run_dir:={run_dir}", "-p", "checkpoint_every_updates:=0", *learner_args),
        *([node_cmd("robot_rl.nodes.actor", *ns, *acting)] if trainer == "actor" else []),
    ]
    procs = [subprocess.Popen(command, env=env, start_new_session=True,
                              stderr=subprocess.DEVNULL) for command in commands]
    node = make_node("bench", "/hand", argv=[], backend=backend)
    raw_latency: list[float] = []
    gated_latency: list[float] = []
    last_raw_stamp: list[float | None] = [None]  # one slot: the newest unanswered raw command

    def on_raw(msg: Any) -> None:
        stamp = m.stamp_to_s(msg.header.stamp)
        raw_latency.append(time.time() - stamp)
        last_raw_stamp[0] = stamp

    def on_gated(msg: Any) -> None:
        stamp = last_raw_stamp[0]
        if stamp is not None:  # the gated command answering the newest raw one
            gated_latency.append(time.time() - stamp)
            last_raw_stamp[0] = None

    node.create_subscription(m.JointState, "command_raw", on_raw, QOS_DEFAULT)
    node.create_subscription(m.JointState, "command", on_gated, QOS_DEFAULT)
    try:
        deadline = time.monotonic() + 120
        while not raw_latency and time.monotonic() < deadline:  # start-up and pretraining
            node.spin_once(0.05)
        raw_latency.clear()
        gated_latency.clear()
        ticks = cpu_ticks()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            node.spin_once(0.01)
        steal = steal_percent(ticks, cpu_ticks())
    finally:
        node.destroy()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return raw_latency, gated_latency, steal


def print_side_by_side(rate_hz: float, seconds: float,
                       results: dict[str, tuple[list[float], list[float], float]]) -> None:
    labels = list(results)
    print(f"  {rate_hz:g} Hz control" + "".join(f" | {label:<45}" for label in labels))
    for index, what in enumerate(("joint state -> command_raw", "joint state -> gated command")):
        print(f"    {what:<28}" + "".join(f" | {percentiles(results[label][index]):<45}"
                                          for label in labels))
    print(f"    {'gated over 10 ms':<28}" + "".join(
        f" | {over_share(results[label][1], 0.010)}" for label in labels))
    print(f"    {'command rate':<28}" + "".join(
        f" | {len(results[label][0]) / seconds:6.1f} Hz{'':<36}" for label in labels))
    print(f"    {'host steal time':<28}" + "".join(
        f" | {results[label][2]:6.1f} %{'':<37}" for label in labels))


def make_dataset(pixel_config: Path | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix="control_loop_data_")) / "quick.zarr"
    which = ["--profile", "quick"] if pixel_config is None else ["--config", str(pixel_config)]
    subprocess.run([sys.executable, "-m", "robot_rl.cli", "record", *which,
                    "--quiet", "--out", str(path), "--set", "dataset.noisy_trajectories=3"],
                   check=True, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, help="pretraining dataset (default: record one)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 100.0])
    parser.add_argument("--modes", nargs="+", default=["timer", "joint_states"],
                        choices=["timer", "joint_states"], help="the learner's act_on")
    parser.add_argument("--trainers", nargs="+", default=["process", "thread", "off", "actor"],
                        choices=["process", "thread", "off", "actor"],
                        help="who acts, and where training runs: the learner with its trainer in "
                             "a process of its own or in a thread; the learner without training "
                             "(train:=false, the baseline); or the actor node acting with the "
                             "weights a training learner streams on POLICY")
    parser.add_argument("--backends", nargs="+", default=["dds", "rclpy"],
                        choices=["dds", "rclpy"], help="each setup on each (rclpy where it can "
                                                       "be imported)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--domain", type=int, default=57)
    parser.add_argument("--skip-graph", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--pixels", action="store_true",
                        help="the graph acts from the twin's camera view (encoder in the loop)")
    parser.add_argument("--view-rates", nargs="+", type=float, default=[30.0],
                        help="with --pixels: the twin's view stream rates (Hz) to run each setup "
                             "at, side by side (fewer renders on the same cores; the view's "
                             "max_frame_age_s of 0.1 s allows 10 Hz and up)")
    args = parser.parse_args()
    from robot_rl.ros.runtime import rclpy_available

    os.environ.setdefault("ROS_DOMAIN_ID", str(args.domain))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    backends = [b for b in args.backends if b == "dds" or rclpy_available()]
    if backends != args.backends:
        print("rclpy cannot be imported (robot_rl[ros]): dds only")
    print(f"control loop, {os.cpu_count()} cores")
    if not args.skip_inference:
        bench_weights(args.hidden)
        bench_inference(args.seconds, args.hidden)
        if args.pixels:
            bench_pixel_inference(args.seconds)
    if not args.skip_graph:
        pixel_config = None
        if args.pixels:
            pixel_config = Path(tempfile.mkdtemp(prefix="control_loop_cfg_")) / "pixels.yaml"
            pixel_config.write_text(PIXEL_CONFIG)
        dataset = args.dataset or make_dataset(pixel_config)
        for rate in args.rates:
            view_rates = args.view_rates if args.pixels else [None]
            results = {f"{backend} act_on:={mode} trainer:={trainer}"
                       + (f" view:={view_hz:g}Hz" if view_hz else ""):
                       bench_graph(dataset, rate, args.seconds, mode, trainer, backend,
                                   pixel_config, view_hz or 30.0)
                       for mode in args.modes for trainer in args.trainers
                       for backend in backends for view_hz in view_rates}
            print_side_by_side(rate, args.seconds, results)


if __name__ == "__main__":
    main()
