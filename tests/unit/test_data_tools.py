"""Dataset tools against numpy computed on the raw arrays; robomimic export read with h5py."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import zarr

from robot_rl.data import DatasetError, EpisodeStore, SchemaError, tools
from robot_rl.dataset_cli import add_parser, main

LENGTHS = (5, 3, 8, 4, 6, 2, 7)
ALL_SEEDS = tuple(range(len(LENGTHS)))


def episode(seed: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "observation": (rng.standard_normal((length, 4)) * (seed + 1)).astype(np.float32),
        "next_observation": rng.standard_normal((length, 4)).astype(np.float32),
        "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "terminated": np.arange(length) == length - 1,
        "camera_color": rng.integers(0, 256, (length, 6, 8, 3), dtype=np.uint8),
    }


def build(path, seeds=ALL_SEEDS, robot="dclaw", units=None, extra=None):
    store = EpisodeStore.create(path, robot=robot, task="valve", calibration_digest="cal1",
                                units=units or {"observation": "rad"}, extra=extra)
    for s in seeds:
        store.add_episode(episode(s, LENGTHS[s]), {"success": s % 2 == 0, "operator": f"op{s}"})
    return store


def test_validate_finds_injected_nan_at_episode_and_key(tmp_path):
    path = tmp_path / "d.zarr"
    build(path)
    assert tools.validate(path) == []
    root = zarr.open_group(str(path), mode="a")
    start = sum(LENGTHS[:4])  # episode 4, its step 2
    root["data/action"][start + 2, 1] = np.nan
    root["data/reward"][sum(LENGTHS[:6])] = np.inf  # episode 6, step 0
    problems = tools.validate(path)
    assert [(p.episode, p.key, p.severity) for p in problems] == [(4, "action", "error"),
                                                                  (6, "reward", "error")]
    assert "first at step 2" in problems[0].message
    assert "episode 4, key 'action'" in str(problems[0])


def test_validate_takes_nan_as_an_unmeasured_sensor_and_refuses_infinity(tmp_path):
    """A recording without a temperature topic stores NaN temperatures: a good dataset."""
    path = tmp_path / "d.zarr"
    store = EpisodeStore.create(path, robot="dclaw", task="valve", calibration_digest="cal1",
                                units={"temperature_c": "degC"})
    steps = {**episode(0, 5), "temperature_c": np.full((5, 9), np.nan, np.float32),
             "object_position": np.full((5, 1), np.nan, np.float32)}
    store.add_episode(steps, {"success": True})
    assert tools.validate(path) == []
    root = zarr.open_group(str(path), mode="a")
    root["data/temperature_c"][3, 0] = np.inf
    root["data/observation"][1, 0] = np.nan  # NaN is "not measured" in sensor keys only
    problems = tools.validate(path)
    assert [(p.episode, p.key) for p in problems] == [(0, "observation"), (0, "temperature_c")]
    assert "1 infinite value(s)" in problems[1].message and "at step 3" in problems[1].message


def test_validate_reports_structural_problems(tmp_path):
    path = tmp_path / "d.zarr"
    build(path)
    root = zarr.open_group(str(path), mode="a")
    ends = root["meta/episode_ends"]
    ends[5] = ends[4]  # episode 5 ends where 4 ended
    root["meta/episode_info"].resize(3)
    root["data/reward"].resize(sum(LENGTHS[:2]) + 1)
    messages = {(p.episode, p.key, p.message.split(":")[0]) for p in tools.validate(path)}
    assert (5, None, "episode_ends not increasing") in messages
    assert (3, None, "episode_info row missing") in messages
    assert (4, None, "episode_info row missing") in messages
    assert (2, "reward", "truncated") in messages  # episode 2 is the first one cut short
    bad = tmp_path / "x.zarr"
    zarr.open_group(str(bad), mode="w").attrs["format_version"] = 2
    assert "format_version 2" in tools.validate(bad)[0].message


def test_validate_flags_standard_key_schema(tmp_path):
    path = tmp_path / "d.zarr"
    store = EpisodeStore.create(path, robot="r", task="t", calibration_digest="c", units={})
    store.add_episode({"observation": np.zeros((3, 4)), "terminated": np.zeros(3, np.float32)})
    keys = {p.key for p in tools.validate(path)}
    assert keys == {"observation", "terminated"}


def test_merge_matches_concatenation_and_refuses_other_robot(tmp_path):
    a = build(tmp_path / "a.zarr", seeds=[0, 1, 2])
    b = build(tmp_path / "b.zarr", seeds=[3, 4])
    result = tools.merge([a.path, b.path], tmp_path / "m.zarr")
    assert result["n_episodes"] == 5
    merged = EpisodeStore.open(tmp_path / "m.zarr")
    for key in merged.keys:
        np.testing.assert_array_equal(merged.read(key),
                                      np.concatenate([a.read(key), b.read(key)]))
    np.testing.assert_array_equal(merged.episode_lengths, [LENGTHS[s] for s in range(5)])
    assert merged.episode_info(3)["source_episode"] == 0
    assert merged.episode_info(3)["source_path"] == str(b.path)
    assert merged.episode_info(3)["operator"] == "op3"
    assert [s["episodes"] for s in merged.attrs["extra"]["merged_from"]] == [3, 2]

    other = build(tmp_path / "o.zarr", seeds=[5], robot="arm")
    with pytest.raises(DatasetError, match="robot 'arm' differs"):
        tools.merge([a.path, other.path], tmp_path / "m2.zarr")
    assert tools.merge([a.path, other.path], tmp_path / "m2.zarr", force=True)["n_episodes"] == 4
    units = build(tmp_path / "u.zarr", seeds=[5], units={"observation": "deg"})
    with pytest.raises(DatasetError, match="units"):
        tools.merge([a.path, units.path], tmp_path / "m3.zarr")
    small = EpisodeStore.create(tmp_path / "s.zarr", robot="dclaw", task="valve",
                                calibration_digest="c", units={"observation": "rad"})
    small.add_episode({"observation": np.zeros((2, 4), np.float32)})
    with pytest.raises(SchemaError, match="differ"):
        tools.merge([a.path, small.path], tmp_path / "m4.zarr")
    with pytest.raises(DatasetError, match="also an input"):
        tools.merge([a.path], a.path)


def test_split_partitions_episodes_by_fraction_and_seed(tmp_path):
    src = build(tmp_path / "d.zarr")
    outs = {str(tmp_path / "train.zarr"): 0.6, str(tmp_path / "val.zarr"): 0.4}
    assignment = tools.split(src.path, outs, seed=3)
    train, val = assignment.values()
    assert sorted(train + val) == list(range(7)) and len(train) == 4 and len(val) == 3
    again = tools.split(src.path, {str(tmp_path / "t2.zarr"): 0.6, str(tmp_path / "v2.zarr"): 0.4},
                        seed=3)
    assert list(again.values()) == [train, val]
    for out, indices in assignment.items():
        store = EpisodeStore.open(out)
        assert store.n_episodes == len(indices)
        for j, i in enumerate(indices):
            np.testing.assert_array_equal(store.episode(j)["observation"],
                                          src.episode(i)["observation"])
            assert store.episode_info(j)["source_episode"] == i
        assert store.attrs["extra"]["split_from"]["seed"] == 3
    with pytest.raises(ValueError, match="sum to 1"):
        tools.split(src.path, {str(tmp_path / "x.zarr"): 0.5}, seed=0)


def test_filter_by_episode_info(tmp_path):
    src = build(tmp_path / "d.zarr")
    kept = tools.filter(src.path, tmp_path / "ok.zarr", {"success": True})
    assert kept == [0, 2, 4, 6]
    out = EpisodeStore.open(tmp_path / "ok.zarr")
    np.testing.assert_array_equal(
        out.read("reward"), np.concatenate([src.episode(i)["reward"] for i in kept]))
    assert tools.filter(src.path, tmp_path / "f.zarr",
                        lambda info: info["operator"] in ("op1", "op5")) == [1, 5]


def test_stats_match_numpy_on_raw_arrays(tmp_path):
    src = build(tmp_path / "d.zarr")
    result = tools.stats(src.path)
    assert set(result) == {"observation", "next_observation", "action", "reward", "terminated",
                           "camera_color"}
    raw = zarr.open_group(str(src.path), mode="r")
    for key, s in result.items():
        x = raw[f"data/{key}"][:].astype(np.float64)
        if key == "camera_color":  # camera frames: per channel, over every pixel of every frame
            assert s["count"] == sum(LENGTHS) and s["pixels"] == sum(LENGTHS) * 6 * 8
            x = x.reshape(-1, 3)
        np.testing.assert_allclose(s["mean"], x.mean(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(s["min"], x.min(axis=0))
        np.testing.assert_array_equal(s["max"], x.max(axis=0))
        assert s["count"] == sum(LENGTHS)
    color = tools.stats(src.path, ["camera_color"])["camera_color"]
    assert color["mean"].shape == (3,)


def test_robomimic_export_reads_back(tmp_path):
    src = build(tmp_path / "d.zarr", seeds=[0, 1, 2])
    out = tmp_path / "demos.hdf5"
    summary = tools.export_robomimic_hdf5(src.path, out)
    assert summary["obs_keys"] == ["camera_color", "observation"]
    with h5py.File(out, "r") as f:
        data = f["data"]
        assert data.attrs["total"] == src.n_steps
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["env_name"] == "valve" and env_args["type"] == 2
        assert sorted(data) == ["demo_0", "demo_1", "demo_2"]
        for i in range(3):
            demo, ep = data[f"demo_{i}"], src.episode(i)
            assert demo.attrs["num_samples"] == LENGTHS[i]
            np.testing.assert_array_equal(demo["actions"][:], ep["action"])
            np.testing.assert_array_equal(demo["rewards"][:], ep["reward"])
            np.testing.assert_array_equal(demo["dones"][:], ep["terminated"].astype(int))
            np.testing.assert_array_equal(demo["obs/observation"][:], ep["observation"])
            np.testing.assert_array_equal(demo["obs/camera_color"][:], ep["camera_color"])
            np.testing.assert_array_equal(demo["next_obs/observation"][:],
                                          ep["next_observation"])
    with pytest.raises(DatasetError, match="already exists"):
        tools.export_robomimic_hdf5(src.path, out)
    # a store that names no action mode is from before relative actions: absolute targets
    assert env_args["env_kwargs"] == {"config": {"action_mode": "absolute"}}
    named = build(tmp_path / "relative.zarr", seeds=[0], extra={"action_mode": "relative"})
    tools.export_robomimic_hdf5(named.path, tmp_path / "relative.hdf5")
    with h5py.File(tmp_path / "relative.hdf5", "r") as f:
        env_args = json.loads(f["data"].attrs["env_args"])
    assert env_args["env_kwargs"] == {"config": {"action_mode": "relative"}}


def test_cli_subcommands(tmp_path, capsys):
    path = tmp_path / "d.zarr"
    build(path)
    assert main(["info", str(path)]) == 0
    assert "episodes     7 (35 steps" in capsys.readouterr().out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_episodes"] == 7
    assert main(["validate", str(path)]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    assert main(["stats", str(path), "--keys", "reward", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["reward"]["count"] == 35
    assert main(["filter", str(path), "--out", str(tmp_path / "f.zarr"), "--where", "success=true",
                 "--where", "operator=op2"]) == 0
    assert EpisodeStore.open(tmp_path / "f.zarr").n_episodes == 1
    assert main(["split", str(path), "--out", f"{tmp_path / 'a.zarr'}=0.5",
                 "--out", f"{tmp_path / 'b.zarr'}=0.5", "--seed", "1"]) == 0
    assert main(["merge", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"),
                 "-o", str(tmp_path / "m.zarr")]) == 0
    assert EpisodeStore.open(tmp_path / "m.zarr").n_episodes == 7
    assert main(["export", str(path), "--out", str(tmp_path / "x.hdf5")]) == 0
    capsys.readouterr()
    # bad input: one clear line on stderr and exit code 1
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "error:" in capsys.readouterr().err
    zarr.open_group(str(path), mode="a")["data/reward"][0] = np.nan
    assert main(["validate", str(path), "--quick"]) == 1
    assert "episode 0, key 'reward'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["split", "--help"])
    assert "PATH=FRACTION" in capsys.readouterr().out


def test_cli_plugs_into_a_parent_parser(tmp_path, capsys):
    import argparse

    build(tmp_path / "d.zarr", seeds=[0])
    parser = argparse.ArgumentParser(prog="robot-rl")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dataset", "info", str(tmp_path / "d.zarr")])
    assert args.handler(args) == 0 and args.func(args) == 0
    assert "episodes     1 (5 steps" in capsys.readouterr().out


# ---- bad input: one clear line, nothing written ---------------------------------------------
def test_a_truncated_episode_ends_chunk_is_one_line_naming_the_store_and_array(tmp_path,
                                                                              capsys):
    path = tmp_path / "d.zarr"
    build(path)
    chunk = path / "meta" / "episode_ends" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("error: meta/episode_ends, rows 0:7: unreadable chunk")
    assert "truncated or overwritten" in out and "Traceback" not in out + err
    assert out.splitlines()[-1] == f"{path}: 1 error(s), 0 warning(s)"
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: meta/episode_ends") and err.count("\n") == 1


def test_validate_finds_a_deleted_chunk_that_reads_as_fill(tmp_path):
    """The issue's case: the reward chunk deleted; validate used to say 0 errors."""
    path = tmp_path / "d.zarr"
    build(path)
    (path / "data" / "reward" / "0").unlink()
    problems = tools.validate(path, check_all_keys=False)
    assert [(p.severity, p.key, p.episode) for p in problems] == [("error", "reward", 0)]
    assert problems[0].message.startswith("1 chunk(s) missing, the first chunk 0 (rows 0:35); "
                                          "episode(s) 0-6 have no values there")


def test_filter_refuses_a_field_no_episode_has_and_a_predicate_nothing_matches(tmp_path,
                                                                              capsys):
    src = build(tmp_path / "d.zarr")
    out = tmp_path / "f.zarr"
    with pytest.raises(DatasetError, match=r"no episode's info has the field\(s\) \['sucess'\]; "
                                           r"the fields are \[.*'operator'.*'success'\]"):
        tools.filter(src.path, out, {"sucess": True})
    assert main(["filter", str(src.path), "--out", str(out), "--where", "sucess=true"]) == 1
    assert "field(s) ['sucess']" in capsys.readouterr().err
    with pytest.raises(DatasetError, match=r"no episode of 7 matches \{'success': 'yes'\}; "
                                           r"success takes the values \[false, true\]"):
        tools.filter(src.path, out, {"success": "yes"})
    assert not out.exists()


def test_stats_keys_leave_the_path_alone(tmp_path, capsys):
    path = tmp_path / "d.zarr"
    build(path)
    assert main(["stats", "--keys", "reward", str(path), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["reward"]
    assert main(["stats", "--keys", "reward,action", "--keys", "terminated", str(path),
                 "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["reward", "action", "terminated"]


def test_merge_names_the_flag_and_overwrite_replaces_only_a_store(tmp_path, capsys):
    a = build(tmp_path / "a.zarr", seeds=[0])
    other = build(tmp_path / "o.zarr", seeds=[1], robot="arm")
    out = tmp_path / "m.zarr"
    assert main(["merge", str(a.path), str(other.path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "robot 'arm' differs" in err and "pass --force (force=True) to merge anyway" in err
    assert main(["merge", str(a.path), "-o", str(out)]) == 0
    assert main(["merge", str(a.path), str(a.path), "-o", str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert EpisodeStore.open(out).n_episodes == 1
    assert main(["merge", str(a.path), str(a.path), "-o", str(out), "--overwrite"]) == 0
    assert EpisodeStore.open(out).n_episodes == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    assert main(["merge", str(a.path), "-o", str(notes), "--overwrite"]) == 1
    assert "is a file, not a dataset" in capsys.readouterr().err
    assert notes.read_text() == "keep"


def test_split_refuses_an_existing_output_before_writing_any(tmp_path):
    src = build(tmp_path / "d.zarr")
    taken = build(tmp_path / "val.zarr", seeds=[0])
    train = tmp_path / "train.zarr"
    with pytest.raises(DatasetError, match=r"val\.zarr: already exists"):
        tools.split(src.path, {str(train): 0.5, str(taken.path): 0.5})
    assert not train.exists() and EpisodeStore.open(taken.path).n_episodes == 1


def test_export_replaces_only_an_hdf5_file_and_only_with_overwrite(tmp_path):
    src = build(tmp_path / "d.zarr", seeds=[0])
    notes = tmp_path / "notes.hdf5"
    notes.write_text("not hdf5")
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match="not an HDF5 file; robot_rl never replaces it"):
            tools.export_robomimic_hdf5(src.path, notes, overwrite=overwrite)
    assert notes.read_text() == "not hdf5"
    out = tmp_path / "demos.hdf5"
    tools.export_robomimic_hdf5(src.path, out)
    with pytest.raises(DatasetError, match="already exists; pass --overwrite"):
        tools.export_robomimic_hdf5(src.path, out)
    assert tools.export_robomimic_hdf5(src.path, out, overwrite=True)["n_demos"] == 1
