"""The one registry of this project's environments.

Each record says where the env lives and what it is; ``register_all()`` (run on
``import sim2real.robots``) registers every record with gymnasium, so both
``gymnasium.make("sim2real/QuadrupedJoystick-v0")`` and :func:`make` work.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import gymnasium as gym


class UnknownEnvError(KeyError):
    """An env id that is neither ours nor a registered gymnasium env."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class EnvRecord:
    """One registered environment."""

    env_id: str
    robot: str
    entry_point: str
    """``module:Class`` of the env."""
    config_entry_point: str
    """``module:Class`` of the env's config dataclass."""
    summary: str

    def load_class(self) -> type:
        return _load(self.entry_point)

    def load_config_class(self) -> type:
        return _load(self.config_entry_point)


def _load(entry_point: str) -> type:
    module_name, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(module_name), attr)


ENVS: dict[str, EnvRecord] = {
    record.env_id: record
    for record in (
        EnvRecord(
            env_id="sim2real/QuadrupedJoystick-v0",
            robot="quadruped",
            entry_point="sim2real.robots.quadruped.joystick:QuadrupedJoystickEnv",
            config_entry_point="sim2real.robots.quadruped.joystick:QuadrupedJoystickConfig",
            summary="Go1-class 12-DoF quadruped tracks a commanded (vx, vy, yaw rate).",
        ),
        EnvRecord(
            env_id="sim2real/HandCubeRotate-v0",
            robot="hand",
            entry_point="sim2real.robots.hand.cube_rotate:HandCubeRotateEnv",
            config_entry_point="sim2real.robots.hand.cube_rotate:HandCubeRotateConfig",
            summary="LEAP-class 16-DoF hand, palm up, spins a 70 mm cube about the vertical.",
        ),
    )
}


def register_all() -> None:
    """Register every record with gymnasium (idempotent)."""
    for record in ENVS.values():
        if record.env_id not in gym.registry:
            # Episodes truncate inside the env (config.episode_steps), so no TimeLimit
            # wrapper: the config is the one place that says how long an episode is.
            gym.register(id=record.env_id, entry_point=record.entry_point)


def get_record(env_id: str) -> EnvRecord:
    """The record of one of our envs; UnknownEnvError listing the valid ids otherwise."""
    try:
        return ENVS[env_id]
    except KeyError:
        valid = ", ".join(sorted(ENVS))
        raise UnknownEnvError(
            f"unknown env id {env_id!r}; this project's envs are: {valid}"
        ) from None


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """Make one of our envs or any registered gymnasium env, with a clear unknown-id error.

    For our envs, ``domain_randomization=False`` turns randomization off and ``config=``
    takes the env's config dataclass.
    """
    if env_id not in ENVS and env_id not in gym.registry:
        ours = ", ".join(sorted(ENVS))
        raise UnknownEnvError(
            f"unknown env id {env_id!r}; this project's envs are: {ours} "
            "(any registered gymnasium env with a Box action space, e.g. Pendulum-v1 or "
            "Ant-v5, also works)"
        )
    return gym.make(env_id, **kwargs)
