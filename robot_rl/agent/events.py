"""EPISODE events and EPISODE_STATUS replies as JSON text (the protocol of robot_rl.nodes.topics)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

EPISODE_EVENTS = ("reset", "start", "end", "discard")
STATUS_EVENTS = ("reset_done", "reset_failed")


class EventError(ValueError):
    """A message on an episode topic that is not a valid event."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def encode_event(event: str, episode: int, **fields: Any) -> str:
    """``{"event": ..., "episode": k, ...}``; numpy values become plain JSON."""
    if event not in EPISODE_EVENTS + STATUS_EVENTS:
        raise EventError(f"event {event!r}: expected one of {EPISODE_EVENTS + STATUS_EVENTS}")
    return json.dumps({"event": event, "episode": int(episode), **fields}, default=_plain,
                      allow_nan=False)


def decode_event(text: str, where: str = "episode topic") -> dict[str, Any]:
    """The event as a dict; raises EventError naming ``where`` and what is wrong."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as err:
        raise EventError(f"{where}: not JSON ({err}): {text[:200]!r}") from err
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise EventError(f"{where}: expected an object with a string 'event', got {text[:200]!r}")
    episode = event.get("episode")
    if episode is not None and (isinstance(episode, bool) or not isinstance(episode, int)):
        raise EventError(f"{where}: 'episode' must be an integer, got {episode!r}")
    goal = event.get("goal")
    if goal is not None and not (isinstance(goal, (int, float)) and math.isfinite(goal)):
        raise EventError(f"{where}: 'goal' must be a finite number, got {goal!r}")
    return event
