"""Domain randomization of the quadruped: ranges (config), sampling and applying.

``sample_dynamics(rng, ranges, n_joints, n_links)`` draws one set of parameters;
``apply_dynamics(model, nominal, sample, ids)`` writes them into a model, always starting
from the nominal values so that episodes never compound each other's randomization.
Pushes and observation noise are drawn by the env during the episode from the same ranges.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from sim2real.robots.quadruped import constants as consts
from sim2real.robots.quadruped.build import QuadrupedRobot
from sim2real.robots.randomization import (
    IntUniform,
    InvalidRangeError,
    ModelSnapshot,
    Uniform,
    scale_position_gains,
)


@dataclasses.dataclass(frozen=True)
class QuadrupedRandomization:
    """Domain-randomization ranges for a quadruped, sampled at every reset (the same for
    every robot spec: scales are relative to the robot's own values).

    Widths follow MuJoCo Playground's go1 randomize.py where it has the parameter; gains,
    latency and pushes (which Playground leaves out) are sized from Go1 hardware reports.
    """

    enabled: bool = True
    """Master switch. Off: nominal physics, no latency, no pushes, no observation noise."""
    floor_friction: Uniform = Uniform(0.4, 1.0)
    """Floor friction coefficient ~ U(0.4, 1.0) (Playground): polished floor to rubber mat.
    The floor geom has priority, so this value governs every foot contact."""
    link_mass_scale: Uniform = Uniform(0.9, 1.1)
    """Mass (and inertia) of each hip/thigh/calf ~ nominal x U(0.9, 1.1), independently per
    link (Playground): manufacturing spread and cabling."""
    trunk_added_mass: Uniform = Uniform(-1.0, 1.0)
    """kg added to the trunk ~ U(-1, 1) (Playground go1's, a 5.2 kg trunk): battery swaps
    and payloads."""
    trunk_com_offset: Uniform = Uniform(-0.05, 0.05)
    """Trunk centre-of-mass shift in m, per axis ~ U(-0.05, 0.05) (Playground): payload
    placement; 5 cm is about a fifth of the trunk length."""
    joint_damping_scale: Uniform = Uniform(0.5, 2.0)
    """Passive joint damping ~ nominal x U(0.5, 2.0) per joint: gearbox viscous loss is
    poorly known and changes with temperature, hence the wide range."""
    armature_scale: Uniform = Uniform(1.0, 1.05)
    """Reflected rotor inertia ~ nominal x U(1.0, 1.05) per joint (Playground)."""
    frictionloss_scale: Uniform = Uniform(0.9, 1.1)
    """Dry joint friction ~ nominal x U(0.9, 1.1) per joint (Playground)."""
    kp_scale: Uniform = Uniform(0.9, 1.1)
    """Motor strength: PD stiffness Kp ~ nominal x U(0.9, 1.1) per joint; covers motor
    constant spread and battery voltage sag."""
    kd_scale: Uniform = Uniform(0.9, 1.1)
    """PD damping Kd ~ nominal x U(0.9, 1.1) per joint, for the same reasons as Kp."""
    latency_steps: IntUniform = IntUniform(0, 1)
    """Actuation latency in 20 ms control steps ~ U{0..1}: a real Go1 loop (sensor read,
    inference, bus) adds 5-20 ms, so commands arrive up to one step late."""
    observation_noise_scale: float = 1.0
    """Multiplies every observation noise amplitude below (0 turns noise off alone)."""
    joint_pos_noise: float = 0.03
    """Joint position noise, rad: each reading + U(-a, a) (Playground go1)."""
    joint_vel_noise: float = 1.5
    """Joint velocity noise, rad/s: U(-a, a) (Playground go1; finite-differenced encoders)."""
    gyro_noise: float = 0.2
    """Gyro noise, rad/s: U(-a, a) (Playground go1)."""
    gravity_noise: float = 0.05
    """Projected-gravity noise, unit vector components: U(-a, a) (Playground go1)."""
    linvel_noise: float = 0.1
    """Noise of the linear velocity estimate (when the task observes it), m/s: U(-a, a)
    (Playground go1)."""
    push_interval_s: Uniform = Uniform(5.0, 10.0)
    """Seconds between random pushes ~ U(5, 10): a few per 20 s episode."""
    push_velocity: Uniform = Uniform(0.0, 0.5)
    """Horizontal trunk velocity change of a push in m/s ~ U(0, 0.5), direction uniform:
    a firm shove that a good gait absorbs without falling."""
    torque_limit_follows_kp: bool = False
    """When true, each motor's torque limit scales with its drawn Kp (kp_scale): one
    "motor strength" draw per joint, as a worn motor or a sagging battery weakens both
    (the weak-motor stress world does the same). Off by default: the shipped policies
    trained with the URDF's torque limits."""
    incline_deg: Uniform = Uniform(0.0, 0.0)
    """Incline of the ground in degrees ~ U(low, high), uphill in a direction drawn
    uniformly at each reset (gravity tilted, as the slope stress worlds do; the gravity
    sensor sees it). U(0, 0) by default: flat, and no random draw is spent on it."""

    def __post_init__(self) -> None:
        prefix = "QuadrupedRandomization"
        self.floor_friction.validate(f"{prefix}.floor_friction", min_value=0.0, exclusive=True)
        self.link_mass_scale.validate(f"{prefix}.link_mass_scale", min_value=0.0, exclusive=True)
        # Bounded below by the robot's trunk mass where the robot is known (check_robot).
        self.trunk_added_mass.validate(f"{prefix}.trunk_added_mass")
        self.trunk_com_offset.validate(f"{prefix}.trunk_com_offset")
        for name in ("joint_damping_scale", "armature_scale", "frictionloss_scale", "kd_scale"):
            getattr(self, name).validate(f"{prefix}.{name}", min_value=0.0)
        self.kp_scale.validate(f"{prefix}.kp_scale", min_value=0.0, exclusive=True)
        self.latency_steps.validate(f"{prefix}.latency_steps", min_value=0)
        self.push_interval_s.validate(f"{prefix}.push_interval_s", min_value=0.0, exclusive=True)
        self.push_velocity.validate(f"{prefix}.push_velocity", min_value=0.0)
        self.incline_deg.validate(f"{prefix}.incline_deg", min_value=0.0)
        if self.incline_deg.high >= 45.0:
            raise InvalidRangeError(f"{prefix}.incline_deg: values must be < 45 degrees, "
                                    f"got high={self.incline_deg.high!r}")
        if not isinstance(self.torque_limit_follows_kp, bool):
            raise InvalidRangeError(f"{prefix}.torque_limit_follows_kp must be true or false, "
                                    f"got {self.torque_limit_follows_kp!r}")
        for name in (
            "observation_noise_scale",
            "joint_pos_noise",
            "joint_vel_noise",
            "gyro_noise",
            "gravity_noise",
            "linvel_noise",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise InvalidRangeError(f"{prefix}.{name} must be a finite number >= 0, got {value!r}")


    def check_robot(self, robot: QuadrupedRobot) -> None:
        """Ranges that depend on the body: the trunk must keep a positive mass."""
        if self.trunk_added_mass.low <= -robot.base_mass:
            raise InvalidRangeError(
                f"QuadrupedRandomization.trunk_added_mass: values must be > -{robot.base_mass:g} "
                f"(the {robot.name} trunk's mass, kg), got low={self.trunk_added_mass.low!r}"
            )


@dataclasses.dataclass(frozen=True)
class QuadrupedDynamics:
    """One draw of the randomized physical parameters (identity values = nominal robot)."""

    floor_friction: float
    link_mass_scale: np.ndarray
    trunk_added_mass: float
    trunk_com_offset: np.ndarray
    joint_damping_scale: np.ndarray
    armature_scale: np.ndarray
    frictionloss_scale: np.ndarray
    kp_scale: np.ndarray
    kd_scale: np.ndarray
    latency_steps: int

    def as_info(self) -> dict[str, float | int | np.ndarray]:
        """The sampled values by name, as reported in ``info["dr"]``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def as_vector(self) -> np.ndarray:
        """Flat float vector of every value, for the privileged (critic) observation."""
        parts = [np.atleast_1d(np.asarray(getattr(self, f.name), dtype=np.float64))
                 for f in dataclasses.fields(self)]
        return np.concatenate(parts)

    @staticmethod
    def vector_names(n_joints: int, n_links: int) -> tuple[str, ...]:
        """Names of the entries of :meth:`as_vector`, in order."""
        names = ["dr/floor_friction"]
        names += [f"dr/link_mass_scale/{i}" for i in range(n_links)]
        names += ["dr/trunk_added_mass"]
        names += [f"dr/trunk_com_offset/{axis}" for axis in "xyz"]
        for per_joint in ("joint_damping_scale", "armature_scale", "frictionloss_scale",
                          "kp_scale", "kd_scale"):
            names += [f"dr/{per_joint}/{i}" for i in range(n_joints)]
        names += ["dr/latency_steps"]
        return tuple(names)


def nominal_dynamics(n_joints: int, n_links: int, floor_friction: float) -> QuadrupedDynamics:
    """The parameters of the unrandomized robot (what DR off uses)."""
    ones = np.ones(n_joints)
    return QuadrupedDynamics(
        floor_friction=floor_friction,
        link_mass_scale=np.ones(n_links),
        trunk_added_mass=0.0,
        trunk_com_offset=np.zeros(3),
        joint_damping_scale=ones.copy(),
        armature_scale=ones.copy(),
        frictionloss_scale=ones.copy(),
        kp_scale=ones.copy(),
        kd_scale=ones.copy(),
        latency_steps=0,
    )


def sample_dynamics(
    rng: np.random.Generator, ranges: QuadrupedRandomization, n_joints: int, n_links: int
) -> QuadrupedDynamics:
    """Draw one set of physical parameters from ``ranges``."""
    return QuadrupedDynamics(
        floor_friction=ranges.floor_friction.sample(rng),
        link_mass_scale=ranges.link_mass_scale.sample(rng, n_links),
        trunk_added_mass=ranges.trunk_added_mass.sample(rng),
        trunk_com_offset=ranges.trunk_com_offset.sample(rng, 3),
        joint_damping_scale=ranges.joint_damping_scale.sample(rng, n_joints),
        armature_scale=ranges.armature_scale.sample(rng, n_joints),
        frictionloss_scale=ranges.frictionloss_scale.sample(rng, n_joints),
        kp_scale=ranges.kp_scale.sample(rng, n_joints),
        kd_scale=ranges.kd_scale.sample(rng, n_joints),
        latency_steps=ranges.latency_steps.sample(rng),
    )


@dataclasses.dataclass(frozen=True)
class ModelIds:
    """Indices of the model elements that randomization touches, looked up by name."""

    floor_geom: int
    trunk_body: int
    link_bodies: np.ndarray
    joint_dofs: np.ndarray
    actuators: np.ndarray

    @classmethod
    def from_model(cls, model: mujoco.MjModel, robot: QuadrupedRobot) -> ModelIds:
        def lookup(obj: mujoco.mjtObj, name: str) -> int:
            idx = mujoco.mj_name2id(model, obj, name)
            if idx < 0:
                raise KeyError(f"{obj.name} {name!r} missing from the {robot.name} model")
            return idx

        joints = [lookup(mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot.joint_names]
        return cls(
            floor_geom=lookup(mujoco.mjtObj.mjOBJ_GEOM, consts.FLOOR_GEOM),
            trunk_body=lookup(mujoco.mjtObj.mjOBJ_BODY, robot.base_body),
            link_bodies=np.array([lookup(mujoco.mjtObj.mjOBJ_BODY, n) for n in robot.link_bodies]),
            joint_dofs=np.array([model.jnt_dofadr[j] for j in joints]),
            actuators=np.array(
                [lookup(mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in robot.actuator_names]
            ),
        )


@dataclasses.dataclass(frozen=True)
class NominalModel(ModelSnapshot):
    """Copies of every model array that randomization writes, taken once at load."""

    geom_friction: np.ndarray
    body_mass: np.ndarray
    body_inertia: np.ndarray
    body_ipos: np.ndarray
    dof_damping: np.ndarray
    dof_armature: np.ndarray
    dof_frictionloss: np.ndarray
    actuator_gainprm: np.ndarray
    actuator_biasprm: np.ndarray
    actuator_forcerange: np.ndarray


def apply_dynamics(
    model: mujoco.MjModel, nominal: NominalModel, sample: QuadrupedDynamics, ids: ModelIds
) -> None:
    """Write ``sample`` into ``model`` (in place), starting from the nominal values."""
    nominal.restore(model)

    model.geom_friction[ids.floor_geom, 0] = sample.floor_friction

    links = ids.link_bodies
    model.body_mass[links] = nominal.body_mass[links] * sample.link_mass_scale
    # Inertia scales with mass for a body whose shape is unchanged.
    model.body_inertia[links] = nominal.body_inertia[links] * sample.link_mass_scale[:, None]

    trunk = ids.trunk_body
    trunk_mass = nominal.body_mass[trunk]
    new_trunk_mass = trunk_mass + sample.trunk_added_mass
    model.body_mass[trunk] = new_trunk_mass
    model.body_inertia[trunk] = nominal.body_inertia[trunk] * (new_trunk_mass / trunk_mass)
    model.body_ipos[trunk] = nominal.body_ipos[trunk] + sample.trunk_com_offset

    dofs = ids.joint_dofs
    model.dof_damping[dofs] = nominal.dof_damping[dofs] * sample.joint_damping_scale
    model.dof_armature[dofs] = nominal.dof_armature[dofs] * sample.armature_scale
    model.dof_frictionloss[dofs] = nominal.dof_frictionloss[dofs] * sample.frictionloss_scale

    scale_position_gains(
        model, nominal.actuator_gainprm, nominal.actuator_biasprm, ids.actuators,
        sample.kp_scale, sample.kd_scale,
    )
