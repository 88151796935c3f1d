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

from sim2real.robots.action_prior import ActionPrior
from sim2real.robots.quadruped import constants as consts

__all__ = ["ActionPrior", "GaitConfig", "TROT_PAIR", "trot_prior"]

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
    forward_gain: float = 0.0
    """Hip-flexion swing per m/s of commanded vx, action units: each leg's thigh swings
    ``forward_gain * vx * sin(leg phase + forward_phase)``. 0: step in place only."""
    forward_phase: float = 0.0
    """Phase of the forward swing relative to the lift, rad."""
    sideways_gain: float = 0.0
    """Abduction swing per m/s of commanded vy, action units (all legs alike)."""
    sideways_phase: float = 0.0
    """Phase of the sideways swing relative to the lift, rad."""
    turn_gain: float = 0.0
    """Abduction swing per rad/s of commanded yaw rate, action units; front legs +, rear
    legs - (the legs sweep the trunk around)."""
    turn_phase: float = 0.0
    """Phase of the turning swing relative to the lift, rad."""

    def __post_init__(self) -> None:
        checks = {
            "frequency_hz": (math.isfinite(self.frequency_hz) and self.frequency_hz >= 0, "a finite number >= 0 (0: off)"),
            "knee": (-1.0 <= self.knee <= 1.0, "in [-1, 1]"),
            "thigh": (-1.0 <= self.thigh <= 1.0, "in [-1, 1]"),
            "stand_below": (math.isfinite(self.stand_below) and self.stand_below > 0, "a finite number > 0"),
            **{name: (math.isfinite(getattr(self, name)), "finite")
               for name in ("forward_gain", "forward_phase", "sideways_gain", "sideways_phase", "turn_gain", "turn_phase")},
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"GaitConfig.{name} must be {allowed}, got {getattr(self, name)!r}")

    @property
    def enabled(self) -> bool:
        return self.frequency_hz > 0


def trot_prior(gait: GaitConfig, observation_names: tuple[str, ...]) -> ActionPrior:
    """The trot of ``gait`` for a joystick observation layout (names as the env's)."""
    index = {name: i for i, name in enumerate(observation_names)}
    swing = {0: np.zeros(len(consts.ACTUATOR_NAMES)), 1: np.zeros(len(consts.ACTUATOR_NAMES))}
    for i, name in enumerate(consts.ACTUATOR_NAMES):
        leg, joint = name.split("_", 1)
        amplitude = {"calf": gait.knee, "thigh": gait.thigh}.get(joint, 0.0)
        swing[TROT_PAIR[leg]][i] = amplitude
    # Steering: joint j of a leg in pair p swings gain * c_k * sin(phase + p pi + psi_k)
    # = gain * c_k * (-1)^p * (cos psi_k sin(phase) + sin psi_k cos(phase)).
    steer_sin, steer_cos = np.zeros((3, len(consts.ACTUATOR_NAMES))), np.zeros((3, len(consts.ACTUATOR_NAMES)))
    for i, name in enumerate(consts.ACTUATOR_NAMES):
        leg, joint = name.split("_", 1)
        sign = -1.0 if TROT_PAIR[leg] else 1.0
        front = 1.0 if leg.startswith("F") else -1.0
        terms = {
            "thigh": ((0, gait.forward_gain, gait.forward_phase),),
            "hip": ((1, gait.sideways_gain, gait.sideways_phase), (2, front * gait.turn_gain, gait.turn_phase)),
        }.get(joint, ())
        for k, gain, psi in terms:
            steer_sin[k, i] += sign * gain * math.cos(psi)
            steer_cos[k, i] += sign * gain * math.sin(psi)
    steering = bool(np.any(steer_sin) or np.any(steer_cos))
    return ActionPrior(
        clock_sin=index["gait_clock/sin"],
        clock_cos=index["gait_clock/cos"],
        command=(index["command/vx"], index["command/vy"], index["command/yaw_rate"]),
        swing_0=tuple(float(x) for x in swing[0]),
        swing_1=tuple(float(x) for x in swing[1]),
        stand_below=gait.stand_below,
        steer_sin=tuple(tuple(float(x) for x in row) for row in steer_sin) if steering else (),
        steer_cos=tuple(tuple(float(x) for x in row) for row in steer_cos) if steering else (),
    )
