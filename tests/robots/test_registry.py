from __future__ import annotations

import re

import gymnasium as gym
import pytest

import sim2real.robots as robots
from sim2real.robots import registry


def test_every_env_registered_with_gymnasium() -> None:
    ours = {"sim2real/QuadrupedJoystick-v0", "sim2real/HandCubeRotate-v0",
            "sim2real/HandValveTurn-v0"}
    assert set(robots.ENVS) == ours
    assert all(env_id in gym.registry for env_id in ours)


def test_unknown_env_id_lists_the_valid_ones() -> None:
    with pytest.raises(robots.UnknownEnvError) as err:
        robots.make("sim2real/Quadruped-v9")
    message = str(err.value)
    assert "'sim2real/Quadruped-v9'" in message
    assert all(env_id in message for env_id in robots.ENVS)
    with pytest.raises(robots.UnknownEnvError, match="this project's envs are"):
        robots.get_record("Nope-v0")


def test_make_accepts_any_gymnasium_env() -> None:
    env = robots.make("Pendulum-v1")
    assert env.action_space.shape == (1,)
    env.close()


def test_records_load_their_classes() -> None:
    for record in robots.ENVS.values():
        env_cls = record.load_class()
        config_cls = record.load_config_class()
        assert env_cls.__doc__ and "## Action space" in env_cls.__doc__
        assert config_cls().randomization.enabled


def test_task_config_overrides_set_nested_fields_by_type() -> None:
    config = registry.task_config(
        "sim2real/HandCubeRotate-v0",
        ["rewards.action_rate=-0.001", "episode_steps=200", "observe_cube_pose=false",
         "randomization.kp_scale.low=0.9"],
    )
    assert config.rewards.action_rate == -0.001 and config.rewards.rotate == 1.0
    assert config.episode_steps == 200 and isinstance(config.episode_steps, int)
    assert config.observe_cube_pose is False
    assert config.randomization.kp_scale.low == 0.9
    assert registry.task_config("sim2real/HandCubeRotate-v0") == registry.get_record(
        "sim2real/HandCubeRotate-v0").load_config_class()()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rewards.bogus=1", "has no field 'bogus'; its fields are: rotate"),
        ("rewards=1", "is a group; set one of its fields"),
        ("episode_steps=1.5", "expected int (current value 400), got '1.5'"),
        ("observe_cube_pose=maybe", "expected bool"),
        ("episode_steps=0", "episode_steps must be an integer >= 1, got 0"),
        ("episode_steps", "must look like KEY=VALUE"),
        ("rewards.rotate.x=1", "'rotate' is a value, not a group"),
        ("randomization.enabled=true", "use --dr/--no-dr"),
    ],
)
def test_task_config_override_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        registry.task_config("sim2real/HandCubeRotate-v0", [override])


def test_env_config_on_a_gymnasium_env_is_refused_at_config_time() -> None:
    from sim2real.train.config import TrainConfig

    with pytest.raises(ValueError, match="apply to this project's envs only"):
        TrainConfig(env="Pendulum-v1", env_config=("episode_steps=10",))
    with pytest.raises(ValueError, match="has no field 'nope'"):
        TrainConfig(env="sim2real/QuadrupedJoystick-v0", env_config=("nope=1",))


@pytest.mark.parametrize("overrides", [
    (),
    ("robot=a1",),
    ("defaults_revision=1", "robot=mini_cheetah", "randomization.kp_scale.low=0.8", "observe_linear_velocity=true"),
])
def test_config_overrides_round_trip_through_task_config(overrides: tuple[str, ...]) -> None:
    """What a log records of its env's task (LogInfo.env_config) rebuilds the same task."""
    from sim2real.robots.registry import config_overrides, task_config

    env_id = "sim2real/QuadrupedJoystick-v0"
    config = task_config(env_id, list(overrides))
    recorded = config_overrides(env_id, config)
    assert task_config(env_id, list(recorded)) == config
    assert ("robot=a1" in recorded) == ("robot=a1" in overrides)
    assert not any(item.startswith("randomization.enabled") for item in recorded)
    # The hand's task too (another config class, other field types).
    valve = task_config("sim2real/HandValveTurn-v0", ["episode_steps=200"])
    assert task_config("sim2real/HandValveTurn-v0", list(config_overrides("sim2real/HandValveTurn-v0", valve))) == valve
