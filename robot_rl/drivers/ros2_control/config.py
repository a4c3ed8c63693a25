"""The bridge's configuration: which controller, how to command it, how the arm names its joints."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("joint_trajectory", "forward_command")


@dataclass(frozen=True)
class BridgeConfig:
    """Configuration only, no vendor code: any arm whose ros2_control stack runs a
    joint_trajectory_controller or a forward_command_controller (position) is covered."""

    robot: str = field(default="ur5e", metadata={"help": "calibration name or YAML path"})
    controller: str = field(default="scaled_joint_trajectory_controller", metadata={
        "help": "controller name: commands go to /<controller>/joint_trajectory or /commands"})
    mode: str = field(default="joint_trajectory", metadata={"choices": MODES})
    joint_states_topic: str = field(default="/joint_states", metadata={
        "help": "the arm's joint_state_broadcaster output (also remappable)"})
    joint_prefix: str = field(default="", metadata={
        "help": "prefix of the arm's joint names before the calibration's (e.g. 'left_')"})
    command_period_s: float = field(default=0.05, metadata={
        "range": (0.001, 10.0),
        "help": "time_from_start of each one-point trajectory: the control period"})

    @property
    def command_topic(self) -> str:
        leaf = "joint_trajectory" if self.mode == "joint_trajectory" else "commands"
        return f"/{self.controller.strip('/')}/{leaf}"

    def arm_joint_names(self, joint_names: tuple[str, ...]) -> tuple[str, ...]:
        """The names the arm's controllers use for the calibration's joints."""
        return tuple(self.joint_prefix + name for name in joint_names)
