"""Latency through the safety node: COMMAND_RAW published -> COMMAND received, p50/p99.

    python bench/safety_node_latency.py [--seconds 10] [--rates 20 100] [--domain 57]
    python bench/safety_node_latency.py --micro [--robots dclaw arm6] [--calls 3000]

The safety node runs in its own process on a private loopback DDS domain; this process plays the
robot (joint states at 100 Hz following the commands) and the learner (raw commands at each
rate, a slow ramp that passes every limit unchanged, so each gated command is matched to its raw
one by value). Two DDS hops and the supervisor's filter; figures vary with machine load.

``--micro``: the node's Python cost per message, in this process with no DDS peer: CDR decode
plus ``_on_joints``, and CDR decode plus ``_on_command`` (filter, message, CDR encode, DDS write),
then the parts one by one. Commands hold a configuration inside the workspace, so they pass.
``--cpu-time`` times with the thread's CPU clock: on a loaded machine the wall clock also counts
the time other processes hold the core.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_PERIOD_S = 0.01
RAMP_STEP_RAD = 1e-5


class Ramp:
    """Joint 0's target creeps up, never repeating a value, so replies match by value."""

    def __init__(self, n_joints: int) -> None:
        self.position = np.zeros(n_joints)
        self.count = 0

    def next(self) -> float:
        self.count += 1
        self.position[0] = RAMP_STEP_RAD * self.count
        return round(float(self.position[0]), 12)


def _measure(node: Any, raw: Any, joints: Any, received: dict[float, float],
             names: list[str], ramp: Ramp, rate_hz: float, seconds: float
             ) -> tuple[np.ndarray, int]:
    from robot_rl.ros import messages as m
    sent: dict[float, float] = {}
    position = ramp.position
    period_s = 1.0 / rate_hz
    start = time.perf_counter()
    next_command = next_state = start
    while (now := time.perf_counter()) - start < seconds:
        if now >= next_state:
            next_state += STATE_PERIOD_S
            joints.publish(m.joint_state(names, position, np.zeros(len(names)),
                                         np.zeros(len(names))))
        if now >= next_command:
            next_command += period_s
            key = ramp.next()
            sent[key] = time.perf_counter()
            raw.publish(m.joint_state(names, position))
        node.spin_once(max(0.0, min(next_state, next_command) - time.perf_counter()))
    end = time.perf_counter() + 0.2  # late replies; shorter than the command timeout
    while time.perf_counter() < end:
        joints.publish(m.joint_state(names, position, np.zeros(len(names)),
                                     np.zeros(len(names))))
        node.spin_once(STATE_PERIOD_S)
    latencies = [received[k] - t for k, t in sent.items() if k in received]
    return np.asarray(latencies) * 1e3, len(sent) - len(latencies)


def _us(samples_ns: list[int]) -> str:
    us = np.asarray(samples_ns) / 1e3
    p50, p99 = np.percentile(us, [50, 99])
    return f"p50 {p50:7.1f}  p99 {p99:7.1f}  mean {us.mean():7.1f} us"


def _timed(fn: Any, calls: int, clock: Any = time.perf_counter_ns) -> list[int]:
    out = []
    for k in range(calls):
        start = clock()
        fn(k)
        out.append(clock() - start)
    return out


def _inside_configuration(supervisor: Any, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Mid-range, or the first seeded random configuration inside the workspace."""
    q, rng = (lower + upper) / 2, np.random.default_rng(0)
    while supervisor.workspace is not None and not supervisor.workspace.inside(q):
        q = rng.uniform(lower, upper)
    return q


def micro(robot: str, calls: int, clock: Any) -> None:
    """Per-message Python cost of the safety node's two callbacks and of their parts."""
    from robot_rl.nodes.safety import SafetyNode, reorder
    from robot_rl.ros import messages as m
    from robot_rl.safety import RobotState

    safety = SafetyNode(["--ros-args", "-p", f"robot:={robot}", "-r", "__ns:=/micro"])
    sup, cal = safety.supervisor, safety.calibration
    names, n = list(cal.joint_names), cal.n_joints
    q = _inside_configuration(sup, sup.limits.lower_rad, sup.limits.upper_rad)
    zeros = np.zeros(n)
    command_bytes = m.joint_state(names, q).serialize()
    joint_bytes: list[bytes] = []

    def joint_message(k: int) -> None:  # the twin's part, not timed
        joint_bytes.append(m.joint_state(names, q, zeros, zeros, safety.node.now_s()).serialize())

    def on_joints(k: int) -> None:
        safety._on_joints(m.JointState.deserialize(joint_bytes[-1]))

    def on_command(k: int) -> None:
        safety._on_command(m.JointState.deserialize(command_bytes))

    joints_ns, command_ns = [], []
    before = dict(sup.counters)
    for k in range(calls):
        joint_message(k)
        joints_ns += _timed(on_joints, 1, clock)
        command_ns += _timed(on_command, 1, clock)
    verdicts = {k[8:]: v - before.get(k, 0) for k, v in sup.counters.items()
                if k.startswith("verdict_") and v - before.get(k, 0)}
    print(f"{robot}: {n} joints, workspace sites "
          f"{', '.join(sup.workspace.sites) if sup.workspace else 'none'}; {calls} calls; "
          f"verdicts {verdicts}")
    print(f"  joint state: decode + _on_joints        {_us(joints_ns)}")
    print(f"  command: decode + _on_command + publish  {_us(command_ns)}")
    state_msg = m.JointState.deserialize(joint_bytes[-1])
    state = RobotState(safety.node.now_s(), q, zeros, zeros)
    parts = {
        "decode JointState (pos, vel, eff)": lambda k: m.JointState.deserialize(joint_bytes[-1]),
        "reorder (names in order)": lambda k: reorder(state_msg.name, state_msg.position, names),
        "Supervisor.update_state": lambda k: sup.update_state(state, safety.node.steady_s(),
                                                              safety.node.now_s()),
        "Supervisor.filter": lambda k: sup.filter(q, safety.node.steady_s()),
        "m.joint_state + encode (position)": lambda k: m.joint_state(names, q, stamp_s=1.0
                                                                     ).serialize(),
    }
    if sup.workspace is not None:
        parts["workspace FK, batch 1"] = lambda k: sup.workspace.inside(q)
    for label, fn in parts.items():
        print(f"    {label:38s} {_us(_timed(fn, calls, clock))}")
    safety.node.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 100.0])
    parser.add_argument("--domain", type=int, default=random.Random().randrange(100, 200))
    parser.add_argument("--micro", action="store_true", help="per-call costs, in this process")
    parser.add_argument("--robots", nargs="+", default=["dclaw", "arm6"], help="with --micro")
    parser.add_argument("--calls", type=int, default=3000, help="with --micro")
    parser.add_argument("--cpu-time", action="store_true", help="with --micro: thread CPU time")
    args = parser.parse_args(argv)
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROBOT_RL_DDS_LOOPBACK="1",
                      ROBOT_RL_BACKEND="dds")
    sys.path.insert(0, str(REPO_ROOT))
    if args.micro:
        clock = time.thread_time_ns if args.cpu_time else time.perf_counter_ns
        print(f"per call, {'thread CPU' if args.cpu_time else 'wall'} time")
        for robot in args.robots:
            micro(robot, args.calls, clock)
        return 0
    from robot_rl.nodes import topics
    from robot_rl.robot_config import load_robot
    from robot_rl.ros import messages as m
    from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
    from robot_rl.ros.runtime import make_node

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    code = "import sys, robot_rl.nodes.safety as s; sys.exit(s.main())"
    safety = subprocess.Popen([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/bench"],
                              env=env, start_new_session=True)
    node = make_node("bench", "/bench", argv=[])
    try:
        names = list(load_robot("dclaw").joint_names)
        received: dict[float, float] = {}

        def on_command(msg: Any) -> None:
            received[round(msg.position[0], 12)] = time.perf_counter()

        node.create_subscription(m.JointState, topics.COMMAND, on_command, QOS_DEFAULT)
        raw = node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        joints = node.create_publisher(m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        deadline = time.monotonic() + 30.0
        while raw.matched_count() == 0 or joints.matched_count() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the safety node did not appear within 30 s")
            node.spin_once(0.05)
        ramp = Ramp(len(names))
        _measure(node, raw, joints, received, names, ramp, 20.0, 1.0)  # warm-up, state fresh
        print(f"safety node latency, COMMAND_RAW -> COMMAND (ms), {args.seconds:g} s per rate")
        for rate_hz in args.rates:
            received.clear()
            ms, lost = _measure(node, raw, joints, received, names, ramp, rate_hz,
                                 args.seconds)
            if ms.size == 0:
                print(f"  {rate_hz:6.1f} Hz: no command came through ({lost} sent)")
                continue
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"  {rate_hz:6.1f} Hz: n={ms.size:5d}  p50 {p50:6.3f}  p99 {p99:6.3f}  "
                  f"max {ms.max():6.3f}  not through {lost}")
    finally:
        node.destroy()
        safety.send_signal(signal.SIGINT)
        try:
            safety.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(safety.pid, signal.SIGKILL)
            safety.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
