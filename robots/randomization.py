"""Range types shared by every robot's domain-randomization config.

Domain randomization in this project is a pure function of (nominal model values, rng,
ranges) -> sampled parameters; each robot's ``randomize.py`` does the sampling and the
applying. This module only holds the range types and their validation so that an invalid
range is rejected, with its name, when the config is built rather than deep in a reset.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


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
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs
