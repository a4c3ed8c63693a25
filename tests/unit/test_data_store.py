"""EpisodeStore and EpisodeWriter on real zarr directory stores."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
import zarr

from robot_rl.data import (
    DatasetError,
    EpisodeStore,
    EpisodeWriter,
    SchemaError,
    calibration_digest,
    tools,
    transitions,
)
from robot_rl.data.store import remove_store

UNITS = {"observation": "rad", "action": "rad", "reward": "1", "camera_depth": "mm"}


def make_episode(seed: int, length: int, image: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = {
        "observation": rng.standard_normal((length, 5)).astype(np.float32),
        "action": rng.uniform(-1, 1, (length, 3)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "terminated": np.arange(length) == length - 1,
    }
    if image:
        steps["camera_color"] = rng.integers(0, 256, (length, 12, 16, 3), dtype=np.uint8)
        steps["camera_depth"] = rng.integers(0, 4000, (length, 12, 16), dtype=np.uint16)
    return steps


def new_store(path, **kw) -> EpisodeStore:
    return EpisodeStore.create(path, robot="dclaw", task="valve", calibration_digest="c0ffee",
                               units=UNITS, **kw)


def assert_steps_equal(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_round_trip_with_images(tmp_path):
    path = tmp_path / "d.zarr"
    store = new_store(path, extra={"site": "lab"})
    episodes = [make_episode(s, n) for s, n in ((1, 7), (2, 1), (3, 12))]
    for i, ep in enumerate(episodes):
        assert store.add_episode(ep, {"operator": "ann", "success": i != 1, "seed": i}) == i

    reader = EpisodeStore.open(path)
    assert reader.n_episodes == 3 and reader.n_steps == 20
    assert reader.keys == tuple(sorted(episodes[0]))
    np.testing.assert_array_equal(reader.episode_ends, [7, 8, 20])
    for i, ep in enumerate(episodes):
        assert_steps_equal(reader.episode(i), ep)
    assert_steps_equal(reader.episode(-1), episodes[2])
    streamed = list(reader.iter_episodes(["camera_depth", "reward"]))
    assert [i for i, _ in streamed] == [0, 1, 2]
    np.testing.assert_array_equal(streamed[2][1]["camera_depth"], episodes[2]["camera_depth"])
    np.testing.assert_array_equal(reader.read("action"),
                                  np.concatenate([e["action"] for e in episodes]))
    info = reader.episode_info(1)
    assert info["operator"] == "ann" and info["success"] is False and info["seed"] == 1
    assert info["calibration_digest"] == "c0ffee" and "created_utc" in info
    attrs = reader.attrs
    assert attrs["format_version"] == 1 and attrs["robot"] == "dclaw"
    assert attrs["units"] == UNITS and attrs["extra"] == {"site": "lab"}
    # layout promised to other readers: images one frame per chunk, blosc-lz4
    raw = zarr.open_group(str(path), mode="r")
    assert raw["data/camera_color"].chunks == (1, 12, 16, 3)
    assert raw["data/observation"].chunks[0] > 100
    assert raw["data/observation"].compressor.cname == "lz4"
    assert raw["meta/episode_ends"].dtype == np.int64
    with pytest.raises(IndexError):
        reader.episode(3)


def test_info_is_json(tmp_path):
    path = tmp_path / "d.zarr"
    store = new_store(path)
    store.add_episode(make_episode(1, 4), {"success": True})
    store.add_episode(make_episode(2, 6), {"success": False})
    summary = json.loads(json.dumps(tools.info(path)))
    assert summary["n_episodes"] == 2 and summary["n_steps"] == 10
    assert summary["episode_length"] == {"min": 4, "mean": 5.0, "max": 6}
    assert summary["success"] == {"labelled": 2, "succeeded": 1}
    assert summary["keys"]["camera_color"]["step_shape"] == [12, 16, 3]
    assert summary["keys"]["camera_color"]["image"] is True
    assert summary["keys"]["camera_depth"]["unit"] == "mm"
    assert summary["keys"]["reward"]["dtype"] == "float32"
    assert summary["uncommitted_steps"] == 0


def test_schema_mismatch_names_key_expected_and_got(tmp_path):
    store = new_store(tmp_path / "d.zarr")
    store.add_episode(make_episode(1, 3))
    bad = make_episode(2, 3)
    bad["observation"] = bad["observation"].astype(np.float64)
    with pytest.raises(SchemaError, match=r"'observation' expected float32\[5\].*got float64\[5\]"):
        store.add_episode(bad)
    bad = make_episode(2, 3)
    bad["camera_color"] = bad["camera_color"][:, :, :8]
    with pytest.raises(SchemaError, match=r"camera_color.*\[12, 16, 3\].*\[12, 8, 3\]"):
        store.add_episode(bad)
    bad = make_episode(2, 3)
    del bad["reward"]
    with pytest.raises(SchemaError, match=r"missing \['reward'\]"):
        store.add_episode(bad)
    bad = make_episode(2, 3)
    bad["action"] = bad["action"][:2]
    with pytest.raises(SchemaError, match="different numbers of steps"):
        store.add_episode(bad)
    with pytest.raises(DatasetError, match="cannot be stored"):
        store.add_episode(make_episode(2, 3), {"when": object()})
    assert EpisodeStore.open(store.path).n_episodes == 1  # failed adds leave nothing visible


def test_open_errors_name_path_and_problem(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    path = tmp_path / "d.zarr"
    store = new_store(path)
    store.add_episode(make_episode(1, 5))
    store.add_episode(make_episode(2, 5))
    with pytest.raises(DatasetError, match="already exists"):
        new_store(path)
    with pytest.raises(DatasetError, match="no key"):
        EpisodeStore.open(path).read("nope")

    root = zarr.open_group(str(path), mode="a")
    root.attrs["format_version"] = 99
    with pytest.raises(DatasetError, match=r"d\.zarr: format_version 99 is not supported"):
        EpisodeStore.open(path)
    root.attrs["format_version"] = 1

    root["data/action"].resize(7, 3)  # truncated: committed episodes need 10 rows
    with pytest.raises(DatasetError, match=r"data/action has 7 rows .* need 10"):
        EpisodeStore.open(path)
    root["data/action"].resize(10, 3)

    ends = root["meta/episode_ends"]
    ends[1] = 3
    with pytest.raises(DatasetError, match="not strictly increasing at episode 1"):
        EpisodeStore.open(path)
    ends[1] = 10
    (path / "data" / "observation" / "0.0").write_bytes(b"garbage")
    reader = EpisodeStore.open(path)
    with pytest.raises(DatasetError, match="data/observation, episode 0: unreadable chunk"):
        reader.episode(0)


def test_read_only_store_refuses_writes(tmp_path):
    new_store(tmp_path / "d.zarr").add_episode(make_episode(1, 2))
    reader = EpisodeStore.open(tmp_path / "d.zarr")
    with pytest.raises(DatasetError, match="read-only"):
        reader.add_episode(make_episode(2, 2))


@pytest.mark.parametrize("background", [False, True])
def test_writer_streams_steps_and_commits(tmp_path, background):
    path = tmp_path / "d.zarr"
    store = new_store(path)
    want = [make_episode(s, n) for s, n in ((1, 9), (2, 4))]
    with EpisodeWriter(store, flush_every_steps=4, background=background) as writer:
        for ep in want:
            for t in range(len(ep["reward"])):
                writer.append({k: v[t] for k, v in ep.items()})
            writer.commit({"success": True})
        # images reach the disk as they arrive; an uncommitted episode is invisible
        ep = make_episode(3, 6)
        for t in range(6):
            writer.append({k: v[t] for k, v in ep.items()})
        if background:
            writer._drain()
        assert zarr.open_array(str(path / "data" / "camera_color"), mode="r").shape[0] >= 19
        assert EpisodeStore.open(path).n_episodes == 2
        writer.discard()
        assert zarr.open_array(str(path / "data" / "camera_color"), mode="r").shape[0] == 13
        # plain Python scalars take the dataset's dtype
        step = {k: v[0] for k, v in want[0].items()}
        step["reward"] = 0.5
        writer.append(step)
        writer.commit()
    reader = EpisodeStore.open(path)
    assert reader.n_episodes == 3
    for i, ep in enumerate(want):
        assert_steps_equal(reader.episode(i), ep)
    assert reader.episode(2)["reward"].tolist() == [0.5]


def test_writer_rejects_mismatched_step_and_empty_commit(tmp_path):
    store = new_store(tmp_path / "d.zarr")
    writer = EpisodeWriter(store)
    with pytest.raises(DatasetError, match="no steps"):
        writer.commit()
    ep = make_episode(1, 2, image=False)
    writer.append({k: v[0] for k, v in ep.items()})
    bad = {k: v[1] for k, v in ep.items()}
    bad["action"] = np.zeros(4, np.float32)
    with pytest.raises(SchemaError, match=r"step 1: key 'action' expected float32\[3\] per step, "
                                          r"got float32\[4\]"):
        writer.append(bad)
    with pytest.raises(DatasetError, match="in progress"):
        store.add_episode(ep)
    writer.discard()
    # no episode was ever committed: the discarded one does not fix the schema
    store.add_episode({"x": np.ones((2, 2), np.float64)})
    assert EpisodeStore.open(store.path).keys == ("x",)


def test_append_mode_trims_uncommitted_tail(tmp_path, caplog):
    path = tmp_path / "d.zarr"
    store = new_store(path)
    store.add_episode(make_episode(1, 5))
    writer = EpisodeWriter(store, flush_every_steps=1)
    ep = make_episode(2, 8)
    for t in range(8):
        writer.append({k: v[t] for k, v in ep.items()})
    # a crash now: rows on disk, no commit; the kernel would drop the dead writer's lock
    store.close()
    (path / "data" / "observation" / "0.0.deadbeef.partial").write_bytes(b"half")
    assert EpisodeStore.open(path).n_steps == 5
    with caplog.at_level(logging.WARNING):
        recovered = EpisodeStore.open(path, "a")
    assert recovered.recovery is not None and recovered.recovery.dropped_steps >= 8
    assert recovered.recovery.removed_partial_files == 1
    assert "step rows past the last commit" in caplog.text
    assert zarr.open_array(str(path / "data" / "camera_color"), mode="r").shape[0] == 5
    recovered.add_episode(make_episode(3, 2))
    assert_steps_equal(EpisodeStore.open(path).episode(1), make_episode(3, 2))
    recovered.close()
    assert EpisodeStore.open(path, "a").recovery is None


def test_transitions(tmp_path):
    store = new_store(tmp_path / "d.zarr")
    eps = [make_episode(1, 4, image=False), make_episode(2, 3, image=False)]
    eps[1]["terminated"][:] = False  # truncated episode: its last step has no successor
    for ep in eps:
        store.add_episode(ep)
    out = transitions(store.path)
    obs = [e["observation"] for e in eps]
    np.testing.assert_array_equal(out["observation"], np.concatenate([obs[0], obs[1][:2]]))
    np.testing.assert_array_equal(out["next_observation"],
                                  np.concatenate([obs[0][1:], obs[0][3:], obs[1][1:]]))
    np.testing.assert_array_equal(out["done"], [0, 0, 0, 1, 0, 0])
    assert out["done"].dtype == np.float32 and len(out["action"]) == len(out["reward"]) == 6

    with_next = new_store(tmp_path / "n.zarr")
    ep = make_episode(3, 4, image=False)
    ep["next_observation"] = ep["observation"] + 1
    with_next.add_episode(ep)
    out = transitions(with_next)
    np.testing.assert_array_equal(out["next_observation"], ep["observation"] + 1)
    with pytest.raises(DatasetError, match="transitions need key"):
        transitions(new_store(tmp_path / "e.zarr"))


def test_calibration_digest(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("joints:\n  - name: j0\n    offset_rad: 0.1\nbus: {port: /dev/ttyUSB0}\n")
    b = tmp_path / "b.yml"
    b.write_text("# reordered, commented\nbus:\n  port: /dev/ttyUSB0\njoints: [{offset_rad: 0.1,"
                 " name: j0}]\n")
    digest = calibration_digest(a)
    assert len(digest) == 16 and digest == calibration_digest(str(b))
    assert digest == calibration_digest(a.read_text())
    assert digest != calibration_digest(a.read_text().replace("0.1", "0.2"))
    with pytest.raises(DatasetError, match="cannot read calibration"):
        calibration_digest(tmp_path / "missing.yaml")


def test_one_appender_at_a_time(tmp_path):
    path = tmp_path / "d.zarr"
    store = new_store(path)
    store.add_episode(make_episode(1, 2))
    with pytest.raises(DatasetError, match=r"open for appending by another writer \(pid \d+\)"):
        EpisodeStore.open(path, "a")
    with pytest.raises(DatasetError, match="open for appending"):
        new_store(path, overwrite=True)
    assert EpisodeStore.open(path).n_episodes == 1  # readers are never blocked
    store.close()
    with EpisodeStore.open(path, "a") as again:
        again.add_episode(make_episode(2, 3))
    assert EpisodeStore.open(path).n_episodes == 2


# ---- nothing recorded is deleted unasked -------------------------------------------------------
def test_overwrite_replaces_a_store_and_never_a_file_or_another_folder(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("lab notes")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"jpeg")
    store = tmp_path / "d.zarr"
    new_store(store).add_episode(make_episode(1, 3))
    link = tmp_path / "link.zarr"
    link.symlink_to(store, target_is_directory=True)
    for path, why in ((notes, "is a file, not a dataset"),
                      (folder, r"is a folder but not a zarr store \(no \.zgroup\)"),
                      (link, "is a symbolic link")):
        for overwrite in (False, True):
            with pytest.raises(DatasetError, match=f"{path.name}: {why}.*even with --overwrite"):
                new_store(path, overwrite=overwrite)
        with pytest.raises(DatasetError, match=why):
            remove_store(path)
        with pytest.raises(DatasetError, match=why):
            EpisodeStore.create_or_append(path, robot="dclaw", task="valve",
                                          calibration_digest="c0ffee", units=UNITS)
    assert notes.read_text() == "lab notes"
    assert [p.name for p in folder.iterdir()] == ["a.jpg"]
    assert EpisodeStore.open(store).n_episodes == 1  # not deleted through the link

    with pytest.raises(DatasetError, match=r"d\.zarr: already exists; pass --overwrite"):
        new_store(store)
    assert EpisodeStore.open(store).n_episodes == 1
    assert new_store(store, overwrite=True).n_episodes == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert new_store(empty, overwrite=True).n_episodes == 0  # an empty folder holds nothing


def test_create_or_append_appends_to_the_same_source_and_refuses_another(tmp_path):
    path = tmp_path / "d.zarr"
    source = {"robot": "dclaw", "task": "valve", "calibration_digest": "c0ffee", "units": UNITS,
              "extra": {"action_mode": "relative"}}
    with EpisodeStore.create_or_append(path, **source) as store:
        store.add_episode(make_episode(1, 3))
    with EpisodeStore.create_or_append(path, **source) as store:  # a second session adds to it
        store.add_episode(make_episode(2, 4))
    np.testing.assert_array_equal(EpisodeStore.open(path).episode_lengths, [3, 4])
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    for change, named in (({"robot": "arm"}, "robot 'dclaw' (this one: 'arm')"),
                          ({"task": "drawer"}, "task 'valve' (this one: 'drawer')"),
                          ({"calibration_digest": "beef"}, "calibration_digest 'c0ffee'"),
                          ({"units": {**UNITS, "action": "deg"}}, "unit of 'action' 'rad'"),
                          ({"extra": {"action_mode": "absolute"}},
                           "extra 'action_mode' 'relative' (this one: 'absolute')")):
        with pytest.raises(DatasetError, match=re.escape(named) + ".*appending would mix"):
            EpisodeStore.create_or_append(path, **{**source, **change})
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    with EpisodeStore.create_or_append(path, **{**source, "robot": "arm"}, overwrite=True) as new:
        assert new.n_episodes == 0 and new.attrs["robot"] == "arm"


# ---- missing data never passes as data --------------------------------------------------------
CHUNK_KEYS = {"observation": "0.0", "terminated": "0", "camera_depth": "1.0.0",
              "camera_color": "1.0.0.0"}


@pytest.mark.parametrize("key", sorted(CHUNK_KEYS))
def test_a_lost_chunk_is_refused_at_every_read_whatever_the_dtype(tmp_path, key):
    """Float, bool, and image (uint8, uint16) keys: a bool or an image has no spare value that
    could mark a chunk as missing, so its absence is checked on every read."""
    path = tmp_path / "d.zarr"
    store = new_store(path)
    for seed in range(3):
        store.add_episode(make_episode(seed, 1), {"seed": seed})
    (path / "data" / key / CHUNK_KEYS[key]).unlink()
    episode = 1 if key.startswith("camera") else 0  # images: one frame a chunk
    reader = EpisodeStore.open(path)
    with pytest.raises(DatasetError, match=rf"d\.zarr: data/{key}, episode {episode}: chunk "
                                           rf"{CHUNK_KEYS[key][0]} \(rows .*\) is missing"):
        reader.episode(episode)
    with pytest.raises(DatasetError, match=f"data/{key}.* is missing"):
        reader.read(key)
    assert reader.episode(2 - episode, ["reward"])  # the other keys still read
    problems = [p for p in tools.validate(path) if p.severity == "error"]
    assert [(p.key, p.episode) for p in problems] == [(key, episode)]
    assert "1 chunk(s) missing" in problems[0].message


def test_float_arrays_fill_with_nan_so_a_lost_chunk_reads_as_no_number(tmp_path):
    path = tmp_path / "d.zarr"
    new_store(path).add_episode(make_episode(1, 4))
    raw = zarr.open_group(str(path), mode="r")
    assert np.isnan(raw["data/reward"].fill_value) and np.isnan(raw["data/action"].fill_value)
    assert raw["data/terminated"].fill_value == 0 and raw["data/camera_color"].fill_value == 0
    (path / "data" / "reward" / "0").unlink()
    assert np.isnan(raw["data/reward"][:]).all()  # what any reader of the raw array sees


def test_stores_written_before_fill_values_open_and_are_checked_by_chunk_presence(tmp_path):
    """Stores from before fill values have fill_value null (an absent chunk reads as whatever
    memory held): they open as before, and the chunk-presence check covers them the same way."""
    path = tmp_path / "old.zarr"
    store = new_store(path)
    for seed in range(2):
        store.add_episode(make_episode(seed, 3))
    for meta in (path / "data").glob("*/.zarray"):
        fields = json.loads(meta.read_text())
        fields["fill_value"] = None
        meta.write_text(json.dumps(fields))
    assert zarr.open_array(str(path / "data" / "reward"), mode="r").fill_value is None
    assert_steps_equal(EpisodeStore.open(path).episode(1), make_episode(1, 3))
    assert tools.validate(path) == []
    (path / "data" / "reward" / "0").unlink()
    with pytest.raises(DatasetError, match=r"data/reward, episode 0: chunk 0 .* is missing"):
        EpisodeStore.open(path).episode(0)
    with pytest.raises(DatasetError, match="data/reward.* is missing"):
        transitions(path)
    assert [(p.key, p.severity) for p in tools.validate(path)] == [("reward", "error")]


def test_training_refuses_what_validate_refuses_naming_store_key_episode_and_step(tmp_path):
    path = tmp_path / "d.zarr"
    store = new_store(path)
    for seed in range(3):
        store.add_episode(make_episode(seed, 4, image=False))
    zarr.open_group(str(path), mode="a")["data/action"][9, 2] = np.inf  # episode 2, step 1
    with pytest.raises(DatasetError, match=r"d\.zarr: data/action, episode 2 step 1: NaN or "
                                           r"inf \(1 step\(s\) of action hold one\)"):
        transitions(path)
    assert [(p.key, p.episode) for p in tools.validate(path)] == [("action", 2)]


def damaged_copies(source, tmp_path):
    """(file, damage, path of a damaged copy) for every file of ``source`` and three damages:
    deleted, truncated to half, overwritten with other bytes."""
    files = sorted(p.relative_to(source) for p in source.rglob("*")
                   if p.is_file() and p.name != ".lock")
    for n, name in enumerate(files):
        for damage in ("deleted", "truncated", "garbage"):
            copy = tmp_path / f"{n}_{damage}.zarr"
            shutil.copytree(source, copy)
            target = copy / name
            data = target.read_bytes()
            if damage == "deleted":
                target.unlink()
            elif damage == "truncated":
                target.write_bytes(data[: len(data) // 2])
            else:
                target.write_bytes(bytes(range(256))[: max(8, len(data))])
            yield name, damage, copy


def test_every_damaged_file_is_one_line_naming_the_store_in_validate_and_in_training(
        tmp_path, capsys):
    """Each file of a store deleted, truncated or overwritten: ``dataset validate`` exits 1 with
    one-line problems (no traceback), and loading for training refuses it with one line naming
    the store, unless the file belongs to a key that training does not read (validate still
    refuses it)."""
    from robot_rl.dataset_cli import main as dataset_cli

    source = tmp_path / "source.zarr"
    store = new_store(source)
    for seed in range(2):
        store.add_episode(make_episode(seed, 3), {"seed": seed})
    store.close()
    checked = 0
    for name, damage, path in damaged_copies(source, tmp_path / "copies"):
        where = f"{name} {damage}"
        code = dataset_cli(["validate", str(path), "--quiet"])
        out, err = capsys.readouterr()
        assert code == 1, where
        assert "Traceback" not in out + err and "error" in out, where
        assert all(len(line) < 400 for line in out.splitlines()), where
        parts = name.parts
        read_by_training = not (parts[0] == "data" and len(parts) == 3
                                and parts[1].startswith("camera"))
        if read_by_training:
            with pytest.raises(DatasetError) as caught:
                transitions(path)
            assert str(caught.value).startswith(f"{path}: "), where
            assert "\n" not in str(caught.value), where
        checked += 1
    assert checked > 40
