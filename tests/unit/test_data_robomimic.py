"""robomimic HDF5 import: what the export writes comes back as it was; a file robot_rl did not
write (robomimic's own layout, written here with h5py) imports with the names given."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from robot_rl.cli import main as cli_main
from robot_rl.data import DatasetError, EpisodeStore
from robot_rl.data.robomimic import export_robomimic_hdf5, import_robomimic_hdf5
from robot_rl.data.transition_arrays import action_mode_extra

LENGTHS = (5, 3, 12)


def build(path):
    rng = np.random.default_rng(3)
    store = EpisodeStore.create(path, robot="arm6", task="robot_rl/DrawerOpen-v0",
                                calibration_digest="cal9", units={"observation": "SI"},
                                extra=action_mode_extra("relative"))
    for index, length in enumerate(LENGTHS):
        truncated = np.arange(length) == length - 1 if index == 1 else np.zeros(length, bool)
        store.add_episode({
            "observation": rng.normal(size=(length, 4)).astype(np.float32),
            "next_observation": rng.normal(size=(length, 4)).astype(np.float32),
            "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
            "reward": rng.normal(size=length).astype(np.float32),
            "terminated": (np.arange(length) == length - 1) & (index != 1),
            "truncated": truncated,
            "camera_color": rng.integers(0, 256, (length, 6, 8, 3), dtype=np.uint8)},
            {"success": index != 1, "seed": index, "kind": "noisy"})
    return store


def test_export_then_import_loses_nothing(tmp_path):
    with build(tmp_path / "src.zarr") as src:
        pass
    src = EpisodeStore.open(tmp_path / "src.zarr")
    export_robomimic_hdf5(src.path, tmp_path / "demos.hdf5")
    summary = import_robomimic_hdf5(tmp_path / "demos.hdf5", tmp_path / "back.zarr")
    assert summary["n_episodes"] == len(LENGTHS)
    back = EpisodeStore.open(tmp_path / "back.zarr")
    for name in ("robot", "task", "calibration_digest", "units", "extra"):
        assert back.attrs[name] == src.attrs[name], name
    assert np.array_equal(back.episode_ends, src.episode_ends)
    assert back.specs == src.specs  # truncated too, though robomimic has no place for it
    for index in range(src.n_episodes):
        ours, theirs = src.episode(index), back.episode(index)
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours), index
    assert back.episode_infos() == src.episode_infos()


def test_a_robomimic_file_from_elsewhere_imports_in_demo_order(tmp_path):
    path = tmp_path / "theirs.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for number, length in ((10, 2), (2, 3)):  # demo_2 comes before demo_10
            demo = data.create_group(f"demo_{number}")
            demo.attrs["num_samples"] = length
            demo.create_dataset("actions", data=np.full((length, 7), number, np.float64))
            demo.create_dataset("rewards", data=np.zeros(length))
            demo.create_dataset("dones", data=np.arange(length) == length - 1)
            demo.create_group("obs").create_dataset("robot0_eef_pos",
                                                    data=np.ones((length, 3), np.float32))
    assert cli_main(["dataset", "import", str(path), "--out", str(tmp_path / "lift.zarr"),
                     "--robot", "panda", "--quiet"]) == 0
    store = EpisodeStore.open(tmp_path / "lift.zarr")
    assert store.attrs["robot"] == "panda" and store.attrs["task"] == "Lift"
    assert store.attrs["calibration_digest"] == "unknown"
    assert store.episode_lengths.tolist() == [3, 2]
    assert store.episode(0)["action"][0, 0] == 2 and store.episode(1)["action"][0, 0] == 10
    assert store.episode(0)["terminated"].tolist() == [False, False, True]
    assert [i["source_demo"] for i in store.episode_infos()] == ["demo_2", "demo_10"]


def test_bad_files_are_one_line_and_write_nothing(tmp_path, capsys):
    notes = tmp_path / "notes.hdf5"
    notes.write_text("not hdf5")
    assert cli_main(["dataset", "import", str(notes), "--out", str(tmp_path / "x.zarr")]) == 1
    assert "not an HDF5 file" in capsys.readouterr().err
    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as f:
        demo = f.create_group("data").create_group("demo_0")
        demo.create_dataset("actions", data=np.zeros((3, 2)))
        demo.create_dataset("rewards", data=np.zeros(2))  # one step short
        demo.create_dataset("dones", data=np.zeros(3, bool))
    with pytest.raises(DatasetError, match="demo_0: datasets of different lengths"):
        import_robomimic_hdf5(path, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()
