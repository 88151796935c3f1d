"""The judge itself: it reads velocities, turn rates and falls from simulator state."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from sim2real.robots.quadruped.joystick import QuadrupedJoystickEnv
from sim2real.train import judge
from sim2real.train.evaluate import evaluate
from sim2real.train.judge import JoystickCommand


class KinematicTrunkEnv(QuadrupedJoystickEnv):
    """The joystick env with its physics replaced by a trunk moved at a known velocity:
    (vx, vy) in the heading frame and a yaw rate, integrated exactly each control step.
    Lets a test know the true answer the judge must read."""

    def __init__(self, vx: float, vy: float, yaw_rate: float, drop_after_s: float | None = None) -> None:
        super().__init__(domain_randomization=False)
        self.true = (vx, vy, yaw_rate)
        self.drop_after_s = drop_after_s
        self._t = 0.0

    def reset(self, **kwargs):  # type: ignore[no-untyped-def]
        self._t = 0.0
        return super().reset(**kwargs)

    def _physics_step(self, ctrl: np.ndarray) -> None:
        vx, vy, yaw_rate = self.true
        dt = self.control_dt
        q = self.data.qpos
        root = self._root_qpos
        yaw = self.trunk_yaw() + yaw_rate * dt
        c, s = math.cos(yaw), math.sin(yaw)
        world_v = np.array([c * vx - s * vy, s * vx + c * vy, 0.0])
        q[root : root + 2] += world_v[:2] * dt
        q[root + 3 : root + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        self._t += dt
        if self.drop_after_s is not None and self._t >= self.drop_after_s:
            q[root + 2] = 0.05  # the trunk lies on the floor
        self.set_trunk_velocity(world_v, np.array([0.0, 0.0, yaw_rate]))
        mujoco.mj_forward(self.model, self.data)


def zero_policy(obs: np.ndarray) -> np.ndarray:
    return np.zeros((obs.shape[0], 12), np.float32)


@pytest.mark.parametrize("true", [(0.5, 0.0, 0.0), (0.3, -0.2, 0.0), (0.0, 0.0, 0.8), (0.6, 0.0, 0.5)])
def test_a_trunk_moved_at_a_known_velocity_reads_that_velocity(true: tuple[float, float, float]) -> None:
    env = KinematicTrunkEnv(*true)
    command = JoystickCommand("c", *true)
    episode = judge.run_judged_episode(env, zero_policy, command, seed=0, max_steps=200)
    assert episode.mean_vx == pytest.approx(true[0], abs=1e-6)
    assert episode.mean_vy == pytest.approx(true[1], abs=1e-6)
    assert episode.mean_yaw_rate == pytest.approx(true[2], abs=1e-6)
    assert episode.planar_error == pytest.approx(0.0, abs=1e-6)
    assert episode.yaw_error == pytest.approx(0.0, abs=1e-6)
    assert not episode.fell and episode.length == 200
    # Against a different command, the error is the difference.
    other = JoystickCommand("other", 0.0, 0.0, 0.0)
    episode = judge.run_judged_episode(env, zero_policy, other, seed=0, max_steps=200)
    assert episode.planar_error == pytest.approx(math.hypot(true[0], true[1]), abs=1e-6)
    assert episode.yaw_error == pytest.approx(abs(true[2]), abs=1e-6)
    if true[2] == 0.0:  # straight line: 4 s at |v|
        assert episode.distance == pytest.approx(math.hypot(true[0], true[1]) * 4.0, rel=1e-3)
    env.close()


def test_a_fall_is_counted_and_ends_the_episode() -> None:
    env = KinematicTrunkEnv(0.5, 0.0, 0.0, drop_after_s=2.0)
    episode = judge.run_judged_episode(env, zero_policy, JoystickCommand("f", 0.5, 0.0, 0.0), seed=0)
    assert episode.fell
    assert episode.length == 100  # 2 s at 50 Hz
    # 50 judged steps tracked perfectly; the 900 the fall cut off count as not moving.
    assert episode.planar_error == pytest.approx(0.5 * 900 / 950)
    result = judge.JudgeResult([judge.CommandMetrics(JoystickCommand("f", 0.5, 0, 0), [episode])])
    assert result.fall_rate == 1.0
    assert not result.targets()["fall_rate"]["met"]
    # Falling before the first judged second reads as not moving, never as tracking.
    env = KinematicTrunkEnv(0.5, 0.0, 0.0, drop_after_s=0.5)
    early = judge.run_judged_episode(env, zero_policy, JoystickCommand("f", 0.5, 0.0, 0.3), seed=0)
    assert early.fell and early.length == 25
    assert early.planar_error == pytest.approx(0.5) and early.yaw_error == pytest.approx(0.3)
    env.close()


def test_a_fall_by_tilt_is_counted_even_if_the_task_would_not_terminate() -> None:
    env = QuadrupedJoystickEnv(domain_randomization=False)
    env.reset(seed=0, options={"command": (0.0, 0.0, 0.0)})
    tipped = {"done": False}

    def tip_over(obs: np.ndarray) -> np.ndarray:
        if not tipped["done"]:
            # Roll the trunk 90 degrees: on its side.
            root = env._root_qpos
            env.data.qpos[root + 3 : root + 7] = (math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0)
            mujoco.mj_forward(env.model, env.data)
            tipped["done"] = True
        return zero_policy(obs)

    episode = judge.run_judged_episode(env, tip_over, JoystickCommand("s", 0, 0, 0), seed=0)
    assert episode.fell and episode.length <= 3
    env.close()


def test_zero_action_baseline_errors_equal_the_commands() -> None:
    result = evaluate(zero_policy, judge.QUADRUPED_ENV_ID, episodes=1, seed=0,
                      env_config=("episode_steps=150",))
    task = result.task
    assert task is not None
    assert [row.command.name for row in task.rows] == [c.name for c in judge.DEFAULT_COMMANDS]
    for row in task.rows:
        c = row.command
        assert row.falls == 0
        # A robot holding its pose stands still: its error is the command itself.
        assert row.mean("planar_error") == pytest.approx(math.hypot(c.vx, c.vy), abs=0.03)
        assert row.mean("yaw_error") == pytest.approx(abs(c.yaw_rate), abs=0.03)
    assert not task.targets()["walking_planar_error"]["met"]
    assert not task.targets()["turn_yaw_error"]["met"]
    assert task.targets()["fall_rate"]["met"]
    table = task.format_table()
    assert "forward 0.5" in table and "turn 0.8" in table
    assert result.as_dict()["task"]["commands"][1]["planar_error"] == pytest.approx(0.5, abs=0.03)


def test_a_pinned_command_holds_for_the_whole_episode() -> None:
    from sim2real.robots.registry import task_config

    config = task_config(judge.QUADRUPED_ENV_ID, ["command_resample_s=0.1", "episode_steps=100"])
    env = QuadrupedJoystickEnv(config=config)
    _, info = env.reset(seed=0, options={"command": (0.5, 0.0, 0.0)})
    seen = {tuple(info["command"])}
    for _ in range(100):
        _, _, _, _, info = env.step(np.zeros(12))
        seen.add(tuple(info["command"]))
    assert seen == {(0.5, 0.0, 0.0)}
    # Unpinned, a 0.1 s mean interval resamples many times.
    env.reset(seed=0)
    seen = set()
    for _ in range(100):
        _, _, _, _, info = env.step(np.zeros(12))
        seen.add(tuple(info["command"]))
    assert len(seen) > 5
    with pytest.raises(ValueError, match=r"options\['command'\] must be 3 finite numbers"):
        env.reset(seed=0, options={"command": (0.5, 0.0)})
    env.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("forward=0.5,0,0", JoystickCommand("forward", 0.5, 0.0, 0.0)),
        ("0,0.4,-0.2", JoystickCommand("(0, 0.4, -0.2)", 0.0, 0.4, -0.2)),
    ],
)
def test_command_parsing(text: str, expected: JoystickCommand) -> None:
    assert JoystickCommand.parse(text) == expected


@pytest.mark.parametrize("text", ["forward=0.5,0", "x=a,b,c", "1,2,nan", ""])
def test_bad_commands_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected \[NAME=\]VX,VY,YAW"):
        JoystickCommand.parse(text)


def test_yaw_rate_and_heading_velocity_of_a_tilted_trunk() -> None:
    """Pitched and rolled, turning about the world vertical and moving: the getters read
    the world yaw rate and the velocity in the heading frame, not in the tilted body frame."""
    env = QuadrupedJoystickEnv(domain_randomization=False)
    env.reset(seed=0)
    yaw, pitch, roll = 0.7, 0.3, -0.2
    quat = np.empty(4)
    mujoco.mju_euler2Quat(quat, np.array([roll, pitch, yaw]), "XYZ")  # fixed axes: Rz Ry Rx
    root = env._root_qpos
    env.data.qpos[root + 3 : root + 7] = quat
    mujoco.mj_forward(env.model, env.data)
    rot = env.data.xmat[env._ids.trunk_body].reshape(3, 3)
    heading_v = np.array([0.4, -0.1])
    c, s = np.cos(yaw), np.sin(yaw)
    world_v = np.array([c * heading_v[0] - s * heading_v[1], s * heading_v[0] + c * heading_v[1], 0.05])
    env.set_trunk_velocity(world_v, rot.T @ np.array([0.0, 0.0, 0.8]))
    mujoco.mj_forward(env.model, env.data)
    assert env.trunk_yaw() == pytest.approx(yaw, abs=1e-9)
    assert env.world_yaw_rate() == pytest.approx(0.8, abs=1e-9)
    np.testing.assert_allclose(env.heading_frame_velocity(), heading_v, atol=1e-9)
    env.close()


def test_a_resampled_command_is_judged_on_its_step_and_observed_after() -> None:
    from sim2real.robots.registry import task_config

    config = task_config(judge.QUADRUPED_ENV_ID, ["command_resample_s=0.2", "observe_linear_velocity=false"])
    env = QuadrupedJoystickEnv(config=config, domain_randomization=False)
    obs, info = env.reset(seed=3)
    command = info["command"].copy()
    command_slice = slice(6, 9)  # observation entries 6-8: the command
    changes = 0
    for _ in range(200):
        step_before = env._step_count
        resample_now = env._next_command_step == step_before + 1
        obs, _, _, _, info = env.step(np.zeros(12))
        # The reward of this step judged the command the policy acted on...
        vx, vy, _ = env.local_linvel().tolist()
        expected = np.exp(-((command[0] - vx) ** 2 + (command[1] - vy) ** 2) / config.tracking_sigma)
        assert info["reward_terms"]["tracking_lin_vel"] == pytest.approx(expected)
        # ...and the observation and info carry the command for the next one.
        np.testing.assert_allclose(obs[command_slice], info["command"], atol=1e-6)
        if resample_now:
            changes += int(not np.array_equal(info["command"], command))
        else:
            np.testing.assert_array_equal(info["command"], command)
        command = info["command"].copy()
    assert changes > 5
    env.close()


def _row(command: JoystickCommand, planar: float, yaw: float, fell: bool = False) -> judge.CommandMetrics:
    episode = judge.EpisodeMetrics(fell=fell, planar_error=planar, yaw_error=yaw, mean_vx=0.0, mean_vy=0.0,
                                   mean_yaw_rate=0.0, distance=0.0, length=1000, episode_return=0.0)
    return judge.CommandMetrics(command, [episode])


def test_no_command_hides_inside_a_mean() -> None:
    """Every walking command is judged on its own, the walking-and-turning command's yaw
    and standing still are judged: a policy that ignores one command while the means look
    fine misses its target, named."""
    c = {cmd.name: cmd for cmd in judge.DEFAULT_COMMANDS}
    good = {"stand": (0.02, 0.05), "forward 0.5": (0.07, 0.10), "forward 1.0": (0.12, 0.10),
            "backward 0.5": (0.10, 0.10), "sideways 0.4": (0.11, 0.10), "turn 0.8": (0.05, 0.12),
            "forward 0.6 + turn 0.5": (0.10, 0.12)}

    def result(**changes: tuple[float, float]) -> judge.JudgeResult:
        values = {**good, **changes}
        return judge.JudgeResult([_row(c[name], *values[name]) for name in c])

    targets = result().targets()
    assert set(targets) == {"fall_rate", "walking_planar_error", "turn_yaw_error", "each_walking_planar_error",
                            "walk_and_turn_yaw_error", "stand_planar_error", "stand_yaw_error"}
    assert all(t["met"] for t in targets.values())
    # Backward ignored (0.3 m/s off) while the walking mean stays under 0.15 m/s.
    lazy = result(**{"backward 0.5": (0.30, 0.10)})
    assert lazy.walking_planar_error <= judge.TARGET_WALKING_PLANAR_ERROR
    assert lazy.targets()["walking_planar_error"]["met"]
    assert not lazy.targets()["each_walking_planar_error"]["met"]
    assert lazy.targets()["each_walking_planar_error"]["value"] == pytest.approx(0.30)
    assert "worst walking command: backward 0.5" in lazy.format_targets()
    # Walking straight when told to walk and turn; drifting when told to stand.
    assert not result(**{"forward 0.6 + turn 0.5": (0.10, 0.45)}).targets()["walk_and_turn_yaw_error"]["met"]
    assert not result(stand=(0.15, 0.05)).targets()["stand_planar_error"]["met"]
    assert not result(stand=(0.02, 0.30)).targets()["stand_yaw_error"]["met"]
    # Commands not asked for are not judged (a user's own --commands).
    only_forward = judge.JudgeResult([_row(c["forward 0.5"], 0.07, 0.1)])
    assert set(only_forward.targets()) == {"fall_rate", "walking_planar_error", "turn_yaw_error",
                                           "each_walking_planar_error"}
