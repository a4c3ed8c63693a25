"""A camera node's pixel-task view: the task's crop and size of every frame, published beside the
full frames (``topics.VIEW_COLOR``, ``VIEW_DEPTH``, ``VIEW_INFO`` under the camera's namespace).

Why on the camera side: a 640x480 rgb8 frame is 900 kB, 27.6 MB/s at 30 Hz per subscriber; the
task's 64x64 view is 12 kB (0.37 MB/s), so a learner or actor on another machine gets its frames
over any network, and the process that acts on joint states neither receives nor cuts 900 kB
frames (the arithmetic; `bench/control_loop.py --pixels` measures the loop with it). The
camera node already holds every full frame; cutting one costs about a millisecond there.
Learners and actors also take full frames (``camera_frames:=full``) from a camera that publishes
no view, e.g. realsense-ros itself.

The RealSense node and the twin node publish the view when given ``view_task`` (the task whose
view, from its config: crop, size, depth) and ``view_robot`` (the calibration that task is built
for), so the view has one home: the task's config. The RealSense node cuts its full frames
(``publish``); the twin renders the view itself as its gymnasium env does (``Twin.render_view``:
a small render, then the same cut), so a policy trained in process sees the same picture on the
graph, at a few ms per frame instead of a 640x480 render's tens (``publish_view``).

The consumers' side (actor, learner, recorder) hands each received frame to its
``agent.frames.LatestFrames`` with ``take_frame``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.agent.frames import LatestFrames
from robot_rl.nodes import topics
from robot_rl.ros import messages as m
from robot_rl.ros.api import Node
from robot_rl.ros.qos import QOS_SENSOR_DATA
from robot_rl.tasks.camera import (
    ImageObservationConfig,
    crop_box,
    preprocess_color,
    preprocess_depth,
)


def declare_view_parameters(node: Node, robot: str = "dclaw") -> ImageObservationConfig | None:
    """The ``view_task`` / ``view_robot`` parameters (``robot``: view_robot's default); the
    task's view, or None for none."""
    task = node.declare_parameter("view_task", "", "publish this task's camera view beside the "
                                  "full frames (valve | drawer; '': none)")
    robot = node.declare_parameter("view_robot", robot, "the calibration view_task is built "
                                   "for")
    if not task:
        return None
    from robot_rl.agent.tasks import make_task
    from robot_rl.robot_config import load_robot

    return make_task(task, load_robot(robot)).pixel_view()


class ViewPublisher:
    """Cuts each full frame to the view and publishes it with the frame's stamp and frame id."""

    def __init__(self, node: Node, view: ImageObservationConfig,
                 camera: str = topics.CAMERA) -> None:
        self.view = view
        self._color = node.create_publisher(m.Image, topics.camera_topic(camera, topics.VIEW_COLOR),
                                            QOS_SENSOR_DATA)
        self._depth = (node.create_publisher(m.Image, topics.camera_topic(camera,
                                                                          topics.VIEW_DEPTH),
                                             QOS_SENSOR_DATA) if view.depth else None)
        self._info = node.create_publisher(m.CameraInfo,
                                           topics.camera_topic(camera, topics.VIEW_INFO),
                                           QOS_SENSOR_DATA)
        self.topic = self._color.topic

    def publish(self, color: np.ndarray, depth_mm: np.ndarray | None, stamp_s: float,
                frame_id: str, info: m.CameraInfo | None = None) -> None:
        """Full frames (and the full frame's intrinsics), cut to the view here."""
        self.publish_view(preprocess_color(color, self.view),
                          None if depth_mm is None else preprocess_depth(depth_mm, self.view),
                          stamp_s, frame_id, info)

    def publish_view(self, color: np.ndarray, depth_mm: np.ndarray | None, stamp_s: float,
                     frame_id: str, info: m.CameraInfo | None = None) -> None:
        """Frames already cut to the view (the twin renders the view itself); ``info`` is the
        full frame's intrinsics."""
        self._color.publish(m.image_from_numpy(color, "rgb8", stamp_s, frame_id))
        if self._depth is not None and depth_mm is not None:
            self._depth.publish(m.image_from_numpy(depth_mm, "16UC1", stamp_s, frame_id))
        if info is not None:
            self._info.publish(view_camera_info(info, self.view))


def view_camera_info(info: m.CameraInfo, view: ImageObservationConfig) -> m.CameraInfo:
    """The intrinsics of the view: the full frame's, cut by the crop and scaled to the size
    (pixel centres map as x' = (x - left + 0.5) * scale - 0.5)."""
    left, top, right, bottom = crop_box(int(info.width), int(info.height), view.crop)
    sx, sy = view.width / (right - left), view.height / (bottom - top)
    k = list(info.k)
    fx, fy = k[0] * sx, k[4] * sy
    cx, cy = (k[2] - left + 0.5) * sx - 0.5, (k[5] - top + 0.5) * sy - 0.5
    kwargs: dict[str, Any] = {"header": info.header, "width": view.width, "height": view.height,
                              "distortion_model": info.distortion_model, "d": list(info.d),
                              "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], "r": list(info.r),
                              "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]}
    return m.CameraInfo(**kwargs)


def take_frame(frames: LatestFrames, msg: m.Image, depth: bool) -> None:
    """A received view (or full) frame into ``frames``, stamped with its capture time: the colour
    stream's, or with ``depth`` the depth stream's. ValueError says what is wrong with it."""
    image, stamp_s = m.image_to_numpy(msg), m.stamp_to_s(msg.header.stamp)
    if depth:
        frames.on_depth(image, stamp_s)
    else:
        frames.on_color(image, stamp_s)
