"""Configs: a wrong key or value is a one-line error naming file, key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_rl.config import ConfigError, apply_overrides, load_config, replace
from robot_rl.learning.config import AWACConfig
from robot_rl.pipeline.config import PipelineConfig, load_pipeline_config
from robot_rl.robot_config import load_robot, robot_digest


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load_and_profiles_apply() -> None:
    base = load_pipeline_config("valve")
    quick = load_pipeline_config("valve", profile="quick")
    assert isinstance(base, PipelineConfig)
    assert quick.pretrain.updates < base.pretrain.updates
    assert quick.awac.actor_hidden_sizes == (64, 64)
    # a profile changes only what it names
    assert quick.awac.gamma == base.awac.gamma


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "awac:\n  betta: 0.3\n")
    with pytest.raises(ConfigError) as err:
        load_config(PipelineConfig, path)
    message = str(err.value)
    assert str(path) in message and "awac.betta" in message and "beta" in message


def test_out_of_range_value_names_the_range(tmp_path: Path) -> None:
    path = write(tmp_path, "awac:\n  gamma: 1.5\n")
    with pytest.raises(ConfigError, match=r"awac\.gamma: 1\.5 is out of range \[0\.0, 1\.0\]"):
        load_config(PipelineConfig, path)


def test_wrong_type_and_wrong_choice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pretrain.updates: expected an integer"):
        load_config(PipelineConfig, write(tmp_path, "pretrain:\n  updates: lots\n"))
    with pytest.raises(ConfigError, match="awac.critic_aggregation: 'max' is not one of"):
        load_config(PipelineConfig, write(tmp_path, "awac:\n  critic_aggregation: max\n"))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "awac:\n  beta: [0.3\n  gamma: 0.9\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: line \d+, column \d+: malformed YAML"):
        load_config(PipelineConfig, path)


def test_overrides_are_validated_like_files() -> None:
    data = apply_overrides({}, ["awac.beta=0.3", "seed=4"])
    assert data == {"awac": {"beta": 0.3}, "seed": 4}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["awac.beta"])
    with pytest.raises(ConfigError, match="awac.beta: 50.0 is out of range"):
        load_pipeline_config("valve", ["awac.beta=50"])
    with pytest.raises(ConfigError, match="n_critics: 0 is out of range"):
        replace(AWACConfig(), n_critics=0)


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no profile 'fast'; known: \[.*'paper'.*'quick'.*\]"):
        load_pipeline_config("valve", profile="fast")


def test_dclaw_calibration_is_the_joint_order() -> None:
    robot = load_robot("dclaw")
    assert robot.joint_names[:3] == ("f0_base", "f0_mid", "f0_tip")
    assert robot.n_joints == 9
    assert (robot.lower_rad < robot.upper_rad).all()
    assert [j.id for j in robot.joints] == [10, 11, 12, 20, 21, 22, 30, 31, 32]
    assert len(robot_digest("dclaw")) == 16


def test_calibration_errors_name_the_problem(tmp_path: Path) -> None:
    text = Path(load_robot("dclaw").model_path()).name  # any valid string will do for the model
    base = ("robot: r\nkind: dynamixel_arm\nmodel_mjcf: " + text + "\nsafety: {position_margin_rad: 0.0,"
            " max_step_rad: 0.1, acceleration_limit_rad_s2: 10, temperature_limit_c: 60,"
            " state_timeout_s: 0.1, command_timeout_s: 0.1}\n")
    dup = base + ("joints:\n  - {name: a, id: 1, position_limits_rad: [-1, 1]}\n"
                  "  - {name: b, id: 1, position_limits_rad: [-1, 1]}\n")
    with pytest.raises(ConfigError, match=r"servo ids repeat: \[1\]"):
        load_robot(write(tmp_path, dup))
    inverted = base + "joints:\n  - {name: a, id: 1, position_limits_rad: [1, -1]}\n"
    with pytest.raises(ConfigError, match="joint a: position_limits_rad lower 1.0 must be < upper"):
        load_robot(write(tmp_path, inverted))
    missing = base.replace(" max_step_rad: 0.1,", "") + (
        "joints:\n  - {name: a, id: 1, position_limits_rad: [-1, 1]}\n")
    with pytest.raises(ConfigError, match="safety.max_step_rad: required key is missing"):
        load_robot(write(tmp_path, missing))
    with pytest.raises(ConfigError, match="no calibration named 'nope'"):
        load_robot("nope")


def _profiles(name: str) -> list[str | None]:
    from robot_rl.config import load_yaml
    from robot_rl.pipeline.config import config_path
    return [None, *load_yaml(config_path(name)).get("profiles", {})]


@pytest.mark.parametrize("name", ["valve", "drawer"])
def test_robot_rl_config_prints_every_setting_and_its_output_loads_back_equal(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every shipped config and profile: the printout is itself a config, with nothing left to the
    defaults (a file that still loads after the defaults change), each setting explained."""
    import yaml

    from robot_rl.cli import main
    for profile in _profiles(name):
        args = ["config", "--config", name, "--set", "awac.beta=0.3", "--set", "awac.device=auto"]
        assert main(args + (["--profile", profile] if profile else [])) == 0
        text = capsys.readouterr().out
        expected = load_pipeline_config(name, ["awac.beta=0.3", "awac.device=auto"], profile)
        saved = write(tmp_path, text)
        assert load_config(PipelineConfig, saved) == expected, profile
        written = yaml.safe_load(text)
        assert written["awac"]["balanced_replay"]["temperature"] == 5.0  # defaults written out
        assert written["awac"]["collapse_guard"].keys() >= {"fallback", "fallback_margin"}
    lines = dict(line.split(":", 1) for line in text.splitlines() if line.startswith("  beta:"))
    assert "AWAC temperature lambda" in lines["  beta"] and "[0.01, 10.0]; default 0.5" in \
        lines["  beta"]
    assert "one of awr, bc, sac" in text and "cuda:N or auto" in text


def test_robot_rl_config_refuses_a_bad_value_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from robot_rl.cli import main
    assert main(["config", "--set", "awac.critic_aggregation=max"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "awac.critic_aggregation: 'max' is not one of 'min', 'mean_minus_std'" in captured.err
