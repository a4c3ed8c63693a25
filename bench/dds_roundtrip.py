"""Round trip between two processes, per backend, with plain rclpy as the peer in the same run.

    python bench/dds_roundtrip.py [--count 1000] [--image-count 200] [--rounds 2]
                                  [--setups dds rclpy plain mixed] [--idle-seconds 10]
                                  [--domain 42]

Setups (pinging process <-> echoing process):
- ``dds``: robot_rl's dds backend on both sides (Cyclone DDS);
- ``rclpy``: robot_rl's rclpy backend on both sides (the Node API over rclpy, Fast DDS);
- ``plain``: plain rclpy on both sides (its own messages, an executor's spin_once), the peer
  that the rclpy backend is measured against: ``rclpy / plain`` is printed per message type;
- ``mixed``: robot_rl dds pinging a robot_rl rclpy echo (Cyclone <-> Fast DDS).
The echo sends each JointState (9 joints) or 640x480 rgb8 Image straight back on another topic;
the figure is publish to receiving the echo (two hops, reliable, one ping in flight), loopback
only (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST for both stacks). Setups alternate for ``--rounds``
rounds, so a noisy moment of a shared machine falls on all of them.

Then idle CPU: the twin (100 Hz joint states) and the safety node (100 Hz watchdog) on each
backend, nothing else running, CPU time over ``--idle-seconds``. Aim: the rclpy backend within 2x
of plain rclpy's round trip.
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
TOPICS = (("joints", "sensor_msgs/msg/JointState"), ("image", "sensor_msgs/msg/Image"))

# The echo through robot_rl's Node API (backend from ROBOT_RL_BACKEND).
ECHO = """
import sys
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT
from robot_rl.ros.runtime import make_node, run

def build(argv):
    node = make_node("echo", argv=argv)
    for msg_type, name in ((m.JointState, "joints"), (m.Image, "image")):
        pub = node.create_publisher(msg_type, "pong/" + name, QOS_DEFAULT)
        node.create_subscription(msg_type, "ping/" + name, pub.publish, QOS_DEFAULT)
    print("ready", flush=True)
    return node

sys.exit(run(build))
"""

# The same echo in plain rclpy, as a ROS 2 user would write it.
PLAIN_ECHO = """
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, JointState

rclpy.init()
node = Node("echo")
for msg_type, name in ((JointState, "joints"), (Image, "image")):
    pub = node.create_publisher(msg_type, "pong/" + name, QoSProfile(depth=10))
    node.create_subscription(msg_type, "ping/" + name, pub.publish, QoSProfile(depth=10))
print("ready", flush=True)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def _percentiles(ms: np.ndarray) -> str:
    return f"p50 {np.percentile(ms, 50):7.3f} ms  p99 {np.percentile(ms, 99):7.3f} ms"


class RobotRlPing:
    """The pinging side through robot_rl's Node API."""

    def __init__(self, backend: str) -> None:
        from robot_rl.ros import messages as m
        from robot_rl.ros.runtime import make_node
        self.node = make_node("bench", argv=["--ros-args", "--disable-rosout-logs"],
                              backend=backend)
        self.types = {"joints": m.JointState, "image": m.Image}
        joints = m.joint_state([f"joint_{i}" for i in range(9)], np.zeros(9), np.zeros(9),
                               np.zeros(9))
        pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        self.messages = {"joints": joints, "image": m.image_from_numpy(pixels, "rgb8")}

    def measure(self, name: str, count: int) -> np.ndarray:
        from robot_rl.ros.qos import QOS_DEFAULT
        replies: list[float] = []
        self.node.create_subscription(self.types[name], f"pong/{name}",
                                      lambda _m: replies.append(time.perf_counter()), QOS_DEFAULT)
        pub = self.node.create_publisher(self.types[name], f"ping/{name}", QOS_DEFAULT)
        return _ping(lambda: pub.publish(self.messages[name]), self.node.spin_once, replies,
                     count, name)

    def close(self) -> None:
        self.node.destroy()


class PlainPing:
    """The pinging side in plain rclpy."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image, JointState
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.types = {"joints": JointState, "image": Image}
        joints = JointState(name=[f"joint_{i}" for i in range(9)], position=[0.0] * 9,
                            velocity=[0.0] * 9, effort=[0.0] * 9)
        image = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
        pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        image.data = pixels.tobytes()
        self.messages = {"joints": joints, "image": image}

    def measure(self, name: str, count: int) -> np.ndarray:
        from rclpy.qos import QoSProfile
        replies: list[float] = []
        self.node.create_subscription(self.types[name], f"pong/{name}",
                                      lambda _m: replies.append(time.perf_counter()),
                                      QoSProfile(depth=10))
        pub = self.node.create_publisher(self.types[name], f"ping/{name}", QoSProfile(depth=10))
        return _ping(lambda: pub.publish(self.messages[name]),
                     lambda t: self.executor.spin_once(timeout_sec=t), replies, count, name)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _ping(publish: Any, spin: Any, replies: list[float], count: int, name: str) -> np.ndarray:
    deadline = time.monotonic() + 20.0
    while not replies:  # discovery, then one warm-up echo
        if time.monotonic() > deadline:
            raise RuntimeError(f"no echo on pong/{name} within 20 s")
        publish()
        spin(0.05)
    end = time.monotonic() + 0.2
    while time.monotonic() < end:  # late warm-up echoes
        spin(0.05)
    samples = []
    for _ in range(count):
        replies.clear()
        start = time.perf_counter()
        publish()
        while not replies:
            spin(1.0)
        samples.append(replies[0] - start)
    return np.asarray(samples) * 1e3


SETUPS = {  # name: (pinging side, echoing side)
    "dds": ("dds", "dds"), "rclpy": ("rclpy", "rclpy"), "plain": ("plain", "plain"),
    "mixed": ("dds", "rclpy"),
}


def run_setup(setup: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, np.ndarray]:
    ping_side, echo_side = SETUPS[setup]
    code = PLAIN_ECHO if echo_side == "plain" else ECHO
    child_env = dict(env, ROBOT_RL_BACKEND="rclpy" if echo_side == "plain" else echo_side)
    child = subprocess.Popen([sys.executable, "-c", code, "--ros-args",
                              "--disable-rosout-logs"], env=child_env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    ping: Any = None
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        ping = PlainPing() if ping_side == "plain" else RobotRlPing(ping_side)
        return {name: ping.measure(name, args.count if name == "joints" else args.image_count)
                for name, _ in TOPICS}
    finally:
        if ping is not None:
            ping.close()
        child.send_signal(signal.SIGINT)
        child.wait(timeout=10)


def idle_cpu(backend: str, env: dict[str, str], seconds: float) -> tuple[float, float]:
    """CPU % of an idle twin and safety node on ``backend`` (after 5 s of settling)."""
    child_env = dict(env, ROBOT_RL_BACKEND=backend)
    procs = [subprocess.Popen(
        [sys.executable, "-c", f"import sys, {module} as m; sys.exit(m.main())", "--ros-args",
         "-r", "__ns:=/hand"], env=child_env, stderr=subprocess.DEVNULL, start_new_session=True)
        for module in ("robot_rl.sim_twin.node", "robot_rl.nodes.safety")]
    try:
        time.sleep(5.0)  # start-up and discovery are not idle
        before, start = [_cpu_s(p.pid) for p in procs], time.monotonic()
        time.sleep(seconds)
        after, took = [_cpu_s(p.pid) for p in procs], time.monotonic() - start
        twin, safety = (100.0 * (b - a) / took for a, b in zip(before, after))
        return twin, safety
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="JointState round trips")
    parser.add_argument("--image-count", type=int, default=200, help="Image round trips")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the setups")
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="idle CPU measurement per backend (0: skip)")
    parser.add_argument("--domain", type=int, default=random.randint(100, 200))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from robot_rl.ros.runtime import rclpy_available
    setups = list(args.setups)
    if not rclpy_available():
        print("rclpy cannot be imported (robot_rl[ros]): dds only")
        setups = [s for s in setups if s == "dds"]
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                      MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))

    results: dict[str, dict[str, list[np.ndarray]]] = {s: {n: [] for n, _ in TOPICS}
                                                        for s in setups}
    for _ in range(args.rounds):
        for setup in setups:
            for name, ms in run_setup(setup, env, args).items():
                results[setup][name].append(ms)
    labels = {"joints": "JointState (9 joints)", "image": "Image 640x480 rgb8"}
    p50 = {}
    for setup in setups:
        for name, _ in TOPICS:
            ms = np.concatenate(results[setup][name])
            p50[setup, name] = float(np.percentile(ms, 50))
            per_round = ", ".join(f"{np.percentile(r, 50):.3f}" for r in results[setup][name])
            print(f"{setup:6s} {labels[name]:22s} {len(ms):5d} round trips: {_percentiles(ms)}"
                  f"  (p50 per round: {per_round})")
    if "rclpy" in setups and "plain" in setups:
        for name, _ in TOPICS:
            print(f"rclpy backend / plain rclpy, {labels[name]}: "
                  f"{p50['rclpy', name] / p50['plain', name]:.2f}x at p50 (aim: within 2x)")
    if args.idle_seconds > 0:
        for backend in ("dds", "rclpy") if rclpy_available() else ("dds",):
            twin, safety = idle_cpu(backend, env, args.idle_seconds)
            print(f"idle CPU, {backend:5s}: twin {twin:5.1f}%  safety {safety:5.1f}%  "
                  f"(over {args.idle_seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
