"""Keep freed tensor memory in the process instead of handing it back to the kernel.

An update allocates and frees the same few-megabyte activations every step (a (2, 1024, 256)
float32 tensor is 2 MiB). glibc serves large blocks with fresh mappings and hands heap tops above
its trim threshold back to the kernel, so an update can fault its activations back in page by
page: hundreds to thousands of page faults per update at batch 1024 on the development machine
(bench/learner_throughput.py prints them for both settings; tests/unit/test_learning_memory.py
checks the difference). Raising the mmap and trim thresholds once per process keeps those blocks
on the heap, reused from one update to the next. The cost: up to TRIM_THRESHOLD_BYTES of freed
memory stays with the process.

Only glibc has `mallopt`; elsewhere this does nothing. ROBOT_RL_KEEP_FREED_MEMORY=0 turns it off.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's upper bound on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
ENV_SWITCH = "ROBOT_RL_KEEP_FREED_MEMORY"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the malloc settings above once per process; True where they are in effect."""
    global _applied
    if _applied is None:
        _applied = os.environ.get(ENV_SWITCH, "1") != "0" and _mallopt_all()
    return _applied


def _mallopt_all() -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc is among them
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
