"""Domain randomization of the hand and its object: ranges (config), sampling and applying.

``sample_dynamics(rng, ranges, n_joints, n_links)`` draws one set of parameters;
``apply_dynamics(model, nominal, sample, ids)`` writes them into a model, always starting
from the nominal values so that episodes never compound each other's randomization.
The valve task has its own triple (``ValveRandomization``, ``sample_valve_dynamics``,
``apply_valve_dynamics``); the hand's share (fingertips, links, joints, servos) is applied
by one function for both. Observation noise is drawn by the env every step from the
amplitudes here.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from sim2real.robots.hand import constants as consts
from sim2real.robots.randomization import (
    IntUniform,
    InvalidRangeError,
    ModelSnapshot,
    Uniform,
    scale_position_gains,
)


@dataclasses.dataclass(frozen=True)
class HandRandomization:
    """Domain-randomization ranges for the hand and cube, sampled at every reset.

    Widths follow MuJoCo Playground's leap_hand rotate-z ``domain_randomize`` where it has
    the parameter; cube mass, size and friction and the latency (which Playground leaves
    out) are sized from what differs between real cubes and LEAP setups.
    """

    enabled: bool = True
    """Master switch. Off: nominal physics, no latency, no observation noise."""
    fingertip_friction: Uniform = Uniform(0.5, 1.0)
    """Friction of the four fingertip boxes (one value for all) ~ U(0.5, 1.0) (Playground):
    bare printed tips to rubber-covered ones. MuJoCo uses the larger friction of a pair, so
    this is the fingertip-cube friction whenever it exceeds the cube's."""
    cube_friction: Uniform = Uniform(0.2, 0.4)
    """Cube friction ~ U(0.2, 0.4) around the nominal 0.3: printed or wooden cubes, worn or
    new. It also sets the cube-palm friction (the palm's 0.2 is never larger)."""
    kp_scale: Uniform = Uniform(0.8, 1.2)
    """Servo stiffness kp ~ nominal 3.0 x U(0.8, 1.2) per joint (Playground): Dynamixel
    gain-to-torque spread and supply-voltage sag."""
    kd_scale: Uniform = Uniform(0.8, 1.2)
    """Joint damping (the servo's D term) ~ nominal 0.2 x U(0.8, 1.2) per joint
    (Playground)."""
    armature_scale: Uniform = Uniform(1.0, 1.05)
    """Reflected rotor inertia ~ nominal 0.00149 x U(1.0, 1.05) per joint (Playground): the
    gear ratio is exact, only the rotor and horn inertia vary a little."""
    frictionloss_scale: Uniform = Uniform(0.5, 2.0)
    """Dry joint friction ~ nominal 0.02 x U(0.5, 2.0) per joint (Playground): the nominal
    is a "rough guess", hence a factor of two either way."""
    link_mass_scale: Uniform = Uniform(0.9, 1.1)
    """Mass (and inertia) of each of the 16 finger links ~ nominal x U(0.9, 1.1),
    independently (Playground): print infill, screws and cables."""
    cube_mass_scale: Uniform = Uniform(0.8, 1.2)
    """Cube mass ~ 0.108 kg x U(0.8, 1.2) (inertia follows): printed cubes differ in
    infill by about a fifth."""
    cube_inertia_scale: Uniform = Uniform(0.8, 1.2)
    """Cube rotational inertia ~ x U(0.8, 1.2) on top of the mass and size scaling
    (Playground): uneven infill puts mass nearer or farther from the centre."""
    cube_com_offset: Uniform = Uniform(-0.005, 0.005)
    """Cube centre-of-mass shift in m, per axis ~ U(-0.005, 0.005) (Playground)."""
    cube_size_scale: Uniform = Uniform(0.95, 1.05)
    """Cube edge ~ 70 mm x U(0.95, 1.05), i.e. +-3.5 mm: covers other cubes of the same
    nominal size and the tracker's size error. Collision size and bounds change together."""
    latency_steps: IntUniform = IntUniform(0, 1)
    """Actuation latency in 50 ms control steps ~ U{0..1}: a LEAP loop (camera/tracker,
    inference, U2D2 bus) can miss a 20 Hz tick, so a command may arrive one step late."""
    observation_noise_scale: float = 1.0
    """Multiplies every observation noise amplitude below (0 turns noise off alone)."""
    joint_pos_noise: float = 0.05
    """Joint angle noise, rad: each reading + U(-a, a) (Playground rotate-z and reorient)."""
    cube_pos_noise: float = 0.02
    """Cube position noise, m: each component + U(-a, a) (Playground reorient): a camera
    tracker's error on a 7 cm cube."""
    cube_ori_noise: float = 0.1
    """Cube quaternion noise: each component + U(-a, a), then renormalized (Playground
    reorient's amplitude; it draws Gaussian noise, we keep the uniform model of the other
    channels)."""

    def __post_init__(self) -> None:
        prefix = "HandRandomization"
        for name in ("fingertip_friction", "cube_friction"):
            getattr(self, name).validate(f"{prefix}.{name}", min_value=0.0, exclusive=True)
        for name in ("kp_scale", "link_mass_scale", "cube_mass_scale", "cube_inertia_scale",
                     "cube_size_scale"):
            getattr(self, name).validate(f"{prefix}.{name}", min_value=0.0, exclusive=True)
        for name in ("kd_scale", "armature_scale", "frictionloss_scale"):
            getattr(self, name).validate(f"{prefix}.{name}", min_value=0.0)
        self.cube_com_offset.validate(f"{prefix}.cube_com_offset")
        self.latency_steps.validate(f"{prefix}.latency_steps", min_value=0)
        for name in (
            "observation_noise_scale",
            "joint_pos_noise",
            "cube_pos_noise",
            "cube_ori_noise",
        ):
            _check_amplitude(f"{prefix}.{name}", getattr(self, name))


def _check_amplitude(field: str, value: object) -> None:
    """A noise amplitude: a finite number >= 0 (not a bool)."""
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and np.isfinite(value)
        and value >= 0
    ):
        raise InvalidRangeError(f"{field} must be a finite number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class HandDynamics:
    """One draw of the randomized physical parameters (identity values = nominal hand)."""

    fingertip_friction: float
    cube_friction: float
    kp_scale: np.ndarray
    kd_scale: np.ndarray
    armature_scale: np.ndarray
    frictionloss_scale: np.ndarray
    link_mass_scale: np.ndarray
    cube_mass_scale: float
    cube_inertia_scale: float
    cube_com_offset: np.ndarray
    cube_size_scale: float
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
        names = ["dr/fingertip_friction", "dr/cube_friction"]
        for per_joint in ("kp_scale", "kd_scale", "armature_scale", "frictionloss_scale"):
            names += [f"dr/{per_joint}/{i}" for i in range(n_joints)]
        names += [f"dr/link_mass_scale/{i}" for i in range(n_links)]
        names += ["dr/cube_mass_scale", "dr/cube_inertia_scale"]
        names += [f"dr/cube_com_offset/{axis}" for axis in "xyz"]
        names += ["dr/cube_size_scale", "dr/latency_steps"]
        return tuple(names)


def nominal_dynamics(
    n_joints: int, n_links: int, fingertip_friction: float, cube_friction: float
) -> HandDynamics:
    """The parameters of the unrandomized hand and cube (what DR off uses)."""
    ones = np.ones(n_joints)
    return HandDynamics(
        fingertip_friction=fingertip_friction,
        cube_friction=cube_friction,
        kp_scale=ones.copy(),
        kd_scale=ones.copy(),
        armature_scale=ones.copy(),
        frictionloss_scale=ones.copy(),
        link_mass_scale=np.ones(n_links),
        cube_mass_scale=1.0,
        cube_inertia_scale=1.0,
        cube_com_offset=np.zeros(3),
        cube_size_scale=1.0,
        latency_steps=0,
    )


def sample_dynamics(
    rng: np.random.Generator, ranges: HandRandomization, n_joints: int, n_links: int
) -> HandDynamics:
    """Draw one set of physical parameters from ``ranges``."""
    return HandDynamics(
        fingertip_friction=ranges.fingertip_friction.sample(rng),
        cube_friction=ranges.cube_friction.sample(rng),
        kp_scale=ranges.kp_scale.sample(rng, n_joints),
        kd_scale=ranges.kd_scale.sample(rng, n_joints),
        armature_scale=ranges.armature_scale.sample(rng, n_joints),
        frictionloss_scale=ranges.frictionloss_scale.sample(rng, n_joints),
        link_mass_scale=ranges.link_mass_scale.sample(rng, n_links),
        cube_mass_scale=ranges.cube_mass_scale.sample(rng),
        cube_inertia_scale=ranges.cube_inertia_scale.sample(rng),
        cube_com_offset=ranges.cube_com_offset.sample(rng, 3),
        cube_size_scale=ranges.cube_size_scale.sample(rng),
        latency_steps=ranges.latency_steps.sample(rng),
    )


@dataclasses.dataclass(frozen=True)
class ModelIds:
    """Indices of the model elements that randomization touches, looked up by name."""

    fingertip_geoms: np.ndarray
    cube_geom: int
    cube_body: int
    link_bodies: np.ndarray
    joint_dofs: np.ndarray
    actuators: np.ndarray

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> ModelIds:
        def lookup(obj: mujoco.mjtObj, name: str) -> int:
            idx = mujoco.mj_name2id(model, obj, name)
            if idx < 0:
                raise KeyError(f"{obj.name} {name!r} missing from the hand model")
            return idx

        joints = [lookup(mujoco.mjtObj.mjOBJ_JOINT, n) for n in consts.JOINT_NAMES]
        return cls(
            fingertip_geoms=np.array(
                [lookup(mujoco.mjtObj.mjOBJ_GEOM, n) for n in consts.FINGERTIP_GEOMS]
            ),
            cube_geom=lookup(mujoco.mjtObj.mjOBJ_GEOM, consts.CUBE_GEOM),
            cube_body=lookup(mujoco.mjtObj.mjOBJ_BODY, consts.CUBE_BODY),
            link_bodies=np.array([lookup(mujoco.mjtObj.mjOBJ_BODY, n) for n in consts.LINK_BODIES]),
            joint_dofs=np.array([model.jnt_dofadr[j] for j in joints]),
            actuators=np.array(
                [lookup(mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in consts.ACTUATOR_NAMES]
            ),
        )


@dataclasses.dataclass(frozen=True)
class NominalModel(ModelSnapshot):
    """Copies of every model array that randomization writes, taken once at load."""

    geom_friction: np.ndarray
    geom_size: np.ndarray
    geom_rbound: np.ndarray
    geom_aabb: np.ndarray
    body_mass: np.ndarray
    body_inertia: np.ndarray
    body_ipos: np.ndarray
    dof_damping: np.ndarray
    dof_armature: np.ndarray
    dof_frictionloss: np.ndarray
    actuator_gainprm: np.ndarray
    actuator_biasprm: np.ndarray


def apply_dynamics(
    model: mujoco.MjModel, nominal: NominalModel, sample: HandDynamics, ids: ModelIds
) -> None:
    """Write ``sample`` into ``model`` (in place), starting from the nominal values."""
    nominal.restore(model)
    _apply_hand(model, nominal, ids, sample)

    cube_geom = ids.cube_geom
    model.geom_friction[cube_geom, 0] = sample.cube_friction
    # A resized box needs its bounding sphere and box resized too, or the broad phase
    # misses (larger cube) or over-reports (smaller cube) contacts.
    size = sample.cube_size_scale
    model.geom_size[cube_geom] = nominal.geom_size[cube_geom] * size
    model.geom_rbound[cube_geom] = nominal.geom_rbound[cube_geom] * size
    model.geom_aabb[cube_geom] = nominal.geom_aabb[cube_geom] * size

    cube = ids.cube_body
    model.body_mass[cube] = nominal.body_mass[cube] * sample.cube_mass_scale
    # A solid box's inertia is m a^2 / 6: it follows the mass and the square of the edge.
    model.body_inertia[cube] = (
        nominal.body_inertia[cube]
        * sample.cube_mass_scale
        * size**2
        * sample.cube_inertia_scale
    )
    model.body_ipos[cube] = nominal.body_ipos[cube] + sample.cube_com_offset


def _apply_hand(
    model: mujoco.MjModel,
    nominal: NominalModel | ValveNominalModel,
    ids: ModelIds | ValveModelIds,
    sample: HandDynamics | ValveDynamics,
) -> None:
    """Write the hand's share of a sample (fingertips, links, joints, servos) into ``model``;
    the same on every hand task. ``model`` must hold the nominal values already."""
    model.geom_friction[ids.fingertip_geoms, 0] = sample.fingertip_friction

    links = ids.link_bodies
    model.body_mass[links] = nominal.body_mass[links] * sample.link_mass_scale
    # Inertia scales with mass for a body whose shape is unchanged.
    model.body_inertia[links] = nominal.body_inertia[links] * sample.link_mass_scale[:, None]

    dofs = ids.joint_dofs
    model.dof_damping[dofs] = nominal.dof_damping[dofs] * sample.kd_scale
    model.dof_armature[dofs] = nominal.dof_armature[dofs] * sample.armature_scale
    model.dof_frictionloss[dofs] = nominal.dof_frictionloss[dofs] * sample.frictionloss_scale

    # No kv on the hand's servos: their D term is the joint damping above.
    scale_position_gains(
        model, nominal.actuator_gainprm, nominal.actuator_biasprm, ids.actuators, sample.kp_scale
    )


# --- the valve task (sim2real/HandValveTurn-v0) ------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValveRandomization:
    """Domain-randomization ranges for the hand and the valve, sampled at every reset.

    The hand's ranges are HandRandomization's (Playground leap_hand); the valve's are sized
    from what differs between real valve rigs (ROBEL D'Claw-style knobs on a bearing).
    """

    enabled: bool = True
    """Master switch. Off: nominal physics, no latency, no observation noise."""
    fingertip_friction: Uniform = Uniform(0.5, 1.0)
    """Friction of the four fingertip boxes (one value for all) ~ U(0.5, 1.0), as on the
    cube task. The valve's surface friction (0.5) is never larger, so this is the
    fingertip-valve friction."""
    kp_scale: Uniform = Uniform(0.8, 1.2)
    """Servo stiffness kp ~ nominal 3.0 x U(0.8, 1.2) per joint (Playground)."""
    kd_scale: Uniform = Uniform(0.8, 1.2)
    """Joint damping (the servo's D term) ~ nominal 0.2 x U(0.8, 1.2) per joint
    (Playground). It also caps how fast a saturated servo turns (torque limit / damping)."""
    armature_scale: Uniform = Uniform(1.0, 1.05)
    """Reflected rotor inertia ~ nominal 0.00149 x U(1.0, 1.05) per joint (Playground)."""
    frictionloss_scale: Uniform = Uniform(0.5, 2.0)
    """Dry joint friction ~ nominal 0.02 x U(0.5, 2.0) per joint (Playground)."""
    link_mass_scale: Uniform = Uniform(0.9, 1.1)
    """Mass (and inertia) of each of the 16 finger links ~ nominal x U(0.9, 1.1),
    independently (Playground)."""
    valve_friction: Uniform = Uniform(0.005, 0.02)
    """Dry friction torque of the valve's bearing, N m, ~ U(0.005, 0.02) around the nominal
    0.01: from a free ball bearing to a stiff greased stem. A fingertip pushing a spoke end
    (5 cm out) needs 0.1-0.4 N of its about 2 N to overcome it."""
    valve_damping: Uniform = Uniform(0.002, 0.01)
    """Viscous damping of the valve's bearing, N m s/rad, ~ U(0.002, 0.01) around the
    nominal 0.005: at the 1 rad/s of a good turn, a fifth to the whole of the nominal dry
    friction."""
    valve_size_scale: Uniform = Uniform(0.95, 1.05)
    """The whole knob (hub, spoke length and thickness) ~ nominal x U(0.95, 1.05), scaled
    about the axle: +-2.7 mm at the spoke ends, where the fingertips meet them (knob
    tolerances and where the rig puts the axle). Not wider: at 0.93 a spoke end no longer
    reaches the home pose's fingertip in some resets (simulated), and every episode
    should start in contact."""
    valve_mass_scale: Uniform = Uniform(0.8, 1.2)
    """Valve mass ~ nominal 0.08 kg x U(0.8, 1.2) (its inertia follows, times the size
    scale squared): printed or metal knobs."""
    latency_steps: IntUniform = IntUniform(0, 1)
    """Actuation latency in 50 ms control steps ~ U{0..1}, as on the cube task: a LEAP loop
    can miss a 20 Hz tick."""
    observation_noise_scale: float = 1.0
    """Multiplies every observation noise amplitude below (0 turns noise off alone)."""
    joint_pos_noise: float = 0.05
    """Joint angle noise, rad: each reading + U(-a, a) (Playground leap_hand)."""
    joint_vel_noise: float = 0.2
    """Joint velocity noise, rad/s: each reading + U(-a, a). The XL330 reports velocity in
    0.024 rad/s steps; ten times that covers a reading up to a bus cycle stale while the
    fingers move at 1-2 rad/s."""
    valve_angle_noise: float = 0.02
    """Valve encoder angle noise, rad: angle + U(-a, a) before sin/cos. A 12-bit magnetic
    encoder resolves 0.0015 rad; magnet misalignment costs about a degree."""
    valve_vel_noise: float = 0.1
    """Valve angular velocity noise, rad/s: + U(-a, a). The rate is the encoder angle
    differenced over a 50 ms tick, which turns the angle's error into about this much."""

    def __post_init__(self) -> None:
        prefix = "ValveRandomization"
        for name in ("fingertip_friction", "kp_scale", "link_mass_scale", "valve_size_scale",
                     "valve_mass_scale"):
            getattr(self, name).validate(f"{prefix}.{name}", min_value=0.0, exclusive=True)
        for name in ("kd_scale", "armature_scale", "frictionloss_scale", "valve_friction",
                     "valve_damping"):
            getattr(self, name).validate(f"{prefix}.{name}", min_value=0.0)
        self.latency_steps.validate(f"{prefix}.latency_steps", min_value=0)
        for name in (
            "observation_noise_scale",
            "joint_pos_noise",
            "joint_vel_noise",
            "valve_angle_noise",
            "valve_vel_noise",
        ):
            _check_amplitude(f"{prefix}.{name}", getattr(self, name))


@dataclasses.dataclass(frozen=True)
class ValveDynamics:
    """One draw of the randomized physical parameters of the hand and valve."""

    fingertip_friction: float
    kp_scale: np.ndarray
    kd_scale: np.ndarray
    armature_scale: np.ndarray
    frictionloss_scale: np.ndarray
    link_mass_scale: np.ndarray
    valve_friction: float
    valve_damping: float
    valve_size_scale: float
    valve_mass_scale: float
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
        names = ["dr/fingertip_friction"]
        for per_joint in ("kp_scale", "kd_scale", "armature_scale", "frictionloss_scale"):
            names += [f"dr/{per_joint}/{i}" for i in range(n_joints)]
        names += [f"dr/link_mass_scale/{i}" for i in range(n_links)]
        names += ["dr/valve_friction", "dr/valve_damping", "dr/valve_size_scale",
                  "dr/valve_mass_scale", "dr/latency_steps"]
        return tuple(names)


def nominal_valve_dynamics(
    n_joints: int,
    n_links: int,
    fingertip_friction: float,
    valve_friction: float,
    valve_damping: float,
) -> ValveDynamics:
    """The parameters of the unrandomized hand and valve (what DR off uses)."""
    ones = np.ones(n_joints)
    return ValveDynamics(
        fingertip_friction=fingertip_friction,
        kp_scale=ones.copy(),
        kd_scale=ones.copy(),
        armature_scale=ones.copy(),
        frictionloss_scale=ones.copy(),
        link_mass_scale=np.ones(n_links),
        valve_friction=valve_friction,
        valve_damping=valve_damping,
        valve_size_scale=1.0,
        valve_mass_scale=1.0,
        latency_steps=0,
    )


def sample_valve_dynamics(
    rng: np.random.Generator, ranges: ValveRandomization, n_joints: int, n_links: int
) -> ValveDynamics:
    """Draw one set of physical parameters from ``ranges``."""
    return ValveDynamics(
        fingertip_friction=ranges.fingertip_friction.sample(rng),
        kp_scale=ranges.kp_scale.sample(rng, n_joints),
        kd_scale=ranges.kd_scale.sample(rng, n_joints),
        armature_scale=ranges.armature_scale.sample(rng, n_joints),
        frictionloss_scale=ranges.frictionloss_scale.sample(rng, n_joints),
        link_mass_scale=ranges.link_mass_scale.sample(rng, n_links),
        valve_friction=ranges.valve_friction.sample(rng),
        valve_damping=ranges.valve_damping.sample(rng),
        valve_size_scale=ranges.valve_size_scale.sample(rng),
        valve_mass_scale=ranges.valve_mass_scale.sample(rng),
        latency_steps=ranges.latency_steps.sample(rng),
    )


@dataclasses.dataclass(frozen=True)
class ValveModelIds:
    """Indices of the model elements that valve-task randomization touches, by name."""

    fingertip_geoms: np.ndarray
    link_bodies: np.ndarray
    joint_dofs: np.ndarray
    actuators: np.ndarray
    valve_body: int
    valve_geoms: np.ndarray
    valve_dof: int

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> ValveModelIds:
        def lookup(obj: mujoco.mjtObj, name: str) -> int:
            idx = mujoco.mj_name2id(model, obj, name)
            if idx < 0:
                raise KeyError(f"{obj.name} {name!r} missing from the valve scene")
            return idx

        joints = [lookup(mujoco.mjtObj.mjOBJ_JOINT, n) for n in consts.JOINT_NAMES]
        return cls(
            fingertip_geoms=np.array(
                [lookup(mujoco.mjtObj.mjOBJ_GEOM, n) for n in consts.FINGERTIP_GEOMS]
            ),
            link_bodies=np.array([lookup(mujoco.mjtObj.mjOBJ_BODY, n) for n in consts.LINK_BODIES]),
            joint_dofs=np.array([model.jnt_dofadr[j] for j in joints]),
            actuators=np.array(
                [lookup(mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in consts.ACTUATOR_NAMES]
            ),
            valve_body=lookup(mujoco.mjtObj.mjOBJ_BODY, consts.VALVE_BODY),
            valve_geoms=np.array(
                [lookup(mujoco.mjtObj.mjOBJ_GEOM, n) for n in consts.VALVE_GEOMS]
            ),
            valve_dof=int(model.jnt_dofadr[lookup(mujoco.mjtObj.mjOBJ_JOINT, consts.VALVE_JOINT)]),
        )


@dataclasses.dataclass(frozen=True)
class ValveNominalModel(ModelSnapshot):
    """Copies of every model array that valve-task randomization writes, taken at load."""

    geom_friction: np.ndarray
    geom_size: np.ndarray
    geom_pos: np.ndarray
    geom_rbound: np.ndarray
    geom_aabb: np.ndarray
    body_mass: np.ndarray
    body_inertia: np.ndarray
    dof_damping: np.ndarray
    dof_armature: np.ndarray
    dof_frictionloss: np.ndarray
    actuator_gainprm: np.ndarray
    actuator_biasprm: np.ndarray
    actuator_forcerange: np.ndarray


def apply_valve_dynamics(
    model: mujoco.MjModel, nominal: ValveNominalModel, sample: ValveDynamics, ids: ValveModelIds
) -> None:
    """Write ``sample`` into ``model`` (in place), starting from the nominal values."""
    nominal.restore(model)
    _apply_hand(model, nominal, ids, sample)

    # The hinge's dry friction and damping are absolute values, not scales: the nominal
    # is a guess, and the range says which rigs we mean.
    model.dof_frictionloss[ids.valve_dof] = sample.valve_friction
    model.dof_damping[ids.valve_dof] = sample.valve_damping

    # Scale the knob about its axle (the body origin): every geom's offset, size and
    # bounds alike, so the hub stays on the axle and the spokes in their plane. Capsule and
    # cylinder sizes are (radius, half-length), both lengths.
    geoms, size = ids.valve_geoms, sample.valve_size_scale
    model.geom_pos[geoms] = nominal.geom_pos[geoms] * size
    model.geom_size[geoms] = nominal.geom_size[geoms] * size
    model.geom_rbound[geoms] = nominal.geom_rbound[geoms] * size
    model.geom_aabb[geoms] = nominal.geom_aabb[geoms] * size

    valve = ids.valve_body
    model.body_mass[valve] = nominal.body_mass[valve] * sample.valve_mass_scale
    # A body's inertia is mass x length^2: it follows the mass and the square of the size.
    model.body_inertia[valve] = nominal.body_inertia[valve] * sample.valve_mass_scale * size**2
