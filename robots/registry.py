"""The one registry of this project's environments.

Each record says where the env lives and what it is; ``register_all()`` (run on
``import sim2real.robots``) registers every record with gymnasium, so both
``gymnasium.make("sim2real/QuadrupedJoystick-v0")`` and :func:`make` work.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
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
        EnvRecord(
            env_id="sim2real/HandValveTurn-v0",
            robot="hand",
            entry_point="sim2real.robots.hand.valve_turn:HandValveTurnEnv",
            config_entry_point="sim2real.robots.hand.valve_turn:HandValveTurnConfig",
            summary="LEAP-class 16-DoF hand turns a three-spoke valve on a vertical axle, "
                    "clockwise or counter-clockwise as commanded.",
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


DR_SWITCH_KEY = "randomization.enabled"


def task_config(env_id: str, overrides: Sequence[str] = ()) -> Any:
    """The task config of one of our envs with ``KEY=VALUE`` overrides applied.

    Keys are dotted paths into the config dataclass (``rewards.action_rate=-0.001``,
    ``episode_steps=200``, ``randomization.kp_scale.low=0.9``), as MuJoCo Playground's
    config_overrides. Values are parsed as the field's current type; the config's own
    validation then runs, so an out-of-range value fails naming its field.

    A config with a ``defaults_revision`` field (its defaults changed over time) takes
    ``defaults_revision=R`` wherever it stands in ``overrides``: the defaults of revision R
    come first (the class's ``REVISION_OVERRIDES[R]``), then every other override in order.
    """
    config_class = get_record(env_id).load_config_class()
    config = config_class()
    items = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"env config override {item!r} must look like KEY=VALUE, e.g. rewards.action_rate=-0.001")
        if key == DR_SWITCH_KEY:
            # The DR switch of make()/the CLI decides this one; an override would be ignored.
            raise ValueError(f"env config override {key!r}: use --dr/--no-dr to switch domain randomization")
        items.append((key, text))
    revisions = [text for key, text in items if key == REVISION_KEY]
    if revisions:
        config = _override(config, [REVISION_KEY], revisions[-1], REVISION_KEY, env_id)
        for item in getattr(config_class, "REVISION_OVERRIDES", {}).get(config.defaults_revision, ()):
            key, _, text = item.partition("=")
            config = _override(config, key.split("."), text, key, env_id)
    for key, text in items:
        if key != REVISION_KEY:
            config = _override(config, key.split("."), text, key, env_id)
    return config


def config_overrides(env_id: str, config: Any) -> tuple[str, ...]:
    """The ``KEY=VALUE`` overrides that :func:`task_config` turns into ``config``: every
    scalar field that differs from the defaults (the DR switch left out: ``--dr``/``--no-dr``
    set it). How a log records the task its env ran (robot=a1 among them)."""
    default = get_record(env_id).load_config_class()()
    items: list[str] = []
    revision = getattr(config, REVISION_KEY, None)
    if revision is not None and revision != getattr(default, REVISION_KEY):
        # Against that revision's defaults, which task_config applies first.
        items.append(f"{REVISION_KEY}={revision}")
        default = task_config(env_id, items)

    def walk(node: Any, base: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            key, value, reference = f"{prefix}{f.name}", getattr(node, f.name), getattr(base, f.name)
            if key in (REVISION_KEY, DR_SWITCH_KEY):
                continue
            if dataclasses.is_dataclass(value):
                walk(value, reference, f"{key}.")
            elif isinstance(value, (bool, int, float, str)) and value != reference:
                items.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")

    walk(config, default, "")
    return tuple(items)


REVISION_KEY = "defaults_revision"
"""The task config field that says which revision of the defaults the rest starts from."""


def current_revision(env_id: str) -> int | None:
    """The revision of ``env_id``'s task defaults today (None: an env without revisions)."""
    if env_id not in ENVS:
        return None
    return getattr(get_record(env_id).load_config_class()(), REVISION_KEY, None)


def pin_revision(env_id: str, overrides: Sequence[str]) -> tuple[str, ...]:
    """``overrides`` as a new run or export records them: with today's revision of the
    defaults first, unless they name one, so they keep their meaning when the defaults
    change."""
    return _with_revision(env_id, overrides, current_revision(env_id))


def recorded_overrides(env_id: str, overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides a run directory or an exported policy recorded, as today's
    task_config reads them: a record without a revision was written before revisions
    existed, against revision 1's defaults."""
    return _with_revision(env_id, overrides, 1)


def _with_revision(env_id: str, overrides: Sequence[str], revision: int | None) -> tuple[str, ...]:
    """``overrides`` led by ``defaults_revision=revision`` unless they name one or the env
    has no revisions."""
    if current_revision(env_id) is None or any(item.partition("=")[0] == REVISION_KEY for item in overrides):
        return tuple(overrides)
    return (f"{REVISION_KEY}={revision}", *overrides)


def _override(node: Any, path: list[str], text: str, key: str, env_id: str) -> Any:
    names = [f.name for f in dataclasses.fields(node)]
    if path[0] not in names:
        raise ValueError(
            f"env config override {key!r}: {type(node).__name__} of {env_id} has no field "
            f"{path[0]!r}; its fields are: {', '.join(names)}"
        )
    current = getattr(node, path[0])
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"env config override {key!r}: {path[0]!r} is a value, not a group")
        return dataclasses.replace(node, **{path[0]: _override(current, path[1:], text, key, env_id)})
    if dataclasses.is_dataclass(current):
        fields = ", ".join(f.name for f in dataclasses.fields(current))
        raise ValueError(f"env config override {key!r} is a group; set one of its fields: {fields}")
    annotation = str(next(f.type for f in dataclasses.fields(node) if f.name == path[0]))
    if annotation == "float" and isinstance(current, int) and not isinstance(current, bool):
        current = float(current)  # a float field written with an int default
    return dataclasses.replace(node, **{path[0]: _parse_like(current, text, key)})


def _parse_like(current: Any, text: str, key: str) -> Any:
    """``text`` as a value of ``current``'s type (bool, int, float or str)."""
    try:
        if isinstance(current, bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
    except ValueError:
        raise ValueError(
            f"env config override {key!r}: expected {type(current).__name__} "
            f"(current value {current!r}), got {text!r}"
        ) from None
    raise ValueError(
        f"env config override {key!r}: fields of type {type(current).__name__} cannot be set "
        "from the command line"
    )
