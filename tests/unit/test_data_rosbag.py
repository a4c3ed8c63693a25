"""rosbag2 import: bags written with rosbags (sqlite3 and mcap), resampled onto a control clock."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.rosbags import (
    CMD_NS,
    IMG_NS,
    JS_NS,
    MARKER_NS,
    MS,
    TOPICS,
    command,
    image,
    joint_position,
    write_bag,
)
from rosbags.rosbag2 import StoragePlugin

from robot_rl.data import DatasetError, EpisodeStore, tools
from robot_rl.dataset_cli import main


def latest_index(times: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    return np.searchsorted(times, ticks, side="right") - 1


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
