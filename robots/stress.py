"""A named held-out world: what every robot's stress suite is made of.

Each judged task lists its scenarios next to its env (robots/quadruped/stress.py,
robots/hand/stress.py); `sim2real eval --stress` (train/stress.py) runs them. A scenario is
applied to the env with ``env.set_stress(scenario.stress)`` after building the env with
``scenario.env_config`` (task config overrides: the ground, which changes the model).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class StressScenario:
    name: str
    """Short name (``--stress-scenarios`` selects by it)."""
    held_out: str
    """What the world is, with its value: 'floor friction 0.3'."""
    training: str
    """What training saw of the same parameter: 'U(0.4, 1.0)', 'flat floor'."""
    stress: Any
    """The env's stress object (QuadrupedStress, ValveStress); None: only env_config."""
    env_config: tuple[str, ...] = ()
    """Task config overrides the world needs (KEY=VALUE, e.g. terrain.kind=rough)."""
    single: bool = True
    """One perturbation (the targets apply) or several together (reported only)."""
