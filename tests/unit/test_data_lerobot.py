"""LeRobotDataset v3.0 export and import: the round trip loses nothing, and the real lerobot package
(0.4.4, in its own venv: ``make lerobot-venv``; it pins torch<2.11) loads what robot_rl writes and
writes what robot_rl imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from robot_rl.cli import main as cli_main  # noqa: E402
from robot_rl.data import EpisodeStore  # noqa: E402
from robot_rl.data.errors import DatasetError  # noqa: E402
from robot_rl.data.lerobot import export_lerobot, import_lerobot  # noqa: E402
from robot_rl.data.transition_arrays import transitions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("lerobot_probe.py")
LENGTHS = (7, 4, 9)
FPS = 20


def lerobot_python() -> Path | None:
    """The lerobot venv's interpreter (``make lerobot-venv``; ROBOT_RL_LEROBOT_PYTHON overrides)."""
    path = Path(os.environ.get("ROBOT_RL_LEROBOT_PYTHON", REPO / ".venv-lerobot/bin/python"))
    return path if path.exists() else None


needs_lerobot = pytest.mark.skipif(
    lerobot_python() is None, reason="lerobot's venv is missing: `make lerobot-venv` (make test "
                                     "builds it) or set ROBOT_RL_LEROBOT_PYTHON")


def run_probe(command: str, root: Path, expected: Path) -> dict:
    python = lerobot_python()
    assert python is not None
    done = subprocess.run([str(python), str(PROBE), command, str(root), str(expected)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_store(path: Path, seed: int = 0) -> EpisodeStore:
    """Every kind of key a robot_rl dataset holds: task transitions, a float64 clock, a colour
    camera (a video in LeRobot) and a uint16 depth image (a parquet array), an int counter."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(path, robot="dclaw", task="robot_rl/ValveTurn-v0",
                                calibration_digest="c0ffee", units={"observation": "SI",
                                                                    "stamp_s": "s"},
                                extra={"action_mode": "relative"})
    for index, length in enumerate(LENGTHS):
        terminated = np.zeros(length, bool)
        truncated = np.zeros(length, bool)
        (truncated if index == 1 else terminated)[-1] = True
        store.add_episode({
            "observation": rng.normal(size=(length, 6)).astype(np.float32),
            "next_observation": rng.normal(size=(length, 6)).astype(np.float32),
            "action": rng.uniform(-1, 1, (length, 3)).astype(np.float32),
            "reward": rng.normal(size=length).astype(np.float32),
            "terminated": terminated, "truncated": truncated,
            "stamp_s": 1e9 + index * 10 + np.arange(length) / FPS,
            "camera_color": rng.integers(0, 256, (length, 24, 32, 3), dtype=np.uint8),
            "camera_depth": rng.integers(0, 65535, (length, 24, 32), dtype=np.uint16),
            "tick": np.arange(length, dtype=np.int32)},
            {"success": index != 1, "seed": 100 + index, "kind": "clean", "operator": "ann"})
    return store


def assert_same_store(a: EpisodeStore, b: EpisodeStore) -> None:
    for name in ("robot", "task", "calibration_digest", "units", "extra", "format_version"):
        assert a.attrs[name] == b.attrs[name], name
    assert np.array_equal(a.episode_ends, b.episode_ends)
    assert a.specs == b.specs
    for index in range(a.n_episodes):
        ours, back = a.episode(index), b.episode(index)
        for key in ours:
            assert np.array_equal(ours[key], back[key]), (index, key)
    assert a.episode_infos() == b.episode_infos()


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    with make_store(tmp_path / "src.zarr"):
        pass
    return EpisodeStore.open(tmp_path / "src.zarr")


def test_round_trip_zarr_lerobot_zarr_loses_nothing(store: EpisodeStore, tmp_path: Path) -> None:
    summary = export_lerobot(store.path, tmp_path / "lr")
    assert summary["fps"] == FPS  # from stamp_s
    assert summary["videos"] == ["observation.images.camera_color"]
    import_lerobot(tmp_path / "lr", tmp_path / "back.zarr")
    back = EpisodeStore.open(tmp_path / "back.zarr")
    assert_same_store(store, back)
    ours, theirs = transitions(store), transitions(back)
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_export_layout_is_lerobot_v3(store: EpisodeStore, tmp_path: Path) -> None:
    root = tmp_path / "lr"
    export_lerobot(store.path, root, task_text="turn the valve by 180 degrees")
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["total_episodes"] == len(LENGTHS) and info["total_frames"] == sum(LENGTHS)
    features = info["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [6], "names": None}
    assert features["next.reward"]["shape"] == [1] and features["next.done"]["dtype"] == "bool"
    assert features["observation.images.camera_color"]["dtype"] == "video"
    assert features["camera_depth"] == {"dtype": "uint16", "shape": [24, 32], "names": None}
    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    frame = np.concatenate([np.arange(n) for n in LENGTHS])
    assert data["frame_index"] == frame.tolist()
    assert data["index"] == list(range(sum(LENGTHS)))
    # timestamps exactly frame_index / fps, stored as LeRobot stores them (float32)
    assert np.array_equal(np.array(data["timestamp"], np.float32),
                          (frame / FPS).astype(np.float32))
    assert data["next.done"] == [bool(t or u) for t, u in zip(data["next.terminated"],
                                                              data["next.truncated"])]
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    assert [e["dataset_from_index"] for e in episodes] == starts.tolist()
    key = "videos/observation.images.camera_color"
    assert [e[f"{key}/from_timestamp"] for e in episodes] == (starts / FPS).tolist()
    assert [e["tasks"] for e in episodes] == [["turn the valve by 180 degrees"]] * 3
    assert sorted(p.name for p in (root / "videos").iterdir()) == [
        "observation.images.camera_color"]
    stats = json.loads((root / "meta/stats.json").read_text())
    observation = store.read("observation").astype(np.float64)
    assert np.allclose(stats["observation.state"]["mean"], observation.mean(axis=0))
    assert np.allclose(stats["observation.state"]["std"], observation.std(axis=0))
    assert stats["observation.images.camera_color"]["count"] == [sum(LENGTHS)]


@needs_lerobot
def test_lerobot_loads_the_export_frame_for_frame(store: EpisodeStore, tmp_path: Path) -> None:
    root = tmp_path / "lr"
    export_lerobot(store.path, root)
    expected = {"observation.state": store.read("observation"), "action": store.read("action"),
                "next.reward": store.read("reward"), "next.terminated": store.read("terminated"),
                "camera_depth": store.read("camera_depth").astype(np.int64),
                "tick": store.read("tick").astype(np.int64),
                "observation.images.camera_color": store.read("camera_color")}
    np.savez(tmp_path / "expected.npz", __lengths__=np.array(LENGTHS), __fps__=FPS, **expected)
    result = run_probe("check", root, tmp_path / "expected.npz")
    assert result["frames"] == sum(LENGTHS) and result["episodes"] == len(LENGTHS)
    assert result["video_keys"] == ["observation.images.camera_color"]
    assert result["tasks"] == ["robot_rl/ValveTurn-v0"]


@needs_lerobot
def test_import_a_dataset_that_lerobot_wrote(tmp_path: Path) -> None:
    root, expected = tmp_path / "native", tmp_path / "native.npz"
    run_probe("make", root, expected)
    written = np.load(expected)
    import_lerobot(root, tmp_path / "imported.zarr")
    store = EpisodeStore.open(tmp_path / "imported.zarr")
    assert store.n_episodes == 2 and store.episode_lengths.tolist() == [6, 4]
    assert store.attrs["robot"] == "so100" and store.attrs["task"] == "pick the cube"
    assert np.array_equal(store.read("observation"), written["observation.state"])
    assert np.array_equal(store.read("action"), written["action"])
    assert np.array_equal(store.read("reward"), written["next.reward"].reshape(-1))
    assert np.array_equal(store.read("terminated"), written["next.done"].reshape(-1))
    # the camera as lerobot itself decodes it (its writer's codec is lossy)
    assert np.array_equal(store.read("top"), written["decoded.observation.images.top"])
    # both episodes end done: every step is a transition (ready to pretrain on)
    assert transitions(store)["observation"].shape == (10, 5)


def test_lossy_video_codec_keeps_everything_else_exact(store: EpisodeStore,
                                                       tmp_path: Path) -> None:
    export_lerobot(store.path, tmp_path / "lr", video_codec="h264")
    import_lerobot(tmp_path / "lr", tmp_path / "back.zarr")
    back = EpisodeStore.open(tmp_path / "back.zarr")
    for key in store.keys:
        if key != "camera_color":
            assert np.array_equal(store.read(key), back.read(key)), key
    assert back.read("camera_color").shape == store.read("camera_color").shape


def test_existing_outputs_are_refused_and_never_a_foreign_path(store: EpisodeStore,
                                                               tmp_path: Path) -> None:
    root = tmp_path / "lr"
    export_lerobot(store.path, root)
    with pytest.raises(DatasetError, match="already exists; pass --overwrite"):
        export_lerobot(store.path, root)
    export_lerobot(store.path, root, overwrite=True)  # a LeRobot dataset: replaced
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        export_lerobot(store.path, notes, overwrite=True)
    assert (notes / "keep.txt").read_text() == "mine"
    with pytest.raises(DatasetError, match="already exists"):
        import_lerobot(root, store.path)
    assert EpisodeStore.open(store.path).n_episodes == len(LENGTHS)


def test_a_failed_import_leaves_nothing(store: EpisodeStore, tmp_path: Path) -> None:
    root = tmp_path / "lr"
    export_lerobot(store.path, root)
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    lengths = table.column("length").to_pylist()
    lengths[2] += 1  # meta/episodes disagrees with the data files at the last episode
    pq.write_table(table.set_column(table.column_names.index("length"), "length",
                                    pa.array(lengths, pa.int64())), path)
    with pytest.raises(DatasetError, match="episode 2: meta/episodes says 10 frames"):
        import_lerobot(root, tmp_path / "back.zarr")
    assert not (tmp_path / "back.zarr").exists()


def test_other_lerobot_versions_are_refused_by_name(store: EpisodeStore, tmp_path: Path) -> None:
    root = tmp_path / "lr"
    export_lerobot(store.path, root)
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(DatasetError, match="codebase_version 'v2.1'.*convert_dataset_v21_to_v30"):
        import_lerobot(root, tmp_path / "back.zarr")


def test_cli_export_and_import(store: EpisodeStore, tmp_path: Path, capsys) -> None:
    root, back = tmp_path / "lr", tmp_path / "back.zarr"
    assert cli_main(["dataset", "export", str(store.path), "--format", "lerobot", "--out",
                     str(root), "--quiet"]) == 0
    assert "LeRobotDataset v3.0, 3 episodes, 20 frames at 20 fps" in capsys.readouterr().out
    assert cli_main(["dataset", "import", str(root), "--out", str(back), "--quiet"]) == 0
    assert "as exported" in capsys.readouterr().out
    assert_same_store(store, EpisodeStore.open(back))


def test_cli_export_without_a_rate_asks_for_fps(tmp_path: Path, capsys) -> None:
    with EpisodeStore.create(tmp_path / "s.zarr", robot="r", task="t", calibration_digest="d",
                             units={}) as store:
        store.add_episode({"observation": np.zeros((3, 2), np.float32),
                           "action": np.zeros((3, 1), np.float32)})
    assert cli_main(["dataset", "export", str(store.path), "--format", "lerobot", "--out",
                     str(tmp_path / "lr")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --fps" in err
    assert not (tmp_path / "lr").exists()
    assert cli_main(["dataset", "export", str(store.path), "--format", "lerobot", "--fps", "10",
                     "--out", str(tmp_path / "lr")]) == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
