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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

QUADRUPED = "sim2real/QuadrupedJoystick-v0"
HAND_VALVE = "sim2real/HandValveTurn-v0"


def _env_class(env_id: str) -> Any:
    from sim2real.robots import registry

    return registry.get_record(env_id).load_class() if env_id in registry.ENVS else None


def replayable(env_id: str) -> bool:
    """Whether ``env_id``'s env can be replayed: its class says how (REPLAY_PARAMETERS,
    REPLAY_STATE_FIELDS, OBJECT_JOINT_NAMES, replay_nominal_parameters,
    apply_replay_parameters, set_replay_state, replay_positions, fixed_dynamics_config):
    a task plugs in there, with no edit here."""
    cls = _env_class(env_id)
    return cls is not None and hasattr(cls, "REPLAY_PARAMETERS")


def supported_envs() -> tuple[str, ...]:
    from sim2real.robots import registry

    return tuple(env_id for env_id in registry.ENVS if replayable(env_id))


def replay_parameters(env_id: str) -> tuple[str, ...]:
    """The knobs system identification may search on ``env_id``."""
    return tuple(_env_class(env_id).REPLAY_PARAMETERS)


def default_sysid_parameters(env_id: str) -> tuple[str, ...]:
    """What `sim2real replay --sysid` identifies on ``env_id`` when not told."""
    return tuple(_env_class(env_id).DEFAULT_SYSID_PARAMETERS)


def replay_state_fields(env_id: str) -> tuple[str, ...]:
    """The RobotStep fields a log of ``env_id`` needs for sim replay."""
    return tuple(_env_class(env_id).REPLAY_STATE_FIELDS)


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
        if not replayable(env_id):
            raise SimReplayError(
                f"sim replay supports {list(supported_envs())}; the log is from {env_id!r} "
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
        self.parameters: tuple[str, ...] = tuple(self.robot.REPLAY_PARAMETERS)
        # What a rollout returns and is scored on: the joints, then the object's joints.
        self.object_names: tuple[str, ...] = tuple(self.robot.OBJECT_JOINT_NAMES)
        self.tracked_names = tuple(self.spec.joint_names) + self.object_names
        self.ranges = self.robot.config.randomization
        self.set_parameters({})

    def close(self) -> None:
        self.env.close()

    # --- dynamics -----------------------------------------------------------------------
    def nominal_parameters(self) -> dict[str, float]:
        return dict(self.robot.replay_nominal_parameters())

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
        self.latency = int(self.robot.apply_replay_parameters(p))
        self.params = p

    # --- state --------------------------------------------------------------------------
    def set_state(self, step: Any) -> None:
        """Write a logged step's measured state into the simulator."""
        for field in self.robot.REPLAY_STATE_FIELDS:
            if not len(getattr(step, field)):
                raise SimReplayError(f"sim replay needs {field} in every step; step {step.sequence} has none")
        self.robot.set_replay_state(step)

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
            out[h] = self.robot.replay_positions()
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
    """A task config of ``env_id`` (``env_config`` applied: robot=a1, ...) whose
    'randomization' always draws exactly ``params`` (other parameters nominal, no pushes,
    no observation noise): the known, perturbed robot that tests and demos record logs
    from. The env class says how (its fixed_dynamics_config)."""
    from sim2real.robots import registry

    if not replayable(env_id):
        raise SimReplayError(f"fixed dynamics: supported envs are {list(supported_envs())}, got {env_id!r}")
    config = registry.task_config(env_id, list(env_config))
    env = registry.make(env_id, domain_randomization=False, config=config).unwrapped
    try:
        return env.fixed_dynamics_config(config, params)
    except ValueError as err:
        raise SimReplayError(str(err)) from None
    finally:
        env.close()
