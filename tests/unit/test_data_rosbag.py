"""rosbag2 import: bags written with rosbags (sqlite3 and mcap), resampled onto a control clock."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from robot_rl.data import DatasetError, EpisodeStore, tools
from robot_rl.dataset_cli import main

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


def latest_index(times: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    return np.searchsorted(times, ticks, side="right") - 1


TOPICS = {"/hand/joint_states": "observation:position+velocity", "/hand/command": "action",
          "/camera/color/image_raw": "camera_color"}


@pytest.mark.parametrize("plugin", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_import_resamples_latest_message_per_tick(tmp_path, plugin):
    bag = tmp_path / "bag"
    write_bag(bag, plugin)
    result = tools.import_rosbag(bag, tmp_path / "d.zarr", TOPICS, control_period_s=0.05,
                                 robot="dclaw", task="valve", units={"observation": "rad"},
                                 info={"operator": "ann"})
    assert result["n_episodes"] == 1
    store = EpisodeStore.open(tmp_path / "d.zarr")
    start = max(JS_NS[0], CMD_NS[0], IMG_NS[0])
    last = max(JS_NS[-1], CMD_NS[-1], IMG_NS[-1])
    ticks = np.arange(start, last + 1, 50 * MS)
    ep = store.episode(0)
    assert len(ep["action"]) == len(ticks) == 20
    np.testing.assert_allclose(ep["timestamp_s"], ticks / 1e9)
    js = latest_index(JS_NS, ticks)
    want_obs = np.stack([np.concatenate([joint_position(k), 2 * joint_position(k)]) for k in js])
    np.testing.assert_array_equal(ep["observation"], want_obs.astype(np.float32))
    np.testing.assert_array_equal(ep["action"],
                                  np.stack([command(k) for k in latest_index(CMD_NS, ticks)]))
    np.testing.assert_array_equal(ep["camera_color"],
                                  np.stack([image(k) for k in latest_index(IMG_NS, ticks)]))
    assert ep["observation"].dtype == np.float32 and ep["camera_color"].dtype == np.uint8
    info = store.episode_info(0)
    assert info["operator"] == "ann" and info["source_bag"] == str(bag)
    assert store.attrs["units"] == {"observation": "rad", "timestamp_s": "s"}


@pytest.mark.parametrize("plugin", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_marker_topic_splits_episodes(tmp_path, plugin):
    bag = tmp_path / "bag"
    write_bag(bag, plugin, marker=True)
    out = tmp_path / "d.zarr"
    assert main(["import-rosbag", str(bag), "-o", str(out), "--topic",
                 "/hand/joint_states=observation", "--topic", "/hand/command=action",
                 "--period", "0.05", "--marker-topic", "/episode", "--robot", "dclaw"]) == 0
    store = EpisodeStore.open(out)
    assert store.n_episodes == 2
    np.testing.assert_array_equal(store.episode_lengths, [10, 10])
    first, second = store.episode(0), store.episode(1)
    assert first["timestamp_s"][-1] < MARKER_NS / 1e9 <= second["timestamp_s"][0]
    ticks = second["timestamp_s"]
    idx = latest_index(JS_NS, np.round(ticks * 1e9).astype(np.int64))
    np.testing.assert_array_equal(second["observation"],
                                  np.stack([joint_position(k) for k in idx]).astype(np.float32))
    assert store.episode_info(1)["segment"] == 1


def test_missing_topic_is_a_clear_error(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, StoragePlugin.SQLITE3)
    with pytest.raises(DatasetError, match=r"topic\(s\) \['/arm/joint_states'\] not in bag"):
        tools.import_rosbag(bag, tmp_path / "d.zarr", {"/arm/joint_states": "observation"},
                            control_period_s=0.05)


def test_append_adds_to_the_same_robot_and_refuses_another_before_writing(tmp_path, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, StoragePlugin.SQLITE3)
    out = tmp_path / "d.zarr"
    args = ["import-rosbag", str(bag), "-o", str(out), "--topic", "/hand/command=action",
            "--period", "0.05", "--robot", "dclaw", "--task", "valve"]
    assert main(args) == 0
    assert main(args) == 1  # exists, and neither --append nor --overwrite
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--append"]) == 0
    assert EpisodeStore.open(out).n_episodes == 2
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main([*args[:-4], "--robot", "arm", "--task", "valve", "--append"]) == 1
    err = capsys.readouterr().err
    assert f"{out}: recorded with robot 'dclaw' (this one: 'arm')" in err
    assert err.count("\n") == 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert EpisodeStore.open(out).n_episodes == 2
