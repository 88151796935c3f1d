"""The hand tasks' judge reads the object's rotation from simulator state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real.robots.hand.cube_rotate import _quat_mul
from sim2real.robots.hand.heading import heading_increment
from sim2real.train import hand_judge as hj


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def axis_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.array([math.cos(angle / 2), *(math.sin(angle / 2) * axis)])


@pytest.mark.parametrize("angle", [0.3, -0.3, 2.0, -2.5])
def test_heading_increment_reads_a_rotation_about_the_vertical_whatever_the_tilt(angle: float) -> None:
    start = axis_quat([1.0, 2.0, 0.5], 0.7)  # any orientation, tilted
    after = _quat_mul(yaw_quat(angle), start)  # then turned about the world z axis
    assert heading_increment(start, after) == pytest.approx(angle, abs=1e-9)


def test_heading_increment_ignores_tilt_and_takes_the_short_way() -> None:
    start = yaw_quat(0.4)
    tilted = _quat_mul(axis_quat([1.0, 0.0, 0.0], 0.5), start)
    assert heading_increment(start, tilted) == pytest.approx(0.0, abs=1e-12)
    # q and -q are one orientation: a sign flip between steps must not read as a turn.
    assert heading_increment(start, -_quat_mul(yaw_quat(0.1), start)) == pytest.approx(0.1)


def _world_z_rotation_vector(before: np.ndarray, after: np.ndarray) -> float:
    """What the judge summed before: the world-z part of each step's rotation vector."""
    q = _quat_mul(after, np.array([before[0], -before[1], -before[2], -before[3]]))
    if q[0] < 0:
        q = -q
    s = float(np.linalg.norm(q[1:]))
    return 0.0 if s < 1e-12 else 2.0 * math.atan2(s, float(q[0])) * float(q[3]) / s


def test_a_two_axis_wobble_back_to_the_start_has_not_turned() -> None:
    """A cube rocked 17 degrees about x and y in a loop that returns to its start: the
    angular velocity's world-z integral collects a turn each cycle (the rotations do not
    commute), the heading collects none."""
    tilt = math.radians(17.0)
    start = yaw_quat(0.3)
    path = []
    for k in range(401):  # one cycle, small steps
        phase = 2 * math.pi * k / 400
        wobble = _quat_mul(axis_quat([1.0, 0.0, 0.0], tilt * math.sin(phase)),
                           axis_quat([0.0, 1.0, 0.0], tilt * (1 - math.cos(phase))))
        path.append(_quat_mul(wobble, start))
    np.testing.assert_allclose(path[-1], start, atol=1e-12)
    by_angular_velocity = sum(_world_z_rotation_vector(a, b) for a, b in zip(path, path[1:], strict=False))
    by_heading = sum(heading_increment(a, b) for a, b in zip(path, path[1:], strict=False))
    assert abs(by_angular_velocity) > 0.02  # the old judge's phantom turn
    assert by_heading == pytest.approx(0.0, abs=1e-9)


class _FlywheelValve:
    """A policy that, before the first step, turns the valve into a flywheel spinning at
    ``rate`` (huge hinge armature, no friction): the fingers cannot slow it, so the judge
    must read ``rate``. Afterwards it holds the home pose."""

    def __init__(self, env: object, rate: float) -> None:
        self.env, self.rate, self.started = env, rate, False

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        env = self.env
        if not self.started:
            dof = env._ids.valve_dof
            env.model.dof_armature[dof] = 1e3
            env.model.dof_frictionloss[dof] = 0.0
            env.model.dof_damping[dof] = 0.0
            env.data.qvel[dof] = self.rate
            self.started = True
        return np.zeros((1, 16), np.float32)


@pytest.mark.parametrize("direction", [hj.COUNTER_CLOCKWISE, hj.CLOCKWISE])
@pytest.mark.parametrize("rate", [2.0, -1.0])
def test_valve_turned_at_a_known_rate_reads_that_rate(direction: hj.TurnDirection, rate: float) -> None:
    env = hj.make_hand_env(hj.VALVE_ENV_ID, domain_randomization=False,
                           env_config=["episode_steps=50"])
    try:
        episode = hj.run_turn_episode(env, _FlywheelValve(env, rate), direction, seed=3)
    finally:
        env.close()
    seconds = 50 * env.control_dt
    expected_rate = direction.direction * rate
    assert episode.length == 50 and not episode.dropped
    assert episode.turn_rate == pytest.approx(expected_rate, rel=0.02)
    assert episode.angle == pytest.approx(expected_rate * seconds, rel=0.02)
    if expected_rate > 0 and math.pi / expected_rate < seconds:  # the half turn, at pi / rate
        assert episode.time_to_half_turn == pytest.approx(math.pi / expected_rate, abs=2 * env.control_dt)
    else:  # the wrong way, or too slow to get there: never
        assert math.isnan(episode.time_to_half_turn)


def test_zero_action_turns_nothing_and_misses_the_valve_target() -> None:
    zero = lambda obs: np.zeros((1, 16), np.float32)  # noqa: E731
    result = hj.judge_turning(hj.VALVE_ENV_ID, zero, 1, seed=0, env_config=["episode_steps=100"])
    assert [row.case.name for row in result.rows] == ["counter-clockwise", "clockwise"]
    for row in result.rows:
        assert abs(row.mean("turn_rate")) < 0.02
        assert row.half_turns_reached == 0
    targets = result.targets()
    assert list(targets) == ["worst_direction_turn_rate"]
    assert not targets["worst_direction_turn_rate"]["met"]
    assert result.as_dict()["directions"][0]["time_to_half_turn"] is None  # JSON-safe nan


def test_a_dropped_cube_is_counted_and_turns_no_further() -> None:
    env = hj.make_hand_env(hj.CUBE_ENV_ID, domain_randomization=False)

    def throw_the_cube_away(obs: np.ndarray) -> np.ndarray:
        if env._step_count == 10:
            env.data.qpos[env._cube_qpos : env._cube_qpos + 3] -= np.array([0.0, 0.0, 0.3])
        return np.zeros((1, 16), np.float32)

    try:
        result = hj.judge_turning(hj.CUBE_ENV_ID, throw_the_cube_away, 2, seed=0, env=env)
    finally:
        env.close()
    assert result.drop_rate == 1.0
    assert all(e.length == 11 for e in result.episodes)
    # The rate is over the whole episode's duration: a drop cannot read as fast turning.
    assert all(abs(e.turn_rate) < 0.05 for e in result.episodes)
    assert not result.targets()["drop_rate"]["met"]


def test_cube_turned_at_a_known_rate_reads_that_rate() -> None:
    """The cube's rotation is accumulated from its orientation: turn it kinematically
    (re-posed each step about the vertical through its centre) and the judge reads it."""
    env = hj.make_hand_env(hj.CUBE_ENV_ID, domain_randomization=False,
                           env_config=["episode_steps=40"])
    rate = 3.0  # rad/s: 0.15 rad per 50 ms step

    def spin(obs: np.ndarray) -> np.ndarray:
        k = env._step_count
        q = env.data.qpos
        a = env._cube_qpos
        if k == 0:
            spin.start = q[a + 3 : a + 7].copy()
        q[a + 3 : a + 7] = _quat_mul(yaw_quat(rate * (k + 1) * env.control_dt), spin.start)
        return np.zeros((1, 16), np.float32)

    try:
        episode = hj.run_turn_episode(env, spin, hj.COUNTER_CLOCKWISE, seed=1)
    finally:
        env.close()
    # Re-posed before each step; the step's own physics moves it a little (contacts).
    assert episode.angle == pytest.approx(rate * 40 * env.control_dt, rel=0.05)
    assert episode.turn_rate == pytest.approx(rate, rel=0.05)


def test_the_cube_is_only_judged_counter_clockwise() -> None:
    assert hj.default_directions(hj.CUBE_ENV_ID) == (hj.COUNTER_CLOCKWISE,)
    zero = lambda obs: np.zeros((1, 16), np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="counter-clockwise"):
        hj.judge_turning(hj.CUBE_ENV_ID, zero, 1, seed=0, directions=[hj.CLOCKWISE])


def test_direction_parsing_names_what_it_expects() -> None:
    assert hj.TurnDirection.parse("ccw") is hj.COUNTER_CLOCKWISE
    assert hj.TurnDirection.parse("Clockwise") is hj.CLOCKWISE
    assert hj.TurnDirection.parse("-1") is hj.CLOCKWISE
    with pytest.raises(ValueError, match="expected ccw"):
        hj.TurnDirection.parse("left")


def test_training_evaluations_on_the_valve_record_the_judge(tmp_path) -> None:
    """The trainer's periodic evaluation judges the valve (both directions) and the
    learning curve gets the turn-rate panel; `sim2real eval` prints the table."""
    import json
    import subprocess
    import sys

    from sim2real.train.config import TrainConfig
    from sim2real.train.sac import SACConfig
    from sim2real.train.trainer import CURVE, METRICS, Trainer

    config = TrainConfig(env=hj.VALVE_ENV_ID, total_steps=400, out=tmp_path / "run", num_envs=1,
                         eval_episodes=2, learning_starts=100, num_workers=0,
                         env_config=("episode_steps=20",),
                         sac=SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32))
    trainer = Trainer(config)
    try:
        trainer.open_run()
        record = trainer._evaluate()
    finally:
        trainer.close()
    task = record["task"]
    assert [d["direction"] for d in task["directions"]] == ["counter-clockwise", "clockwise"]
    assert all(d["episodes"] == 1 for d in task["directions"])  # 2 episodes over 2 directions
    assert "worst_direction_turn_rate" in task["targets"]
    line = json.loads((tmp_path / "run" / METRICS).read_text().splitlines()[-1])
    assert line["task"]["turn_rate"] == pytest.approx(task["turn_rate"])
    assert (tmp_path / "run" / CURVE).read_bytes().startswith(b"\x89PNG")

    result = subprocess.run(
        [sys.executable, "-m", "sim2real.cli", "eval", "zero", "--env", hj.VALVE_ENV_ID,
         "--episodes", "1", "--commands", "cw", "--env-config", "episode_steps=20"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| clockwise | 0/1 |" in result.stdout and "counter-clockwise |" not in result.stdout
    assert "target >= 0.8): NOT met" in result.stdout


def test_a_half_turn_never_reached_reads_never() -> None:
    case = hj.TurnDirection("ccw", +1)
    slow = hj.TurnEpisode(dropped=False, turn_rate=0.01, angle=0.2, time_to_half_turn=math.nan, length=400,
                          episode_return=0.0)
    fast = hj.TurnEpisode(dropped=False, turn_rate=1.0, angle=20.0, time_to_half_turn=3.25, length=400,
                          episode_return=0.0)
    table = hj.TurnJudgeResult("sim2real/HandValveTurn-v0", [hj.DirectionMetrics(case, [slow]),
                                                              hj.DirectionMetrics(case, [fast])]).format_table()
    assert "| never |" in table and "| 3.25 |" in table and "nan" not in table
