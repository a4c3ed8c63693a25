"""A person taking over in process: a gamepad through the real joystick reader on a FIFO, and the
keyboard through the real terminal reader on a pseudo-terminal, against the twin and its gate."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.joystick import Fifo, axis, button

from robot_rl.data import EpisodeStore
from robot_rl.pipeline import stages
from robot_rl.pipeline.device_operator import DeviceOperator
from robot_rl.pipeline.rollout import GatedEnv
from robot_rl.run_config import load_pipeline_config
from robot_rl.teleop.joy import GAMEPAD
from robot_rl.teleop.joystick import JoystickDevice, JoystickTeleop
from robot_rl.teleop.terminal import TerminalKeys

RT, RY = 5, 4            # axes: right trigger (takeover), right stick (the selected joint)
GUIDE, START = 8, 7      # buttons: e-stop, its reset
PULLED, RELEASED = 32767, -32767  # a trigger's raw values (the joy scaling makes them -1, +1)


@pytest.fixture
def env():
    gated = GatedEnv(load_pipeline_config("valve", profile="bench_tiny"))
    yield gated
    gated.close()


def test_the_trigger_takes_over_moves_and_the_estop_latches(env, tmp_path: Path) -> None:
    path = str(tmp_path / "js0")
    os.mkfifo(path)
    names = list(env.env.unwrapped.task.calibration.joint_names)
    stick = JoystickTeleop(names, GAMEPAD, speed_rad_s=1.0,
                           device=JoystickDevice(path, reopen_period_s=0.0))
    writer = Fifo(path)
    operator = DeviceOperator(env, "joystick", joystick=stick, realtime=False)
    gym_env = env.env
    try:
        env.gate.reset()
        obs, _ = gym_env.reset(seed=2)
        operator.reset()
        stick.poll(0.0)                                   # opens the FIFO's reading end
        assert operator.act(obs) is None                  # nobody pressed anything
        writer.write(axis(PULLED, RT) + axis(-32767, RY))  # pull the trigger, stick up
        start = gym_env.unwrapped.commanded_targets_rad[0]
        for _ in range(5):
            action = operator.act(obs)
            assert action is not None
            obs, *_ = gym_env.step(action)
        moved = gym_env.unwrapped.commanded_targets_rad[0] - start
        assert 0.1 < moved <= 5 * 0.05 + 1e-6            # 1 rad/s for 5 periods of 50 ms
        assert operator.takeovers == 1
        writer.write(axis(RELEASED, RT))
        assert operator.act(obs) is None                  # let go: the policy's turn
        writer.write(button(1, GUIDE) + button(0, GUIDE))
        operator.act(obs)
        assert operator.estopped and env.gate.supervisor.estopped
        env.gate.reset()                                  # a new episode: still latched
        gym_env.reset(seed=3)
        operator.reset()
        operator.act(obs)
        assert env.gate.supervisor.estopped
        held = gym_env.unwrapped.commanded_targets_rad
        gym_env.step(np.ones(9, np.float32))
        np.testing.assert_allclose(gym_env.unwrapped.commanded_targets_rad, held)
        writer.write(button(1, START) + button(0, START))
        operator.act(obs)
        assert not operator.estopped
    finally:
        writer.close()
        operator.close()


def test_the_keyboard_toggles_the_takeover(env) -> None:
    master, slave = os.openpty()
    stream = os.fdopen(slave, "r")  # kept: its file descriptor is the terminal the keys read
    keys = TerminalKeys(stream)
    operator = DeviceOperator(env, "keyboard", keys=keys, realtime=False)
    try:
        env.gate.reset()
        obs, _ = env.env.reset(seed=2)
        operator.reset()
        assert operator.act(obs) is None
        os.write(master, b"t1w")                          # take over, select f0_base, one step
        action = operator.act(obs)
        assert action is not None
        commanded = env.env.unwrapped.commanded_targets_rad
        targets = env.env.unwrapped.task.action_to_targets(action, commanded)
        assert targets[0] - commanded[0] == pytest.approx(0.05, abs=1e-6)
        os.write(master, b"t")
        assert operator.act(obs) is None
    finally:
        operator.close()
        stream.close()
        os.close(master)


def test_finetune_with_a_held_trigger_records_every_step_as_the_operators(
        tmp_path: Path, one_torch_thread: None) -> None:
    path = str(tmp_path / "js0")
    os.mkfifo(path)
    writer = Fifo(path)
    config = load_pipeline_config("valve", ["intervention.operator=joystick",
                                            f"intervention.joystick_path={path}",
                                            "intervention.realtime=false"], "bench_hil_tiny")
    dataset = tmp_path / "dataset.zarr"
    stages.record(config, dataset, progress=False)
    stages.pretrain(config, dataset, tmp_path, progress=False)
    pulled = threading.Timer(0.0, lambda: writer.write(axis(PULLED, RT), timeout_s=60.0))
    pulled.start()                                        # as soon as the run opens the device
    try:
        result = stages.finetune(config, tmp_path, dataset, progress=False)
    finally:
        pulled.join()
        writer.close()
    with EpisodeStore.open(tmp_path / "online.zarr") as store:
        flags = store.read("intervention")
    assert flags[-20:].all()                              # the trigger held to the end
    assert result.interventions["intervention_steps"] == flags.sum() > 0
