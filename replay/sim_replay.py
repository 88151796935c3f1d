"""Sim replay: put the simulator in a logged state, apply the logged actions open-loop, and
measure how far the simulated joints drift from the logged ones (the sim-to-real gap).

Also the engine of system identification (sysid.py): the same open-loop rollouts under
candidate dynamics, scored against the log.

Supported: the quadruped (floating base: a log with joint state and base pose/velocity)
and the hand on the valve rig (a log with joint state and the valve encoder's angle and
rate, RobotStep.object_joint_position/velocity): there the valve angle is replayed and
scored with the joints, so the valve's bearing friction and damping show in the fit. The
free cube's logs lack the cube's 6-DoF state, which dominates the hand's joint motion, so
replaying them would measure the missing cube rather than the hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

QUADRUPED = "sim2real/QuadrupedJoystick-v0"
HAND_VALVE = "sim2real/HandValveTurn-v0"
SUPPORTED = (QUADRUPED, HAND_VALVE)
# Knobs system identification searches, with the training DR field each corresponds to
# (same name in the env's randomization config). Scalars: one value shared by all
# joints/links (a log rarely pins per-joint values).
QUADRUPED_PARAMETERS = (
    "floor_friction", "kp_scale", "kd_scale", "joint_damping_scale", "trunk_added_mass", "latency_steps",
)
# The valve rig: the bearing's dry friction (N m) and viscous damping (N m s/rad), the
# servos' Kp scale and D term (joint damping) scale, fingertip friction, latency.
VALVE_PARAMETERS = ("valve_friction", "valve_damping", "kp_scale", "kd_scale", "fingertip_friction", "latency_steps")
PARAMETERS = QUADRUPED_PARAMETERS
"""The quadruped's (the first robot sim replay supported); see ROBOT_PARAMETERS."""
ROBOT_PARAMETERS: dict[str, tuple[str, ...]] = {QUADRUPED: QUADRUPED_PARAMETERS, HAND_VALVE: VALVE_PARAMETERS}
ALL_PARAMETERS = tuple(dict.fromkeys(QUADRUPED_PARAMETERS + VALVE_PARAMETERS))
# What `sim2real replay --sysid` identifies when not told: the knobs a short log pins down.
DEFAULT_SYSID_PARAMETERS: dict[str, tuple[str, ...]] = {
    QUADRUPED: ("floor_friction", "kp_scale", "joint_damping_scale", "latency_steps"),
    HAND_VALVE: ("valve_friction", "valve_damping", "kp_scale", "latency_steps"),
}


class SimReplayError(ValueError):
    """A log that cannot be replayed in simulation (unsupported robot, missing state)."""


@dataclass(frozen=True)
class Window:
    """``horizon`` consecutive steps of one episode, starting at log index ``start``."""

    start: int
    horizon: int


class SimReplayer:
    """Open-loop replay of logged actions from logged states on one env's model."""

    def __init__(
        self,
        env_id: str,
        action_scale: Sequence[float] | None = None,
        action_offset: Sequence[float] | None = None,
        env_config: Sequence[str] = (),
    ) -> None:
        """``action_scale``/``action_offset``: the control law the log was recorded with
        (its LogInfo), joint target = offset + scale x action; default: the env's default
        task config. A policy trained with other action scales needs the logged ones.
        ``env_config``: the task config overrides the log's env ran with (its LogInfo's
        env_config): which robot among them (robot=a1), so the log replays on its own
        robot's model."""
        if env_id not in SUPPORTED:
            raise SimReplayError(
                f"sim replay supports {list(SUPPORTED)}; the log is from {env_id!r} "
                "(the free cube's logs lack the cube state that drives the hand's joints)"
            )
        from sim2real.robots import registry

        self.env_id = env_id
        try:
            config = registry.task_config(env_id, list(env_config))
        except ValueError as err:
            raise SimReplayError(f"the log's env_config does not make a task of {env_id}: {err}") from None
        self.env = registry.make(env_id, domain_randomization=False, config=config)
        self.robot: Any = self.env.unwrapped
        self.env.reset(seed=0)
        self.spec = self.robot.deployment_spec
        self.n_joints = len(self.spec.joint_names)
        self.action_scale = np.asarray(action_scale if action_scale else self.spec.action_scales, float)
        self.action_offset = np.asarray(action_offset if action_offset else self.spec.default_pose, float)
        for name, value in (("action_scale", self.action_scale), ("action_offset", self.action_offset)):
            if value.shape != (self.n_joints,):
                raise SimReplayError(
                    f"{name} must have {self.n_joints} entries (one per joint of {env_id}), "
                    f"got {value.shape[0] if value.ndim else value}"
                )
        self.parameters = ROBOT_PARAMETERS[env_id]
        self.is_valve = env_id == HAND_VALVE
        # What a rollout returns and is scored on: the joints, then the object's joints.
        self.object_names: tuple[str, ...] = ()
        if self.is_valve:
            from sim2real.robots.hand import constants as hand_consts

            self.object_names = (hand_consts.VALVE_JOINT,)
        self.tracked_names = tuple(self.spec.joint_names) + self.object_names
        self.nominal = self.robot._dynamics  # the nominal draw (DR off)
        self.ranges = self.robot.config.randomization
        self.set_parameters({})

    def close(self) -> None:
        self.env.close()

    # --- dynamics -----------------------------------------------------------------------
    @staticmethod
    def nominal_floor_friction() -> float:
        from sim2real.robots import registry

        env = registry.make(QUADRUPED, domain_randomization=False)
        try:
            return float(env.unwrapped._floor_friction_nominal())
        finally:
            env.close()

    def nominal_parameters(self) -> dict[str, float]:
        if self.is_valve:
            return {
                "valve_friction": float(self.nominal.valve_friction),
                "valve_damping": float(self.nominal.valve_damping), "kp_scale": 1.0, "kd_scale": 1.0,
                "fingertip_friction": float(self.nominal.fingertip_friction), "latency_steps": 0,
            }
        return {
            "floor_friction": float(self.nominal.floor_friction), "kp_scale": 1.0, "kd_scale": 1.0,
            "joint_damping_scale": 1.0, "trunk_added_mass": 0.0, "latency_steps": 0,
        }

    def trained_ranges(self) -> dict[str, tuple[float, float]]:
        """The DR range the policy was trained on, per parameter (from the env config)."""
        r = self.ranges
        return {
            name: (float(getattr(r, name).low), float(getattr(r, name).high)) for name in self.parameters
        }

    def set_parameters(self, params: dict[str, float]) -> None:
        """Nominal dynamics with ``params`` overriding (scalars broadcast over joints)."""
        unknown = set(params) - set(self.parameters)
        if unknown:
            raise SimReplayError(
                f"unknown dynamics parameters {sorted(unknown)} for {self.env_id}; known: {list(self.parameters)}"
            )
        p = {**self.nominal_parameters(), **params}
        n = self.n_joints
        if self.is_valve:
            from sim2real.robots.hand.randomize import apply_valve_dynamics

            valve = dataclasses.replace(
                self.nominal,
                valve_friction=float(p["valve_friction"]), valve_damping=float(p["valve_damping"]),
                kp_scale=np.full(n, float(p["kp_scale"])), kd_scale=np.full(n, float(p["kd_scale"])),
                fingertip_friction=float(p["fingertip_friction"]), latency_steps=int(round(p["latency_steps"])),
            )
            apply_valve_dynamics(self.robot.model, self.robot._nominal, valve, self.robot._ids)
            self.robot._refresh_derived_constants()
            self.latency = int(valve.latency_steps)
            self.params = p
            return
        from sim2real.robots.quadruped.randomize import apply_dynamics

        dyn = dataclasses.replace(
            self.nominal,
            floor_friction=float(p["floor_friction"]),
            kp_scale=np.full(n, float(p["kp_scale"])),
            kd_scale=np.full(n, float(p["kd_scale"])),
            joint_damping_scale=np.full(n, float(p["joint_damping_scale"])),
            trunk_added_mass=float(p["trunk_added_mass"]),
            latency_steps=int(round(p["latency_steps"])),
        )
        apply_dynamics(self.robot.model, self.robot._nominal, dyn, self.robot._ids)
        self.robot._refresh_derived_constants()
        self.latency = int(dyn.latency_steps)
        self.params = p

    # --- state --------------------------------------------------------------------------
    def set_state(self, step: Any) -> None:
        """Write a logged step's measured state into the simulator."""
        robot = self.robot
        needed = ("joint_position", "joint_velocity") + (
            ("object_joint_position", "object_joint_velocity") if self.is_valve else
            ("base_position", "base_orientation", "base_linear_velocity", "base_angular_velocity")
        )
        for field in needed:
            if not len(getattr(step, field)):
                raise SimReplayError(f"sim replay needs {field} in every step; step {step.sequence} has none")
        data = robot.data
        data.qpos[robot._qpos_slice] = step.joint_position
        data.qvel[robot._qvel_slice] = step.joint_velocity
        if self.is_valve:
            data.qpos[robot._valve_qpos] = step.object_joint_position[0]
            data.qvel[robot._valve_qvel] = step.object_joint_velocity[0]
            data.act[:] = 0
            mujoco.mj_forward(robot.model, data)
            return
        root, root_v = robot._root_qpos, robot._root_qvel
        data.qpos[root : root + 3] = step.base_position
        data.qpos[root + 3 : root + 7] = step.base_orientation
        data.qvel[root_v : root_v + 3] = step.base_linear_velocity
        data.qvel[root_v + 3 : root_v + 6] = step.base_angular_velocity
        data.act[:] = 0
        mujoco.mj_forward(robot.model, data)

    def rollout(self, steps: Sequence[Any], actions: np.ndarray, window: Window) -> np.ndarray:
        """Tracked positions [horizon, n] (the joints, then the object's joints: the valve
        angle) after each of ``horizon`` open-loop steps from ``steps[window.start]``; the
        action reaching the motors at step t is the logged action of step t - latency (zeros
        before the episode began, like ActionDelay)."""
        self.set_state(steps[window.start])
        episode = steps[window.start].episode
        out = np.empty((window.horizon, len(self.tracked_names)))
        for h in range(window.horizon):
            t = window.start + h - self.latency
            applied = actions[t] if t >= 0 and steps[t].episode == episode else np.zeros(self.n_joints)
            self.robot._physics_step(self.action_offset + self.action_scale * np.clip(applied, -1.0, 1.0))
            out[h, : self.n_joints] = self.robot.joint_pos()
            if self.is_valve:
                out[h, self.n_joints] = self.robot.valve_angle()
        return out


def choose_windows(steps: Sequence[Any], horizon: int, count: int, rng: np.random.Generator) -> list[Window]:
    """Up to ``count`` windows of ``horizon`` steps that stay inside one episode (and do not
    run past a fall), spread over the log."""
    episodes = np.array([s.episode for s in steps])
    ended = np.array([s.terminated for s in steps])
    valid = [
        i for i in range(len(steps) - horizon)
        if episodes[i + horizon] == episodes[i] and not ended[i : i + horizon].any()
    ]
    if not valid:
        raise SimReplayError(
            f"no window of {horizon} steps fits inside one episode of the log ({len(steps)} steps); "
            "use a shorter horizon"
        )
    if len(valid) <= count:
        return [Window(i, horizon) for i in valid]
    picks = np.sort(rng.choice(len(valid), size=count, replace=False))
    return [Window(valid[i], horizon) for i in picks]


def logged_joint_positions(steps: Sequence[Any], window: Window) -> np.ndarray:
    """What the log says the joints (then the object's joints, when logged: the valve angle)
    did after each of the window's actions."""
    return np.array([
        list(steps[window.start + h + 1].joint_position) + list(steps[window.start + h + 1].object_joint_position)
        for h in range(window.horizon)
    ])


def gap_report(
    replayer: SimReplayer, steps: Sequence[Any], actions: np.ndarray, windows: list[Window]
) -> dict[str, Any]:
    """Per-joint divergence between simulated and logged joints over the horizon."""
    errors = np.stack([
        replayer.rollout(steps, actions, w) - logged_joint_positions(steps, w) for w in windows
    ])  # [windows, horizon, joints]
    abs_err = np.abs(errors)
    per_joint = abs_err.mean(axis=(0, 1))
    final = abs_err[:, -1, :].mean(axis=0)
    n = replayer.n_joints
    report: dict[str, Any] = {
        "windows": len(windows),
        "horizon": int(errors.shape[1]),
        "parameters": dict(replayer.params),
        # Over the robot's joints only (comparable across robots and with older reports).
        "mean_abs_error_rad": float(abs_err[:, :, :n].mean()),
        "mean_abs_error_by_horizon_rad": abs_err[:, :, :n].mean(axis=(0, 2)).tolist(),
        "per_joint": [
            {"name": name, "mean_abs_error_rad": float(m), "final_abs_error_rad": float(f)}
            for name, m, f in zip(replayer.spec.joint_names, per_joint[:n], final[:n], strict=True)
        ],
    }
    if replayer.object_names:
        # The valve angle: the task's outcome, replayed open-loop like the joints.
        report["object"] = [
            {"name": name, "mean_abs_error_rad": float(m), "final_abs_error_rad": float(f),
             "mean_abs_error_by_horizon_rad": abs_err[:, :, n + i].mean(axis=0).tolist()}
            for i, (name, m, f) in enumerate(zip(replayer.object_names, per_joint[n:], final[n:], strict=True))
        ]
    return report


def score(replayer: SimReplayer, steps: Sequence[Any], actions: np.ndarray, windows: list[Window]) -> float:
    """Mean squared joint-position error over all windows and horizon steps (rad^2)."""
    total = 0.0
    for w in windows:
        total += float(((replayer.rollout(steps, actions, w) - logged_joint_positions(steps, w)) ** 2).mean())
    return total / len(windows)


def fixed_dynamics_config(params: dict[str, float], env_id: str = QUADRUPED, env_config: Sequence[str] = ()) -> Any:
    """A task config whose 'randomization' always draws exactly ``params`` (other
    parameters nominal, no pushes, no observation noise): the known, perturbed robot that
    tests and demos record logs from. ``env_id``: the quadruped or the valve rig."""
    if env_id == HAND_VALVE:
        return _fixed_valve_config(params)
    if env_id != QUADRUPED:
        raise SimReplayError(f"fixed dynamics: supported envs are {list(SUPPORTED)}, got {env_id!r}")
    from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig
    from sim2real.robots.quadruped.randomize import QuadrupedRandomization
    from sim2real.robots.randomization import IntUniform, Uniform

    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise SimReplayError(f"unknown dynamics parameters {sorted(unknown)}; known: {list(PARAMETERS)}")
    from sim2real.robots.registry import task_config

    base: QuadrupedJoystickConfig = task_config(QUADRUPED, list(env_config))
    nominal_friction = SimReplayer.nominal_floor_friction()

    def fixed(value: float) -> Uniform:
        return Uniform(float(value), float(value))

    latency = int(params.get("latency_steps", 0))
    randomization = QuadrupedRandomization(
        floor_friction=fixed(params.get("floor_friction", nominal_friction)),
        link_mass_scale=fixed(1.0), trunk_added_mass=fixed(params.get("trunk_added_mass", 0.0)),
        trunk_com_offset=fixed(0.0), joint_damping_scale=fixed(params.get("joint_damping_scale", 1.0)),
        armature_scale=fixed(1.0), frictionloss_scale=fixed(1.0),
        kp_scale=fixed(params.get("kp_scale", 1.0)), kd_scale=fixed(params.get("kd_scale", 1.0)),
        latency_steps=IntUniform(latency, latency), observation_noise_scale=0.0,
        push_velocity=fixed(0.0),
    )
    return dataclasses.replace(base, randomization=randomization)


def _fixed_valve_config(params: dict[str, float]) -> Any:
    """HandValveTurnConfig drawing exactly ``params`` (VALVE_PARAMETERS; the rest nominal:
    unit scales, the model's own friction/damping/size/mass, no observation noise)."""
    from sim2real.robots.hand.randomize import ValveRandomization
    from sim2real.robots.hand.valve_turn import HandValveTurnConfig, HandValveTurnEnv
    from sim2real.robots.randomization import IntUniform, Uniform

    unknown = set(params) - set(VALVE_PARAMETERS)
    if unknown:
        raise SimReplayError(f"unknown dynamics parameters {sorted(unknown)}; known: {list(VALVE_PARAMETERS)}")
    env = HandValveTurnEnv(domain_randomization=False)
    try:
        nominal = env._nominal_dynamics()
    finally:
        env.close()

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
    return dataclasses.replace(HandValveTurnConfig(), randomization=randomization)
