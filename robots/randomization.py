"""Range types shared by every robot's domain-randomization config.

Domain randomization in this project is a pure function of (nominal model values, rng,
ranges) -> sampled parameters; each robot's ``randomize.py`` does the sampling and the
applying. This module only holds the range types and their validation so that an invalid
range is rejected, with its name, when the config is built rather than deep in a reset.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np

if TYPE_CHECKING:  # importing mujoco fixes its GL backend; keep this module import-light
    import mujoco


class InvalidRangeError(ValueError):
    """A randomization range that cannot be sampled (names the offending field)."""


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A continuous uniform distribution U(low, high). ``low == high`` means a constant."""

    low: float
    high: float

    def validate(
        self, name: str, *, min_value: float | None = None, exclusive: bool = False
    ) -> None:
        """Raise InvalidRangeError naming ``name`` when the range is unusable.

        ``min_value`` bounds the whole range from below (``exclusive``: strictly above it).
        """
        for bound_name, bound in (("low", self.low), ("high", self.high)):
            if isinstance(bound, bool) or not isinstance(bound, (int, float, np.number)):
                raise InvalidRangeError(f"{name}.{bound_name} must be a number, got {bound!r}")
            if not math.isfinite(bound):
                raise InvalidRangeError(f"{name}.{bound_name} must be finite, got {bound!r}")
        if self.low > self.high:
            raise InvalidRangeError(
                f"{name}: low must be <= high, got low={self.low!r} > high={self.high!r}"
            )
        if min_value is not None:
            too_low = self.low <= min_value if exclusive else self.low < min_value
            if too_low:
                relation = ">" if exclusive else ">="
                raise InvalidRangeError(
                    f"{name}: values must be {relation} {min_value:g}, got low={self.low!r}"
                )

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] | None = None) -> Any:
        """Draw from U(low, high); a scalar float when ``size`` is None."""
        if size is None:
            return float(rng.uniform(self.low, self.high))
        return rng.uniform(self.low, self.high, size=size)

    def contains(self, value: float | np.ndarray, atol: float = 1e-12) -> bool:
        """True when every value lies inside [low, high] (up to ``atol``)."""
        arr = np.asarray(value)
        return bool(np.all(arr >= self.low - atol) and np.all(arr <= self.high + atol))


@dataclasses.dataclass(frozen=True)
class IntUniform:
    """A discrete uniform distribution over the integers low..high inclusive."""

    low: int
    high: int

    def validate(self, name: str, *, min_value: int | None = None) -> None:
        """Raise InvalidRangeError naming ``name`` when the range is unusable."""
        for bound_name, bound in (("low", self.low), ("high", self.high)):
            if not isinstance(bound, (int, np.integer)) or isinstance(bound, bool):
                raise InvalidRangeError(
                    f"{name}.{bound_name} must be an integer, got {bound!r}"
                )
        if self.low > self.high:
            raise InvalidRangeError(
                f"{name}: low must be <= high, got low={self.low!r} > high={self.high!r}"
            )
        if min_value is not None and self.low < min_value:
            raise InvalidRangeError(
                f"{name}: values must be >= {min_value}, got low={self.low!r}"
            )

    def sample(self, rng: np.random.Generator) -> int:
        """Draw one integer from low..high inclusive."""
        return int(rng.integers(self.low, self.high + 1))

    def contains(self, value: int) -> bool:
        """True when ``value`` lies inside low..high."""
        return self.low <= value <= self.high


def describe(rng_: Uniform | IntUniform) -> str:
    """Human-readable distribution, e.g. ``U(0.4, 1.0)`` or ``U{0..2}``."""
    if isinstance(rng_, IntUniform):
        return f"U{{{rng_.low}..{rng_.high}}}"
    return f"U({rng_.low:g}, {rng_.high:g})"


def field_docs(config_cls: type) -> dict[str, str]:
    """Field docstrings of a config dataclass (the string literal under each field).

    The docstrings are the documentation of each range's distribution and width; reading
    them from the source keeps `sim2real robots` and the code saying the same thing.
    """
    import ast
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(config_cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    class_def = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    docs: dict[str, str] = {}
    body = class_def.body
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


class ModelSnapshot:
    """Base for a frozen dataclass whose fields are named like MjModel arrays.

    Taken once at load (:meth:`from_model`) and written back (:meth:`restore`) before every
    randomization, so that episodes never compound each other's samples.
    """

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> Self:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return cls(**{f.name: getattr(model, f.name).copy() for f in fields})

    def restore(self, model: mujoco.MjModel) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            getattr(model, f.name)[:] = getattr(self, f.name)


def scale_position_gains(
    model: mujoco.MjModel,
    nominal_gainprm: np.ndarray,
    nominal_biasprm: np.ndarray,
    actuators: np.ndarray,
    kp_scale: np.ndarray,
    kd_scale: np.ndarray | None = None,
) -> None:
    """Scale the stiffness (and damping) of MuJoCo position actuators.

    A position actuator's force is gain*ctrl + bias1*q + bias2*qdot with gain = kp,
    bias1 = -kp and bias2 = -kv: scaling both kp terms together keeps it a PD law.
    """
    kp = nominal_gainprm[actuators, 0] * kp_scale
    model.actuator_gainprm[actuators, 0] = kp
    model.actuator_biasprm[actuators, 1] = -kp
    if kd_scale is not None:
        model.actuator_biasprm[actuators, 2] = nominal_biasprm[actuators, 2] * kd_scale


ConfigT = TypeVar("ConfigT")


def with_randomization_switch(config: ConfigT, enabled: bool | None) -> ConfigT:
    """``config`` with ``config.randomization.enabled`` set, or unchanged when None."""
    if enabled is None:
        return config
    randomization = dataclasses.replace(config.randomization, enabled=enabled)  # type: ignore[attr-defined]
    return dataclasses.replace(config, randomization=randomization)  # type: ignore[type-var]
