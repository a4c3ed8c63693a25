"""The RealSense node: colour, aligned depth and CameraInfo on the graph, as realsense-ros names them.

CAMERA_COLOR is rgb8; CAMERA_DEPTH is realsense-ros's convention for aligned depth, 16UC1 in
millimetres (0: no return), in the colour camera so one CAMERA_INFO (the colour intrinsics,
plumb_bob) serves both. Header stamps come from the device's frame timestamps: a system or global
clock is used as is, a hardware clock is mapped onto wall-clock time once per stream start
(offset taken at its first frame), so intervals between stamps are the device's. frame_id
``camera_color_optical_frame``. DIAGNOSTICS: frames read, dropped (frame counter gaps), stale
framesets skipped, timeouts and reconnects.

Parameters: ``serial`` (empty: the only camera), ``recording_path`` (play a .db3/.bag instead),
``fps``, ``width``, ``height``, ``enable_depth``, ``loop`` (recordings: start again at the end),
``playback_real_time`` (recordings: pace at the recorded rate). Frames are read and published on a
thread of their own: ``read()`` blocks, and the publishers are thread-safe. With ``view_task`` (and
``view_robot``) it also publishes that task's camera view of every frame (``nodes.camera_view``).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from robot_rl.drivers.realsense.camera import RealSenseCamera
from robot_rl.drivers.realsense.config import CameraConfig
from robot_rl.drivers.realsense.errors import CameraError, RecordingEnded
from robot_rl.drivers.realsense.frame import CameraFrame, CameraIntrinsics
from robot_rl.nodes import topics
from robot_rl.nodes.camera_view import ViewPublisher, declare_view_parameters
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_DEFAULT, QOS_SENSOR_DATA
from robot_rl.ros.runtime import make_node, run

FRAME_ID = "camera_color_optical_frame"
DEPTH_MAX_MM = 65535
_DEVICE_CLOCKS = ("system_time", "global_time")  # already wall-clock time


def depth_to_mm(depth: np.ndarray, depth_scale_m: float) -> np.ndarray:
    """z16 units to uint16 millimetres (the identity for the D400's usual 1 mm units)."""
    if abs(depth_scale_m - 0.001) < 1e-9:
        return depth
    mm = np.rint(depth.astype(np.float64) * (depth_scale_m * 1000.0))
    return np.clip(mm, 0, DEPTH_MAX_MM).astype(np.uint16)


def camera_info(intrinsics: CameraIntrinsics, stamp_s: float, frame_id: str = FRAME_ID
                ) -> m.CameraInfo:
    f = intrinsics.camera_info_fields()
    return m.CameraInfo(header=m.header(stamp_s, frame_id), width=f["width"], height=f["height"],
                        distortion_model=f["distortion_model"], d=f["D"], k=f["K"], r=f["R"],
                        p=f["P"])


class StampMapper:
    """Device timestamps (s) to wall-clock stamps; ``restart()`` when the device clock restarts."""

    def __init__(self) -> None:
        self._offset_s: float | None = None

    def restart(self) -> None:
        self._offset_s = None

    def stamp_s(self, frame: CameraFrame, now_s: float) -> float:
        if frame.timestamp_domain in _DEVICE_CLOCKS:
            return frame.timestamp_s
        if self._offset_s is None:
            self._offset_s = now_s - frame.timestamp_s
        return frame.timestamp_s + self._offset_s


class RealSenseNode:
    def __init__(self, argv: list[str]) -> None:
        self.node: Node = make_node("realsense", argv=argv)
        p = self.node.declare_parameter
        serial = p("serial", "", "camera serial; empty: the only connected camera")
        recording = p("recording_path", "", "play this recording instead of a camera")
        self._loop = p("loop", False, "recordings: start again at the end")
        diagnostics_rate_hz = p("diagnostics_rate_hz", 1.0, "periodic diagnostics (Hz)")
        self.config = CameraConfig(
            serial=serial or None, recording_path=recording or None,
            fps=p("fps", 30, "frame rate (frames/s)"), width=p("width", 640, "image width (px)"),
            height=p("height", 480, "image height (px)"),
            enable_depth=p("enable_depth", True, "publish aligned depth"),
            playback_real_time=p("playback_real_time", True,
                                 "recordings: pace at the recorded rate"))
        if not diagnostics_rate_hz > 0:
            raise ValueError(f"node {self.node.fully_qualified_name}: diagnostics_rate_hz must be "
                             f"> 0, got {diagnostics_rate_hz}")
        view = declare_view_parameters(self.node)
        self.camera = RealSenseCamera(self.config)  # a missing camera fails here, at start
        self._intrinsics = self.camera.intrinsics()
        self._stamps = StampMapper()
        self._state = "streaming"
        self._restarts = 0
        self.failed = False
        self._stop = threading.Event()
        self._make_endpoints()
        self._view = None if view is None else ViewPublisher(self.node, view)
        self.node.create_timer(1.0 / diagnostics_rate_hz, self._publish_diagnostics)
        self._thread = threading.Thread(target=self._read_loop, name="realsense", daemon=True)
        self._thread.start()
        self.node.get_logger().info(
            f"{self.config.source} (serial {self.camera.serial}): {self.config.width}x"
            f"{self.config.height} @ {self.config.fps} fps on {self._color.topic}")

    def _make_endpoints(self) -> None:
        node = self.node
        self._color = node.create_publisher(m.Image, topics.CAMERA_COLOR, QOS_SENSOR_DATA)
        self._depth = node.create_publisher(m.Image, topics.CAMERA_DEPTH, QOS_SENSOR_DATA)
        self._info = node.create_publisher(m.CameraInfo, topics.CAMERA_INFO, QOS_SENSOR_DATA)
        self._diagnostics = node.create_publisher(m.DiagnosticArray, topics.DIAGNOSTICS,
                                                  QOS_DEFAULT)

    # ---- the reader thread ---------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.camera.read()
            except RecordingEnded:
                if not self._loop or self._stop.is_set():
                    self._state = "recording ended"
                    self.node.get_logger().info(f"{self.config.source}: played to its end")
                    return
                self._replay()
                continue
            except CameraError as err:
                self._state, self.failed = f"failed: {err}", True
                self.node.get_logger().error(str(err))
                self._publish_diagnostics()
                self.node.request_shutdown()
                return
            self._publish(frame)

    def _replay(self) -> None:
        stats = self.camera.stats
        self.camera.close()
        self.camera = RealSenseCamera(self.config)
        self.camera.stats = stats  # counters run on across loops
        self._stamps.restart()
        self._restarts += 1

    def _publish(self, frame: CameraFrame) -> None:
        stamp_s = self._stamps.stamp_s(frame, self.node.now_s())
        self._color.publish(m.image_from_numpy(frame.color, "rgb8", stamp_s, FRAME_ID))
        depth = None
        if frame.depth is not None:
            depth = depth_to_mm(frame.depth, frame.depth_scale_m)
            self._depth.publish(m.image_from_numpy(depth, "16UC1", stamp_s, FRAME_ID))
        info = camera_info(self._intrinsics, stamp_s)
        self._info.publish(info)
        if self._view is not None:
            self._view.publish(frame.color, depth, stamp_s, FRAME_ID, info)

    # ---- diagnostics ---------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        stats = self.camera.stats
        values = {"frames_read": stats.frames_read, "frames_dropped": stats.frames_dropped,
                  "stale_framesets_skipped": stats.stale_framesets_skipped,
                  "timeouts": stats.timeouts, "reconnects": stats.reconnects,
                  "recording_restarts": self._restarts, "state": self._state}
        level = m.DiagnosticStatus.ERROR if self.failed else (
            m.DiagnosticStatus.WARN if stats.frames_dropped or stats.timeouts
            else m.DiagnosticStatus.OK)
        status = m.DiagnosticStatus(
            level=level, name=f"{self.node.fully_qualified_name}: realsense",
            message=self._state, hardware_id=self.config.source,
            values=[m.KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self._diagnostics.publish(m.DiagnosticArray(header=m.header(self.node.now_s()),
                                                    status=[status]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0 * self.config.frame_timeout_s + 1.0)
        self.camera.close()


def main(argv: list[str] | None = None) -> int:
    made: list[RealSenseNode] = []

    def factory(args: list[str]) -> RealSenseNode:
        made.append(RealSenseNode(args))
        return made[0]

    code = run(factory, sys.argv[1:] if argv is None else argv)
    return 1 if code == 0 and made and made[0].failed else code


if __name__ == "__main__":
    sys.exit(main())
