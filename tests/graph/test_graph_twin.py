"""The twin node in its own process: what it publishes, what it obeys, and the safety path to it."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import numpy as np
from graph_probe import Probe, node_cmd, params, stop
from helpers.backends import both_backends

from robot_rl.nodes import topics
from robot_rl.robot_config import load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA

CAL = load_robot("dclaw")
NAMES = list(CAL.joint_names)
MID = NAMES.index("f0_mid")


def start_twin(spawn: Any, **extra: Any) -> Any:
    return spawn(node_cmd("robot_rl.sim_twin.node", "-r", "__ns:=/hand",
                          *params(robot="dclaw", publish_rate_hz=50.0, **extra)))


def latest_position(states: list[m.JointState]) -> np.ndarray:
    return np.asarray(states[-1].position)


@both_backends
def test_twin_publishes_state_camera_obeys_command_and_resets(ros_domain: int,
                                                              spawn: Any) -> None:
    twin = start_twin(spawn, camera_rate_hz=4.0, camera_width=64, camera_height=48)
    probe = Probe()
    try:
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        objects = probe.listen("object", m.JointState, topics.OBJECT_STATE, QOS_SENSOR_DATA)
        temps = probe.listen("temp", m.Float32MultiArray, topics.TEMPERATURE, QOS_SENSOR_DATA)
        errors = probe.listen("err", m.UInt8MultiArray, topics.HARDWARE_ERROR, QOS_SENSOR_DATA)
        colors = probe.listen("rgb", m.Image, topics.CAMERA_COLOR, QOS_SENSOR_DATA)
        depths = probe.listen("depth", m.Image, topics.CAMERA_DEPTH, QOS_SENSOR_DATA)
        infos = probe.listen("info", m.CameraInfo, topics.CAMERA_INFO, QOS_SENSOR_DATA)
        replies = probe.listen("status", m.String, topics.EPISODE_STATUS, QOS_DEFAULT)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)
        gated = probe.node.create_publisher(m.JointState, topics.COMMAND, QOS_DEFAULT)
        episode = probe.node.create_publisher(m.String, topics.EPISODE, QOS_DEFAULT)

        everything = (states, objects, temps, errors, colors, depths, infos)
        probe.wait_until(lambda: all(everything), 25.0, what="every twin topic")
        states.clear()
        probe.wait_until(lambda: bool(states), 5.0, what="a fresh joint state")
        state = states[-1]
        assert list(state.name) == NAMES
        assert len(state.velocity) == len(state.effort) == len(NAMES)
        assert abs(time.time() - m.stamp_to_s(state.header.stamp)) < 1.0  # wall-clock stamps
        assert list(objects[-1].name) == ["valve"]
        assert len(temps[-1].data) == len(NAMES) and bytes(errors[-1].data) == bytes(len(NAMES))
        assert m.image_to_numpy(colors[-1]).shape == (48, 64, 3)
        depth_mm = m.image_to_numpy(depths[-1])
        assert depth_mm.dtype == np.uint16 and 50 < np.median(depth_mm) < 2000  # about 0.5 m
        assert infos[-1].k[0] > 0 and infos[-1].k[8] == 1.0

        # a raw command never moves the twin: only the safety node's COMMAND does
        start = latest_position(states)
        target = start.copy()
        target[MID] += 0.2
        probe.spin_for(1.0, lambda: raw.publish(m.joint_state(NAMES, target)), 0.05)
        assert abs(latest_position(states)[MID] - start[MID]) < 0.02
        shuffled = list(reversed(NAMES))  # names, not positions in a list, decide the joint
        probe.wait_until(lambda: latest_position(states)[MID] > start[MID] + 0.15, 10.0,
                         lambda: gated.publish(m.joint_state(shuffled, target[::-1])), 0.05,
                         what="the twin to follow COMMAND")

        # commands still in flight would move the joints after the teleport: let them land first
        probe.spin_for(1.0)

        # reset: the scene is teleported and the twin replies
        joints = np.clip(np.full(len(NAMES), 0.3), CAL.lower_rad, CAL.upper_rad)
        request = {"event": "reset", "episode": 7, "seed": 3,
                   "joint_positions_rad": joints.tolist(), "object_position": 1.0}
        episode.publish(m.String(data=json.dumps(request)))
        probe.wait_until(lambda: bool(replies), 5.0, what="reset_done")
        reply = json.loads(replies[-1].data)
        # reset_done names the stamp of the first state measured after the teleport (the twin's
        # own clock): a state sent just before the teleport can still arrive after the reply
        # (another topic, best effort), and the stamp tells them apart
        assert set(reply) == {"event", "episode", "stamp_s"}, reply
        assert (reply["event"], reply["episode"]) == ("reset_done", 7)

        def stamped_after(msgs: list[m.JointState]) -> list[m.JointState]:
            return [s for s in msgs if m.stamp_to_s(s.header.stamp) >= reply["stamp_s"]]

        probe.wait_until(lambda: bool(stamped_after(states) and stamped_after(objects)), 10.0,
                         what="states stamped at or after reset_done's stamp")
        np.testing.assert_allclose(stamped_after(states)[0].position, joints, atol=0.05)
        assert abs(stamped_after(objects)[0].position[0] - 1.0) < 0.1
    finally:
        probe.destroy()
    assert stop(twin) == 0


@both_backends
def test_raw_commands_reach_the_twin_only_through_safety(ros_domain: int, spawn: Any) -> None:
    twin = start_twin(spawn)
    safety = spawn(node_cmd("robot_rl.nodes.safety", "-r", "__ns:=/hand",
                            *params(robot="dclaw")))
    probe = Probe()
    try:
        states = probe.listen("joints", m.JointState, topics.JOINT_STATES, QOS_SENSOR_DATA)
        commands = probe.listen("command", m.JointState, topics.COMMAND, QOS_DEFAULT)
        diagnostics = probe.listen("diag", m.DiagnosticArray, topics.DIAGNOSTICS, QOS_DEFAULT)
        status = probe.listen("status", m.String, topics.SAFETY_STATUS, QOS_DEFAULT)
        raw = probe.node.create_publisher(m.JointState, topics.COMMAND_RAW, QOS_DEFAULT)

        def reasons(text: str) -> list[str]:
            return [s.message for d in diagnostics for s in d.status if text in s.message]

        # the safety node has the twin's state (its telemetry status says so)
        probe.wait_until(lambda: bool(states and reasons("within limits")), 25.0,
                         what="twin and safety")
        start = latest_position(states)

        # a huge jump: every gated step is within max_step_rad and the twin follows slowly
        jump = start.copy()
        jump[MID] = CAL.upper_rad[MID]
        max_step = CAL.safety.max_step_rad
        probe.wait_until(lambda: len(commands) >= 5, 10.0,
                         lambda: raw.publish(m.joint_state(NAMES, jump)), 0.05,
                         what="gated commands")
        sent = np.array([c.position for c in commands])
        assert abs(sent[0][MID] - start[MID]) <= max_step + 1e-9
        assert np.all(np.abs(np.diff(sent, axis=0)) <= max_step + 1e-9)
        assert sent[-1][MID] < jump[MID]
        assert reasons("clipping"), [s.message for d in diagnostics for s in d.status]
        moved = latest_position(states)[MID] - start[MID]
        assert moved < len(commands) * max_step + 0.05

        # a NaN is rejected: the safety node holds, no NaN reaches COMMAND
        bad = jump.copy()
        bad[MID] = float("nan")
        commands.clear()
        probe.wait_until(lambda: bool(reasons("nan_in_command f0_mid")), 5.0,
                         lambda: raw.publish(m.joint_state(NAMES, bad)), 0.05,
                         what="nan diagnostics")
        probe.spin_for(0.2)
        assert status[-1].data == "hold"
        assert all(np.isfinite(c.position).all() for c in commands)

        # the twin dies: state goes stale, and the safety node says so within its timeout
        def keep_commanding() -> None:
            raw.publish(m.joint_state(NAMES, latest_position(states)))

        probe.wait_until(lambda: status[-1].data == "pass", 10.0, keep_commanding, 0.05,
                         what="passing again")
        twin.send_signal(signal.SIGKILL)
        twin.wait(timeout=5)
        killed_s = time.monotonic()
        took = probe.wait_until(lambda: bool(reasons("stale_state")), 5.0, keep_commanding,
                                0.05, what="stale_state diagnostics")
        assert time.monotonic() - killed_s < CAL.safety.state_timeout_s + 1.5, took
        assert status[-1].data == "hold"
    finally:
        probe.destroy()
    assert stop(safety) == 0
