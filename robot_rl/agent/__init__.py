"""Episodes on the graph, without the graph: the latest state of a robot, the episode state
machine, episode events and policy weights as bytes. Pure (numpy, torch); the nodes wire it."""

from __future__ import annotations

from robot_rl.agent.episode import EpisodeConfig, EpisodeMachine, FinishedEpisode, TickOutput
from robot_rl.agent.events import decode_event, encode_event
from robot_rl.agent.observation import LatestState, object_topic_for, robot_topics
from robot_rl.agent.weights import snapshot_from_bytes, snapshot_to_bytes

__all__ = ["EpisodeConfig", "EpisodeMachine", "FinishedEpisode", "LatestState", "TickOutput",
           "decode_event", "encode_event", "object_topic_for", "robot_topics",
           "snapshot_from_bytes", "snapshot_to_bytes"]
