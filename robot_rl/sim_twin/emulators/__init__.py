"""Emulated hardware for hardware-in-the-loop runs: the Dynamixel Protocol 2.0 bus on a pty."""
