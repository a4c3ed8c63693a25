"""rosbag2 import labelled with a success rule or a classifier: the imported bag gets success,
reward and terminated, so it can be trained on (rosbags writes the bags: helpers.rosbags)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.rosbags import TOPICS, write_bag
from rosbags.rosbag2 import StoragePlugin

from robot_rl.data import DatasetError, EpisodeStore, tools, transitions
from robot_rl.dataset_cli import main
from robot_rl.reward import SuccessClassifier, SuccessDetector
from robot_rl.reward.rules import SuccessRule

THRESHOLD = 0.05  # observation[0] is joint 0's position, rising 0.001 per 10 ms state


def _expected(store: EpisodeStore) -> tuple[np.ndarray, np.ndarray]:
    shows = store.read("observation")[:, 0] >= THRESHOLD
    nxt = np.r_[shows[1:], shows[-1:]]  # the last row's own state stands in for its successor
    return shows, nxt


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "bag"
    write_bag(path, StoragePlugin.MCAP)
    return path


def test_a_rule_labels_an_imported_bag_so_that_it_can_be_trained_on(bag: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "ruled.zarr"
    tools.import_rosbag(bag, out, TOPICS, control_period_s=0.05,
                        success=SuccessRule([f"observation[0] >= {THRESHOLD}"]))
    with EpisodeStore.open(out) as store:
        shows, nxt = _expected(store)
        assert 0 < shows.sum() < len(shows)             # both kinds of rows
        np.testing.assert_array_equal(store.read("success"), shows)
        np.testing.assert_array_equal(store.read("terminated"), nxt)
        np.testing.assert_array_equal(store.read("reward"), np.where(nxt, 0.0, -1.0))
        assert store.attrs["units"]["reward"] == "1"
        data = transitions(store)                        # what pretraining reads
    assert data["done"].sum() == nxt[:-1].sum() + nxt[-1]


def test_a_classifier_file_labels_the_same_through_the_cli(bag: Path, tmp_path: Path) -> None:
    rule = SuccessClassifier([("observation", 0, 1)], np.zeros(1), np.ones(1),
                             [(np.array([[1e4]]), np.array([-1e4 * THRESHOLD + 1e-3]))], 0.5, 1)
    path = rule.save(tmp_path / "c.safetensors")
    out = tmp_path / "classified.zarr"
    args = ["import-rosbag", str(bag), "-o", str(out), "--period", "0.05"]
    args += [f"--topic={topic}={key}" for topic, key in TOPICS.items()]
    assert main([*args, "--success-classifier", str(path)]) == 0
    with EpisodeStore.open(out) as store:
        shows, nxt = _expected(store)
        np.testing.assert_array_equal(store.read("success"), shows)
        np.testing.assert_array_equal(store.read("reward"), np.where(nxt, 0.0, -1.0))
    debounced = tmp_path / "debounced.zarr"
    assert main([*args[:3], str(debounced), *args[4:], "--success-classifier", str(path),
                 "--debounce-frames", "3"]) == 0
    with EpisodeStore.open(debounced) as store:
        first = int(np.argmax(store.read("success")))
    assert first == int(np.argmax(shows)) + 2            # three rows in a row


def test_labelling_errors_name_what_is_wrong(bag: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DatasetError, match=r"bag: success labelling: success rule "
                                           r"'opening\[0\]': the frame has no key 'opening'"):
        tools.import_rosbag(bag, tmp_path / "x.zarr", TOPICS, control_period_s=0.05,
                            success=SuccessRule(["opening[0] >= 1"]))
    with pytest.raises(ValueError, match="expected KEY\\[INDEX\\] OP NUMBER"):
        SuccessRule(["observation[0] = 1"])
    args = ["import-rosbag", str(bag), "-o", str(tmp_path / "y.zarr"), "--period", "0.05",
            "--topic=/hand/joint_states=observation"]
    assert main([*args, "--success-rule", "observation[0] ~ 1"]) != 0
    assert "expected KEY[INDEX] OP NUMBER" in capsys.readouterr().err
    assert main([*args, "--threshold", "0.7"]) != 0
    assert "need --success-classifier" in capsys.readouterr().err
    detector = SuccessDetector(SuccessClassifier([("camera", 0, 1)], np.zeros(1), np.ones(1),
                                                 [(np.ones((1, 1)), np.zeros(1))], 0.5, 1))
    with pytest.raises(DatasetError, match="classifier input 'camera' is missing"):
        tools.import_rosbag(bag, tmp_path / "z.zarr", TOPICS, control_period_s=0.05,
                            success=detector)
