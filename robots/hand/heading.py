"""The cube's heading about the vertical: what "turning the cube" means, for the reward and
for the judge.

A cube rocking back and forth on two axes and returning to where it started has not turned,
but the integral of its world-z angular velocity says it has (a 17-degree two-axis wobble
collects about 0.28 rad per cycle: the rotations do not commute). The heading used here is
a function of the orientation alone, the twist of the cube's quaternion about the world
vertical, 2 atan2(q_z, q_w): a rotation by d about the world z axis adds exactly d to it
whatever the tilt, and any path that ends at the start orientation adds nothing.
"""

from __future__ import annotations

import math

import numpy as np


def heading(quat: np.ndarray) -> float:
    """Twist of the orientation ``quat`` (MuJoCo (w, x, y, z), world from body) about the
    world z axis, rad, in (-2 pi, 2 pi]: q and -q differ by 2 pi (heading_increment
    removes that)."""
    return 2.0 * math.atan2(float(quat[3]), float(quat[0]))


def heading_increment(before: np.ndarray, after: np.ndarray) -> float:
    """How far the heading turned from ``before`` to ``after``, rad, in (-pi, pi]: the
    short way round (steps are small), counter-clockwise positive."""
    delta = heading(after) - heading(before)
    return math.remainder(delta, 2.0 * math.pi)
