"""``sim2real/HandCubeRotate-v0``: spin a cube about the vertical on a palm-up hand."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from sim2real.robots.action_prior import ActionPrior
from sim2real.robots.hand import constants as consts
from sim2real.robots.hand.base import HandEnv
from sim2real.robots.hand.cube_gait import cube_gait_prior
from sim2real.robots.hand.heading import heading_increment
from sim2real.robots.hand.randomize import (
    HandDynamics,
    HandRandomization,
    ModelIds,
    NominalModel,
    apply_dynamics,
    nominal_dynamics,
    sample_dynamics,
)
from sim2real.robots.mujoco_env import (
    ActionDelay,
    DeploymentSpec,
    flatten_names,
    uniform_noise,
)
from sim2real.robots.randomization import with_randomization_switch

ENV_ID = "sim2real/HandCubeRotate-v0"


@dataclasses.dataclass(frozen=True)
class HandRewardWeights:
    """Weight of each reward term; the step reward is the sum of weight x term.

    Relative weights follow MuJoCo Playground's leap_hand rotate-z task (angvel 1,
    termination -100) and its reorient task for the regularizers it shares (energy). Both
    scale by dt; we do not, so the rotate term is O(1) per step.
    """

    rotate: float = 1.0
    """Turn rate of the cube's heading about the world z axis over the control step, rad/s
    (robots/hand/heading.py), clipped to +-rotate_clip: positive is counter-clockwise seen
    from above. The heading is a function of the orientation, so rocking the cube back and
    forth earns nothing net (its world-z angular velocity would pay for the wobble)."""
    energy: float = -1e-3
    """sum |tau * qdot|: mechanical power of the servos, W (Playground reorient -1e-3)."""
    action_rate: float = -0.01
    """sum (a_t - a_{t-1})^2: command chatter the real servos cannot follow. Playground
    reorient uses -1e-3; rotate-z has no other smoothness term, hence ten times that."""
    hand_pose: float = -0.1
    """sum (q - q_default)^2: keeps the fingers near the cup that holds the cube (reorient
    uses -0.5; spinning needs more finger travel, so lighter here)."""
    cube_lin_vel: float = -0.5
    """|v_cube|_1, m/s: spin the cube in place rather than sliding or tossing it."""
    termination: float = -100.0
    """1 on the step the cube falls off the hand (Playground rotate-z)."""


@dataclasses.dataclass(frozen=True)
class HandCubeRotateConfig:
    """Everything that defines the cube-rotation task. Defined once; the CLI is generated
    from it."""

    action_scale: float = 0.6
    """joint target = default pose + action_scale * action (rad), action in [-1, 1]
    (Playground rotate-z); the servos' ctrlrange clips targets to the joint ranges."""
    episode_steps: int = 400
    """Control steps (20 Hz) before the episode is truncated: 20 s."""
    observe_cube_pose: bool = True
    """Give the actor the (noisy) cube position and orientation, as a camera tracker would.
    False: proprioception only (Playground rotate-z); the critic always sees the cube."""
    rotate_clip: float = 1.0
    """rad/s: the rotate term is the cube's heading rate clipped to +-this, so flinging the
    cube pays no more than a controlled 1 rad/s spin."""
    fall_below_palm: float = 0.0
    """Terminate when the cube centre is more than this (m) below the palm centre's
    height (world z). Resting in the hand it is 2.5-3.9 cm above it (simulated, DR on)."""
    max_cube_distance: float = 0.12
    """Terminate when the cube centre is farther than this (m) from the palm centre
    (3.7-5.7 cm at rest, simulated, DR on): it has left the hand."""
    init_joint_noise: float = 0.05
    """Initial joint angles = default pose + U(-a, a), rad, clipped to the joint ranges."""
    cube_drop_height: float = 0.05
    """At reset the cube centre is half an edge plus this (m) above the palm centre, along
    the palm normal: the cube falls onto the palm from about 5 cm (Playground)."""
    cube_drop_xy_noise: float = 0.01
    """Drop point = palm centre + U(-a, a) along the palm's x and y, m (Playground +-1 cm)."""
    cube_random_yaw: bool = True
    """Drop the cube at a uniformly random yaw about the world z axis."""
    cube_max_tilt: float = 0.1
    """Drop the cube tilted by U(0, a) rad about a random horizontal axis."""
    gait_frequency_hz: float = 0.0
    """A gait clock in the observation (sin, cos of a phase that starts at 0 at reset and
    advances at this rate) and the finger gait it suggests, which `sim2real train
    --action-prior` puts inside the policy (robots/hand/cube_gait.py: found by a
    cross-entropy search at 0.5 Hz, open loop it turns the cube). 0: no clock (the task
    as before)."""
    rewards: HandRewardWeights = HandRewardWeights()
    randomization: HandRandomization = HandRandomization()

    def __post_init__(self) -> None:
        checks = {
            "action_scale": self.action_scale > 0,
            "episode_steps": isinstance(self.episode_steps, int) and self.episode_steps >= 1,
            "rotate_clip": self.rotate_clip > 0,
            "fall_below_palm": self.fall_below_palm >= -0.02,
            "max_cube_distance": self.max_cube_distance >= 0.08,
            "init_joint_noise": self.init_joint_noise >= 0,
            "cube_drop_height": 0 <= self.cube_drop_height <= 0.2,
            "cube_drop_xy_noise": 0 <= self.cube_drop_xy_noise <= 0.03,
            "cube_max_tilt": 0 <= self.cube_max_tilt <= np.pi,
            "gait_frequency_hz": math.isfinite(self.gait_frequency_hz) and 0 <= self.gait_frequency_hz <= 10,
        }
        allowed = {
            "action_scale": "> 0",
            "episode_steps": "an integer >= 1",
            "rotate_clip": "> 0",
            "fall_below_palm": ">= -0.02 (the resting cube must not count as fallen)",
            "max_cube_distance": ">= 0.08 (the resting cube must not count as gone)",
            "init_joint_noise": ">= 0",
            "cube_drop_height": "in [0, 0.2]",
            "cube_drop_xy_noise": "in [0, 0.03] (the cube must land on the palm)",
            "cube_max_tilt": "in [0, pi]",
            "gait_frequency_hz": "in [0, 10] (0: no gait clock)",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"HandCubeRotateConfig.{name} must be {allowed[name]}, "
                    f"got {getattr(self, name)!r}"
                )


_XYZ = ("x", "y", "z")
_WXYZ = ("w", "x", "y", "z")
_PROPRIO_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("joint_pos", consts.JOINT_NAMES),
    ("last_action", consts.ACTUATOR_NAMES),
)
_CUBE_POSE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cube_pos", _XYZ),
    ("cube_quat", _WXYZ),
)
_PRIVILEGED_EXTRA_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("joint_vel", consts.JOINT_NAMES),
    ("joint_torque", consts.JOINT_NAMES),
    ("cube_linvel", _XYZ),
    ("cube_angvel", _XYZ),
    *((f"fingertip_pos/{tip}", _XYZ) for tip in consts.TIP_NAMES),
    ("fingertip_force", consts.TIP_NAMES),
)
_CLOCK_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (("gait_clock", ("sin", "cos")),)


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (w, x, y, z) quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])


class HandCubeRotateEnv(HandEnv):
    """Rotate a cube about the vertical with a palm-up LEAP-class hand.

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

    ## Observation space (actor: what the real setup measures, with noise)
    ``Box(-inf, inf, (39,), float32)``, or ``(32,)`` with ``observe_cube_pose=False``.

    | index | observation | unit |
    |---|---|---|
    | 0-15 | joint angles minus default pose (encoders) | rad |
    | 16-31 | previous action | [-1, 1] |
    | 32-34 | cube centre relative to the palm centre, palm frame (tracker) | m |
    | 35-38 | cube orientation quaternion (w, x, y, z), world frame, w >= 0 | unit |
    | last 2 | with ``gait_frequency_hz`` > 0: gait clock sin, cos of the phase (no noise) | 1 |

    With a gait clock (41 entries), :attr:`action_prior` is the finger gait it suggests
    (robots/hand/cube_gait.py); the privileged observation ends with the clock too.

    ``info["privileged_obs"]`` (shape ``privileged_observation_space``) holds the same
    without noise (the cube pose always included), plus joint velocities and torques, cube
    linear and angular velocity (world frame), fingertip positions relative to the palm
    (palm frame), fingertip-cube contact forces and the sampled domain-randomization
    parameters: for an asymmetric critic. ``observation_names`` and
    ``privileged_observation_names`` name every entry.

    ## Rewards
    Named terms (see :class:`HandRewardWeights`): rotate (cube heading rate, clipped),
    energy, action_rate, hand_pose, cube_lin_vel, termination. Each weighted term is in
    ``info["reward_terms"]``; the reward is their sum.

    ## Episode end
    Terminates when the cube centre drops below the palm's height (``fall_below_palm``)
    or leaves the hand (``max_cube_distance`` from the palm centre); truncates after
    ``episode_steps`` (400, 20 s).

    ## Domain randomization
    See :class:`HandRandomization`: fingertip and cube friction, Kp, joint damping,
    armature, friction loss, link masses, cube mass/inertia/CoM/size, latency, observation
    noise. Sampled values are in ``info["dr"]`` after each reset. Each reset also drops the
    cube from ``cube_drop_height`` at a random yaw and small tilt and offsets the joints.
    """

    def __init__(
        self,
        config: HandCubeRotateConfig | None = None,
        render_mode: str | None = None,
        domain_randomization: bool | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        cfg = config or HandCubeRotateConfig()
        cfg = with_randomization_switch(cfg, domain_randomization)
        self.config = cfg
        self._dr = cfg.randomization
        self._ids = ModelIds.from_model(self.model)
        # MuJoCo skips the centre-of-mass transform of a body compiled with its inertial
        # frame equal to its body frame ("sameframe"); cube CoM randomization needs it.
        self.model.body_sameframe[self._ids.cube_body] = mujoco.mjtSameFrame.mjSAMEFRAME_NONE
        self._nominal = NominalModel.from_model(self.model)
        self._n_links = len(consts.LINK_BODIES)
        self._delay = ActionDelay(self.n_joints, max_latency=self._dr.latency_steps.high)
        n = self.n_joints
        # One draw per step covers every noisy channel: joint angles, then (when the actor
        # sees it) cube position and quaternion.
        dr = self._dr
        noise_parts = [np.full(n, dr.joint_pos_noise)]
        if cfg.observe_cube_pose:
            noise_parts += [np.full(3, dr.cube_pos_noise), np.full(4, dr.cube_ori_noise)]
        self._noise_scale = dr.observation_noise_scale * np.concatenate(noise_parts)
        self.action_space = spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)
        clock_groups = _CLOCK_GROUPS if cfg.gait_frequency_hz > 0 else ()
        actor_groups = _PROPRIO_GROUPS + (_CUBE_POSE_GROUPS if cfg.observe_cube_pose else ()) + clock_groups
        self.observation_names = flatten_names(actor_groups)
        self.observation_space = spaces.Box(
            -np.inf, np.inf, (len(self.observation_names),), dtype=np.float32
        )
        self.privileged_observation_names = (
            flatten_names(_PROPRIO_GROUPS + _CUBE_POSE_GROUPS)
            + flatten_names(_PRIVILEGED_EXTRA_GROUPS)
            + HandDynamics.vector_names(n, self._n_links)
            + flatten_names(clock_groups)
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
        self._step_count = 0

    @functools.cached_property
    def action_prior(self) -> ActionPrior | None:
        """The finger gait the clock suggests (robots/hand/cube_gait.json), as a function of
        the observation; None without a clock. Read when asked for, so the gait search can
        run the task's clock before there is a gait file."""
        return cube_gait_prior(self.observation_names) if self.config.gait_frequency_hz > 0 else None

    def _nominal_dynamics(self) -> HandDynamics:
        friction = self._nominal.geom_friction
        return nominal_dynamics(
            self.n_joints,
            self._n_links,
            fingertip_friction=float(friction[self._ids.fingertip_geoms[0], 0]),
            cube_friction=float(friction[self._ids.cube_geom, 0]),
        )

    # --- episode ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        n = self.n_joints
        if self._dr.enabled:
            self._dynamics = sample_dynamics(rng, self._dr, n, self._n_links)
        else:
            self._dynamics = self._nominal_dynamics()
        apply_dynamics(self.model, self._nominal, self._dynamics, self._ids)
        self._refresh_derived_constants()
        self._dynamics_vector = self._dynamics.as_vector()
        self._delay.reset(self._dynamics.latency_steps)

        cfg = self.config
        offsets = rng.uniform(-cfg.init_joint_noise, cfg.init_joint_noise, n)
        cube_pos, cube_quat = self._sample_cube_drop(rng)
        self.set_home_state(offsets, cube_pos, cube_quat)
        self._last_cube_quat = self.cube_quat().copy()
        self._last_action = np.zeros(n)
        self._step_count = 0  # also the gait clock: phase 0 at reset, as the gait was tuned

        obs, privileged = self._observe()
        info = {"dr": self._dynamics.as_info(), "privileged_obs": privileged}
        return obs, info

    def _sample_cube_drop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Cube pose at reset: above the palm centre, random yaw, small random tilt."""
        cfg = self.config
        # The palm is bolted to the world: its pose in data never changes.
        palm_pos = self.palm_pos()
        palm_rot = self.palm_rotation()
        xy = rng.uniform(-cfg.cube_drop_xy_noise, cfg.cube_drop_xy_noise, 2)
        height = self.cube_half_height() + cfg.cube_drop_height
        pos = palm_pos + palm_rot @ np.array([xy[0], xy[1], height])
        yaw = rng.uniform(-np.pi, np.pi) if cfg.cube_random_yaw else 0.0
        tilt = rng.uniform(0.0, cfg.cube_max_tilt)
        axis_angle = rng.uniform(-np.pi, np.pi)
        q_yaw = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        q_tilt = np.array(
            [np.cos(tilt / 2), np.sin(tilt / 2) * np.cos(axis_angle),
             np.sin(tilt / 2) * np.sin(axis_angle), 0.0]
        )
        return pos, _quat_mul(q_tilt, q_yaw)

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

        fell = self._cube_fell()
        quat = self.cube_quat().copy()
        heading_rate = heading_increment(self._last_cube_quat, quat) / self.control_dt
        self._last_cube_quat = quat
        terms = self._reward_terms(action, fell, heading_rate)
        reward = float(sum(terms.values()))
        self._last_action = action
        obs, privileged = self._observe()
        truncated = self._step_count >= self.config.episode_steps
        info = {"reward_terms": terms, "privileged_obs": privileged}
        return obs, reward, fell, truncated, info

    def _cube_fell(self) -> bool:
        dx, dy, dz = (self.cube_pos() - self.palm_pos()).tolist()
        return (
            dz < -self.config.fall_below_palm
            or math.hypot(dx, dy, dz) > self.config.max_cube_distance
        )

    # --- observation -----------------------------------------------------------------
    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        joint_pos = self.joint_pos() - consts.DEFAULT_POSE
        cube_pos = self.cube_pos_in_palm()
        cube_quat = self.cube_quat()
        # q and -q are the same rotation; w >= 0 makes the observation unique.
        if cube_quat[0] < 0:
            cube_quat = -cube_quat
        palm_pos = self.palm_pos()
        palm_rot = self.palm_rotation()
        tips_in_palm = (self.fingertip_positions() - palm_pos) @ palm_rot
        clock = np.zeros(0)
        if self.config.gait_frequency_hz > 0:
            phase = 2 * math.pi * self.config.gait_frequency_hz * self._step_count * self.control_dt
            clock = np.array([math.sin(phase), math.cos(phase)])  # the controller's own clock: exact
        privileged = np.concatenate(
            [
                joint_pos,
                self._last_action,
                cube_pos,
                cube_quat,
                self.joint_vel(),
                self.joint_torques(),
                self.cube_linvel(),
                self.cube_angvel(),
                tips_in_palm.ravel(),
                self.fingertip_contact_forces(),
                self._dynamics_vector,
                clock,
            ]
        ).astype(np.float32)

        if self._dr.enabled:
            noise = uniform_noise(self.np_random, self._noise_scale)
            n = self.n_joints
            joint_pos = joint_pos + noise[:n]
            if self.config.observe_cube_pose:
                cube_pos = cube_pos + noise[n : n + 3]
                noisy = cube_quat + noise[n + 3 :]
                cube_quat = noisy / np.linalg.norm(noisy)
                if cube_quat[0] < 0:
                    cube_quat = -cube_quat
        parts = [joint_pos, self._last_action]
        if self.config.observe_cube_pose:
            parts += [cube_pos, cube_quat]
        parts.append(clock)
        return np.concatenate(parts).astype(np.float32), privileged

    # --- reward ----------------------------------------------------------------------
    def _reward_terms(self, action: np.ndarray, fell: bool, heading_rate: float) -> dict[str, float]:
        # Scalar math on Python floats for the 3-vectors: several times faster than numpy
        # calls on tiny arrays, and this runs every control step (as in the quadruped).
        w = self._weights
        clip = self.config.rotate_clip
        vx, vy, vz = self.cube_linvel().tolist()
        power = self.joint_torques() * self.joint_vel()
        joint_offset = self.joint_pos() - consts.DEFAULT_POSE
        action_change = action - self._last_action
        raw = {
            "rotate": min(max(heading_rate, -clip), clip),
            "energy": float(np.abs(power).sum()),
            "action_rate": float(action_change @ action_change),
            "hand_pose": float(joint_offset @ joint_offset),
            "cube_lin_vel": abs(vx) + abs(vy) + abs(vz),
            "termination": float(fell),
        }
        return {name: w[name] * value for name, value in raw.items()}
