"""Configs: a wrong key or value is a one-line error naming file, key and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from robot_rl.config import ConfigError, apply_overrides, load_config, replace
from robot_rl.learning.config import AWACConfig
from robot_rl.robot_config import load_robot, robot_digest
from robot_rl.run_config import PipelineConfig, load_pipeline_config


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
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
    from robot_rl.run_config import config_path
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
        assert load_pipeline_config(saved) == expected, profile
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


# ---- calibration files: every error at load, naming the file ----------------------------------

DCLAW_TEXT = (Path(__file__).resolve().parents[2] / "robot_rl" / "calibration" / "dclaw.yaml").read_text()


def dclaw_variant(tmp_path: Path, old: str, new: str, name: str = "dclaw_variant.yaml") -> Path:
    """robot_rl/calibration/dclaw.yaml with one piece of text changed, in a file of its own."""
    assert DCLAW_TEXT.count(old) == 1, old
    path = tmp_path / name
    path.write_text(DCLAW_TEXT.replace(old, new))
    return path


F0_MID = ("  - {name: f0_mid,  id: 11, model: XM430-W210, position_limits_rad: [-1.0, 1.4],   "
          "velocity_limit_rad_s: 3.0, current_limit_a: 1.0}\n")
F2_TIP = ("  - {name: f2_tip,  id: 32, model: XM430-W210, position_limits_rad: [-1.4, 1.4],   "
          "velocity_limit_rad_s: 3.0, current_limit_a: 1.0}\n")


@pytest.mark.parametrize("key", ["velocity_limit_rad_s", "current_limit_a"])
def test_a_joint_without_a_velocity_or_current_limit_is_a_load_error(tmp_path: Path,
                                                                     key: str) -> None:
    """docs/safety.md promised it; the joint got a silent 1.0 instead."""
    value = {"velocity_limit_rad_s": " velocity_limit_rad_s: 3.0,",
             "current_limit_a": ", current_limit_a: 1.0"}[key]
    path = dclaw_variant(tmp_path, F0_MID, F0_MID.replace(value, ""))
    with pytest.raises(ConfigError) as err:
        load_robot(path)
    assert str(err.value) == f"{path}: joints[1].{key}: required key is missing (joint f0_mid)"


def test_a_sensor_needs_no_velocity_or_current_limit() -> None:
    valve = load_robot("dclaw").sensors[0]  # the valve's encoder: read, never commanded
    assert valve.name == "valve" and valve.velocity_limit_rad_s is None


def test_a_duplicate_yaml_key_is_rejected_naming_its_line(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys: max_step_rad 0.25 silently became 0.9."""
    old = "  max_step_rad: 0.25 "
    path = dclaw_variant(tmp_path, old, "  max_step_rad: 0.9\n" + old)
    line = DCLAW_TEXT[:DCLAW_TEXT.index(old)].count("\n") + 1  # of the first one
    with pytest.raises(ConfigError) as err:
        load_robot(path)
    assert str(err.value) == (f"{path}: line {line + 1}: duplicate key 'max_step_rad' in one "
                              f"mapping (first on line {line}); YAML allows each key once")
    # in a flow mapping, in any config the shared loader reads, and in a nested mapping
    path = dclaw_variant(tmp_path, "{name: f0_base, id: 10,", "{name: f0_base, id: 10, id: 13,")
    line = DCLAW_TEXT[:DCLAW_TEXT.index("{name: f0_base")].count("\n") + 1
    with pytest.raises(ConfigError, match=rf"line {line}: duplicate key 'id' in one mapping "
                                          rf"\(first on line {line}\)"):
        load_robot(path)
    with pytest.raises(ConfigError, match=r"config.yaml: line 3: duplicate key 'beta'"):
        load_config(PipelineConfig, write(tmp_path, "awac:\n  beta: 0.3\n  beta: 0.5\n"))
    # a merge key is no duplicate: what it merges in may be overridden
    merged = write(tmp_path, "base: &b {beta: 0.3, gamma: 0.9}\nawac:\n  <<: *b\n  beta: 0.5\n")
    from robot_rl.config import load_yaml
    assert load_yaml(merged)["awac"] == {"beta": 0.5, "gamma": 0.9}


def test_calibration_joints_must_be_the_joints_the_model_drives(tmp_path: Path) -> None:
    """An 8-joint file for the 9-joint hand loaded, and then every command was held or the twin
    died; so did a misspelt joint."""
    model = "robot_rl/sim_twin/models/dclaw_valve.xml"
    eight = dclaw_variant(tmp_path, F2_TIP, "", "eight.yaml")
    with pytest.raises(ConfigError) as err:
        load_robot(eight)
    assert str(err.value).startswith(f"{eight}: joints do not match the model ")
    assert f"{model}: the model drives f2_tip, which the calibration lacks" in str(err.value)
    misspelt = dclaw_variant(tmp_path, "{name: f2_tip, ", "{name: f2_tipp, ", "misspelt.yaml")
    with pytest.raises(ConfigError) as err:
        load_robot(misspelt)
    assert "not in the model: f2_tipp; the model drives f2_tip, which the calibration lacks" \
        in str(err.value)
    assert "(model joints: f0_base, f0_mid, f0_tip, f1_base, f1_mid, f1_tip, f2_base, f2_mid, " \
           "f2_tip, valve)" in str(err.value)
    # the valve's hinge is the model's, undriven: calibrated as a joint it would be commanded
    undriven = dclaw_variant(tmp_path, "sensors:\n  - {name: valve, id: 50, model: XM430-W210, "
                             "position_limits_rad: [-6.28, 6.28]}",
                             "  - {name: valve, id: 50, model: XM430-W210, position_limits_rad: "
                             "[-6.28, 6.28], velocity_limit_rad_s: 3.0, current_limit_a: 1.0}",
                             "undriven.yaml")
    with pytest.raises(ConfigError, match=r"undriven.yaml: joints do not match the model .*: "
                                          r"no actuator drives valve"):
        load_robot(undriven)


def test_a_missing_model_is_an_error_where_the_model_is_needed_not_at_load(
        tmp_path: Path) -> None:
    """A robot whose twin model is not written yet (ur5e.yaml was one): the bridge and the
    safety node (no workspace) need no model; the twin does, and says which file asked for it."""
    text = (Path(__file__).resolve().parents[2] / "robot_rl" / "calibration" / "ur5e.yaml").read_text()
    text = text.replace("model_mjcf: robot_rl/sim_twin/models/ur5e.xml", "model_mjcf: not_yet.xml")
    path = write(tmp_path, text[:text.index("  workspace:")])  # no workspace, no tasks
    arm = load_robot(path)
    expected = (f"{path}: model_mjcf not_yet.xml does not exist (the twin, the workspace check "
                "and site kinematics need it)")
    with pytest.raises(ConfigError) as err:
        arm.model_path()
    assert str(err.value) == expected
    from robot_rl.sim_twin.twin import Twin
    with pytest.raises(ConfigError) as err:
        Twin(arm)
    assert str(err.value) == expected


def test_every_calibration_error_names_the_file(tmp_path: Path) -> None:
    """The supervisor's limit checks named only the robot, and ran only when a supervisor was
    built; they run at load now, naming the file."""
    path = dclaw_variant(tmp_path, "{name: f0_base, id: 10, model: XM430-W210, "
                         "position_limits_rad: [-0.75, 0.75]",
                         "{name: f0_base, id: 10, model: XM430-W210, "
                         "position_limits_rad: [-0.01, 0.01]")
    with pytest.raises(ConfigError) as err:
        load_robot(path)
    assert str(err.value) == (f"{path}: joints.f0_base.position_limits_rad [-0.01, 0.01] leaves "
                              "no range inside safety.position_margin_rad 0.02")
    path = dclaw_variant(tmp_path, "temperature_resume_c: 65.0", "temperature_resume_c: 75.0")
    with pytest.raises(ConfigError, match=rf"^{path}: safety.temperature_resume_c: 75.0 must be "):
        load_robot(path)
    path = dclaw_variant(tmp_path, "sites: [f0_tip_site, f1_tip_site, f2_tip_site]",
                         "sites: [f0_tip_site, f1_tip_site, f3_tip_site]")
    with pytest.raises(ConfigError, match=rf"^{path}: safety.workspace.sites: f3_tip_site not "
                                          r"in the model robot_rl/sim_twin/models/dclaw_valve.xml; its "
                                          r"sites: "):
        load_robot(path)
    path = dclaw_variant(tmp_path, "{name: f1_mid,  id: 21, model: XM430-W210,", "{name: f1_mid,")
    with pytest.raises(ConfigError) as err:  # the Dynamixel driver found this, naming the robot
        load_robot(path)
    assert str(err.value) == (f"{path}: robot dclaw: every joint and sensor of a dynamixel_hand "
                              "needs an id and a servo model; missing: f1_mid (id)")
    broken = dclaw_variant(tmp_path, "model_mjcf: robot_rl/sim_twin/models/dclaw_valve.xml",
                           f"model_mjcf: {write(tmp_path, '<mujoco><worldbody>')}")
    with pytest.raises(ConfigError, match=rf"^{broken}: model_mjcf .*config.yaml: MuJoCo cannot "
                                          r"load it: "):
        load_robot(broken)


@pytest.mark.parametrize("name", ["valve", "drawer"])
def test_the_task_files_ship_the_networks_their_toolkit_study_measured(name: str) -> None:
    """The defaults are meant to be the measured best: the toolkit study (profile bench_rlpd)
    ran 2x64 networks while the configs shipped the library's 2x256, four times the width, at
    which a CPU learner makes a sixth of the updates."""
    shipped = load_pipeline_config(name).awac
    studied = load_pipeline_config(name, profile="bench_rlpd").awac
    assert (shipped.actor_hidden_sizes, shipped.critic_hidden_sizes) == \
        (studied.actor_hidden_sizes, studied.critic_hidden_sizes)
    assert (shipped.batch_size, shipped.n_critics, shipped.replay) == \
        (studied.batch_size, studied.n_critics, studied.replay)


@pytest.mark.parametrize("name", ["valve", "drawer"])
def test_a_printout_keeps_the_profiles(name: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`robot-rl config > mine.yaml`, then `--config mine.yaml --profile P`, for every profile."""
    from robot_rl.cli import main
    assert main(["config", "--config", name]) == 0
    mine = write(tmp_path, capsys.readouterr().out)
    for profile in _profiles(name):
        assert load_pipeline_config(mine, profile=profile) == \
            load_pipeline_config(name, profile=profile), profile
        assert main(["config", "--config", str(mine), *(["--profile", profile] if profile
                                                         else [])]) == 0
        assert load_pipeline_config(write(tmp_path, capsys.readouterr().out, "again.yaml")) == \
            load_pipeline_config(name, profile=profile), profile


def test_a_partial_config_starts_from_the_task_it_extends(tmp_path: Path) -> None:
    mine = write(tmp_path, "extends: drawer\ndataset: {demonstrations: 3}\n"
                           "profiles:\n  quick: {eval: {episodes: 2}}\n  mine: {seed: 7}\n")
    config, drawer = load_pipeline_config(mine), load_pipeline_config("drawer")
    assert config.dataset.demonstrations == 3
    # everything else is the drawer task's, not the library's bare defaults
    assert config == dataclasses.replace(drawer, dataset=dataclasses.replace(
        drawer.dataset, demonstrations=3))
    assert config.awac.batch_size == 256 and config.awac.collapse_guard.conservative
    quick = load_pipeline_config(mine, profile="quick")  # the task's profile, with mine merged
    assert quick.eval.episodes == 2 and quick.pretrain.updates == 200
    assert load_pipeline_config(mine, profile="mine").seed == 7


def test_a_partial_config_without_extends_is_refused_by_name(tmp_path: Path) -> None:
    mine = write(tmp_path, "dataset:\n  demonstrations: 3\n")
    with pytest.raises(ConfigError, match=r"config.yaml: sets no 'extends' and leaves env_id, "
                                          r"robot, seed and \d+ more unset: .*extends: valve"):
        load_pipeline_config(mine)
    bare = write(tmp_path, "extends: null\ndataset:\n  demonstrations: 3\n", "bare.yaml")
    assert load_pipeline_config(bare) == dataclasses.replace(
        PipelineConfig(), dataset=dataclasses.replace(PipelineConfig().dataset,
                                                      demonstrations=3))


def test_extends_follows_paths_and_refuses_loops_and_unknown_names(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    write(tmp_path / "lab", "extends: valve\nseed: 5\n", "base.yaml")
    child = write(tmp_path, "extends: lab/base.yaml\nseed: 6\neval: {episodes: 3}\n",
                  "child.yaml")
    config = load_pipeline_config(child)
    assert (config.seed, config.eval.episodes, config.env_id) == (6, 3, "robot_rl/ValveTurn-v0")
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="configs extend each other in a loop"):
        load_pipeline_config(tmp_path / "a.yaml")
    typo = write(tmp_path, "extends: valv\n", "typo.yaml")
    with pytest.raises(ConfigError, match=r"typo.yaml: extends: no pipeline config named "
                                          r"'valv'.*known: \['drawer', 'valve'"):
        load_pipeline_config(typo)


@pytest.mark.parametrize("study", ["hil_study", "pixel_study"])
def test_the_studies_measured_before_the_toolkit_run_the_awac_they_were_measured_with(
        study: str, tmp_path: Path) -> None:
    """bench/hil_study.py and bench/pixel_study.py were measured with one update per env step,
    two critics and uniform replay, before the task files turned the toolkit on: their documented
    commands must still run that AWAC (they ran G = 10 with 10 critics, 10x the cost, after the
    toolkit landed), the collapse guard on (the valve ships without it now) and the profile's
    sizes kept, later overrides honoured."""
    import sys

    from robot_rl.run_config import toolkit_off_overrides
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        module = __import__(study)
    finally:
        sys.path.pop(0)
    if study == "hil_study":
        config = module.condition_config("valve", "hil_reward", 1, "learned_reward")
    else:
        config = module.method_config("valve", "drq", 0, ["awac.n_critics=4"], tmp_path)
    shipped = load_pipeline_config("valve")
    assert shipped.finetune.updates_per_env_step > 1 and shipped.awac.n_critics > 2
    awac = config.awac
    assert config.finetune.updates_per_env_step == 1
    assert (awac.replay, awac.critic_layer_norm, awac.warm_start_steps, awac.handed_policy,
            awac.critic_aggregation) == ("uniform", False, 0, "final", "min")
    assert awac.n_critics == (4 if study == "pixel_study" else 2)  # an override after them
    assert awac.collapse_guard.conservative and awac.actor_hidden_sizes == (64, 64)
    paper = AWACConfig()
    assert len(toolkit_off_overrides()) == 13 and all(
        getattr(awac, name) == getattr(paper, name) for name in
        ("symmetric_offline_fraction", "keep_offline_data", "critic_subset", "actor_update_every"))
