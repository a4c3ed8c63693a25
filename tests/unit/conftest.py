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
