"""The learner node's end of its training side (``nodes.learner_training``).

``TrainerLink`` starts the training side, in a process of its own (the default) or in a thread,
hands it episodes and keeps what it reports: the newest POLICY bytes and the numpy-only snapshot
they decode to (the node acts with exactly what a remote actor receives), its counters, its
failure. A receiver thread does the reading; it blocks in the socket read (without the GIL)
between messages, and decoding the weights takes about half a millisecond, so the node's acting
callbacks do not wait on training.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from robot_rl.agent.episode import FinishedEpisode
from robot_rl.agent.weights import snapshot_from_bytes
from robot_rl.learning.background import PolicySnapshot, TrainerCounters
from robot_rl.nodes import learner_training
from robot_rl.nodes.learner_training import TrainingSpec
from robot_rl.ros.launch import child_env

TRAINER_MODES = ("process", "thread")


class TrainerFailed(RuntimeError):
    """The training side reported an error, or ended without being asked to."""


class TrainerLink:
    def __init__(self, spec: TrainingSpec, mode: str, logger: Any, nice: int = 0) -> None:
        if mode not in TRAINER_MODES:
            raise ValueError(f"trainer must be one of {', '.join(TRAINER_MODES)}; got {mode!r}")
        self.mode, self._log = mode, logger
        self.snapshot: PolicySnapshot | None = None  # read by the acting callbacks
        self.policy_bytes: tuple[int, bytes] | None = None
        self.counters = TrainerCounters()
        self.num_updates = 0
        self.buffer_transitions = 0
        self.pretrain_updates = 0
        self.error: TrainerFailed | None = None
        self.final: dict[str, Any] | None = None  # what ("stopped", ...) reported
        self._ready: dict[str, Any] | None = None
        self._ready_event, self._stopped = threading.Event(), threading.Event()
        self._changed = threading.Condition()  # notified on every message from the trainer
        self._stopping = False
        self._send_lock = threading.Lock()
        self._conn, child_conn = multiprocessing.Pipe(duplex=True)
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        if mode == "process":
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "robot_rl.nodes.learner_training",
                 str(child_conn.fileno()), str(int(nice))], pass_fds=(child_conn.fileno(),),
                env=child_env())
            child_conn.close()  # the child has its copy: EOF here once the child is gone
        else:
            self._thread = threading.Thread(target=learner_training.serve, args=(child_conn,),
                                            name="learner-training", daemon=True)
            self._thread.start()
        self._receiver = threading.Thread(target=self._receive, name="trainer-link", daemon=True)
        self._receiver.start()
        self._send("spec", spec)

    # ---- start-up ----------------------------------------------------------------------------
    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Block until the training side has loaded its data and agent; TrainerFailed (with its
        message) if it failed or died first, TimeoutError if it takes longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self._ready_event.wait(0.05):
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"trainer ({self.mode}) not ready after {timeout_s:g} s")
        assert self._ready is not None
        return self._ready

    # ---- node side -----------------------------------------------------------------------------
    def submit_episode(self, episode: FinishedEpisode) -> None:
        self._send("episode", episode)

    def wait_trained(self, env_steps: int, updates_per_env_step: float, batch_size: int,
                     give_up: Callable[[], bool] = lambda: False) -> None:
        """Block until the training side has ingested ``env_steps`` online steps, done the
        updates they are owed, and sent the policy those updates made (it does with
        ``TrainingSpec.publish_when_trained``), or until ``give_up()`` (the node is shutting
        down); TrainerFailed if it fails first."""
        with self._changed:
            while not (self._trained(env_steps, updates_per_env_step, batch_size) or give_up()):
                if self.error is not None:
                    raise self.error
                if not self.alive:
                    raise TrainerFailed(f"trainer ({self.mode}) is gone{self._exit_code()}")
                self._changed.wait(0.5)

    def _trained(self, env_steps: int, ratio: float, batch_size: int) -> bool:
        counters = self.counters
        if counters.env_steps < env_steps:
            return False  # not ingested yet
        if self.buffer_transitions >= batch_size and \
                counters.online_updates < ratio * counters.env_steps:
            return False
        return self.snapshot is not None and self.snapshot.version >= self.num_updates

    @property
    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask for the final checkpoint and wait for it; after ``timeout_s`` the process is killed
        (its last periodic checkpoint stands)."""
        self._stopping = True
        self._send("stop")
        deadline = time.monotonic() + timeout_s
        while not self._stopped.wait(0.05) and self.alive:
            if time.monotonic() > deadline:
                self._log.error(f"trainer ({self.mode}) did not stop within {timeout_s:g} s")
                break
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        elif self._thread is not None:
            self._thread.join(5.0)
        self._conn.close()
        self._receiver.join(5.0)

    # ---- receiver thread -----------------------------------------------------------------------
    def _send(self, *message: Any) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (BrokenPipeError, ConnectionResetError, OSError):
                if self.error is None and not self._stopping:
                    self.error = TrainerFailed(f"trainer ({self.mode}) is gone{self._exit_code()}")

    def _receive(self) -> None:
        while True:
            try:
                kind, *body = self._conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._handle(kind, body)
            except Exception as err:  # e.g. weights that do not decode: say so, keep reading
                self.error = TrainerFailed(f"trainer ({self.mode}): message {kind!r}: "
                                           f"{type(err).__name__}: {err}")
            with self._changed:
                self._changed.notify_all()
        if not self._stopped.is_set() and self.error is None and not self._stopping:
            self.error = TrainerFailed(f"trainer ({self.mode}) ended without being asked"
                                       f"{self._exit_code()}")
        with self._changed:
            self._changed.notify_all()

    def _handle(self, kind: str, body: list[Any]) -> None:
        if kind == "snapshot":
            self.policy_bytes = (body[0], body[1])
            self.snapshot = snapshot_from_bytes(body[1])[0]  # one swap: acting sees old or new
        elif kind == "progress":
            self._progress(body[0])
        elif kind == "log":
            getattr(self._log, body[0])(body[1])
        elif kind == "ready":
            self._progress(body[0])
            self.pretrain_updates = int(body[0]["pretrain_updates"])
            self._ready = body[0]
            self._ready_event.set()
        elif kind == "failed":
            self.error = TrainerFailed(f"trainer ({self.mode}): {body[0]}")
        elif kind == "stopped":
            self._progress(body[0])
            self.final = body[0]
            self._stopped.set()

    def _progress(self, info: dict[str, Any]) -> None:
        self.counters = TrainerCounters(**info["counters"])
        self.num_updates = int(info["num_updates"])
        self.buffer_transitions = int(info["buffer_transitions"])

    def _exit_code(self) -> str:
        if self._proc is None:
            return ""
        code = self._proc.poll()
        if code is None:
            try:
                code = self._proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                return ""
        return f" (exit code {code})"
