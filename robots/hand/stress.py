"""Held-out worlds for the valve task: perturbations outside the training ranges.

A :class:`ValveStress` is applied by the env at every reset, after its own domain
randomization (``env.set_stress``): each parameter it names replaces the randomized draw
(or, for latency, adds to it), everything else keeps the usual draw. The suite `sim2real
eval --stress` runs is :func:`stress_scenarios` (train/stress.py runs it).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sim2real.robots.hand.randomize import ValveDynamics, ValveRandomization
from sim2real.robots.randomization import describe
from sim2real.robots.stress import StressScenario


@dataclasses.dataclass(frozen=True)
class ValveStress:
    """One held-out world for the hand and the valve; every default is "no change"."""

    valve_friction: float | None = None
    """Dry friction torque of the valve's bearing, N m (replaces the draw)."""
    valve_damping: float | None = None
    """Viscous damping of the valve's bearing, N m s/rad (replaces the draw)."""
    fingertip_friction: float | None = None
    """Friction of the four fingertips (replaces the draw)."""
    motor_strength: float = 1.0
    """Servo Kp and torque limit x this (replaces the randomized Kp)."""
    extra_latency_steps: int = 0
    """Control steps of actuation latency added to the randomized latency."""
    valve_size_scale: float | None = None
    """The whole knob scaled about its axle (replaces the draw)."""

    def __post_init__(self) -> None:
        def positive(value: float | None, allow_zero: bool = False) -> bool:
            return value is None or (isinstance(value, (int, float)) and math.isfinite(value)
                                     and (value >= 0 if allow_zero else value > 0))

        checks = {
            "valve_friction": positive(self.valve_friction, allow_zero=True),
            "valve_damping": positive(self.valve_damping, allow_zero=True),
            "fingertip_friction": positive(self.fingertip_friction),
            "motor_strength": positive(self.motor_strength),
            "extra_latency_steps": isinstance(self.extra_latency_steps, int) and 0 <= self.extra_latency_steps <= 50,
            "valve_size_scale": positive(self.valve_size_scale),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"ValveStress.{name}: invalid value {getattr(self, name)!r}")

    def dynamics(self, sampled: ValveDynamics) -> ValveDynamics:
        """The randomized draw with what this stress names replaced."""
        changes: dict[str, object] = {
            name: float(value)
            for name in ("valve_friction", "valve_damping", "fingertip_friction", "valve_size_scale")
            if (value := getattr(self, name)) is not None
        }
        if self.motor_strength != 1.0:
            changes["kp_scale"] = np.full_like(sampled.kp_scale, self.motor_strength)
        if self.extra_latency_steps:
            changes["latency_steps"] = sampled.latency_steps + self.extra_latency_steps
        return dataclasses.replace(sampled, **changes) if changes else sampled  # type: ignore[arg-type]

    def latency_bound(self, randomization: ValveRandomization) -> int:
        return randomization.latency_steps.high + self.extra_latency_steps


def stress_scenarios(ranges: ValveRandomization | None = None) -> tuple[StressScenario, ...]:
    """The valve task's held-out worlds; ``ranges`` (default: the task's defaults) is what
    the training saw, quoted beside each."""
    dr = ranges or ValveRandomization()
    return (
        StressScenario("stiff valve", "bearing friction 0.04 N m and damping 0.02 N m s/rad",
                       f"friction {describe(dr.valve_friction)} N m, damping {describe(dr.valve_damping)} N m s/rad",
                       ValveStress(valve_friction=0.04, valve_damping=0.02)),
        StressScenario("low fingertip friction", "fingertip friction 0.35", describe(dr.fingertip_friction),
                       ValveStress(fingertip_friction=0.35)),
        StressScenario("weak motors", "servo Kp and torque limit x 0.6", f"Kp x {describe(dr.kp_scale)}, torque x 1",
                       ValveStress(motor_strength=0.6)),
        StressScenario("latency", "+1 control step (50 ms) of actuation latency", f"{describe(dr.latency_steps)} steps",
                       ValveStress(extra_latency_steps=1)),
        StressScenario("small valve", "knob x 0.92", describe(dr.valve_size_scale),
                       ValveStress(valve_size_scale=0.92)),
        StressScenario("large valve", "knob x 1.08", describe(dr.valve_size_scale),
                       ValveStress(valve_size_scale=1.08)),
    )
