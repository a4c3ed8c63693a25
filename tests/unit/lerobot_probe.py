"""Runs in the lerobot venv (``make lerobot-venv``), not in robot_rl's: lerobot 0.4.4 pins
torch<2.11 and cannot share robot_rl's venv (torch 2.13). tests/unit/test_data_lerobot.py calls it.

    python lerobot_probe.py check ROOT EXPECTED.npz   load ROOT with lerobot; compare every frame
    python lerobot_probe.py make ROOT EXPECTED.npz    write a dataset with lerobot's own writer

``check`` loads the folder with ``LeRobotDataset`` (the pyav video backend: torchcodec needs the
system's FFmpeg libraries) and compares every frame of every feature named in EXPECTED.npz
(``<feature>`` arrays over all frames, images as uint8 [T, H, W, 3]) with what lerobot returns,
images exactly; then lerobot's own metadata: fps, episodes, their lengths, tasks, stats. It prints
one JSON line with what it checked. ``make`` writes a two-episode dataset with a camera video and
saves what it wrote (and what lerobot decodes back) to EXPECTED.npz, for the import test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def check(root: Path, expected_path: Path) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    expected = dict(np.load(expected_path))
    lengths = expected.pop("__lengths__")
    fps = int(expected.pop("__fps__"))
    ds = LeRobotDataset("local/robot_rl_export", root=root, video_backend="pyav")
    n = int(lengths.sum())
    assert len(ds) == n, (len(ds), n)
    assert ds.num_episodes == len(lengths), (ds.num_episodes, len(lengths))
    assert ds.meta.fps == fps, (ds.meta.fps, fps)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    frame_index = np.concatenate([np.arange(k) for k in lengths])
    for i in range(n):
        item = ds[i]
        assert int(item["index"]) == i
        assert int(item["episode_index"]) == int(np.searchsorted(starts, i, side="right") - 1)
        assert int(item["frame_index"]) == frame_index[i]
        assert float(item["timestamp"]) == float(np.float32(frame_index[i] / fps)), \
            (i, float(item["timestamp"]))
        for name, values in expected.items():
            got = item[name].numpy()
            want = values[i]
            if name in ds.meta.video_keys:  # lerobot gives [C, H, W] float in [0, 1]
                got = np.rint(got.transpose(1, 2, 0) * 255.0).astype(np.uint8)
                assert np.array_equal(got, want), (name, i, np.abs(got.astype(int) - want).max())
            else:
                assert np.array_equal(got.reshape(want.shape), want), (name, i, got, want)
    episodes = ds.meta.episodes
    assert [int(e["length"]) for e in episodes] == lengths.tolist()
    stats = ds.meta.stats
    for name, values in expected.items():
        if name in ds.meta.video_keys:
            mean = values.reshape(-1, 3).mean(axis=0) / 255.0
            assert np.allclose(stats[name]["mean"].reshape(3), mean, atol=1e-6), name
        else:
            flat = values.reshape(n, -1).astype(np.float64)
            assert np.allclose(stats[name]["mean"].reshape(-1), flat.mean(axis=0)), name
            assert np.allclose(stats[name]["max"].reshape(-1), flat.max(axis=0)), name
    return {"frames": n, "episodes": ds.num_episodes, "fps": ds.meta.fps,
            "video_keys": list(ds.meta.video_keys), "features": sorted(expected),
            "tasks": list(ds.meta.tasks.index)}


def make(root: Path, expected_path: Path) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    rng = np.random.default_rng(7)
    features = {
        "observation.state": {"dtype": "float32", "shape": (5,), "names": None},
        "action": {"dtype": "float32", "shape": (3,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "observation.images.top": {"dtype": "video", "shape": (48, 64, 3),
                                   "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create("local/probe", fps=10, features=features, root=root,
                               robot_type="so100", use_videos=True, vcodec="h264")
    written: dict[str, list] = {k: [] for k in features}
    lengths = [6, 4]
    for length in lengths:
        for t in range(length):
            frame = {"observation.state": rng.normal(size=5).astype(np.float32),
                     "action": rng.uniform(-1, 1, 3).astype(np.float32),
                     "next.reward": np.array([float(t == length - 1)], np.float32),
                     "next.done": np.array([t == length - 1]),
                     # smooth images: a lossy codec keeps them close
                     "observation.images.top": np.full((48, 64, 3), 20 * t + 10, np.uint8)}
            for k, v in frame.items():
                written[k].append(v)
            ds.add_frame({**frame, "task": "pick the cube"})
        ds.save_episode()
    ds.finalize()
    loaded = LeRobotDataset("local/probe", root=root, video_backend="pyav")
    decoded = [np.rint(loaded[i]["observation.images.top"].numpy().transpose(1, 2, 0) * 255)
               .astype(np.uint8) for i in range(len(loaded))]
    arrays = {k.replace("/", "_"): np.stack(v) for k, v in written.items()}
    arrays["decoded.observation.images.top"] = np.stack(decoded)
    np.savez(expected_path, __lengths__=np.array(lengths), **arrays)
    return {"frames": sum(lengths), "episodes": len(lengths)}


if __name__ == "__main__":
    command, root, expected = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    result = {"check": check, "make": make}[command](root, expected)
    print(json.dumps(result))
