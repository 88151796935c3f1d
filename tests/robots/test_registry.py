from __future__ import annotations

import gymnasium as gym
import pytest

import sim2real.robots as robots


def test_both_robots_registered_with_gymnasium() -> None:
    assert "sim2real/QuadrupedJoystick-v0" in gym.registry
    assert "sim2real/HandCubeRotate-v0" in gym.registry
    assert set(robots.ENVS) == {"sim2real/QuadrupedJoystick-v0", "sim2real/HandCubeRotate-v0"}


def test_unknown_env_id_lists_the_valid_ones() -> None:
    with pytest.raises(robots.UnknownEnvError) as err:
        robots.make("sim2real/Quadruped-v9")
    message = str(err.value)
    assert "'sim2real/Quadruped-v9'" in message
    assert "sim2real/QuadrupedJoystick-v0" in message and "sim2real/HandCubeRotate-v0" in message
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
