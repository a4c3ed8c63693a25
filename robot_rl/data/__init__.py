"""The data layer: the zarr episode store, its streaming writer and dataset tools."""

from __future__ import annotations

from robot_rl.data.calibration import calibration_digest
from robot_rl.data.errors import DatasetError, SchemaError
from robot_rl.data.schema import KeySpec
from robot_rl.data.store import FORMAT_VERSION, EpisodeStore, Recovery
from robot_rl.data.transition_arrays import transitions
from robot_rl.data.writer import EpisodeWriter

__all__ = ["FORMAT_VERSION", "DatasetError", "EpisodeStore", "EpisodeWriter", "KeySpec",
           "Recovery", "SchemaError", "calibration_digest", "transitions"]
