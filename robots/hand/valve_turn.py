"""``sim2real/HandValveTurn-v0``: turn a three-spoke valve on a vertical axle with the hand.

The SAC paper's dexterous real-world task ("Soft Actor-Critic Algorithms and Applications",
Haarnoja et al. 2018: a multi-fingered hand turning a valve) on our LEAP-class hand.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from sim2real.robots.hand import constants as consts
from sim2real.robots.hand.base import HandBase
from sim2real.robots.hand.randomize import (
    ValveDynamics,
    ValveModelIds,
    ValveNominalModel,
    ValveRandomization,
    apply_valve_dynamics,
    nominal_valve_dynamics,
    sample_valve_dynamics,
)
from sim2real.robots.hand.stress import ValveStress
from sim2real.robots.mujoco_env import (
    ActionDelay,
    DeploymentSpec,
    flatten_names,
    uniform_noise,
)
from sim2real.robots.randomization import IntUniform, Uniform, with_randomization_switch

ENV_ID = "sim2real/HandValveTurn-v0"

# The two commands: +1 turns the valve counter-clockwise seen from above (the encoder's
# positive direction), -1 clockwise.
COUNTER_CLOCKWISE = 1
CLOCKWISE = -1
DIRECTIONS = (COUNTER_CLOCKWISE, CLOCKWISE)


@dataclasses.dataclass(frozen=True)
class ValveRewardWeights:
    """Weight of each reward term; the step reward is the sum of weight x term.

    Sized so that turning dominates: the zero-action policy scores about 0 on every term,
    uniform random actions cost about -0.05 per step (almost all action rate), and a
    1 rad/s turn earns +1 per step against a few thousandths of regularizers (an open-loop
    0.5 Hz gait that turns the valve pays 0.002-0.003 per step for energy and action rate).
    """

    turn: float = 1.0
    """Valve angular velocity in the commanded direction, rad/s, clipped to +-turn_clip:
    direction x d(angle)/dt, so turning the wrong way is paid negatively."""
    energy: float = -1e-3
    """sum |tau * qdot|: mechanical power of the servos, W (Playground leap_hand -1e-3).
    About -0.002 per step for a turning gait: a tie-breaker, not a brake."""
    action_rate: float = -0.005
    """sum (a_t - a_{t-1})^2: command chatter the real servos cannot follow. Uniform random
    actions score about 10.7 on it (-0.05 per step); a 0.5 Hz finger gait about 0.1-0.2
    (-0.001). Half the cube task's weight: early, exploring policies must not find keeping
    still better than trying to turn."""


@dataclasses.dataclass(frozen=True)
class HandValveTurnConfig:
    """Everything that defines the valve-turning task. Defined once; the CLI is generated
    from it."""

    action_scale: float = 0.6
    """joint target = default pose + action_scale * action (rad), action in [-1, 1], as on
    the cube task; the servos' ctrlrange clips targets to the joint ranges."""
    episode_steps: int = 400
    """Control steps (20 Hz) before the episode is truncated: 20 s. The valve cannot fall,
    so nothing terminates an episode earlier."""
    turn_clip: float = 1.5
    """rad/s: the turn term is the valve's rate in the commanded direction clipped to
    +-this. About twice the 0.8 rad/s a good policy should average: room for the
    stop-and-go of a finger gait (each spoke is pushed in bursts), while a flick or a
    slipping spin pays no more than a controlled turn."""
    init_joint_noise: float = 0.05
    """Initial joint angles = default pose + U(-a, a), rad, clipped to the joint ranges
    (as on the cube task); the settling below pulls them back into contact."""
    settle_time: float = 0.25
    """Seconds simulated at reset with the servos holding the default pose, before the
    first observation: the preloaded fingertips and the knob come to rest in contact
    (simulated: contacts are steady after 0.1 s)."""
    rewards: ValveRewardWeights = ValveRewardWeights()
    randomization: ValveRandomization = ValveRandomization()

    def __post_init__(self) -> None:
        checks = {
            "action_scale": self.action_scale > 0,
            "episode_steps": isinstance(self.episode_steps, int) and self.episode_steps >= 1,
            "turn_clip": self.turn_clip > 0,
            "init_joint_noise": 0 <= self.init_joint_noise <= 0.3,
            "settle_time": 0 <= self.settle_time <= 2.0,
        }
        allowed = {
            "action_scale": "> 0",
            "episode_steps": "an integer >= 1",
            "turn_clip": "> 0 (rad/s)",
            "init_joint_noise": "in [0, 0.3] rad (larger offsets can start a finger inside a "
                                "spoke)",
            "settle_time": "in [0, 2] s",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"HandValveTurnConfig.{name} must be {allowed[name]}, "
                    f"got {getattr(self, name)!r}"
                )


_SIN_COS = ("sin", "cos")
_OBS_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("joint_pos", consts.JOINT_NAMES),
    ("joint_vel", consts.JOINT_NAMES),
    ("last_action", consts.ACTUATOR_NAMES),
    ("valve_angle", _SIN_COS),
    ("valve_spoke_phase", _SIN_COS),
    ("valve_angvel", ("z",)),
    ("command", ("direction",)),
)
_PRIVILEGED_EXTRA_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("joint_torque", consts.JOINT_NAMES),
    *((f"fingertip_pos/{tip}", ("x", "y", "z")) for tip in consts.TIP_NAMES),
    ("fingertip_force", consts.TIP_NAMES),
    ("valve_contacts", ("count",)),
)


class HandValveTurnEnv(HandBase):
    """Turn a three-spoke valve on a vertical axle, in a commanded direction, with a
    palm-up LEAP-class hand.

    ## The valve
    A knob of three spokes 120 degrees apart on a hub (spokes 50 mm from the axle, 16 mm
    thick, 0.08 kg), on a vertical hinge through its centre, hung from a bearing above
    (xmls/valve_scene.xml). It sits in the plane of the curled fingertips of the home
    pose, the axle 3.7 cm behind the fingertip row: the ends of two spokes press on the
    pads of the index and ring fingertips, preloaded by the servos, so every episode
    starts in contact (checked after reset in tests/robots/test_hand.py). Curling the ring
    fingertip towards the wrist turns the knob counter-clockwise, the index clockwise.

    Why three spokes rather than the 70 mm cube on the axle: spokes give the fingertips
    purchase, as the SAC paper's (and ROBEL D'Claw's) valve does. A fingertip turns the
    knob by pushing a spoke end with its normal force, so turning does not hinge on
    fingertip friction (a randomized, poorly known number) or on catching the corner of a
    flat face. We simulated both, each placed to touch the home pose's fingertips: under
    uniform random actions the knob moved 1.6 times as much as the cube (mean |rate| 0.17
    against 0.11 rad/s over 200 s): a denser learning signal for a policy that starts
    random. Open-loop sinusoidal finger gaits tuned by a cross-entropy search turned
    either at about 1 rad/s (0.5 Hz gaits), so neither is easier for a planner; on this
    env such a gait turns the knob at 0.6 rad/s counter-clockwise and 1.2 rad/s clockwise
    (DR off), 0.55 and 0.64 rad/s with DR on: the task is within the hand's reach. A
    knob also reads the same every third of a turn, which the ``valve_spoke_phase``
    observation exposes.

    ## Action space
    ``Box(-1, 1, (16,), float32)``; joint target = default pose + action_scale (0.6) *
    action, clipped to the joint range, tracked by each servo's PD loop (kp 3.0, joint
    damping 0.2, torque limit 0.2196 N m) at 200 Hz.

    | index | actuator | unit of the target |
    |---|---|---|
    | 0, 4, 8 | if/mf/rf_mcp (index/middle/ring knuckle flexion) | rad |
    | 1, 5, 9 | if/mf/rf_rot (knuckle side-to-side) | rad |
    | 2, 6, 10 | if/mf/rf_pip (middle joint flexion) | rad |
    | 3, 7, 11 | if/mf/rf_dip (distal joint flexion) | rad |
    | 12 | th_cmc (thumb base) | rad |
    | 13 | th_axl (thumb axial rotation) | rad |
    | 14 | th_mcp (thumb knuckle flexion) | rad |
    | 15 | th_ipl (thumb distal flexion) | rad |

    ## Observation space (actor: what a real rig measures, with noise)
    ``Box(-inf, inf, (54,), float32)``:

    | index | observation | unit |
    |---|---|---|
    | 0-15 | joint angles minus default pose (servo encoders) | rad |
    | 16-31 | joint velocities (servo encoders) | rad/s |
    | 32-47 | previous action | [-1, 1] |
    | 48-49 | valve angle as (sin, cos) (valve encoder; 0 at the home placement) | - |
    | 50-51 | (sin, cos) of 3 x valve angle: where the spokes are (the knob repeats every 120 degrees) | - |
    | 52 | valve angular velocity, counter-clockwise positive (encoder rate) | rad/s |
    | 53 | command: +1 turn counter-clockwise, -1 clockwise (seen from above) | - |

    ``info["privileged_obs"]`` (shape ``privileged_observation_space``) holds the same
    without noise, plus joint torques, fingertip positions relative to the palm (palm
    frame), fingertip contact forces, the number of hand-valve contacts and the sampled
    domain-randomization parameters: for an asymmetric critic. ``observation_names`` and
    ``privileged_observation_names`` name every entry.

    ## Rewards
    Named terms (see :class:`ValveRewardWeights`): turn (valve rate in the commanded
    direction, clipped to +-``turn_clip`` = 1.5 rad/s), energy, action_rate. Each weighted
    term is in ``info["reward_terms"]``; the reward is their sum. Holding still earns 0.

    ## Episode end
    Never terminates (the valve cannot fall); truncates after ``episode_steps`` (400,
    20 s). Each reset draws the command (+1 or -1, evenly; ``reset(options={"direction":
    +1 or -1})`` pins it), puts a random one of the three spokes at the home angle
    (0, 120 or 240 degrees), offsets the joints by ``init_joint_noise`` and settles for
    ``settle_time`` with the servos at the default pose.

    ## Domain randomization
    See :class:`ValveRandomization`: fingertip friction, Kp, joint damping, armature,
    joint friction, link masses, valve bearing friction and damping, valve size and mass,
    latency, observation noise (joint angles and velocities, valve angle and rate).
    Sampled values are in ``info["dr"]`` after each reset.
    """

    def __init__(
        self,
        config: HandValveTurnConfig | None = None,
        render_mode: str | None = None,
        domain_randomization: bool | None = None,
    ) -> None:
        super().__init__(consts.VALVE_SCENE_XML, render_mode=render_mode)
        cfg = config or HandValveTurnConfig()
        cfg = with_randomization_switch(cfg, domain_randomization)
        self.config = cfg
        self._dr = cfg.randomization
        self._ids = ValveModelIds.from_model(self.model)
        self._nominal = ValveNominalModel.from_model(self.model)
        self._n_links = len(consts.LINK_BODIES)
        valve_joint = self._id(mujoco.mjtObj.mjOBJ_JOINT, consts.VALVE_JOINT)
        self._valve_qpos = int(self.model.jnt_qposadr[valve_joint])
        self._valve_qvel = int(self.model.jnt_dofadr[valve_joint])
        self._valve_angle = int(self.model.sensor_adr[
            self._id(mujoco.mjtObj.mjOBJ_SENSOR, consts.VALVE_ANGLE_SENSOR)])
        self._valve_angvel = int(self.model.sensor_adr[
            self._id(mujoco.mjtObj.mjOBJ_SENSOR, consts.VALVE_ANGVEL_SENSOR)])
        self._valve_body = self._ids.valve_body
        self._settle_steps = round(cfg.settle_time / float(self.model.opt.timestep))
        self._delay = ActionDelay(self.n_joints, max_latency=self._dr.latency_steps.high)
        self._stress: ValveStress | None = None
        n = self.n_joints
        dr = self._dr
        # One draw per step covers every noisy channel: joint angles and velocities, then
        # the valve's angle (before sin/cos) and rate.
        self._noise_scale = dr.observation_noise_scale * np.concatenate([
            np.full(n, dr.joint_pos_noise),
            np.full(n, dr.joint_vel_noise),
            [dr.valve_angle_noise, dr.valve_vel_noise],
        ])
        self.action_space = spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)
        self.observation_names = flatten_names(_OBS_GROUPS)
        self.observation_space = spaces.Box(
            -np.inf, np.inf, (len(self.observation_names),), dtype=np.float32
        )
        self.privileged_observation_names = (
            self.observation_names
            + flatten_names(_PRIVILEGED_EXTRA_GROUPS)
            + ValveDynamics.vector_names(n, self._n_links)
        )
        self.privileged_observation_space = spaces.Box(
            -np.inf, np.inf, (len(self.privileged_observation_names),), dtype=np.float32
        )
        self.deployment_spec = DeploymentSpec(
            env_id=ENV_ID,
            robot="hand",
            observation_names=self.observation_names,
            action_names=consts.ACTUATOR_NAMES,
            joint_names=consts.JOINT_NAMES,
            default_pose=tuple(float(x) for x in consts.DEFAULT_POSE),
            action_scale=cfg.action_scale,
            kp=(consts.KP,) * n,
            kd=(consts.KD,) * n,
            torque_limits=tuple(float(x) for x in consts.TORQUE_LIMITS),
            control_rate_hz=1.0 / self.control_dt,
            physics_dt=float(self.model.opt.timestep),
        )
        self._weights = dataclasses.asdict(cfg.rewards)
        self._dynamics = self._nominal_dynamics()
        self._dynamics_vector = self._dynamics.as_vector()
        self._last_action = np.zeros(n)
        self._direction = COUNTER_CLOCKWISE
        self._step_count = 0

    def _nominal_dynamics(self) -> ValveDynamics:
        dof = self._ids.valve_dof
        return nominal_valve_dynamics(
            self.n_joints,
            self._n_links,
            fingertip_friction=float(self._nominal.geom_friction[self._ids.fingertip_geoms[0], 0]),
            valve_friction=float(self._nominal.dof_frictionloss[dof]),
            valve_damping=float(self._nominal.dof_damping[dof]),
        )

    # --- sim replay and system identification (replay/sim_replay.py) -------------------
    REPLAY_PARAMETERS: ClassVar[tuple[str, ...]] = (
        "valve_friction", "valve_damping", "kp_scale", "kd_scale", "fingertip_friction", "latency_steps",
    )
    """The rig's knobs: the bearing's dry friction (N m) and viscous damping (N m s/rad),
    the servos' Kp scale and D term (joint damping) scale, fingertip friction, latency;
    each named as its randomization field."""
    DEFAULT_SYSID_PARAMETERS: ClassVar[tuple[str, ...]] = (
        "valve_friction", "valve_damping", "kp_scale", "latency_steps",
    )
    REPLAY_STATE_FIELDS: ClassVar[tuple[str, ...]] = (
        "joint_position", "joint_velocity", "object_joint_position", "object_joint_velocity",
    )
    """The hand's joints and the valve encoder's angle and rate."""
    OBJECT_JOINT_NAMES: ClassVar[tuple[str, ...]] = (consts.VALVE_JOINT,)
    """The valve angle is replayed and scored with the joints, so the valve's bearing
    friction and damping show in the fit."""

    def replay_nominal_parameters(self) -> dict[str, float]:
        nominal = self._nominal_dynamics()
        return {"valve_friction": float(nominal.valve_friction), "valve_damping": float(nominal.valve_damping),
                "kp_scale": 1.0, "kd_scale": 1.0, "fingertip_friction": float(nominal.fingertip_friction),
                "latency_steps": 0}

    def apply_replay_parameters(self, params: dict[str, float]) -> int:
        """Nominal dynamics with every knob of REPLAY_PARAMETERS set from ``params``;
        returns the latency in control steps."""
        n = self.n_joints
        dynamics = dataclasses.replace(
            self._nominal_dynamics(),
            valve_friction=float(params["valve_friction"]), valve_damping=float(params["valve_damping"]),
            kp_scale=np.full(n, float(params["kp_scale"])), kd_scale=np.full(n, float(params["kd_scale"])),
            fingertip_friction=float(params["fingertip_friction"]),
            latency_steps=int(round(params["latency_steps"])),
        )
        apply_valve_dynamics(self.model, self._nominal, dynamics, self._ids)
        self._refresh_derived_constants()
        self._dynamics = dynamics
        return dynamics.latency_steps

    def set_replay_state(self, step: Any) -> None:
        """Write a logged RobotStep's joints and valve encoder into the simulator."""
        data = self.data
        data.qpos[self._qpos_slice] = step.joint_position
        data.qvel[self._qvel_slice] = step.joint_velocity
        data.qpos[self._valve_qpos] = step.object_joint_position[0]
        data.qvel[self._valve_qvel] = step.object_joint_velocity[0]
        data.act[:] = 0
        mujoco.mj_forward(self.model, data)

    def replay_positions(self) -> np.ndarray:
        """What sim replay scores: the joint angles, then the valve angle."""
        return np.append(self.joint_pos(), self.valve_angle())

    def fixed_dynamics_config(self, config: HandValveTurnConfig, params: dict[str, float]) -> HandValveTurnConfig:
        """``config`` with a 'randomization' that always draws exactly ``params``
        (REPLAY_PARAMETERS; the rest nominal: unit scales, the model's own friction,
        damping, size and mass, no observation noise)."""
        nominal = self._nominal_dynamics()
        unknown = set(params) - set(HandValveTurnEnv.REPLAY_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown dynamics parameters {sorted(unknown)}; known: "
                             f"{list(HandValveTurnEnv.REPLAY_PARAMETERS)}")

        def fixed(name: str, default: float) -> Uniform:
            value = float(params.get(name, default))
            return Uniform(value, value)

        latency = int(params.get("latency_steps", 0))
        randomization = ValveRandomization(
            fingertip_friction=fixed("fingertip_friction", nominal.fingertip_friction),
            kp_scale=fixed("kp_scale", 1.0), kd_scale=fixed("kd_scale", 1.0),
            armature_scale=Uniform(1.0, 1.0), frictionloss_scale=Uniform(1.0, 1.0),
            link_mass_scale=Uniform(1.0, 1.0),
            valve_friction=fixed("valve_friction", nominal.valve_friction),
            valve_damping=fixed("valve_damping", nominal.valve_damping),
            valve_size_scale=Uniform(1.0, 1.0), valve_mass_scale=Uniform(1.0, 1.0),
            latency_steps=IntUniform(latency, latency), observation_noise_scale=0.0,
        )
        return dataclasses.replace(config, randomization=randomization)

    # --- the valve (an encoder on the real rig) --------------------------------------------
    @property
    def direction(self) -> int:
        """This episode's command: +1 counter-clockwise, -1 clockwise (seen from above)."""
        return self._direction

    def valve_angle(self) -> float:
        """Valve angle, rad, counter-clockwise seen from above, unwrapped (it counts whole
        turns); 0 at the home placement."""
        return float(self.data.sensordata[self._valve_angle])

    def valve_angvel(self) -> float:
        """Valve angular velocity, rad/s, counter-clockwise positive."""
        return float(self.data.sensordata[self._valve_angvel])

    def valve_contacts(self) -> list[tuple[str, str]]:
        """(hand geom, valve geom) names of every hand-valve contact now (simulator only)."""
        m, valve = self.model, self._valve_body
        pairs = []
        for contact in self.data.contact[: self.data.ncon]:
            g1, g2 = int(contact.geom1), int(contact.geom2)
            if m.geom_bodyid[g2] == valve:
                pairs.append((m.geom(g1).name, m.geom(g2).name))
            elif m.geom_bodyid[g1] == valve:
                pairs.append((m.geom(g2).name, m.geom(g1).name))
        return pairs

    def _valve_contact_count(self) -> int:
        # Every contact in this scene involves the valve: hand geoms collide with nothing
        # else (hand.xml: conaffinity 0; the scenery has contype 0).
        return int(self.data.ncon)

    # --- episode ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        n = self.n_joints
        if self._dr.enabled:
            self._dynamics = sample_valve_dynamics(rng, self._dr, n, self._n_links)
        else:
            self._dynamics = self._nominal_dynamics()
        stress = self._stress
        if stress is not None:
            self._dynamics = stress.dynamics(self._dynamics)
        apply_valve_dynamics(self.model, self._nominal, self._dynamics, self._ids)
        if stress is not None and stress.motor_strength != 1.0:
            acts = self._ids.actuators
            self.model.actuator_forcerange[acts] = self._nominal.actuator_forcerange[acts] * stress.motor_strength
        self._refresh_derived_constants()
        self._dynamics_vector = self._dynamics.as_vector()
        self._delay.reset(self._dynamics.latency_steps)

        # The command is drawn even when pinned, so pinning it leaves every other draw of
        # the episode (spoke, joint offsets, noise) as the seed alone would make it.
        drawn = int(rng.choice(DIRECTIONS))
        self._direction = _pinned_direction(options) or drawn
        cfg = self.config
        offsets = rng.uniform(-cfg.init_joint_noise, cfg.init_joint_noise, n)
        spoke = int(rng.integers(consts.VALVE_SPOKES))
        self._reset_hand(offsets)
        self.data.qpos[self._valve_qpos] = spoke * 2.0 * math.pi / consts.VALVE_SPOKES
        mujoco.mj_forward(self.model, self.data)
        # Let the preloaded fingertips and the knob settle against each other.
        if self._settle_steps:
            mujoco.mj_step(self.model, self.data, nstep=self._settle_steps)
        self._last_action = np.zeros(n)
        self._step_count = 0

        obs, privileged = self._observe()
        info = {"dr": self._dynamics.as_info(), "privileged_obs": privileged}
        return obs, info

    def set_stress(self, stress: ValveStress | None) -> None:
        """Apply ``stress`` (a held-out world, robots/hand/stress.py) at every reset from the
        next one on, after the domain randomization; None: none."""
        self._stress = stress
        bound = self._dr.latency_steps.high if stress is None else stress.latency_bound(self._dr)
        self._delay = ActionDelay(self.n_joints, max_latency=bound)

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if action.shape != (self.n_joints,):
            raise ValueError(
                f"action must have shape ({self.n_joints},), got {action.shape}"
            )
        applied = self._delay.push(action)
        # Targets beyond a joint's range are clipped by the actuator's ctrlrange.
        self._physics_step(consts.DEFAULT_POSE + self.config.action_scale * applied)
        self._step_count += 1

        terms = self._reward_terms(action)
        reward = float(sum(terms.values()))
        self._last_action = action
        obs, privileged = self._observe()
        truncated = self._step_count >= self.config.episode_steps
        info = {"reward_terms": terms, "privileged_obs": privileged}
        return obs, reward, False, truncated, info

    # --- observation -----------------------------------------------------------------
    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        joint_pos = self.joint_pos() - consts.DEFAULT_POSE
        joint_vel = self.joint_vel()
        angle, rate = self.valve_angle(), self.valve_angvel()
        direction = float(self._direction)
        palm_pos = self.palm_pos()
        palm_rot = self.palm_rotation()
        tips_in_palm = (self.fingertip_positions() - palm_pos) @ palm_rot
        privileged = np.concatenate(
            [
                self._actor_vector(joint_pos, joint_vel, angle, rate, direction),
                self.joint_torques(),
                tips_in_palm.ravel(),
                self.fingertip_contact_forces(),
                [self._valve_contact_count()],
                self._dynamics_vector,
            ]
        ).astype(np.float32)

        if self._dr.enabled:
            noise = uniform_noise(self.np_random, self._noise_scale)
            n = self.n_joints
            joint_pos = joint_pos + noise[:n]
            joint_vel = joint_vel + noise[n : 2 * n]
            angle += float(noise[2 * n])
            rate += float(noise[2 * n + 1])
        obs = self._actor_vector(joint_pos, joint_vel, angle, rate, direction)
        return obs.astype(np.float32), privileged

    def _actor_vector(
        self,
        joint_pos: np.ndarray,
        joint_vel: np.ndarray,
        angle: float,
        rate: float,
        direction: float,
    ) -> np.ndarray:
        phase = consts.VALVE_SPOKES * angle
        valve = [math.sin(angle), math.cos(angle), math.sin(phase), math.cos(phase), rate,
                 direction]
        return np.concatenate([joint_pos, joint_vel, self._last_action, valve])

    # --- reward ----------------------------------------------------------------------
    def _reward_terms(self, action: np.ndarray) -> dict[str, float]:
        w = self._weights
        clip = self.config.turn_clip
        # The true rate from the simulator: the reward is not fooled by encoder noise.
        turn = self._direction * self.valve_angvel()
        power = self.joint_torques() * self.joint_vel()
        action_change = action - self._last_action
        raw = {
            "turn": min(max(turn, -clip), clip),
            "energy": float(np.abs(power).sum()),
            "action_rate": float(action_change @ action_change),
        }
        return {name: w[name] * value for name, value in raw.items()}


def _pinned_direction(options: dict[str, Any] | None) -> int | None:
    """The direction ``reset(options={"direction": ...})`` pins, or None when unpinned."""
    if not options or options.get("direction") is None:
        return None
    value = options["direction"]
    if isinstance(value, bool) or value not in DIRECTIONS:
        raise ValueError(
            "options['direction'] must be +1 (counter-clockwise) or -1 (clockwise), "
            f"got {value!r}"
        )
    return int(value)
