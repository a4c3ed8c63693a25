"""Writing a new robot calibration YAML from an existing one with some joint fields changed.

Procedures never overwrite the user's file silently: the output path must not exist unless
``force``, and the result is validated (``load_robot``) before it lands, atomically.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robot_rl.config import ConfigError, load_yaml
from robot_rl.robot_config import RobotCalibration, calibration_path, load_robot


def default_output(source: str | Path, suffix: str) -> Path:
    """robot_rl/calibration/dclaw.yaml -> robot_rl/calibration/dclaw.<suffix>.yaml"""
    path = calibration_path(source)
    return path.with_name(f"{path.stem}.{suffix}.yaml")


def write_updated(source: str | Path, joint_updates: Mapping[str, Mapping[str, Any]],
                  out_path: str | Path, *, force: bool = False, note: str = ""
                  ) -> RobotCalibration:
    """Copies ``source`` to ``out_path`` with ``joint_updates[name]`` merged into those joints."""
    src, out = calibration_path(source), Path(out_path)
    if out.resolve() == src.resolve() and not force:
        raise FileExistsError(f"{out} is the source calibration; pass --overwrite to replace it")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite to replace it")
    data = load_yaml(src)
    joints = {j.get("name"): j for j in (*data.get("joints", ()), *data.get("sensors", ()))}
    unknown = sorted(set(joint_updates) - set(joints))
    if unknown:
        raise ConfigError(f"{src}: no joints named {unknown}; known: {sorted(joints)}")
    for name, fields in joint_updates.items():
        joints[name].update({k: _plain(v) for k, v in fields.items()})
    _keep_model_paths(data, load_robot(src), out)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = f"# Written {stamp} from {src}" + (f": {note}" if note else "") + "\n"
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    try:
        calibration = load_robot(tmp)  # a procedure must not leave an invalid file behind
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return calibration


def _keep_model_paths(data: dict[str, Any], source: RobotCalibration, out: Path) -> None:
    """Model and scene paths relative to the source's folder, made relative to the output's, so
    that the written file names the same files from wherever it is written."""
    folder = Path(source.source).parent.resolve()
    out_folder = out.parent.resolve()
    if folder == out_folder:
        return

    def moved(relative: str) -> str:
        if Path(relative).is_absolute() or not (folder / relative).exists():
            return relative  # absolute, or the bundled form (relative to the installation)
        return os.path.relpath(folder / relative, out_folder)

    data["model_mjcf"] = moved(data["model_mjcf"])
    for settings in (data.get("tasks") or {}).values():
        if isinstance(settings, dict) and isinstance(settings.get("scene"), str):
            settings["scene"] = moved(settings["scene"])


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return round(float(value), 6) if isinstance(value, float) or hasattr(value, "item") else value
