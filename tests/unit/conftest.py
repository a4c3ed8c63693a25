"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny networks: one intra-op thread avoids OpenMP barrier stalls on a shared 2-core host."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def twin():
    """The D'Claw valve twin at the valve task's reset pose."""
    import numpy as np

    from robot_rl.robot_config import load_robot
    from robot_rl.sim_twin import Twin
    from robot_rl.tasks.valve import ValveTaskConfig

    twin = Twin(load_robot("dclaw"))
    twin.reset(np.tile(ValveTaskConfig().finger_home_rad, 3), 0.0)
    yield twin
    twin.close()
