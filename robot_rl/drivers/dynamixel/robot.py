"""A Dynamixel chain as a ``robot_rl.robot.Robot``: driver kinds ``dynamixel_hand`` and
``dynamixel_arm``, for the generic driver node (robot_rl.nodes.robot_driver).

The chain keeps its own rules (robot_rl/drivers/dynamixel/chain.py: arming, reconnects, power-loss
re-arms, the goal checks); this adapter only maps its calls onto the interface. The dedicated
Dynamixel node (robot_rl/drivers/dynamixel/node.py) adds what the generic one has not: re-arm and reboot
topics, bus diagnostics, torque on at the first command.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.config import from_dict
from robot_rl.drivers.dynamixel.chain import DynamixelChain, DynamixelChainConfig, DynamixelGoalRefused
from robot_rl.robot import GoalRefused, Robot, RobotReading
from robot_rl.robot_config import RobotCalibration


class DynamixelRobot(Robot):
    def __init__(self, calibration: RobotCalibration, *, port: str = "",
                 **chain_options: Any) -> None:
        """``port``: '' for the calibration's bus.port; ``chain_options``: fields of
        DynamixelChainConfig (retries, operating_mode, ...), checked like a config file."""
        super().__init__(calibration)
        config = from_dict(DynamixelChainConfig, chain_options, source="driver_options")
        self.chain = DynamixelChain(calibration, config, port=port or None)
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self.chain.connect()
        self.chain.configure()
        self.chain.torque(True, cause="connect")  # holding where each servo is
        self._connected = True

    def read(self) -> RobotReading:
        state = self.chain.read()
        joints, sensors = state.joints, state.sensors
        temperature = state.temperature_c[joints]
        return RobotReading(
            stamp_s=state.stamp_s, position_rad=state.position_rad[joints],
            velocity_rad_s=state.velocity_rad_s[joints], effort_a=state.current_a[joints],
            sensors_rad=state.position_rad[sensors] if state.n_joints < len(state.names) else None,
            temperature_c=temperature if np.isfinite(temperature).all() else None,
            hardware_error=np.array([bool(e) for e in state.hardware_error[joints]]))

    def write_goal(self, positions_rad: np.ndarray) -> None:
        try:
            self.chain.write_positions(positions_rad)
        except DynamixelGoalRefused as err:
            raise GoalRefused(err.reason, str(err)) from err

    def disconnect(self) -> None:
        try:
            if self._connected:
                self.chain.torque_off_once()
        finally:
            self._connected = False
            self.chain.close()
