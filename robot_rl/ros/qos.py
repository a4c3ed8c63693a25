"""QoS profiles with rclpy's defaults, independent of any backend."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QosProfile:
    """The QoS policies the graph uses; the rest keep DDS/rclpy defaults.

    A reliable reader does not match a best-effort writer, and a transient-local reader only
    gets the history of a transient-local writer: pick the same profile on both ends.
    """

    reliability: str = field(default="reliable",
                             metadata={"choices": ("reliable", "best_effort")})
    durability: str = field(default="volatile",
                            metadata={"choices": ("volatile", "transient_local")})
    history: str = field(default="keep_last", metadata={"choices": ("keep_last", "keep_all")})
    depth: int = field(default=10, metadata={"help": "queue length for keep_last",
                                              "range": (1, 100_000)})

    def __post_init__(self) -> None:
        for name in ("reliability", "durability", "history"):
            choices = type(self).__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise ValueError(f"QosProfile.{name}: expected one of {choices}, "
                                 f"got {getattr(self, name)!r}")
        if self.depth < 1:
            raise ValueError(f"QosProfile.depth: expected >= 1, got {self.depth}")


# rclpy.qos.qos_profile_system_default / QoSProfile(depth=10)
QOS_DEFAULT = QosProfile()
# rclpy.qos.qos_profile_sensor_data
QOS_SENSOR_DATA = QosProfile(reliability="best_effort", depth=5)
# Like a latched ROS 1 topic: a late subscriber still gets the last message (policy weights,
# calibration); the same shape as rclpy's parameter-events/"transient local" profiles.
QOS_LATCHED = QosProfile(durability="transient_local", depth=1)


def qos_from_depth(qos: QosProfile | int | None) -> QosProfile:
    """rclpy accepts an int depth where a profile is expected; so do we."""
    if qos is None:
        return QOS_DEFAULT
    if isinstance(qos, bool) or not isinstance(qos, (int, QosProfile)):
        raise TypeError(f"qos: expected a QosProfile or an int depth, got {qos!r}")
    return QosProfile(depth=qos) if isinstance(qos, int) else qos
