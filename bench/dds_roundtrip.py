"""Round trip over Cyclone DDS between two processes: JointState (9 joints), 640x480 rgb Image.

    python bench/dds_roundtrip.py [--count 1000] [--image-count 200] [--domain 42]

A child process echoes each message back on another topic; the figure is the time from
publish to receiving the echo in the parent (two DDS hops, two (de)serialisations each way),
through robot_rl's Node API and message classes. Loopback only, one ping in flight.
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


def _measure(node: Any, msg_type: type, name: str, msg: Any, count: int) -> np.ndarray:
    from robot_rl.ros.qos import QOS_DEFAULT
    replies: list[float] = []
    node.create_subscription(msg_type, f"pong/{name}", lambda _m: replies.append(
        time.perf_counter()), QOS_DEFAULT)
    pub = node.create_publisher(msg_type, f"ping/{name}", QOS_DEFAULT)
    deadline = time.monotonic() + 10.0
    while not replies:  # discovery, then one warm-up echo
        if time.monotonic() > deadline:
            raise RuntimeError(f"no echo on pong/{name} within 10 s")
        pub.publish(msg)
        node.spin_once(0.05)
    node.spin_once(0.2)
    samples = []
    for _ in range(count):
        replies.clear()
        start = time.perf_counter()
        pub.publish(msg)
        while not replies:
            node.spin_once(1.0)
        samples.append(replies[0] - start)
    return np.asarray(samples) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="JointState round trips")
    parser.add_argument("--image-count", type=int, default=200, help="Image round trips")
    parser.add_argument("--domain", type=int, default=random.randint(100, 200))
    args = parser.parse_args(argv)
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROBOT_RL_DDS_LOOPBACK="1",
                      ROBOT_RL_BACKEND="dds")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    sys.path.insert(0, str(REPO_ROOT))
    from robot_rl.ros import messages as m
    from robot_rl.ros.runtime import make_node

    child = subprocess.Popen([sys.executable, "-c", ECHO], env=env, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        node = make_node("bench", argv=[])
        joints = m.joint_state([f"joint_{i}" for i in range(9)], np.zeros(9), np.zeros(9),
                               np.zeros(9))
        pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        image = m.image_from_numpy(pixels, "rgb8")
        for label, msg_type, name, msg, count in (
                ("JointState (9 joints)", m.JointState, "joints", joints, args.count),
                ("Image 640x480 rgb8", m.Image, "image", image, args.image_count)):
            ms = _measure(node, msg_type, name, msg, count)
            print(f"{label:24s} round trip over {count:5d}: p50 {np.percentile(ms, 50):7.3f} ms"
                  f"  p99 {np.percentile(ms, 99):7.3f} ms  max {ms.max():7.3f} ms")
        node.destroy()
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
