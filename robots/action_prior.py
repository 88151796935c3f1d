"""A periodic gait as a function of the observation: the action prior a policy learns around.

Used by the quadruped's trot (robots/quadruped/gait.py) and the hand's cube-turning finger
gait (robots/hand/cube_gait.py). The env puts a clock in the observation (``sin`` and
``cos`` of a phase that advances at a fixed rate; a real controller computes it from its
own clock); the prior reads only the clock and, where there is one, the command, so it is
a pure function of the observation that the learner can put inside the policy
(train/action_prior.py) and the exported model computes too.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ActionPrior:
    """The suggested action as a function of the observation:

    ``prior = offset + g * (lift_0 * swing_0 + lift_1 * swing_1) + swing_cos * cos
    + sum_k c_k * (steer_sin[k] * sin + steer_cos[k] * cos)``, with ``lift_0 = max(sin, 0)``,
    ``lift_1 = max(-sin, 0)`` of the clock and, with a command ``c = (vx, vy, yaw)``,
    ``g = min(1, (|vx| + |vy| + |yaw|) / stand_below)`` (stepping, plus swings in
    proportion to the command, zero when told to stand); without a command ``g = 1``.
    Any periodic gait's first harmonic plus a half-wave asymmetry fits this form. Plain
    numbers, so it goes into a checkpoint as JSON.
    """

    clock_sin: int
    """Observation index of gait_clock/sin."""
    clock_cos: int
    """Observation index of gait_clock/cos."""
    command: tuple[int, ...]
    """Observation indices of the command (vx, vy, yaw rate), or () for a task without one."""
    swing_0: tuple[float, ...]
    """Per action: the action at the top of the first half-period (sin > 0)."""
    swing_1: tuple[float, ...]
    """Per action: the action at the top of the second half-period (sin < 0)."""
    stand_below: float
    """Command magnitude below which the stepping fades out (unused without a command)."""
    steer_sin: tuple[tuple[float, ...], ...] = ()
    """Per command component (vx, vy, yaw), per action: the gain on sin(phase); () = none."""
    steer_cos: tuple[tuple[float, ...], ...] = ()
    """The same on cos(phase)."""
    swing_cos: tuple[float, ...] = ()
    """Per action: the gain on cos(phase), whatever the command; () = none."""
    offset: tuple[float, ...] = ()
    """Per action: a constant added to the suggestion; () = none."""

    def __post_init__(self) -> None:
        n = len(self.swing_0)
        if len(self.swing_1) != n:
            raise ValueError(f"ActionPrior.swing_1 must have one entry per action like swing_0 ({n}), "
                             f"got {len(self.swing_1)}")
        if len(self.command) not in (0, 3):
            raise ValueError(f"ActionPrior.command must be () or 3 observation indices (vx, vy, yaw), "
                             f"got {self.command!r}")
        for name in ("steer_sin", "steer_cos"):
            rows = getattr(self, name)
            if rows and (not self.command or len(rows) != 3 or any(len(row) != n for row in rows)):
                raise ValueError(f"ActionPrior.{name} must be empty or, with a command, 3 rows (vx, vy, yaw) "
                                 f"of {n} gains")
        for name in ("swing_cos", "offset"):
            values = getattr(self, name)
            if values and len(values) != n:
                raise ValueError(f"ActionPrior.{name} must be empty or one entry per action ({n}), "
                                 f"got {len(values)}")
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
        c = obs[..., self.clock_cos, None]
        out = np.maximum(s, 0.0) * np.asarray(self.swing_0) + np.maximum(-s, 0.0) * np.asarray(self.swing_1)
        if self.command:
            speed = np.abs(obs[..., list(self.command)]).sum(axis=-1, keepdims=True)
            out = np.minimum(speed / self.stand_below, 1.0) * out
        if self.steer_sin:
            command = obs[..., list(self.command)]
            out = out + (command * s) @ np.asarray(self.steer_sin) + (command * c) @ np.asarray(self.steer_cos)
        if self.swing_cos:
            out = out + c * np.asarray(self.swing_cos)
        if self.offset:
            out = out + np.asarray(self.offset)
        return out

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ActionPrior:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"action prior: unknown keys {sorted(unknown)}; expected {sorted(fields)}")

        def floats(key: str) -> tuple[float, ...]:
            return tuple(float(x) for x in data.get(key, ()))  # type: ignore[attr-defined]

        def rows(key: str) -> tuple[tuple[float, ...], ...]:
            return tuple(tuple(float(x) for x in row) for row in data.get(key, ()))  # type: ignore[attr-defined]

        return cls(
            clock_sin=int(data["clock_sin"]),  # type: ignore[call-overload]
            clock_cos=int(data["clock_cos"]),  # type: ignore[call-overload]
            command=tuple(int(i) for i in data["command"]),  # type: ignore[attr-defined]
            swing_0=floats("swing_0"),
            swing_1=floats("swing_1"),
            stand_below=float(data["stand_below"]),  # type: ignore[arg-type]
            steer_sin=rows("steer_sin"),
            steer_cos=rows("steer_cos"),
            swing_cos=floats("swing_cos"),
            offset=floats("offset"),
        )
