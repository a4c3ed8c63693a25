"""The graph's topic names: their one home. Nodes, drivers, launch files and tests use these.

Robot topics are relative to the robot's namespace (``hand`` for the D'Claw, ``arm`` for an arm), so
two robots in two namespaces (``/r1/hand/...``, ``/r2/hand/...``) feed one learner. Message types are
standard ROS 2 ones only; units are SI. Joint order everywhere is the calibration file's.
"""

from __future__ import annotations

from dataclasses import dataclass

# Observations (drivers and the twin publish the same ones)
JOINT_STATES = "joint_states"                 # sensor_msgs/JointState: rad, rad/s, effort = current A
TEMPERATURE = "temperature_c"                 # std_msgs/Float32MultiArray, deg C per joint
HARDWARE_ERROR = "hardware_error"             # std_msgs/UInt8MultiArray, Dynamixel error bits per joint
OBJECT_STATE = "/object/state"                # sensor_msgs/JointState: valve angle rad or drawer m
CAMERA_COLOR = "/camera/color/image_raw"      # sensor_msgs/Image rgb8
CAMERA_DEPTH = "/camera/aligned_depth_to_color/image_raw"  # sensor_msgs/Image 16UC1, mm (RealSense)
CAMERA_INFO = "/camera/color/camera_info"     # sensor_msgs/CameraInfo

# Commands: only the safety supervisor publishes COMMAND; everything else publishes COMMAND_RAW
COMMAND_RAW = "command_raw"                   # sensor_msgs/JointState, position = targets rad
COMMAND = "command"                           # sensor_msgs/JointState, gated targets rad

# Safety
DIAGNOSTICS = "/diagnostics"                  # diagnostic_msgs/DiagnosticArray (ROS 2 convention)
ESTOP = "/safety/estop"                       # std_msgs/Bool: true latches the e-stop
ESTOP_RESET = "/safety/reset"                 # std_msgs/Bool: true asks to clear a latched e-stop
SAFETY_STATUS = "safety/status"               # std_msgs/String: pass | clipped | hold | estop

# Learning and episodes
POLICY = "/robot_rl/policy"                   # std_msgs/UInt8MultiArray: safetensors weights (agent.weights)
EPISODE = "episode"                           # std_msgs/String JSON: episode events (see below)
EPISODE_STATUS = "episode_status"             # std_msgs/String JSON: replies from the twin/reset
TELEOP_JOY = "/joy"                           # sensor_msgs/Joy from ROS 2's joy node

# EPISODE events, JSON objects with an "event" field, relative to the robot namespace:
#   {"event": "reset", "episode": k, "seed": s, "joint_positions_rad": [...],
#    "object_position": x, "goal": g}      learner -> twin (teleports) / reset procedure (real)
#   {"event": "start", "episode": k, ...}  an episode begins (recorder starts writing)
#   {"event": "end", "episode": k, "success": bool}      commit, with its label
#   {"event": "discard", "episode": k}     drop the episode in progress
# EPISODE_STATUS replies: {"event": "reset_done", "episode": k}
#                         {"event": "reset_failed", "episode": k, "error": "..."}


@dataclass(frozen=True)
class RobotTopics:
    """The resolved topic names of one robot namespace."""

    namespace: str
    joint_states: str
    temperature: str
    object_state: str
    command_raw: str
    command: str
    episode: str
    episode_status: str


def _join(namespace: str, name: str) -> str:
    return name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"


def object_topic_for(namespace: str) -> str:
    """OBJECT_STATE for a robot namespace: under the namespace's parent (its station).

    ``/hand`` -> ``/object/state``; ``/r1/hand`` -> ``/r1/object/state`` (the twin of station r1
    is then started with ``-r /object/state:=/r1/object/state``).
    """
    parent = namespace.rstrip("/").rpartition("/")[0]
    return f"{parent}{OBJECT_STATE}"


def robot_topics(namespace: str, object_topic: str = "") -> RobotTopics:
    """Topic names of the robot in ``namespace`` (absolute, e.g. ``/hand``)."""
    ns = "/" + namespace.strip("/")
    if ns == "/":
        raise ValueError("robot namespace must not be '/': name the robot (e.g. /hand)")
    return RobotTopics(
        namespace=ns,
        joint_states=_join(ns, JOINT_STATES),
        temperature=_join(ns, TEMPERATURE),
        object_state=object_topic or object_topic_for(ns),
        command_raw=_join(ns, COMMAND_RAW),
        command=_join(ns, COMMAND),
        episode=_join(ns, EPISODE),
        episode_status=_join(ns, EPISODE_STATUS),
    )
