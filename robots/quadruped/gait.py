"""A gait clock for the joystick task and the trot it suggests (an action prior).

Why: SAC on the joystick task learns to walk forward but in no run found the coordinated
sideways or turning steps, although open-loop trots inside the same action bounds walk
sideways at 0.77 m/s and turn at 1.89 rad/s (docs/results.md): an exploration problem.
A policy that starts from stepping in place only has to learn how to lean each step,
not to discover stepping ("Policies Modulating Trajectory Generators", Iscen et al. 2018:
a learned residual on a periodic gait generator).

The env only provides the clock: ``gait_clock/sin`` and ``gait_clock/cos`` of a phase that
advances at ``frequency_hz`` (a real controller computes it from its own clock). The trot
is a pure function of the observation (the clock and the command), described here by
:class:`ActionPrior` so the learner can put it inside the policy (train/action_prior.py)
and the exported model computes it too: served actions are whole actions, as always.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sim2real.robots.quadruped import constants as consts

TROT_PAIR = {"FR": 0, "RL": 0, "FL": 1, "RR": 1}
"""Diagonal pairs of the trot: pair 0 swings while sin(phase) > 0, pair 1 while < 0."""


@dataclasses.dataclass(frozen=True)
class GaitConfig:
    """The gait clock in the observation and the trot it suggests (off by default)."""

    frequency_hz: float = 0.0
    """Step frequency of the clock, Hz; 0: no clock in the observation (the task as before).
    Go1 trots at about 2-3 Hz; 2.5 Hz stepped in place without falling in open-loop tests
    with DR on (docs/results.md)."""
    knee: float = -0.9
    """Knee (calf) action at the top of a leg's swing, in action units ([-1, 1]); negative
    flexes the knee and lifts the foot (-0.9 at the 0.4-rad scale: 3 cm of clearance)."""
    thigh: float = 0.0
    """Hip-flexion (thigh) action at the top of a leg's swing, in action units."""
    stand_below: float = 0.1
    """The suggested trot fades out linearly as |vx| + |vy| + |yaw rate| falls below this,
    so a robot told to stand is not told to step."""

    def __post_init__(self) -> None:
        checks = {
            "frequency_hz": (math.isfinite(self.frequency_hz) and self.frequency_hz >= 0, "a finite number >= 0 (0: off)"),
            "knee": (-1.0 <= self.knee <= 1.0, "in [-1, 1]"),
            "thigh": (-1.0 <= self.thigh <= 1.0, "in [-1, 1]"),
            "stand_below": (math.isfinite(self.stand_below) and self.stand_below > 0, "a finite number > 0"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"GaitConfig.{name} must be {allowed}, got {getattr(self, name)!r}")

    @property
    def enabled(self) -> bool:
        return self.frequency_hz > 0


@dataclasses.dataclass(frozen=True)
class ActionPrior:
    """The suggested action as a function of the observation:

    ``prior = g * (lift_0 * swing_0 + lift_1 * swing_1)``, with ``lift_0 = max(sin, 0)``,
    ``lift_1 = max(-sin, 0)`` of the clock and ``g = min(1, (|vx| + |vy| + |yaw|) /
    stand_below)`` of the command. Plain numbers, so it goes into a checkpoint as JSON.
    """

    clock_sin: int
    """Observation index of gait_clock/sin."""
    clock_cos: int
    """Observation index of gait_clock/cos (not used by the trot; kept for the policy)."""
    command: tuple[int, int, int]
    """Observation indices of the command (vx, vy, yaw rate)."""
    swing_0: tuple[float, ...]
    """Per action: the action at the top of pair 0's swing (zero on pair 1's joints)."""
    swing_1: tuple[float, ...]
    """Per action: the action at the top of pair 1's swing."""
    stand_below: float

    def __post_init__(self) -> None:
        if len(self.swing_0) != len(self.swing_1):
            raise ValueError(
                f"ActionPrior.swing_1 must have one entry per action like swing_0 ({len(self.swing_0)}), "
                f"got {len(self.swing_1)}"
            )
        if not self.stand_below > 0:
            raise ValueError(f"ActionPrior.stand_below must be > 0, got {self.stand_below!r}")

    @property
    def passthrough(self) -> tuple[int, ...]:
        """Observation entries the prior reads: a policy must see them unnormalized."""
        return (self.clock_sin, self.clock_cos, *self.command)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The suggested actions [..., act_dim] for observations [..., obs_dim] (numpy
        reference of the policy's torch version)."""
        obs = np.asarray(obs, dtype=np.float64)
        s = obs[..., self.clock_sin, None]
        speed = np.abs(obs[..., list(self.command)]).sum(axis=-1, keepdims=True)
        gate = np.minimum(speed / self.stand_below, 1.0)
        return gate * (np.maximum(s, 0.0) * np.asarray(self.swing_0) + np.maximum(-s, 0.0) * np.asarray(self.swing_1))

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ActionPrior:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"action prior: unknown keys {sorted(unknown)}; expected {sorted(fields)}")
        return cls(
            clock_sin=int(data["clock_sin"]),  # type: ignore[call-overload]
            clock_cos=int(data["clock_cos"]),  # type: ignore[call-overload]
            command=tuple(int(i) for i in data["command"]),  # type: ignore[attr-defined]
            swing_0=tuple(float(x) for x in data["swing_0"]),  # type: ignore[attr-defined]
            swing_1=tuple(float(x) for x in data["swing_1"]),  # type: ignore[attr-defined]
            stand_below=float(data["stand_below"]),  # type: ignore[arg-type]
        )


def trot_prior(gait: GaitConfig, observation_names: tuple[str, ...]) -> ActionPrior:
    """The trot of ``gait`` for a joystick observation layout (names as the env's)."""
    index = {name: i for i, name in enumerate(observation_names)}
    swing = {0: np.zeros(len(consts.ACTUATOR_NAMES)), 1: np.zeros(len(consts.ACTUATOR_NAMES))}
    for i, name in enumerate(consts.ACTUATOR_NAMES):
        leg, joint = name.split("_", 1)
        amplitude = {"calf": gait.knee, "thigh": gait.thigh}.get(joint, 0.0)
        swing[TROT_PAIR[leg]][i] = amplitude
    return ActionPrior(
        clock_sin=index["gait_clock/sin"],
        clock_cos=index["gait_clock/cos"],
        command=(index["command/vx"], index["command/vy"], index["command/yaw_rate"]),
        swing_0=tuple(float(x) for x in swing[0]),
        swing_1=tuple(float(x) for x in swing[1]),
        stand_below=gait.stand_below,
    )
