"""Evaluation rounds between exploring episodes, evaluation starts, and starting an episode on a
state measured after its reset (sim time: one instant for reset_done and that state)."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.agent.episode import EpisodeConfig, EpisodeMachine, Phase
from robot_rl.agent.evaluation import EvaluationSchedule
from robot_rl.agent.schedule import ControlSchedule
from robot_rl.agent.sites import task_sites
from robot_rl.robot_config import load_robot
from robot_rl.tasks.base import TaskState
from robot_rl.tasks.valve import ValveTask


def run(schedule: EvaluationSchedule, lengths: list[int], budget: int) -> list[tuple]:
    """Plays episodes of the given lengths (online ones) against the schedule; the plan."""
    acted, plan, lengths = 0, [], list(lengths)
    while True:
        step = schedule.next_episode(acted, acted >= budget)
        if step is None:
            return plan
        kind, draw = step
        plan.append((kind, draw, acted))
        if kind == "eval":
            schedule.finished(draw % 2 == 0, -1.0)
        else:
            acted += lengths.pop(0)


def test_rounds_at_start_every_n_steps_and_at_the_end() -> None:
    schedule = EvaluationSchedule(every_env_steps=100, episodes=2)
    plan = run(schedule, [60] * 10, budget=250)
    evals = [(draw, at) for kind, draw, at in plan if kind == "eval"]
    # at 0 (the pretrained policy), at the first boundary past 100 and 200, at the budget's end
    assert evals == [(0, 0), (1, 0), (0, 120), (1, 120), (0, 240), (1, 240), (0, 300), (1, 300)]
    assert [r.env_steps for r in schedule.rounds] == [0, 120, 240, 300]
    assert all(r.complete and r.success_rate == 0.5 for r in schedule.rounds)
    assert schedule.done(300, budget_reached=True)
    assert [kind for kind, _, _ in plan].count("online") == 5


def test_no_final_round_when_the_last_one_was_at_the_end() -> None:
    schedule = EvaluationSchedule(every_env_steps=120, episodes=1)
    plan = run(schedule, [60] * 10, budget=240)
    assert [at for kind, _, at in plan if kind == "eval"] == [0, 120, 240]


def test_a_discarded_evaluation_episode_runs_its_draw_again() -> None:
    schedule = EvaluationSchedule(every_env_steps=100, episodes=3)
    assert schedule.next_episode(0, False) == ("eval", 0)
    assert schedule.next_episode(0, False) == ("eval", 1)
    schedule.discarded(1)
    assert schedule.next_episode(0, False) == ("eval", 1)
    assert schedule.next_episode(0, False) == ("eval", 2)


def test_disabled_and_resumed_schedules() -> None:
    assert run(EvaluationSchedule(0, 5), [60] * 3, budget=150) == [
        ("online", -1, 0), ("online", -1, 60), ("online", -1, 120)]
    resumed = EvaluationSchedule(every_env_steps=100, episodes=1, acted_env_steps=250)
    assert resumed.next_episode(250, False) == ("online", -1)  # not at once: at 300
    assert resumed.next_episode(310, False) == ("eval", 0)
    with pytest.raises(ValueError, match="every_env_steps must be >= 0"):
        EvaluationSchedule(-1, 5)


@pytest.fixture(scope="module")
def task() -> ValveTask:
    return ValveTask(load_robot("dclaw"))


def state(task: ValveTask) -> TaskState:
    n = task.n_joints
    sites = task_sites(task)
    return TaskState(np.zeros(n), np.zeros(n), 0.0, 0.0,
                     sites(np.zeros(n), 0.0) if sites is not None else {})


def reset_of(machine: EpisodeMachine, task: ValveTask, kind: str, draw: int | None) -> dict:
    machine.plan(kind, draw)
    out = machine.tick(0.0, state(task), 0.0, lambda obs: np.zeros(task.n_joints))
    (name, fields), = out.events
    assert name == "reset"
    machine.phase = Phase.IDLE  # as if the episode ran; only the draws matter here
    return {k: np.asarray(v).tolist() for k, v in fields.items()}


def test_evaluation_starts_repeat_and_differ_from_exploring_ones(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig(seed=4))
    first = [reset_of(machine, task, "eval", draw) for draw in range(3)]
    online = [reset_of(machine, task, "online", None) for _ in range(3)]
    again = [reset_of(machine, task, "eval", draw) for draw in range(3)]
    assert first == again  # every round from the same states, whatever ran in between
    assert len({f["seed"] for f in first}) == 3
    assert not {f["seed"] for f in first} & {f["seed"] for f in online}
    with pytest.raises(ValueError, match="an eval episode"):
        machine.plan("eval", None)


def test_the_episode_starts_on_a_state_stamped_after_reset_done(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig())
    policy = lambda obs: np.zeros(task.n_joints)  # noqa: E731
    machine.tick(0.0, state(task), 0.0, policy)
    assert machine.phase is Phase.RESETTING
    # sim time: the reply and the states come at one instant, 7.5 s; the reply names the stamp
    # of the state after the teleport, 7.5, so a state stamped 7.45 (before it) never starts
    machine.on_status({"event": "reset_done", "episode": 0, "stamp_s": 7.5}, now_s=7.5)
    assert not machine.ready_to_start(7.5, state_stamp_s=7.45)
    out = machine.tick(7.5, state(task), 7.5, policy, state_stamp_s=7.45)
    assert machine.phase is Phase.RESETTING and out.targets_rad is None
    assert machine.ready_to_start(7.5, state_stamp_s=7.5)
    out = machine.tick(7.5, state(task), 7.5, policy, state_stamp_s=7.5)
    assert machine.phase is Phase.RUNNING and out.targets_rad is not None
    assert [name for name, _ in out.events] == ["start"]


def test_a_reply_without_a_stamp_keeps_the_receipt_rule(task: ValveTask) -> None:
    machine = EpisodeMachine(task, EpisodeConfig())
    machine.tick(0.0, state(task), 0.0, lambda obs: np.zeros(task.n_joints))
    machine.on_status({"event": "reset_done", "episode": 0}, now_s=2.0)
    assert not machine.ready_to_start(1.99, state_stamp_s=5.0)
    assert machine.ready_to_start(2.0, state_stamp_s=None)


def test_a_second_step_at_the_same_instant_keeps_the_schedule() -> None:
    schedule = ControlSchedule(0.05)
    schedule.acted(1.0)
    schedule.acted(1.0)  # reset_done and the state after it, at one sim instant: both step
    assert schedule.next_s == pytest.approx(1.05)
    assert schedule.due(1.05)
