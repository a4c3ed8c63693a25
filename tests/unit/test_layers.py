"""Every import points down the layers (DESIGN.md: a pure core, thin shells).

Read from the source with ``ast`` (imports inside functions included, since a lazy import is
still a dependency), so a module that reaches up fails here by name, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("robot_rl",)

# Lowest first. A module may import its own layer and the layers below it, never above.
LAYERS: dict[str, int] = {
    # 0, the core: configs, robots and tasks as data, learning, datasets, the supervisor
    **dict.fromkeys(["robot_rl", "robot_rl.config", "robot_rl.robot_config",
                     "robot_rl.camera_config", "robot_rl.registry", "robot_rl.robot",
                     "robot_rl.run_config", "robot_rl.tasks", "robot_rl.learning",
                     "robot_rl.data", "robot_rl.safety", "robot_rl.teleop",
                     "robot_rl.hil", "robot_rl.reward"], 0),
    "robot_rl.agent": 1,      # the acting side, shared by the nodes and the in-process pipeline
    "robot_rl.ros": 2,        # the Node API and its backends
    "robot_rl.nodes": 3,      # thin adapters between ros/ and the core
    "robot_rl.sim_twin": 4, "robot_rl.drivers": 4,   # the twin and the hardware, with their nodes
    "robot_rl.pipeline": 5, "robot_rl.calibration": 5,  # runs that start nodes, twins or drivers
    **dict.fromkeys(["robot_rl.cli", "robot_rl.dataset_cli", "robot_rl.catalog"], 6),
}
CORE_NEVER_IMPORTS = ("rclpy", "cyclonedds", "dynamixel_sdk", "pyrealsense2")


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "robot_rl" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules() -> list[tuple[Path, str]]:
    return [(path, _layer_of(".".join(path.relative_to(REPO).with_suffix("").parts)))
            for root in ROOTS for path in sorted((REPO / root).rglob("*.py"))]


def test_every_module_has_a_layer() -> None:
    unplaced = {layer for _, layer in _modules() if layer.removesuffix(".__init__") not in LAYERS}
    assert not unplaced, f"give these a layer in tests/unit/test_layers.py: {sorted(unplaced)}"


def test_imports_point_down() -> None:
    upward = []
    for path, layer in _modules():
        level = LAYERS[layer.removesuffix(".__init__")]
        for line, name in _imports(path):
            if name.split(".")[0] not in ROOTS:
                continue
            target = _layer_of(name)
            if LAYERS[target] > level:
                upward.append(f"{path.relative_to(REPO)}:{line} ({layer}, layer {level}) "
                              f"imports {name} (layer {LAYERS[target]})")
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_the_core_never_imports_ros_or_a_hardware_library() -> None:
    reached = [f"{path.relative_to(REPO)}:{line} imports {name}"
               for path, layer in _modules() if LAYERS[layer.removesuffix(".__init__")] == 0
               for line, name in _imports(path) if name.split(".")[0] in CORE_NEVER_IMPORTS]
    assert not reached, "\n".join(reached)
