"""A short, stable digest of a calibration file, stored with every dataset and episode."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from robot_rl.data.errors import DatasetError

DIGEST_HEX_CHARS = 16


def calibration_digest(path_or_text: str | os.PathLike[str]) -> str:
    """sha256 of the canonical form of a calibration YAML (a file path or the YAML text itself).

    Canonical: parsed, then dumped as JSON with sorted keys, so comments, key order and
    formatting do not change the digest but any value does.
    """
    source, text = _source_text(path_or_text)
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DatasetError(source, f"calibration is not valid YAML: {err}") from err
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:DIGEST_HEX_CHARS]


def _source_text(path_or_text: str | os.PathLike[str]) -> tuple[str, str]:
    looks_like_path = isinstance(path_or_text, os.PathLike) or (
        "\n" not in path_or_text
        and (Path(path_or_text).suffix in (".yaml", ".yml") or Path(path_or_text).is_file()))
    if not looks_like_path:
        return "<calibration text>", str(path_or_text)
    path = Path(path_or_text)
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(path, f"cannot read calibration file: {err.strerror}") from err
