"""Held-out worlds for the quadruped: perturbations outside the training ranges.

A :class:`QuadrupedStress` is applied by the env at every reset, after its own domain
randomization (``env.set_stress``), so the randomization cannot soften it: a parameter the
stress names replaces the sampled value (friction, payload, motor strength) or adds to it
(latency), and everything it does not name keeps the env's usual draw. What it changes:

- physics (model): floor friction, a payload on the trunk (mass and where it sits), motor
  strength (Kp and torque limit together), the direction of gravity (a slope: for a rigid
  floor, tilting gravity is the same physics as tilting the floor, and every sensor sees
  the true gravity);
- the controller's sensors (observation): gyro bias, a tilted IMU (the gravity reading
  rotated), encoder offsets, a biased velocity estimate;
- the loop: extra actuation latency;
- the episode: sideways pushes at a fixed interval.

Ground other than the flat floor (rough, a step) is the task's ``terrain`` config
(terrain.py): it changes the model the env is built with. :func:`stress_scenarios` names
the suite `sim2real eval --stress` runs (train/stress.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from sim2real.robots.quadruped.build import QuadrupedRobot
from sim2real.robots.quadruped.randomize import QuadrupedDynamics, QuadrupedRandomization
from sim2real.robots.quadruped.terrain import TerrainConfig
from sim2real.robots.randomization import describe
from sim2real.robots.stress import StressScenario

Vector3 = tuple[float, float, float]


def slope_gravity(slope_deg: float, magnitude: float, uphill_yaw: float) -> np.ndarray:
    """World gravity on ground tilted up by ``slope_deg`` towards ``uphill_yaw``: for a rigid
    floor, the tilted floor is gravity tilted back by as much (a component pulling
    downhill)."""
    tilt = math.radians(slope_deg)
    back = -math.sin(tilt) * magnitude
    return np.array([back * math.cos(uphill_yaw), back * math.sin(uphill_yaw), -math.cos(tilt) * magnitude])


@dataclasses.dataclass(frozen=True)
class QuadrupedStress:
    """One held-out world; every default is "no change"."""

    floor_friction: float | None = None
    """Floor friction coefficient (replaces the randomized draw)."""
    payload_mass: float = 0.0
    """kg on the trunk (replaces the randomized trunk mass change)."""
    payload_offset: Vector3 = (0.0, 0.0, 0.0)
    """Where the payload sits relative to the trunk's own centre of mass, m (trunk frame);
    the trunk's centre of mass moves by payload_mass / (trunk + payload) of it (replaces
    the randomized offset when payload_mass > 0)."""
    motor_strength: float = 1.0
    """Kp and torque limit of every motor x this (replaces the randomized Kp)."""
    extra_latency_steps: int = 0
    """Control steps of actuation latency added to the randomized latency."""
    gyro_bias: Vector3 = (0.0, 0.0, 0.0)
    """Added to the gyro reading, rad/s."""
    imu_tilt_deg: tuple[float, float] = (0.0, 0.0)
    """IMU mounted tilted by (roll, pitch), degrees: the gravity reading is rotated by it."""
    joint_pos_bias: float = 0.0
    """Added to every joint angle reading, rad (an encoder calibration offset)."""
    linvel_bias: Vector3 = (0.0, 0.0, 0.0)
    """Added to the linear velocity estimate, m/s (trunk frame)."""
    slope_deg: float = 0.0
    """Incline of the ground, degrees: > 0 uphill along the commanded direction of travel
    (the heading for a command with no planar part), < 0 downhill."""
    push_velocity: float = 0.0
    """Sideways push, m/s of trunk velocity change, perpendicular to the heading,
    alternately left and right..."""
    push_interval_s: float = 3.0
    """...every this many seconds, the first this long after reset."""

    def __post_init__(self) -> None:
        def finite(*values: float) -> bool:
            return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)

        checks = {
            "floor_friction": self.floor_friction is None or (finite(self.floor_friction) and self.floor_friction > 0),
            "payload_mass": finite(self.payload_mass) and self.payload_mass >= 0,
            "payload_offset": len(self.payload_offset) == 3 and finite(*self.payload_offset),
            "motor_strength": finite(self.motor_strength) and self.motor_strength > 0,
            "extra_latency_steps": isinstance(self.extra_latency_steps, int) and 0 <= self.extra_latency_steps <= 50,
            "gyro_bias": len(self.gyro_bias) == 3 and finite(*self.gyro_bias),
            "imu_tilt_deg": len(self.imu_tilt_deg) == 2 and finite(*self.imu_tilt_deg),
            "joint_pos_bias": finite(self.joint_pos_bias),
            "linvel_bias": len(self.linvel_bias) == 3 and finite(*self.linvel_bias),
            "slope_deg": finite(self.slope_deg) and abs(self.slope_deg) < 45,
            "push_velocity": finite(self.push_velocity) and self.push_velocity >= 0,
            "push_interval_s": finite(self.push_interval_s) and self.push_interval_s > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"QuadrupedStress.{name}: invalid value {getattr(self, name)!r}")

    # --- physics ---------------------------------------------------------------------------
    def dynamics(self, sampled: QuadrupedDynamics, trunk_mass: float) -> QuadrupedDynamics:
        """The randomized draw with what this stress names replaced."""
        changes: dict[str, object] = {}
        if self.floor_friction is not None:
            changes["floor_friction"] = float(self.floor_friction)
        if self.payload_mass > 0:
            changes["trunk_added_mass"] = float(self.payload_mass)
            share = self.payload_mass / (trunk_mass + self.payload_mass)
            changes["trunk_com_offset"] = share * np.asarray(self.payload_offset, dtype=np.float64)
        if self.motor_strength != 1.0:
            changes["kp_scale"] = np.full_like(sampled.kp_scale, self.motor_strength)
        if self.extra_latency_steps:
            changes["latency_steps"] = sampled.latency_steps + self.extra_latency_steps
        return dataclasses.replace(sampled, **changes) if changes else sampled  # type: ignore[arg-type]

    def gravity(self, magnitude: float, travel_yaw: float) -> np.ndarray:
        """World gravity for the slope along the commanded travel (see slope_gravity)."""
        return slope_gravity(self.slope_deg, magnitude, travel_yaw)

    # --- sensors ---------------------------------------------------------------------------
    @property
    def biases_sensors(self) -> bool:
        return (any(self.gyro_bias) or any(self.imu_tilt_deg) or self.joint_pos_bias != 0.0
                or any(self.linvel_bias))

    @functools.cached_property
    def imu_rotation(self) -> np.ndarray:
        """Rotation from the trunk frame to the tilted IMU's frame (roll about x, then pitch
        about y): a reading v in the trunk frame reads R v. Computed once: every observation
        of a stressed episode uses it."""
        roll, pitch = (math.radians(a) for a in self.imu_tilt_deg)
        cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
        rx = np.array([[1, 0, 0], [0, cr, sr], [0, -sr, cr]])
        ry = np.array([[cp, 0, -sp], [0, 1, 0], [sp, 0, cp]])
        return ry @ rx

    @property
    def pushes(self) -> bool:
        return self.push_velocity > 0

    def latency_bound(self, randomization: QuadrupedRandomization) -> int:
        """The largest latency an episode can have under this stress, control steps."""
        return randomization.latency_steps.high + self.extra_latency_steps


def _ground_trained(terrain: TerrainConfig, dr: QuadrupedRandomization) -> str:
    """The ground the training saw, in words."""
    if terrain.kind == "rough":
        ground = f"rough ground, bumps U(0, {100 * terrain.height:g} cm) on {100 * terrain.cell:g} cm cells"
    elif terrain.kind == "step":
        ground = f"a {100 * terrain.height:g} cm step"
    else:
        ground = "flat floor"
    if dr.enabled and dr.incline_deg.high > 0:
        ground += f", inclined {describe(dr.incline_deg)} deg in any direction"
    return ground


def stress_scenarios(robot: QuadrupedRobot, ranges: QuadrupedRandomization | None = None,
                     terrain: TerrainConfig | None = None) -> tuple[StressScenario, ...]:
    """The quadruped's held-out worlds for ``robot`` (the payload is a fifth of its mass);
    ``ranges`` and ``terrain`` (default: the task's defaults) are what the training saw,
    quoted beside each."""
    dr = ranges or QuadrupedRandomization()
    ground = _ground_trained(terrain or TerrainConfig(), dr)
    torque = "x the same draw" if dr.torque_limit_follows_kp else "x 1"
    payload = round(0.2 * robot.total_mass, 2)
    trunk_mass = round(robot.base_mass, 2)
    latency_ms = round(1000 * robot.control_dt)  # one control step
    pushes = f"U({dr.push_velocity.low:g}, {dr.push_velocity.high:g}) m/s any direction every " \
             f"U({dr.push_interval_s.low:g}, {dr.push_interval_s.high:g}) s"
    scenarios = (
        StressScenario("low friction", "floor friction 0.3", describe(dr.floor_friction),
                       QuadrupedStress(floor_friction=0.3)),
        StressScenario("payload", f"{payload:g} kg (20% of the robot) 8 cm ahead, 4 cm left, 3 cm above the "
                       "trunk's centre of mass",
                       f"trunk {describe(dr.trunk_added_mass)} kg, centre of mass {describe(dr.trunk_com_offset)} m "
                       f"per axis ({trunk_mass:g} kg trunk)",
                       QuadrupedStress(payload_mass=payload, payload_offset=(0.08, 0.04, 0.03))),
        StressScenario("weak motors", "Kp and torque limit x 0.75", f"Kp x {describe(dr.kp_scale)}, torque limit {torque}",
                       QuadrupedStress(motor_strength=0.75)),
        StressScenario("latency", f"+2 control steps ({2 * latency_ms} ms) of actuation latency",
                       f"{describe(dr.latency_steps)} steps", QuadrupedStress(extra_latency_steps=2)),
        StressScenario("IMU bias", "gyro +0.1 rad/s on each axis, IMU tilted 3 deg in roll and pitch",
                       f"zero-mean noise: gyro U(-{dr.gyro_noise:g}, {dr.gyro_noise:g}) rad/s, gravity "
                       f"U(-{dr.gravity_noise:g}, {dr.gravity_noise:g})",
                       QuadrupedStress(gyro_bias=(0.1, 0.1, 0.1), imu_tilt_deg=(3.0, 3.0))),
        StressScenario("encoder bias", "+0.05 rad on every joint angle",
                       f"zero-mean noise U(-{dr.joint_pos_noise:g}, {dr.joint_pos_noise:g}) rad",
                       QuadrupedStress(joint_pos_bias=0.05)),
        StressScenario("velocity bias", "velocity estimate +0.1 m/s forward and left",
                       f"zero-mean noise U(-{dr.linvel_noise:g}, {dr.linvel_noise:g}) m/s",
                       QuadrupedStress(linvel_bias=(0.1, 0.1, 0.0))),
        StressScenario("slope up", "6 deg uphill along the commanded direction", ground,
                       QuadrupedStress(slope_deg=6.0)),
        StressScenario("slope down", "6 deg downhill along the commanded direction", ground,
                       QuadrupedStress(slope_deg=-6.0)),
        StressScenario("rough ground", "bumps U(0, 3 cm) on 10 cm cells", ground, None,
                       ("terrain.kind=rough", "terrain.height=0.03", "terrain.cell=0.1")),
        StressScenario("step", "a 4 cm step 0.6 m ahead along the commanded direction", ground, None,
                       ("terrain.kind=step", "terrain.height=0.04", "terrain.distance=0.6")),
        StressScenario("pushes", "1.0 m/s sideways every 3 s, alternately left and right", pushes,
                       QuadrupedStress(push_velocity=1.0, push_interval_s=3.0)),
        StressScenario("all of them", "friction 0.3, the payload, motors x 0.75 and 6 deg uphill together",
                       "-", QuadrupedStress(floor_friction=0.3, payload_mass=payload,
                                            payload_offset=(0.08, 0.04, 0.03), motor_strength=0.75, slope_deg=6.0),
                       single=False),
    )
    return scenarios
