"""The launch runner's rules for launch files, checked without starting a process: every error a
launch file or a launch line can cause, each named with its file (and line), and the C3 contract
(the twin, the safety node and the drivers carry ``on_exit: shutdown``) in every launch file."""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

import pytest
import yaml

import robot_rl.ros.launch as launch_module
from robot_rl.ros.launch import LaunchDescription, LaunchError, as_bool, main, share_directory

REPO = Path(__file__).resolve().parents[2]
LAUNCH_DIR = REPO / "launch"
NODE = "pkg: robot_rl, exec: demo_talker"


def _load(tmp_path: Path, text: str, args: dict[str, str] | None = None,
          **others: str) -> LaunchDescription:
    """Write ``main.launch.yaml`` (and ``others``: name -> text) and load it."""
    for name, other in others.items():
        (tmp_path / f"{name}.launch.yaml").write_text(other)
    path = tmp_path / "main.launch.yaml"
    path.write_text(text)
    return LaunchDescription.load(path, args)


def _error(tmp_path: Path, text: str, args: dict[str, str] | None = None, **others: str) -> str:
    with pytest.raises(LaunchError) as info:
        _load(tmp_path, text, args, **others)
    message = str(info.value)
    assert "\n" not in message, message  # one line
    return message


# (id, launch file, what the error must say after "<file>:<line>: "). Each is an error ros2
# launch's YAML frontend raises too, when it parses the file (test_jazzy_rejects_... checks).
PARSE_ERRORS = [
    ("misspelt node attribute", f"- node: {{{NODE}, namepsace: hand}}",
     r"2: node: unknown attribute 'namepsace' \(did you mean 'namespace'\?\) \(known: pkg, exec, "
     r"name, namespace, .*on_exit, if, unless\)"),
    ("misspelt arg attribute", "- arg: {name: a, defualt: x}",
     r"2: arg 'a': unknown attribute 'defualt' \(did you mean 'default'\?\)"),
    ("let attribute", "- let: {name: a, value: b, vlaue: c}", r"2: let 'a': unknown attribute 'vlaue'"),
    ("include attribute", "- include: {file: x.launch.yaml, args: []}",
     r"2: include: unknown attribute 'args' \(did you mean 'arg'\?\)"),
    ("group attribute", f"- group: {{scopd: false, children: [{{node: {{{NODE}}}}}]}}",
     r"2: group: unknown attribute 'scopd' \(did you mean 'scoped'\?\)"),
    ("push_ros_namespace attribute", "- push_ros_namespace: {namespace: a, ns: b}",
     r"2: push_ros_namespace: unknown attribute 'ns'"),
    ("remap item", f"- node: {{{NODE}, remap: [{{from: a, to: b, too: c}}]}}",
     r"2: node: remap\[0\] \(line 2\): unknown attribute 'too' \(did you mean 'to'\?\) "
     r"\(known: from, to\)"),
    ("param item", f"- node: {{{NODE}, param: [{{name: a, vaule: 1}}]}}",
     r"2: node: param\[0\] \(line 2\): unknown attribute 'vaule' \(did you mean 'value'\?\)"),
    ("env item", f"- node: {{{NODE}, env: [{{name: A, valeu: b}}]}}",
     r"2: node: env\[0\] \(line 2\): unknown attribute 'valeu'"),
    ("include arg item", "- include: {file: x.launch.yaml, arg: [{name: a, value: b, c: d}]}",
     r"2: include: arg\[0\] \(line 2\): unknown attribute 'c'"),
    ("choice item", "- arg: {name: a, default: x, choice: [{valeu: x}]}",
     r"2: arg 'a': choice\[0\] \(line 2\): unknown attribute 'valeu'"),
    ("entity kind", f"- nod: {{{NODE}}}",
     r"2: nod: unsupported entity \(did you mean 'node'\?\) \(supported: arg, let, node, "),
    ("entity not one key", f"- node: {{{NODE}}}\n  arg: {{name: a}}",
     r"launch entry 0 must be a mapping with one key"),
    ("body not a mapping", "- node: demo_talker", r"2: node: expected a mapping of attributes"),
    ("node without exec", "- node: {pkg: robot_rl}", r"2: node: missing required attribute 'exec'"),
    ("node without pkg", "- node: {exec: demo_talker}", r"2: node: missing required attribute 'pkg'"),
    ("arg without name", "- arg: {default: x}", r"2: arg: missing required attribute 'name'"),
    ("let without value", "- let: {name: a}", r"2: let 'a': missing required attribute 'value'"),
    ("include without file", "- include: {arg: [{name: a, value: b}]}",
     r"2: include: missing required attribute 'file'"),
    ("push without namespace", "- push-ros-namespace: {}",
     r"2: push-ros-namespace: missing required attribute 'namespace'"),
    ("group without children", "- group: {scoped: true}",
     r"2: group: missing required attribute 'children'"),
    ("remap without to", f"- node: {{{NODE}, remap: [{{from: a}}]}}",
     r"2: node: remap\[0\] \(line 2\): missing required attribute 'to'"),
    ("include arg without value", "- include: {file: x.launch.yaml, arg: [{name: a}]}",
     r"2: include: arg\[0\] \(line 2\): missing required attribute 'value'"),
    ("param name and from", f"- node: {{{NODE}, param: [{{name: a, from: p.yaml}}]}}",
     r"2: node: param\[0\] \(line 2\): a param has either 'name' and 'value', or 'from'"),
    ("param name without value", f"- node: {{{NODE}, param: [{{name: a}}]}}",
     r"2: node: param\[0\] \(line 2\): missing required attribute 'value'"),
    ("if and unless", f"- node: {{{NODE}, if: 'true', unless: 'false'}}",
     r"2: node: 'if' and 'unless' cannot be used together"),
    ("bare boolean respawn", f"- node: {{{NODE}, respawn: true}}",
     r"2: node: respawn: expected a string, got a boolean \(True\); quote it"),
    ("bare boolean if", f"- node: {{{NODE}, if: true}}", r"2: node: if: expected a string"),
    ("bare number default", "- arg: {name: a, default: 5}",
     r"2: arg 'a': default: expected a string, got an integer \(5\)"),
    ("empty default", "- arg: {name: a, default: }", r"2: arg 'a': default: expected a string, "
                                                      r"got empty \(None\)"),
    ("integer respawn_delay", f"- node: {{{NODE}, respawn_delay: 1}}",
     r"2: node: respawn_delay: expected a non-negative float such as 1.0, got an integer \(1\)"),
    ("string respawn_delay", f"- node: {{{NODE}, respawn_delay: '0.5'}}",
     r"2: node: respawn_delay: expected a non-negative float"),
    ("negative respawn_delay", f"- node: {{{NODE}, respawn_delay: -1.0}}",
     r"2: node: respawn_delay: expected a non-negative float .* got a float \(-1.0\)"),
    ("string scoped", f"- group: {{scoped: 'false', children: [{{node: {{{NODE}}}}}]}}",
     r"2: group: scoped: expected true or false unquoted, got a string \('false'\); ros2 launch "
     r"would take any string here as true"),
    ("dict param value", f"- node: {{{NODE}, param: [{{name: a, value: {{b: 1}}}}]}}",
     r"2: node: param\[0\] \(line 2\): value: expected a string, number, boolean or a list"),
    ("mixed param list", f"- node: {{{NODE}, param: [{{name: a, value: [1, 2.5]}}]}}",
     r"2: node: param\[0\] \(line 2\): value: expected a string, number, boolean or a list of "
     r"them of one type"),
    ("param not a list", f"- node: {{{NODE}, param: {{name: a, value: 1}}}}",
     r"2: node: param: expected a non-empty list of mappings \(name, value, from\), got a mapping"),
    ("empty remap list", f"- node: {{{NODE}, remap: []}}",
     r"2: node: remap: expected a non-empty list of mappings"),
    ("group children not a list", "- group: {children: {node: {pkg: robot_rl}}}",
     r"2: group: children: expected a list of entities"),
    ("error inside a group", f"- group:\n  - node: {{{NODE}, namepsace: a}}",
     r"3: node: unknown attribute 'namepsace'"),
    ("under a false condition", f"- node: {{{NODE}, if: 'false', namepsace: a}}",
     r"2: node: unknown attribute 'namepsace'"),
    ("on_exit other than shutdown", f"- node: {{{NODE}, on_exit: restart}}",
     r"2: node: on_exit 'restart': only 'shutdown' is supported"),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in PARSE_ERRORS],
                         ids=[i for i, _, _ in PARSE_ERRORS])
def test_a_file_ros2_launch_rejects_is_rejected_naming_file_and_line(
        tmp_path: Path, text: str, expected: str) -> None:
    message = _error(tmp_path, f"launch:\n{text}\n")
    assert re.search(f"^{re.escape(str(tmp_path / 'main.launch.yaml'))}: ?{expected}", message), \
        message


def test_attributes_ros2_launch_has_but_this_runner_does_not_run_are_named_as_such(
        tmp_path: Path) -> None:
    for text, key in ((f"- node: {{{NODE}, launch-prefix: nice}}", "launch-prefix"),
                      (f"- group: {{forwarding: false, children: [{{node: {{{NODE}}}}}]}}",
                       "forwarding"),
                      (f"- node: {{{NODE}, param: [{{name: a, value: '1', type: str}}]}}",
                       "type")):
        message = _error(tmp_path, f"launch:\n{text}\n")
        assert "main.launch.yaml:2: " in message
        assert f"{key!r} is valid for ros2 launch but robot-rl launch does not implement it" \
            in message


def test_the_file_itself(tmp_path: Path) -> None:
    """Unreadable, not YAML, a duplicate key, not a launch file."""
    missing = tmp_path / "nope.launch.yaml"
    with pytest.raises(LaunchError, match=rf"launch file {re.escape(str(missing))}: cannot read "
                                          r"\(No such file or directory\)"):
        LaunchDescription.load(missing)
    assert _error(tmp_path, "launch:\n- [a\n- b: c\n").endswith(
        "main.launch.yaml:3: invalid YAML (while parsing a flow sequence; expected ',' or ']', but "
        "got ':')")
    # PyYAML keeps the last of two equal keys: the first `if` would silently not apply
    node = NODE.replace(", ", "\n    ")
    message = _error(tmp_path, f"launch:\n- node:\n    if: 'false'\n    {node}\n    if: 'true'\n")
    assert re.search(r"main.launch.yaml: line 6: duplicate key 'if' \(first on line 3\)", message)
    for text in ("- node: {}", "launch: {node: {}}", "launch:\n- arg: {name: a}\nother: 1",
                 "launch: []\nlaunch2: []"):
        assert "expected one top-level key, 'launch:', holding a list" in _error(tmp_path, text)


@pytest.mark.parametrize("word, value", [("true", True), ("True", True), (" 1 ", True),
                                         ("TRUE", True), ("false", False), ("FALSE", False),
                                         ("0", False), ("False ", False)])
def test_booleans_follow_jazzys_condition_rule(word: str, value: bool) -> None:
    assert as_bool(word, "x") is value


@pytest.mark.parametrize("word", ["ture", "yes", "no", "on", "", "2", "truee", "flase", "-1"])
def test_a_malformed_boolean_is_an_error_never_false(tmp_path: Path, word: str) -> None:
    """A typo in an ``if:`` must not drop a node (nor an ``unless:`` start one)."""
    args = {"flag": word}
    head = "launch:\n- arg: {name: flag, default: 'true'}\n"
    for key in ("if", "unless", "respawn"):
        message = _error(tmp_path, f"{head}- node: {{{NODE}, name: n, {key}: '$(var flag)'}}\n",
                         args)
        assert re.search(rf"main.launch.yaml:3: node 'n': {key}( '\$\(var flag\)')?: expected "
                         rf"true, false, 1 or 0 \(any case\), got {re.escape(repr(word))}$",
                         message), message


def test_substitution_errors_name_the_file_line_and_entity(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBOT_RL_UNSET", raising=False)
    for value, expected in (
            ("$(var robt)", r"\$\(var robt\): launch argument 'robt' is not set \(did you mean "
                            r"'robot'\?\) \(known: robot\)"),
            ("$(env ROBOT_RL_UNSET)", r"\$\(env ROBOT_RL_UNSET\): environment variable "
                                      r"'ROBOT_RL_UNSET' is not set"),
            ("$(foo bar)", r"\$\(foo bar\): unsupported substitution \(supported: var NAME, "),
            ("$(var robot", r"unbalanced '\$\(' in '\$\(var robot'"),
            ("$(find-pkg-share other_pkg)", r"\$\(find-pkg-share other_pkg\): only 'robot_rl' "
                                            r"is known here"),
    ):
        message = _error(tmp_path, f"launch:\n- let: {{name: robot, value: x}}\n"
                                   f"- node: {{{NODE}, name: '{value}'}}\n")
        assert re.search(rf"main.launch.yaml:3: node '[^']*': {expected}", message), message


def test_share_directory_without_a_launch_directory_says_where_it_looked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setattr(launch_module, "__file__", str(tmp_path / "a" / "b" / "launch.py"))
    monkeypatch.setattr(launch_module.sys, "prefix", str(tmp_path / "prefix"))
    with pytest.raises(LaunchError, match=rf"no 'launch' directory in {re.escape(str(tmp_path))} "
                                          rf"or {re.escape(str(tmp_path / 'prefix'))}"):
        share_directory()


def test_evaluation_errors_name_the_file_line_and_entity(tmp_path: Path) -> None:
    def check(text: str, expected: str, args: dict[str, str] | None = None) -> None:
        message = _error(tmp_path, f"launch:\n{text}\n", args)
        assert re.search(rf"main.launch.yaml:\d+: {expected}", message), message

    check("- node: {pkg: other_pkg, exec: talker}",
          r"node: pkg 'other_pkg': only 'robot_rl' nodes can run without ROS 2")
    check("- arg: {name: needed}", r"arg 'needed': launch argument 'needed' is required "
                                   r"\(no default\); pass needed:=<value>")
    check("- arg: {name: mode, default: twin, choice: [{value: twin}, {value: real}]}",
          r"arg 'mode': launch argument mode:='rael' is not one of twin, real", {"mode": "rael"})
    check(f"- node: {{{NODE}, namespace: 'a b'}}", r"node: namespace '/a b': token 'a b' must match")
    check(f"- push_ros_namespace: {{namespace: '1x'}}\n- node: {{{NODE}}}",
          r"push_ros_namespace: namespace '/1x': token '1x' must match")


def test_the_missing_node_error_lists_every_node_executable(tmp_path: Path) -> None:
    """setup.cfg's console_scripts are the one home of the node executables."""
    message = _error(tmp_path, "launch:\n- node: {pkg: robot_rl, exec: safty_node}\n")
    assert "exec 'safty_node': not a node executable of robot_rl (did you mean 'safety_node'?)" \
        in message
    known = re.search(r"\(known: ([^)]*)\)", message).group(1).split(", ")
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    scripts = {line.split("=")[0].strip(): line.split("=")[1].strip() for line in
               setup["options.entry_points"]["console_scripts"].strip().splitlines()}
    nodes = {name for name, target in scripts.items() if not target.startswith("robot_rl.cli:")}
    assert set(known) == nodes
    assert {"twin_node", "safety_node", "dynamixel_node", "realsense_node"} <= set(known)
    assert "robot-rl" not in known  # the command-line tool, not a node
    # every executable a launch file names is a real one
    execs = set(re.findall(r"exec: ([a-z_0-9]+)", "".join(
        p.read_text() for p in LAUNCH_DIR.glob("*.launch.yaml"))))
    execs |= {"ros2_control_bridge", "dynamixel_node"}  # drawer_real's $(var driver) choices
    assert execs <= set(known), execs - set(known)


def test_without_robot_rl_installed_the_error_says_so(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise launch_module.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(launch_module.importlib.metadata, "distribution", not_installed)
    assert re.search(r"main.launch.yaml:2: node: robot_rl is not installed \(pip install -e \.\): "
                     r"its node executables are its console scripts$",
                     _error(tmp_path, f"launch:\n- node: {{{NODE}}}\n"))


def test_errors_in_an_included_file_name_it_and_the_include(tmp_path: Path) -> None:
    message = _error(tmp_path, "launch:\n- arg: {name: mode, default: twin}\n"
                               "- include: {file: '$(dirname)/$(var mode).launch.yaml'}\n",
                     {"mode": "rael"})
    assert re.fullmatch(rf"launch file {re.escape(str(tmp_path / 'rael.launch.yaml'))}: cannot "
                        rf"read \(No such file or directory\); included from "
                        rf"{re.escape(str(tmp_path / 'main.launch.yaml'))}:3: include", message)
    message = _error(tmp_path, "launch:\n- include: {file: child.launch.yaml}\n",
                     child="launch:\n- group:\n  - include: {file: grandchild.launch.yaml}\n",
                     grandchild=f"launch:\n\n- node: {{{NODE}, namepsace: a}}\n")
    assert re.fullmatch(r".*/grandchild.launch.yaml:3: node: unknown attribute 'namepsace' .*; "
                        r"included from .*/child.launch.yaml:3: include; included from "
                        r".*/main.launch.yaml:2: include", message), message


MAIN = """launch:
- arg: {name: mode, default: twin, description: "twin | real"}
- arg: {name: feature, default: "false"}
- include:
    file: "$(dirname)/child.launch.yaml"
    arg: [{name: task, value: valve}]
- group:
  - arg: {name: in_group, default: x}
- let: {name: later, value: y}
- arg: {name: later, default: z}
- arg: {name: extra, default: "", if: "$(var feature)"}
"""
CHILD = """launch:
- arg: {name: task, default: drawer}
- arg: {name: seed, default: "0"}
"""


def test_an_argument_that_no_file_declares_is_rejected_naming_the_declared_ones(
        tmp_path: Path) -> None:
    """ros2 launch ignores it: `mdoe:=real` would start the default mode."""
    message = _error(tmp_path, MAIN, {"mdoe": "real"}, child=CHILD)
    assert message == (
        f"{tmp_path / 'main.launch.yaml'}: launch argument 'mdoe' is not declared by this file or "
        "the files it includes (did you mean 'mode'?) (declared: extra, feature, in_group, later, "
        "mode, seed, task); ros2 launch would ignore it and use the default")
    # declared in an included file, in a group: reach their arg unchanged
    desc = _load(tmp_path, MAIN, {"mode": "real", "seed": "3", "in_group": "1"}, child=CHILD)
    assert [a.name for a in desc.declared_args] == ["mode", "feature", "later"]
    # declared, but what reaches the arg is an include's value, a let's, or it is not evaluated
    for name, value in (("task", "drawer"), ("later", "w"), ("extra", "e")):
        message = _error(tmp_path, MAIN, {name: value}, child=CHILD)
        assert re.fullmatch(rf".*/main.launch.yaml: launch argument '{name}' would be ignored: "
                            r"(main|child).launch.yaml declares it, but not where it is reached "
                            r"with the value given here \(an include's arg or a let sets it, or "
                            r"its condition is false\)", message), message
    _load(tmp_path, MAIN, {"extra": "e", "feature": "true"}, child=CHILD)


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "main.launch.yaml"
    path.write_text(MAIN)
    (tmp_path / "child.launch.yaml").write_text(CHILD)
    assert main([str(path), ":=real"]) == 2
    assert capsys.readouterr().err == ("[ERROR] [launch]: malformed launch argument ':=real', "
                                       "expected NAME:=VALUE\n")
    assert main([str(path), "mdoe:=real"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"[ERROR] [launch]: {path}: launch argument 'mdoe' is not declared")
    assert err.count("\n") == 1  # one line, no traceback
    assert main([str(path), "other.launch.yaml"]) == 2
    assert capsys.readouterr().err.startswith("usage: robot-rl launch FILE")
    assert main(["robot_rl", "no_such.launch.yaml"]) == 2
    assert re.fullmatch(r"\[ERROR\] \[launch\]: launch file .*/launch/no_such.launch.yaml: "
                        r"cannot read \(No such file or directory\)\n", capsys.readouterr().err)
    assert main([str(path), "--show-args"]) == 0
    assert "'mode': twin | real\n    (default: 'twin')" in capsys.readouterr().out


# --- the launch files themselves ----------------------------------------------------------------
ESSENTIAL = {"twin", "safety", "dynamixel", "driver", "camera"}  # C3: twin, safety, drivers
NOT_ESSENTIAL = {"learner", "recorder", "teleop", "dynamixel_bus"}


@pytest.mark.parametrize("task", ["valve", "drawer", "teleop_record"])
@pytest.mark.parametrize("mode", ["twin", "hil", "real"])
@pytest.mark.parametrize("camera", ["false", "true"])
def test_the_twin_safety_and_drivers_stop_the_graph_and_nothing_else_does(
        task: str, mode: str, camera: str) -> None:
    """Contract C3: `on_exit: shutdown` on the twin, the safety node and every driver."""
    args = {"mode": mode, "camera": camera, "recorder": "true"}
    if task == "teleop_record":
        args.pop("recorder")
    desc = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", args)
    labels = {p.label for p in desc.processes}
    assert labels <= ESSENTIAL | NOT_ESSENTIAL, labels
    assert {"safety", "twin" if mode == "twin" else "dynamixel" if task != "drawer" or
            mode == "hil" else "driver"} <= labels
    assert ("camera" in labels) == (camera == "true" and mode != "twin")
    for process in desc.processes:
        assert process.shutdown_on_exit == (process.label in ESSENTIAL), process.label


@pytest.mark.parametrize("path", sorted(LAUNCH_DIR.glob("*.launch.yaml")), ids=lambda p: p.name)
def test_every_launch_file_loads_with_its_defaults(path: Path) -> None:
    assert LaunchDescription.load(path).processes


@pytest.mark.parametrize("path", sorted(LAUNCH_DIR.glob("*.launch.yaml")), ids=lambda p: p.name)
def test_jazzys_frontend_parses_every_launch_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same files under ROS 2 Jazzy's own parser (../shared/ros2-launch-jazzy), where it is
    installed: the runner's rules must not let the two drift apart."""
    parser = _jazzy_parser(monkeypatch)
    root, instance = parser.load(str(path))
    description = instance.parse_description(root)
    if "on_exit: shutdown" in path.read_text():  # Jazzy turns it into its Shutdown action
        from launch.actions import Shutdown
        assert any(isinstance(action, Shutdown) for entity in description.entities
                   for action in (getattr(entity, "_ExecuteLocal__on_exit", None) or []))


# Where the runner is stricter than Jazzy's parser, each with its reason in the runner's message.
STRICTER = {"node without pkg",  # only robot_rl's nodes run here
            "string scoped"}  # Jazzy takes any string as true


@pytest.mark.parametrize("text", [t for i, t, _ in PARSE_ERRORS if i not in STRICTER],
                         ids=[i for i, _, _ in PARSE_ERRORS if i not in STRICTER])
def test_jazzy_rejects_what_the_runner_rejects_when_parsing(
        tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _jazzy_parser(monkeypatch)
    path = tmp_path / "main.launch.yaml"
    path.write_text(f"launch:\n{text}\n")
    with pytest.raises(Exception):  # noqa: B017 (Jazzy raises ValueError, TypeError, ...)
        root, instance = parser.load(str(path))
        instance.parse_description(root)


def _jazzy_parser(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("launch_ros", reason="ROS 2 Jazzy's launch is not installed here "
                                             "(see ../shared/ros2-launch-jazzy/README.md)")
    import launch.frontend

    # its parser finds its grammar in the ament index of the prefix it is installed in
    prefix = Path(launch.__file__).resolve().parents[4]  # PREFIX/lib/pythonX.Y/site-packages
    others = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(prefix), *others]))
    return launch.frontend.Parser


def test_yaml_is_what_the_runner_reads() -> None:
    """The runner's loader is PyYAML's safe loader plus lines: same values as yaml.safe_load."""
    for path in LAUNCH_DIR.glob("*.launch.yaml"):
        assert launch_module.yaml.load(path.read_text(), Loader=launch_module._LineLoader) == \
            yaml.safe_load(path.read_text())


def _param(desc: LaunchDescription, label: str, name: str) -> str | None:
    """The value a launched node gets for a parameter (None: not passed)."""
    process = next(p for p in desc.processes if p.label == label)
    values = [c.split(":=", 1)[1] for c in process.cmd if c.startswith(f"{name}:=")]
    return values[-1] if values else None


@pytest.mark.parametrize("task, camera_node", [("valve", "twin"), ("drawer", "twin"),
                                               ("valve", "camera")])
def test_pixels_makes_the_camera_publish_the_view_and_the_recorder_store_it(
        task: str, camera_node: str) -> None:
    """``pixels:=true``: the task's view stream from the twin (or the RealSense node in hil) and
    a recorder of the pixel task; without it, neither."""
    mode = {"twin": "twin", "camera": "hil"}[camera_node]
    args = {"mode": mode, "recorder": "true", "camera": str(camera_node == "camera").lower()}
    pixels = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", {**args, "pixels": "true"})
    assert _param(pixels, camera_node, "view_task") == task
    assert _param(pixels, "recorder", "observation") == "pixels"
    state = LaunchDescription.load(LAUNCH_DIR / f"{task}.launch.yaml", args)
    assert _param(state, camera_node, "view_task") == "''"
    assert _param(state, "recorder", "observation") == "state"


def test_teleop_recording_of_pixel_demonstrations_stores_the_view() -> None:
    desc = LaunchDescription.load(LAUNCH_DIR / "teleop_record.launch.yaml",
                                  {"pixels": "true", "task": "drawer", "robot": "arm6",
                                   "namespace": "arm"})
    assert _param(desc, "twin", "view_task") == "drawer"
    assert _param(desc, "twin", "view_robot") == "arm6"
    assert _param(desc, "recorder", "observation") == "pixels"
