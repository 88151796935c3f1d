"""A finger gait that turns the free cube open loop: the action prior of the cube task.

Why: SAC on the free cube (`HandCubeRotate-v0`) learned no rotation in 86k-300k steps
(docs/results.md), while the valve, whose fingers start on the spokes, was learned in
about 50k. The quadruped taught the same lesson: a policy that starts from a periodic gait
only has to learn how to adjust it, not to discover it ("Policies Modulating Trajectory
Generators", Iscen et al. 2018). A cross-entropy search over open-loop periodic gaits
(train/gait_search.py) finds finger gaits that turn the cube counter-clockwise
without dropping it; the env's ``gait_frequency_hz`` puts the clock in the observation
and this gait is then :attr:`HandCubeRotateEnv.action_prior`.

The gait is an :class:`~sim2real.robots.action_prior.ActionPrior` without a command:
``action = offset + max(sin, 0) * swing_0 + max(-sin, 0) * swing_1 + cos * swing_cos``
of the clock's phase, per actuator, in action units (the env clips to [-1, 1]).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.robots.action_prior import ActionPrior
from sim2real.robots.hand import constants as consts

N_ACTIONS = len(consts.ACTUATOR_NAMES)


@dataclasses.dataclass(frozen=True)
class CubeGait:
    """One periodic finger gait (16 numbers per part, in the actuator order of
    ``constants.ACTUATOR_NAMES``, action units)."""

    frequency_hz: float
    """The clock rate it was found at."""
    offset: tuple[float, ...]
    swing_0: tuple[float, ...]
    swing_1: tuple[float, ...]
    swing_cos: tuple[float, ...]

    PARTS = ("offset", "swing_0", "swing_1", "swing_cos")

    def __post_init__(self) -> None:
        for name in self.PARTS:
            values = getattr(self, name)
            if len(values) != N_ACTIONS or not all(np.isfinite(values)):
                raise ValueError(f"CubeGait.{name} must be {N_ACTIONS} finite numbers (one per actuator), "
                                 f"got {len(values)}: {values!r}")
        if not (np.isfinite(self.frequency_hz) and self.frequency_hz > 0):
            raise ValueError(f"CubeGait.frequency_hz must be > 0, got {self.frequency_hz!r}")

    @classmethod
    def from_vector(cls, frequency_hz: float, vector: np.ndarray) -> CubeGait:
        """The gait of a flat vector [offset, swing_0, swing_1, swing_cos] (the search's)."""
        parts = np.asarray(vector, dtype=np.float64).reshape(len(cls.PARTS), N_ACTIONS)
        return cls(frequency_hz, *(tuple(round(float(x), 4) for x in row) for row in parts))

    def vector(self) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(self, name)) for name in self.PARTS])

    def to_dict(self) -> dict[str, Any]:
        return {"frequency_hz": self.frequency_hz, **{name: list(getattr(self, name)) for name in self.PARTS}}

    @classmethod
    def from_json(cls, path: Path) -> CubeGait:
        data = json.loads(Path(path).read_text())
        gait = data.get("gait", data)
        return cls(float(gait["frequency_hz"]), *(tuple(float(x) for x in gait[name]) for name in cls.PARTS))

    def prior(self, observation_names: tuple[str, ...]) -> ActionPrior:
        """This gait for an observation layout with a gait clock (names as the env's)."""
        index = {name: i for i, name in enumerate(observation_names)}
        if "gait_clock/sin" not in index:
            raise ValueError("the cube gait needs the gait clock in the observation (gait_frequency_hz > 0)")
        return ActionPrior(
            clock_sin=index["gait_clock/sin"],
            clock_cos=index["gait_clock/cos"],
            command=(),
            swing_0=self.swing_0,
            swing_1=self.swing_1,
            stand_below=1.0,
            swing_cos=self.swing_cos,
            offset=self.offset,
        )


GAIT_FILE = Path(__file__).with_name("cube_gait.json")
"""The gait shipped with the task, as the search wrote it (with its command and score)."""


@functools.cache
def tuned_gait() -> CubeGait:
    """The gait of :data:`GAIT_FILE`."""
    return CubeGait.from_json(GAIT_FILE)


def cube_gait_prior(observation_names: tuple[str, ...]) -> ActionPrior:
    """The shipped gait as the env's action prior."""
    return tuned_gait().prior(observation_names)
