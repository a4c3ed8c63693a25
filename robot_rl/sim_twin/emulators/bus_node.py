"""The hil world: an emulated Dynamixel bus on a pty, moved by the MuJoCo twin, as a ROS node.

The real driver node opens the pty (through the stable symlink ``link_path``) and cannot tell it
from a USB adapter; the servos follow the twin's joints and the valve encoder (a servo id among
the calibration's sensors) the twin's object. The node publishes what the real world gives
beyond the bus:

- OBJECT_STATE from the twin when no sensor of the calibration is on the bus
  (``publish_object_state``: auto | true | false; auto = only when there is none), so an arm's
  drawer has a state in hil as the twin graph gives it. With an encoder on the bus (the D'Claw's
  valve, id 50) the driver publishes OBJECT_STATE and this node does not: one publisher per topic.
- ``~/twin_joint_states`` and ``~/twin_object_state``: the twin's true state, for tests and plots.
- EPISODE ``reset`` events move the object (the world resets the valve or the drawer); the joints
  are driven there by commands, as on the real robot. Replies ``reset_done`` on EPISODE_STATUS.

The bus runs in a thread of this process, the ROS node on the main thread (signals). The twin is
stepped by wall-clock time in whole physics steps (time owed is carried, never rounded away).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import time
import tty

from robot_rl.nodes import topics
from robot_rl.robot_config import RobotCalibration, load_robot
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run
from robot_rl.sim_twin.emulators import dynamixel_codec as codec
from robot_rl.sim_twin.emulators.dynamixel_bus import BusEmulator
from robot_rl.sim_twin.emulators.dynamixel_physics import TwinServos
from robot_rl.sim_twin.emulators.dynamixel_servo import EmulatedServo
from robot_rl.sim_twin.twin import Twin

IDLE_STEP_S = 0.002


def build_twin_bus(calibration: RobotCalibration, twin: Twin,
                   firmware_version: int = 52) -> BusEmulator:
    """Servos for every calibrated id (joints, then sensors) moved by ``twin``."""
    members = [j for j in (*calibration.joints, *calibration.sensors) if j.id is not None]
    servos = [EmulatedServo(int(j.id), j.model or "XM430-W210", firmware_version=firmware_version)
              for j in members]
    return BusEmulator(servos, TwinServos(twin, calibration))


class PtyBus:
    """``BusEmulator`` served on a new pty from a thread; ``lock`` guards the twin."""

    def __init__(self, emulator: BusEmulator, link_path: str = "") -> None:
        self.emulator = emulator
        self.lock = threading.Lock()
        self._master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the driver configures it
        self._slave = slave  # kept open: the pty lives as long as this object
        self.pty_path = os.ttyname(slave)
        self.link_path = link_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dynamixel-bus", daemon=True)

    @property
    def port(self) -> str:
        return self.link_path or self.pty_path

    def start(self) -> None:
        """Serves, then makes the link: a driver that finds the link finds a live bus."""
        self._thread.start()
        if self.link_path:
            tmp = f"{self.link_path}.{os.getpid()}"
            os.symlink(self.pty_path, tmp)
            os.replace(tmp, self.link_path)

    def _serve(self) -> None:
        parser = codec.PacketParser()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], IDLE_STEP_S)
            with self.lock:
                if ready:
                    for packet in parser.feed(os.read(self._master, 4096)):
                        reply, delay_s = self.emulator.handle(packet, time.monotonic())
                        if reply:
                            _wait(delay_s)
                            os.write(self._master, reply)
                self.emulator.step(time.monotonic())

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self.link_path and os.path.islink(self.link_path) \
                and os.readlink(self.link_path) == self.pty_path:
            os.unlink(self.link_path)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _wait(delay_s: float) -> None:
    end = time.perf_counter() + delay_s
    while time.perf_counter() < end:
        pass  # the Return Delay Time is microseconds: sleep() would overshoot


class BusNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("dynamixel_bus", argv=argv)
        p = self.node.declare_parameter
        robot = p("robot", "dclaw", "calibration name or YAML path")
        link_path = p("link_path", "", "keep this symlink pointing at the pty (the driver's port)")
        rate_hz = p("publish_rate_hz", 50.0, "rate of the twin's true state (Hz)")
        object_state = p("publish_object_state", "auto", "auto | true | false")
        seed = p("seed", 0, "random seed of the twin")
        if object_state not in ("auto", "true", "false") or not rate_hz > 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: publish_object_state must "
                             f"be auto, true or false (got {object_state!r}) and publish_rate_hz "
                             f"> 0 (got {rate_hz})")
        self.calibration = load_robot(robot)
        if self.calibration.bus is None:
            raise ValueError(f"calibration {self.calibration.robot}: no 'bus' section: not a "
                             "Dynamixel robot")
        self.twin = Twin(self.calibration, seed=seed)
        self.bus = PtyBus(build_twin_bus(self.calibration, self.twin), link_path)
        has_encoder = bool(self.calibration.sensors)
        publish_object = object_state == "true" or (object_state == "auto" and not has_encoder)
        self._make_endpoints(publish_object)
        self.bus.start()
        self.node.create_timer(1.0 / rate_hz, self._publish)
        # the line launch files and tests wait for, as the bus emulator's own READY
        print(f"READY {self.bus.port}", flush=True)
        self.node.get_logger().info(
            f"emulated bus of {self.calibration.robot} on {self.bus.port} (pty "
            f"{self.bus.pty_path}), twin physics; object state "
            f"{'published here' if publish_object else 'from the driver (encoder on the bus)'}")

    def _make_endpoints(self, publish_object: bool) -> None:
        node = self.node
        self._truth = node.create_publisher(m.JointState, "~/twin_joint_states", QOS_SENSOR_DATA)
        self._truth_object = node.create_publisher(m.JointState, "~/twin_object_state",
                                                   QOS_SENSOR_DATA)
        self._object = (node.create_publisher(m.JointState, topics.OBJECT_STATE, QOS_SENSOR_DATA)
                        if publish_object else None)
        self._status = node.create_publisher(m.String, topics.EPISODE_STATUS, QOS_DEFAULT)
        node.create_subscription(m.String, topics.EPISODE, self._on_episode, QOS_DEFAULT)

    def _publish(self) -> None:
        with self.bus.lock:
            twin = self.twin
            joints = (twin.joint_positions_rad(), twin.joint_velocities_rad_s(),
                      twin.joint_efforts_a())
            obj = (twin.object_joint, twin.object_position(), twin.object_velocity())
        stamp_s = self.node.now_s()
        self._truth.publish(m.joint_state(self.calibration.joint_names, *joints, stamp_s=stamp_s))
        object_msg = m.joint_state([obj[0]], [obj[1]], [obj[2]], stamp_s=stamp_s)
        self._truth_object.publish(object_msg)
        if self._object is not None:
            self._object.publish(object_msg)

    def _on_episode(self, msg: m.String) -> None:
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        if not isinstance(event, dict) or event.get("event") != "reset":
            return
        try:
            object_position = float(event.get("object_position", 0.0))
        except (TypeError, ValueError):
            self._status.publish(m.String(data=json.dumps(
                {"event": "reset_failed", "episode": event.get("episode"),
                 "error": f"object_position {event.get('object_position')!r} is not a number"})))
            return
        with self.bus.lock:
            # joints stay where they are (their servos keep their goals); only the object moves
            self.twin.reset(self.twin.joint_positions_rad(), object_position)
        self._status.publish(m.String(data=json.dumps(
            {"event": "reset_done", "episode": event.get("episode")})))

    def close(self) -> None:
        self.bus.close()
        self.twin.close()


def main(argv: list[str] | None = None) -> int:
    return run(BusNode, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
