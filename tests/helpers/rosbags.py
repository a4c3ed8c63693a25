"""rosbag2 recordings written with rosbags (sqlite3 or mcap), with known messages: joint states
at 100 Hz, commands at 50 Hz, images at about 30 Hz, and an optional episode marker."""

from __future__ import annotations

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_HUMBLE)
T0_NS = 1_700_000_000 * 10**9
MS = 10**6
JOINTS = [f"joint_{i}" for i in range(9)]
JS_NS = T0_NS + 3 * MS + np.arange(100) * 10 * MS  # 100 Hz joint states
CMD_NS = T0_NS + 7 * MS + np.arange(50) * 20 * MS  # 50 Hz commands
IMG_NS = T0_NS + 1 * MS + np.arange(30) * 33 * MS  # ~30 Hz images
MARKER_NS = T0_NS + 500 * MS


def joint_position(k: int) -> np.ndarray:
    return np.arange(9) * 0.01 + k * 0.001


def command(k: int) -> np.ndarray:
    return (-np.arange(9) - k).astype(np.float32)


def image(k: int) -> np.ndarray:
    return (np.arange(4 * 5 * 3).reshape(4, 5, 3) + k).astype(np.uint8)


def write_bag(path, plugin: StoragePlugin, marker: bool = False) -> None:
    types = TS.types
    with Writer(path, version=9, storage_plugin=plugin) as w:
        js = w.add_connection("/hand/joint_states", "sensor_msgs/msg/JointState", typestore=TS)
        cmd = w.add_connection("/hand/command", "std_msgs/msg/Float32MultiArray", typestore=TS)
        img = w.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        mark = w.add_connection("/episode", "std_msgs/msg/Empty", typestore=TS) if marker else None
        events = [(t, 0, k) for k, t in enumerate(JS_NS)] + \
                 [(t, 1, k) for k, t in enumerate(CMD_NS)] + \
                 [(t, 2, k) for k, t in enumerate(IMG_NS)] + ([(MARKER_NS, 3, 0)] if marker else [])
        for t, kind, k in sorted(events):
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=int(t // 10**9),
                                                          nanosec=int(t % 10**9)), frame_id="")
            if kind == 0:
                names, pos = list(JOINTS), joint_position(k)
                if k % 7 == 3:  # some publishers reorder joints; the importer must undo it
                    names, pos = names[::-1], pos[::-1].copy()
                msg = types["sensor_msgs/msg/JointState"](
                    header=header, name=names, position=pos, velocity=pos * 2,
                    effort=np.zeros(9))
                conn = js
            elif kind == 1:
                layout = types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
                msg = types["std_msgs/msg/Float32MultiArray"](layout=layout, data=command(k))
                conn = cmd
            elif kind == 2:
                bgr = image(k)[..., ::-1]
                msg = types["sensor_msgs/msg/Image"](
                    header=header, height=4, width=5, encoding="bgr8", is_bigendian=0, step=16,
                    data=np.pad(bgr.reshape(4, 15), ((0, 0), (0, 1))).ravel())  # padded rows
                conn = img
            else:
                msg, conn = types["std_msgs/msg/Empty"](), mark
            w.write(conn, int(t), TS.serialize_cdr(msg, msg.__msgtype__))


TOPICS = {"/hand/joint_states": "observation:position+velocity", "/hand/command": "action",
          "/camera/color/image_raw": "camera_color"}
