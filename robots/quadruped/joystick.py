"""``sim2real/QuadrupedJoystick-v0``: track a commanded planar velocity with a quadruped."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from sim2real.robots.mujoco_env import (
    ActionDelay,
    DeploymentSpec,
    flatten_names,
    uniform_noise,
)
from sim2real.robots.quadruped import constants as consts
from sim2real.robots.quadruped.base import QuadrupedEnv
from sim2real.robots.quadruped.build import load_robot
from sim2real.robots.quadruped.gait import ActionPrior, GaitConfig, trot_prior
from sim2real.robots.quadruped.randomize import (
    ModelIds,
    NominalModel,
    QuadrupedDynamics,
    QuadrupedRandomization,
    apply_dynamics,
    nominal_dynamics,
    sample_dynamics,
)
from sim2real.robots.quadruped.stress import QuadrupedStress, slope_gravity
from sim2real.robots.quadruped.terrain import STEP_GEOM, TerrainConfig, place_step
from sim2real.robots.randomization import (
    IntUniform,
    InvalidRangeError,
    Uniform,
    with_randomization_switch,
)

ENV_ID = "sim2real/QuadrupedJoystick-v0"
DEFAULTS_REVISION = 2
"""The revision of QuadrupedJoystickConfig's defaults (its field defaults_revision)."""


@dataclasses.dataclass(frozen=True)
class CommandRanges:
    """Per-episode velocity command, each component drawn uniformly from its range."""

    lin_vel_x: Uniform = Uniform(-1.0, 1.0)
    """Forward velocity command, m/s ~ U(-1, 1): a brisk Go1 walk."""
    lin_vel_y: Uniform = Uniform(-0.5, 0.5)
    """Sideways velocity command, m/s ~ U(-0.5, 0.5)."""
    yaw_rate: Uniform = Uniform(-1.0, 1.0)
    """Yaw-rate command, rad/s ~ U(-1, 1)."""
    zero_probability: float = 0.1
    """Probability that a command is standing still (all zeros)."""
    lin_vel_x_zero_probability: float = 0.3
    """Probability that the forward component alone is 0 (Playground go1 keeps it with
    probability 0.9, i.e. 0.1; 0.3 here gives more pure sideways and turning commands).
    Zeroed components give pure commands (only sideways, only turning) as well as mixed
    ones."""
    lin_vel_y_zero_probability: float = 0.5
    """Probability that the sideways component alone is 0 (Playground go1: 0.75)."""
    yaw_rate_zero_probability: float = 0.5
    """Probability that the yaw-rate component alone is 0 (Playground go1: 0.5)."""

    def __post_init__(self) -> None:
        for name in ("lin_vel_x", "lin_vel_y", "yaw_rate"):
            getattr(self, name).validate(f"CommandRanges.{name}")
        for name in ("zero_probability", "lin_vel_x_zero_probability",
                     "lin_vel_y_zero_probability", "yaw_rate_zero_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidRangeError(f"CommandRanges.{name} must be in [0, 1], got {value!r}")


@dataclasses.dataclass(frozen=True)
class QuadrupedRewardWeights:
    """Weight of each reward term; the step reward is the sum of weight x term.

    Relative weights follow MuJoCo Playground's go1 joystick task (which also scales by dt;
    we do not, so per-step rewards are O(1)).
    """

    tracking_lin_vel: float = 1.0
    """exp(-|cmd_xy - v_xy|^2 / sigma): planar velocity tracking in the trunk frame."""
    tracking_ang_vel: float = 1.0
    """exp(-(cmd_yaw - w_z)^2 / sigma): yaw-rate tracking. Weighted as the planar term:
    at Playground's and legged_gym's 0.5 both seeds of the recipe missed the turning
    target, at 1.0 both met it (docs/results.md, G7 against G8)."""
    lin_vel_z: float = -0.5
    """v_z^2: vertical bouncing of the trunk."""
    ang_vel_xy: float = -0.05
    """w_x^2 + w_y^2: roll and pitch rates."""
    orientation: float = -5.0
    """g_x^2 + g_y^2 of projected gravity: trunk tilt."""
    torques: float = 0.0
    """sum tau^2: motor effort (heat)."""
    action_rate: float = 0.0
    """sum (a_t - a_{t-1})^2: jerky commands that real motors cannot follow."""
    feet_air_time: float = 0.0
    """sum over touchdowns of (air time - target): rewards real steps rather than shuffling;
    zero when the command is (near) standing still."""
    termination: float = -1.0
    """1 on the step the robot falls."""
    pose: float = 0.0
    """exp(-sum_j w_j (q_j - q0_j)^2), w = (1, 1, 0.1) per leg (abduction, hip, knee): stay
    near the home posture (Playground go1 uses +0.5)."""
    stand_still: float = 0.0
    """sum |q - q0| while the command is zero: do not fidget when told to stand
    (Playground go1 uses -1.0)."""
    energy: float = 0.0
    """sum |qdot * tau|: mechanical power, W (Playground go1 uses -1e-3)."""
    gait_deviation: float = -0.05
    """sum (a - trot)^2: distance of the action from the trot the gait clock suggests
    (:attr:`QuadrupedJoystickEnv.action_prior`; 0 without a clock). Keeps a residual
    policy near the gait unless leaving it pays (a style term, as reference-motion
    rewards keep a policy near a motion)."""


@dataclasses.dataclass(frozen=True)
class QuadrupedJoystickConfig:
    """Everything that defines the joystick task. Defined once; the CLI is generated from it.

    The defaults are the task of the shipped walking recipe (docs/results.md, session of
    2026-12-01): revision 2. Revision 1, the defaults before it (Playground-like rewards
    with a penalty for every step, no gait clock), is ``defaults_revision=1``, which every
    policy trained before the change still reads (see ``defaults_revision``).
    """

    REVISION_OVERRIDES: ClassVar[dict[int, tuple[str, ...]]] = {
        1: (
            "nonnegative_reward=false", "command_resample_s=0", "observe_linear_velocity=false",
            "action_scale=0.5", "abduction_action_scale=0", "init_base_velocity=0",
            "rewards.tracking_ang_vel=0.5", "rewards.torques=-0.0002", "rewards.action_rate=-0.01",
            "rewards.feet_air_time=0.1",
            "rewards.gait_deviation=0", "commands.lin_vel_x_zero_probability=0",
            "commands.lin_vel_y_zero_probability=0", "commands.yaw_rate_zero_probability=0",
            "gait.frequency_hz=0", "gait.knee=-0.9", "gait.thigh=0", "gait.forward_gain=0",
            "gait.sideways_gain=0", "gait.sideways_phase=0", "gait.turn_gain=0",
        ),
    }
    """Per earlier revision, the overrides that turn today's defaults into that revision's."""

    robot: str = consts.DEFAULT_ROBOT
    """The quadruped: a shipped robot's name (``sim2real robots specs`` lists them: go1,
    a1, ...) or the path of a robot spec file (robots/quadruped/robot_spec.py). Joint
    names, standing pose, gains, limits and rates come from the spec; so do the
    observation and action layouts (the same function of the spec for every robot)."""
    defaults_revision: int = DEFAULTS_REVISION
    """Which revision of this task's defaults the other fields start from: 2 (today's, the
    walking recipe) or 1 (before 2026-12-01). Runs and exported policies record the
    revision they trained on; a file without one is read as revision 1, so a policy keeps
    the task it was trained on when the defaults change."""

    action_scale: float = 0.4
    """joint target = default pose + action_scale * action (rad), action in [-1, 1];
    the abduction joints use abduction_action_scale when that is set."""
    abduction_action_scale: float = 0.2
    """Action scale of the four abduction (hip x) joints, rad; 0: action_scale. A narrower
    sideways range keeps exploration from splaying the legs ("A Walk in the Park" bounds
    actions to home +- [0.2, 0.4, 0.4] rad for abduction, hip, knee)."""
    episode_steps: int = 1000
    """Control steps (50 Hz) before the episode is truncated: 20 s."""
    tracking_sigma: float = 0.25
    """Width of the exponential tracking kernels, (m/s)^2 and (rad/s)^2."""
    air_time_target: float = 0.1
    """Swing duration, s, above which a touchdown earns feet_air_time reward."""
    air_time_max: float = 0.5
    """Swing durations are capped here before the reward (Playground go1's threshold_max
    0.5 s): without a cap, holding a foot up for seconds and then putting it down pays
    more than walking."""
    fall_up_z: float = 0.5
    """Fall when the trunk's up-vector z drops below this (tilt beyond 60 degrees)."""
    fall_height: float = -1.0
    """Fall when the trunk origin drops below this height, m; < 0: the robot spec's
    ``task.fall_height`` (0.12 m for go1 and a1)."""
    init_joint_noise: float = 0.1
    """Initial joint angles = default pose + U(-a, a), rad."""
    random_initial_yaw: bool = True
    """Start each episode facing a uniformly random heading."""
    init_base_velocity: float = 0.5
    """Each of the trunk's 6 velocity components at reset ~ U(-a, a) (m/s, rad/s): episodes
    that start moving teach recovery from the first step (Playground go1: 0.5)."""
    command_resample_s: float = 5.0
    """Mean of the exponential interval, s, after which a new command is drawn within the
    episode, so that one episode teaches several commands (Playground go1: 5 s). 0: one
    command per episode."""
    observe_linear_velocity: bool = True
    """Give the actor the trunk's linear velocity in its own frame, as the real robot's
    state estimator (leg odometry fused with the IMU) provides it: 3 entries appended to
    the observation, with noise U(-a, a), a = randomization.linvel_noise (Playground go1's
    actor sees it too). Without it the actor must infer its speed from joint motion."""
    nonnegative_reward: bool = True
    """Clip the step reward at 0 from below (Playground go1, legged_gym's
    only_positive_rewards): the reward never punishes being alive, so ending the episode
    early is never the cheap way out. Reported as the term ``nonnegative_clip``."""
    rewards: QuadrupedRewardWeights = QuadrupedRewardWeights()
    commands: CommandRanges = CommandRanges()
    gait: GaitConfig = GaitConfig(
        frequency_hz=4.0, knee=1.0, thigh=0.0, forward_gain=0.8, sideways_gain=2.2,
        sideways_phase=3.14159, turn_gain=-0.7,
    )
    """A gait clock in the observation and the trot it suggests, which `sim2real train
    --action-prior` puts inside the policy (robots/quadruped/gait.py); the default is the
    steering trot of the shipped recipe (docs/results.md, G2). gait.frequency_hz=0: no
    clock."""
    randomization: QuadrupedRandomization = QuadrupedRandomization()
    terrain: TerrainConfig = TerrainConfig()
    """The ground (robots/quadruped/terrain.py): the flat floor every shipped policy trained
    on, rough ground (terrain.kind=rough, terrain.height=0.04) or a step ahead of the robot
    (terrain.kind=step)."""

    def __post_init__(self) -> None:
        checks = {
            "action_scale": self.action_scale > 0,
            "abduction_action_scale": self.abduction_action_scale >= 0,
            "episode_steps": isinstance(self.episode_steps, int) and self.episode_steps >= 1,
            "tracking_sigma": self.tracking_sigma > 0,
            "air_time_target": self.air_time_target >= 0,
            "air_time_max": self.air_time_max >= self.air_time_target,
            "fall_up_z": -1.0 <= self.fall_up_z < 1.0,
            "fall_height": math.isfinite(self.fall_height),
            "init_joint_noise": self.init_joint_noise >= 0,
            "command_resample_s": math.isfinite(self.command_resample_s) and self.command_resample_s >= 0,
            "init_base_velocity": math.isfinite(self.init_base_velocity) and self.init_base_velocity >= 0,
            "defaults_revision": self.defaults_revision in (*self.REVISION_OVERRIDES, DEFAULTS_REVISION),
            "robot": isinstance(self.robot, str) and bool(self.robot.strip()),
        }
        allowed = {
            "action_scale": "> 0",
            "abduction_action_scale": ">= 0 (0: action_scale)",
            "episode_steps": "an integer >= 1",
            "tracking_sigma": "> 0",
            "air_time_target": ">= 0",
            "air_time_max": ">= air_time_target",
            "fall_up_z": "in [-1, 1)",
            "fall_height": "a finite number (< 0: the robot spec's)",
            "init_joint_noise": ">= 0",
            "command_resample_s": "a finite number >= 0 (0: one command per episode)",
            "init_base_velocity": "a finite number >= 0",
            "defaults_revision": "1 or 2",
            "robot": "a shipped robot's name or a robot spec path",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"QuadrupedJoystickConfig.{name} must be {allowed[name]}, "
                    f"got {getattr(self, name)!r}"
                )


def actor_observation_groups(
    joint_names: tuple[str, ...], actuator_names: tuple[str, ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The actor's observation layout before the optional entries, for a robot's joints:
    the same function of the spec for every robot."""
    return (
        ("gyro", ("x", "y", "z")),
        ("gravity", ("x", "y", "z")),
        ("command", ("vx", "vy", "yaw_rate")),
        ("joint_pos", joint_names),
        ("joint_vel", joint_names),
        ("last_action", actuator_names),
    )


class QuadrupedJoystickEnv(QuadrupedEnv):
    """Joystick locomotion for a quadruped: our Go1-class model by default, any robot spec
    with ``config.robot`` (``a1``, or a spec file path).

    ## Action space
    ``Box(-1, 1, (12,), float32)``; joint target = default pose + action_scale * action
    (``abduction_action_scale`` on the four abduction joints when set), tracked by the
    motors' PD loop (the spec's Kp and Kd, e.g. go1 35 and 0.5; torque limited) at the
    spec's physics rate (500 Hz for the shipped robots).

    | index | actuator | unit of the target |
    |---|---|---|
    | 0, 3, 6, 9 | FR/FL/RR/RL_hip (abduction, x axis) | rad |
    | 1, 4, 7, 10 | FR/FL/RR/RL_thigh (hip flexion, y axis) | rad |
    | 2, 5, 8, 11 | FR/FL/RR/RL_calf (knee, y axis) | rad |

    ## Observation space (actor: what the real robot measures, with noise)
    ``Box(-inf, inf, (50,), float32)`` with the default config (velocity estimate and gait
    clock on); 45 entries with both off (``defaults_revision=1``), 48 or 47 with one.

    | index | observation | unit |
    |---|---|---|
    | 0-2 | gyro (IMU angular velocity) | rad/s |
    | 3-5 | gravity direction in the trunk frame | unit vector |
    | 6-8 | command (vx, vy, yaw rate) | m/s, rad/s |
    | 9-20 | joint angles minus default pose | rad |
    | 21-32 | joint velocities | rad/s |
    | 33-44 | previous action | [-1, 1] |
    | 45-47 | with ``observe_linear_velocity``: trunk linear velocity (estimate) | m/s |
    | last 2 | with ``gait.frequency_hz`` > 0: gait clock sin, cos of the phase (no noise) | 1 |

    The gait clock's phase advances 2 pi ``gait.frequency_hz`` per second from a random
    phase at reset; :attr:`action_prior` is then the trot it suggests (diagonal pairs
    alternate, feet lifted by the knee), which a policy may add to its own output.

    ``info["privileged_obs"]`` (shape ``privileged_observation_space``) holds the same
    without noise, plus trunk linear velocity, trunk height, foot contact forces, feet air
    time and the sampled domain-randomization parameters: for an asymmetric critic.

    ## Rewards
    Named terms (see :class:`QuadrupedRewardWeights`), each weighted term in
    ``info["reward_terms"]``; the reward is their sum. With ``nonnegative_reward`` the
    extra term ``nonnegative_clip`` lifts a negative sum to 0.

    ## Commands
    Drawn from :class:`CommandRanges` at reset and, with ``command_resample_s`` > 0, again
    after exponential intervals within the episode. ``reset(options={"command": (vx, vy,
    yaw_rate)})`` pins one command for the whole episode (how ``sim2real eval`` judges).

    ## Episode end
    Terminates when the trunk tilts past ``fall_up_z`` or drops below ``fall_height``;
    truncates after ``episode_steps`` (1000, 20 s).

    ## Domain randomization
    See :class:`QuadrupedRandomization`: floor friction, link masses, trunk mass and CoM,
    joint damping/armature/friction loss, Kp/Kd, latency, observation noise, pushes.
    Sampled values are in ``info["dr"]`` after each reset.
    """

    def __init__(
        self,
        config: QuadrupedJoystickConfig | None = None,
        render_mode: str | None = None,
        domain_randomization: bool | None = None,
    ) -> None:
        cfg = config or QuadrupedJoystickConfig()
        cfg = with_randomization_switch(cfg, domain_randomization)
        robot = load_robot(cfg.robot)
        cfg.randomization.check_robot(robot)
        super().__init__(robot=robot, render_mode=render_mode, terrain=cfg.terrain)
        self.config = cfg
        self._dr = cfg.randomization
        self._fall_height = cfg.fall_height if cfg.fall_height >= 0 else robot.spec.fall_height
        self._ids = ModelIds.from_model(self.model, robot)
        self._nominal = NominalModel.from_model(self.model)
        self._n_links = len(robot.link_bodies)
        self._delay = ActionDelay(self.n_joints, max_latency=self._dr.latency_steps.high)
        self._stress: QuadrupedStress | None = None
        self._nominal_gravity = self.model.opt.gravity.copy()
        self._gravity_changed = False
        """A stress or an incline tilted gravity in the last episode: the next reset puts it back."""
        self._incline: tuple[float, float] | None = None
        """This episode's DR incline: (degrees, uphill direction in the world), or None."""
        self._push_side = 1.0
        self._next_stress_push_step = -1
        n = self.n_joints
        self._action_scales = np.full(n, cfg.action_scale)
        if cfg.abduction_action_scale > 0:
            self._action_scales[0::3] = cfg.abduction_action_scale  # (abduction, hip, knee) per leg
        # Signed: a robot whose joint turns the other way round gets -scale, so that an
        # action is the same motion on every robot (build.py, joint_signs).
        self._action_scales = self._action_scales * robot.joint_signs
        self._noise_scale = self._dr.observation_noise_scale * np.concatenate(
            [
                np.full(3, self._dr.gyro_noise),
                np.full(3, self._dr.gravity_noise),
                np.full(n, self._dr.joint_pos_noise),
                np.full(n, self._dr.joint_vel_noise),
                np.full(3 if cfg.observe_linear_velocity else 0, self._dr.linvel_noise),
                np.zeros(2 if cfg.gait.enabled else 0),  # the clock is the controller's own: exact
            ]
        )
        self.action_space = spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)
        groups = actor_observation_groups(robot.joint_names, robot.actuator_names)
        if cfg.observe_linear_velocity:
            groups = (*groups, ("linvel_estimate", ("x", "y", "z")))
        if cfg.gait.enabled:
            groups = (*groups, ("gait_clock", ("sin", "cos")))
        self.observation_names = flatten_names(groups)
        self.action_prior: ActionPrior | None = (
            trot_prior(cfg.gait, self.observation_names) if cfg.gait.enabled else None
        )
        """The trot the gait clock suggests, as a function of the observation (None without
        a clock)."""
        self._gait_phase = 0.0
        self._prior_observation: np.ndarray | None = None
        """The clean observation the next action answers (for gait_deviation)."""
        self.observation_space = spaces.Box(
            -np.inf, np.inf, (len(self.observation_names),), dtype=np.float32
        )
        self.privileged_observation_names = (
            self.observation_names
            + ("local_linvel/x", "local_linvel/y", "local_linvel/z", "trunk_height")
            + tuple(f"foot_force/{leg}" for leg in consts.LEG_NAMES)
            + tuple(f"air_time/{leg}" for leg in consts.LEG_NAMES)
            + QuadrupedDynamics.vector_names(n, self._n_links)
        )
        self.privileged_observation_space = spaces.Box(
            -np.inf, np.inf, (len(self.privileged_observation_names),), dtype=np.float32
        )
        self.deployment_spec = DeploymentSpec(
            env_id=ENV_ID,
            robot=robot.name,
            observation_names=self.observation_names,
            action_names=robot.actuator_names,
            joint_names=robot.joint_names,
            default_pose=tuple(float(x) for x in robot.default_pose),
            action_scale=tuple(float(x) for x in self._action_scales),
            kp=tuple(float(x) for x in robot.kp),
            kd=tuple(float(x) for x in robot.kd),
            torque_limits=tuple(float(x) for x in robot.torque_limits),
            control_rate_hz=1.0 / self.control_dt,
            physics_dt=float(self.model.opt.timestep),
            velocity_limits=(None if robot.velocity_limits is None
                             else tuple(float(x) for x in robot.velocity_limits)),
            robot_sha256=robot.sha256,
        )
        self._weights = dataclasses.asdict(cfg.rewards)
        self._dynamics = nominal_dynamics(n, self._n_links, self._floor_friction_nominal())
        self._dynamics_vector = self._dynamics.as_vector()
        self._command = np.zeros(3)
        self._last_action = np.zeros(n)
        self._air_time = np.zeros(len(consts.LEG_NAMES))
        self._last_contact = np.zeros(len(consts.LEG_NAMES), dtype=bool)
        self._step_count = 0
        self._next_push_step = -1
        self._next_command_step = -1
        self._pose_weights = np.tile(np.array([1.0, 1.0, 0.1]), len(consts.LEG_NAMES))

    def _floor_friction_nominal(self) -> float:
        return float(self._nominal.geom_friction[self._ids.floor_geom, 0])

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
            self._dynamics = nominal_dynamics(n, self._n_links, self._floor_friction_nominal())
        stress = self._stress
        if stress is not None:
            self._dynamics = stress.dynamics(self._dynamics, float(self._nominal.body_mass[self._ids.trunk_body]))
        apply_dynamics(self.model, self._nominal, self._dynamics, self._ids)
        acts = self._ids.actuators
        if self._dr.enabled and self._dr.torque_limit_follows_kp:
            # One motor-strength draw per joint: its torque limit weakens with its Kp.
            self.model.actuator_forcerange[acts] = (self._nominal.actuator_forcerange[acts]
                                                    * self._dynamics.kp_scale[:, None])
        if stress is not None and stress.motor_strength != 1.0:
            self.model.actuator_forcerange[acts] = self._nominal.actuator_forcerange[acts] * stress.motor_strength
        self._refresh_derived_constants()
        self._dynamics_vector = self._dynamics.as_vector()
        self._delay.reset(self._dynamics.latency_steps)

        cfg = self.config
        yaw = rng.uniform(-np.pi, np.pi) if cfg.random_initial_yaw else 0.0
        offsets = rng.uniform(-cfg.init_joint_noise, cfg.init_joint_noise, n)
        self.set_home_state(yaw, offsets)
        if cfg.init_base_velocity > 0:
            a = cfg.init_base_velocity
            self.set_trunk_velocity(rng.uniform(-a, a, 3), rng.uniform(-a, a, 3))
            mujoco.mj_forward(self.model, self.data)
        pinned = (options or {}).get("command")
        if pinned is not None:
            command = np.asarray(pinned, dtype=np.float64)
            if command.shape != (3,) or not np.all(np.isfinite(command)):
                raise ValueError(
                    f"options['command'] must be 3 finite numbers (vx m/s, vy m/s, yaw rate "
                    f"rad/s), got {pinned!r}"
                )
            self._command = command.copy()
        else:
            self._command = self._sample_command(rng)
        self._last_action = np.zeros(n)
        self._air_time[:] = 0.0
        self._last_contact[:] = True
        self._step_count = 0
        if cfg.gait.enabled:
            self._gait_phase = rng.uniform(0.0, 2 * np.pi)
        self._next_push_step = self._sample_push_step(rng)
        self._next_command_step = -1 if pinned is not None else self._sample_command_step(rng)
        # A random incline (DR): drawn only when its range is not U(0, 0), so the default
        # task's random stream (and every judged number) stays as it was.
        incline = self._dr.incline_deg
        self._incline = ((incline.sample(rng), float(rng.uniform(-np.pi, np.pi)))
                         if self._dr.enabled and incline.high > 0 else None)
        self._place_world(yaw)

        obs, privileged = self._observe()
        info = {
            "dr": self._dynamics.as_info(),
            "command": self._command.copy(),
            "privileged_obs": privileged,
        }
        return obs, info

    def set_stress(self, stress: QuadrupedStress | None) -> None:
        """Apply ``stress`` (a held-out world, stress.py) at every reset from the next one on,
        after the domain randomization; None: none."""
        self._stress = stress
        bound = self._dr.latency_steps.high if stress is None else stress.latency_bound(self._dr)
        self._delay = ActionDelay(self.n_joints, max_latency=bound)

    def _travel_yaw(self, heading: float) -> float:
        """World direction the command asks the robot to walk (its heading if none)."""
        vx, vy = float(self._command[0]), float(self._command[1])
        return heading + (math.atan2(vy, vx) if math.hypot(vx, vy) > 1e-9 else 0.0)

    def _place_world(self, heading: float) -> None:
        """What depends on where the robot starts and what it was told: the slope's gravity,
        the step ahead of it, the stress pushes. Nothing to do on flat ground without stress."""
        stress = self._stress
        step = self.config.terrain.kind == "step"
        self._next_stress_push_step = -1
        if stress is None and not step and not self._gravity_changed and self._incline is None:
            return
        model = self.model
        travel = self._travel_yaw(heading)
        magnitude = float(np.linalg.norm(self._nominal_gravity))
        if stress is not None and stress.slope_deg:
            model.opt.gravity[:] = stress.gravity(magnitude, travel)
            self._gravity_changed = True
        elif self._incline is not None:
            degrees, uphill_yaw = self._incline
            model.opt.gravity[:] = slope_gravity(degrees, magnitude, uphill_yaw)
            self._gravity_changed = True
        else:
            model.opt.gravity[:] = self._nominal_gravity
            self._gravity_changed = False
        self.refresh_gravity()
        if step:
            place_step(model, self.data, self.config.terrain, self.trunk_position()[:2], travel)
            step_geom = self._id(mujoco.mjtObj.mjOBJ_GEOM, STEP_GEOM)
            model.geom_friction[step_geom] = model.geom_friction[self._ids.floor_geom]  # the floor's draw
        if stress is not None and stress.pushes:
            self._push_side = 1.0
            self._next_stress_push_step = round(stress.push_interval_s / self.control_dt)
        mujoco.mj_forward(model, self.data)

    def _sample_command(self, rng: np.random.Generator) -> np.ndarray:
        ranges = self.config.commands
        command = np.array(
            [ranges.lin_vel_x.sample(rng), ranges.lin_vel_y.sample(rng), ranges.yaw_rate.sample(rng)]
        )
        component_zero = (ranges.lin_vel_x_zero_probability, ranges.lin_vel_y_zero_probability,
                          ranges.yaw_rate_zero_probability)
        if any(component_zero):
            command[rng.random(3) < np.asarray(component_zero)] = 0.0
        if rng.random() < ranges.zero_probability:
            command[:] = 0.0
        return command

    def _sample_command_step(self, rng: np.random.Generator) -> int:
        mean = self.config.command_resample_s
        if mean <= 0:
            return -1
        return self._step_count + max(1, round(rng.exponential(mean) / self.control_dt))

    def _sample_push_step(self, rng: np.random.Generator) -> int:
        if not self._dr.enabled or self._dr.push_velocity.high <= 0:
            return -1
        interval = self._dr.push_interval_s.sample(rng)
        return self._step_count + max(1, round(interval / self.control_dt))

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if action.shape != (self.n_joints,):
            raise ValueError(
                f"action must have shape ({self.n_joints},), got {action.shape}"
            )
        applied = self._delay.push(action)
        if self._step_count == self._next_push_step:
            rng = self.np_random
            angle = rng.uniform(-np.pi, np.pi)
            self.push_trunk(self._dr.push_velocity.sample(rng) * np.array([np.cos(angle), np.sin(angle)]))
            self._next_push_step = self._sample_push_step(rng)
        if self._step_count == self._next_stress_push_step:
            stress = self._stress
            assert stress is not None
            side = self.trunk_yaw() + self._push_side * math.pi / 2
            self.push_trunk(stress.push_velocity * np.array([math.cos(side), math.sin(side)]))
            self._push_side = -self._push_side
            self._next_stress_push_step += max(1, round(stress.push_interval_s / self.control_dt))
        self._physics_step(self.default_pose + self._action_scales * applied)
        self._step_count += 1
        if self.config.gait.enabled:
            self._gait_phase = (self._gait_phase + 2 * np.pi * self.config.gait.frequency_hz * self.control_dt) % (2 * np.pi)
        if self._step_count == self._next_command_step:
            # A new command for the rest of the episode; the reward of this step still
            # judges the old one (the policy acted on it).
            new_command = self._sample_command(self.np_random)
            self._next_command_step = self._sample_command_step(self.np_random)
        else:
            new_command = None

        fell = self.upvector()[2] < self.config.fall_up_z or self.trunk_height() < self._fall_height
        terms = self._reward_terms(action, fell)
        reward = float(sum(terms.values()))
        if self.config.nonnegative_reward:
            terms["nonnegative_clip"] = max(0.0, -reward)
            reward += terms["nonnegative_clip"]
        self._last_action = action
        if new_command is not None:
            self._command = new_command
        obs, privileged = self._observe()
        truncated = self._step_count >= self.config.episode_steps
        info = {"reward_terms": terms, "privileged_obs": privileged, "command": self._command.copy()}
        return obs, reward, bool(fell), truncated, info

    # --- observation -----------------------------------------------------------------
    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.n_joints
        clean = np.concatenate(
            [
                self.gyro(),
                self.projected_gravity(),
                self._command,
                self.joint_pos() - self.default_pose,
                self.joint_vel(),
                self._last_action,
                *((self.local_linvel(),) if self.config.observe_linear_velocity else ()),
                *(((math.sin(self._gait_phase), math.cos(self._gait_phase)),) if self.config.gait.enabled else ()),
            ]
        )
        if self.action_prior is not None:
            self._prior_observation = clean
        privileged = np.concatenate(
            [
                clean,
                self.local_linvel(),
                (self.trunk_height(),),
                self.foot_contact_forces(),
                self._air_time,
                self._dynamics_vector,
            ]
        ).astype(np.float32)
        obs = clean
        if self._dr.enabled:
            noise = uniform_noise(self.np_random, self._noise_scale)
            obs = clean.copy()
            obs[:6] += noise[:6]  # gyro, gravity
            obs[9 : 9 + 2 * n] += noise[6 : 6 + 2 * n]  # joint positions, velocities
            obs[9 + 3 * n :] += noise[6 + 2 * n :]  # the linear velocity estimate, if any (the clock: 0)
        stress = self._stress
        if stress is not None and stress.biases_sensors:
            obs = obs.copy() if obs is clean else obs
            obs[0:3] += stress.gyro_bias
            obs[3:6] = stress.imu_rotation @ obs[3:6]
            obs[9 : 9 + n] += stress.joint_pos_bias
            if self.config.observe_linear_velocity:
                obs[9 + 3 * n : 12 + 3 * n] += stress.linvel_bias
        return obs.astype(np.float32), privileged

    # --- reward ----------------------------------------------------------------------
    def _reward_terms(self, action: np.ndarray, fell: bool) -> dict[str, float]:
        # Scalar math on Python floats: on 3-vectors it is several times faster than numpy
        # calls, and this runs every control step.
        cfg = self.config
        w = self._weights
        vx, vy, vz = self.local_linvel().tolist()
        wx, wy, wz = self.gyro().tolist()
        gx, gy, _ = self.projected_gravity().tolist()
        cx, cy, cyaw = self._command.tolist()
        torques = self.joint_torques()
        pose_error = self.joint_pos() - self.default_pose
        standing_command = math.hypot(cx, cy) < 0.01 and abs(cyaw) < 0.01
        action_change = action - self._last_action
        gait_deviation = 0.0
        if self._prior_observation is not None and w["gait_deviation"]:
            deviation = action - self.action_prior(self._prior_observation)  # type: ignore[misc]
            gait_deviation = float(deviation @ deviation)

        contact = self.foot_contact_forces() > consts.CONTACT_FORCE_THRESHOLD
        # A touchdown is a foot in contact now (or last step: filters one-step chatter)
        # that has been in the air; legged_gym's feet_air_time.
        contact_filtered = contact | self._last_contact
        touchdown = (self._air_time > 0) & contact_filtered
        self._air_time += self.control_dt
        air_time_reward = feet_air_time_reward(self._air_time, touchdown, cfg.air_time_target, cfg.air_time_max)
        if math.hypot(cx, cy) < 0.1 and abs(cyaw) < 0.1:
            air_time_reward = 0.0  # standing still: no reward for stepping
        self._air_time *= ~contact_filtered
        self._last_contact = contact

        raw = {
            "tracking_lin_vel": math.exp(-((cx - vx) ** 2 + (cy - vy) ** 2) / cfg.tracking_sigma),
            "tracking_ang_vel": math.exp(-((cyaw - wz) ** 2) / cfg.tracking_sigma),
            "lin_vel_z": vz * vz,
            "ang_vel_xy": wx * wx + wy * wy,
            "orientation": gx * gx + gy * gy,
            "torques": float(torques @ torques),
            "action_rate": float(action_change @ action_change),
            "feet_air_time": air_time_reward,
            "termination": float(fell),
            "pose": math.exp(-float(self._pose_weights @ (pose_error * pose_error))),
            "stand_still": float(np.abs(pose_error).sum()) if standing_command else 0.0,
            "energy": float(np.abs(self.joint_vel() * torques).sum()),
            "gait_deviation": gait_deviation,
        }
        return {name: w[name] * value for name, value in raw.items()}


    # --- sim replay and system identification (replay/sim_replay.py) -------------------
    REPLAY_PARAMETERS: ClassVar[tuple[str, ...]] = (
        "floor_friction", "kp_scale", "kd_scale", "joint_damping_scale", "trunk_added_mass", "latency_steps",
    )
    """Knobs system identification searches, each named as the randomization field it
    corresponds to; scalars shared by all joints (a log rarely pins per-joint values)."""
    DEFAULT_SYSID_PARAMETERS: ClassVar[tuple[str, ...]] = (
        "floor_friction", "kp_scale", "joint_damping_scale", "latency_steps",
    )
    """What `sim2real replay --sysid` identifies when not told: the knobs a short log pins down."""
    REPLAY_STATE_FIELDS: ClassVar[tuple[str, ...]] = (
        "joint_position", "joint_velocity", "base_position", "base_orientation",
        "base_linear_velocity", "base_angular_velocity",
    )
    """The RobotStep fields a logged state needs (a floating base)."""
    OBJECT_JOINT_NAMES: ClassVar[tuple[str, ...]] = ()
    """No object: sim replay tracks the leg joints only."""

    def replay_nominal_parameters(self) -> dict[str, float]:
        """The replay knobs of the nominal robot."""
        return {"floor_friction": self._floor_friction_nominal(), "kp_scale": 1.0, "kd_scale": 1.0,
                "joint_damping_scale": 1.0, "trunk_added_mass": 0.0, "latency_steps": 0}

    def apply_replay_parameters(self, params: dict[str, float]) -> int:
        """Nominal dynamics with every knob of REPLAY_PARAMETERS set from ``params``
        (scalars broadcast over joints); returns the latency in control steps."""
        n = self.n_joints
        nominal = nominal_dynamics(n, self._n_links, self._floor_friction_nominal())
        dynamics = dataclasses.replace(
            nominal,
            floor_friction=float(params["floor_friction"]),
            kp_scale=np.full(n, float(params["kp_scale"])),
            kd_scale=np.full(n, float(params["kd_scale"])),
            joint_damping_scale=np.full(n, float(params["joint_damping_scale"])),
            trunk_added_mass=float(params["trunk_added_mass"]),
            latency_steps=int(round(params["latency_steps"])),
        )
        apply_dynamics(self.model, self._nominal, dynamics, self._ids)
        self._refresh_derived_constants()
        self._dynamics = dynamics
        return dynamics.latency_steps

    def set_replay_state(self, step: Any) -> None:
        """Write a logged RobotStep's measured state (REPLAY_STATE_FIELDS) into the simulator."""
        data = self.data
        data.qpos[self._qpos_slice] = step.joint_position
        data.qvel[self._qvel_slice] = step.joint_velocity
        root, root_v = self._root_qpos, self._root_qvel
        data.qpos[root : root + 3] = step.base_position
        data.qpos[root + 3 : root + 7] = step.base_orientation
        data.qvel[root_v : root_v + 3] = step.base_linear_velocity
        data.qvel[root_v + 3 : root_v + 6] = step.base_angular_velocity
        data.act[:] = 0
        mujoco.mj_forward(self.model, data)

    def replay_positions(self) -> np.ndarray:
        """What sim replay scores: the joint angles (then OBJECT_JOINT_NAMES: none)."""
        return self.joint_pos().copy()

    def fixed_dynamics_config(self, config: QuadrupedJoystickConfig, params: dict[str, float]) -> QuadrupedJoystickConfig:
        """``config`` with a 'randomization' that always draws exactly ``params``
        (REPLAY_PARAMETERS; the rest this robot's nominal, no pushes, no observation
        noise): the known, perturbed robot tests and demos record logs from."""
        floor_friction = self._floor_friction_nominal()
        unknown = set(params) - set(QuadrupedJoystickEnv.REPLAY_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown dynamics parameters {sorted(unknown)}; known: "
                             f"{list(QuadrupedJoystickEnv.REPLAY_PARAMETERS)}")

        def fixed(value: float) -> Uniform:
            return Uniform(float(value), float(value))

        latency = int(params.get("latency_steps", 0))
        randomization = QuadrupedRandomization(
            floor_friction=fixed(params.get("floor_friction", floor_friction)),
            link_mass_scale=fixed(1.0), trunk_added_mass=fixed(params.get("trunk_added_mass", 0.0)),
            trunk_com_offset=fixed(0.0), joint_damping_scale=fixed(params.get("joint_damping_scale", 1.0)),
            armature_scale=fixed(1.0), frictionloss_scale=fixed(1.0),
            kp_scale=fixed(params.get("kp_scale", 1.0)), kd_scale=fixed(params.get("kd_scale", 1.0)),
            latency_steps=IntUniform(latency, latency), observation_noise_scale=0.0,
            push_velocity=fixed(0.0),
        )
        return dataclasses.replace(config, randomization=randomization)


def feet_air_time_reward(air_time: np.ndarray, touchdown: np.ndarray, target: float, cap: float) -> float:
    """Sum over the feet touching down now of (swing duration capped at `cap`) - `target`, s."""
    return float((np.minimum(air_time, cap) - target) @ touchdown)
