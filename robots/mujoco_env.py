"""What every robot env here shares: a MuJoCo model stepped at a control rate, actuation
latency, observation noise, offscreen rendering, and the deployment spec a robot
controller needs to run a policy trained on the env.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np


@dataclasses.dataclass(frozen=True)
class DeploymentSpec:
    """What a controller on the real robot needs besides the policy weights.

    ``joint target = default_pose + action_scale * action`` with the action in [-1, 1],
    sent to a PD loop with gains ``kp``/``kd`` at ``control_rate_hz``. Exported with the
    ONNX model as metadata.
    """

    env_id: str
    robot: str
    observation_names: tuple[str, ...]
    action_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    default_pose: tuple[float, ...]
    action_scale: float | tuple[float, ...]
    """One scale for every joint, or one per joint (in ``joint_names`` order)."""
    kp: tuple[float, ...]
    kd: tuple[float, ...]
    torque_limits: tuple[float, ...]
    control_rate_hz: float
    physics_dt: float
    velocity_limits: tuple[float, ...] | None = None
    """Joint speed limits, rad/s, where the robot's description states them (a record for
    the controller: the simulation does not enforce them)."""
    robot_sha256: str | None = None
    """A robot built from files (a quadruped spec): the hash of its spec and description."""

    @property
    def action_scales(self) -> tuple[float, ...]:
        """The action scale of each joint."""
        if isinstance(self.action_scale, (int, float)):
            return (float(self.action_scale),) * len(self.joint_names)
        return tuple(float(x) for x in self.action_scale)

    def joint_targets(self, action: np.ndarray) -> np.ndarray:
        """Joint position targets for a policy action in [-1, 1]."""
        return np.asarray(self.default_pose) + np.asarray(self.action_scales) * np.clip(action, -1.0, 1.0)


class ActionDelay:
    """A FIFO that returns the action commanded ``latency`` control steps ago.

    Models the time between a controller reading its sensors and the motors acting on the
    resulting command (bus, compute, network). Before the first real action the queue
    holds zeros, i.e. the default pose.
    """

    def __init__(self, action_dim: int, max_latency: int) -> None:
        self._action_dim = action_dim
        self._queue: deque[np.ndarray] = deque(maxlen=max_latency + 1)
        self.latency = 0
        self.reset(0)

    def reset(self, latency: int) -> None:
        """Empty the queue and set the latency (in control steps) for the next episode."""
        if latency < 0 or latency >= self._queue.maxlen:  # type: ignore[operator]
            raise ValueError(
                f"latency must be in 0..{self._queue.maxlen - 1} control steps, got {latency}"  # type: ignore[operator]
            )
        self.latency = latency
        self._queue.clear()
        for _ in range(self._queue.maxlen):  # type: ignore[arg-type]
            self._queue.append(np.zeros(self._action_dim))

    def push(self, action: np.ndarray) -> np.ndarray:
        """Queue ``action`` and return the one that reaches the motors now."""
        self._queue.append(action)
        return self._queue[-1 - self.latency]


def flatten_names(groups: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, ...]:
    """``(("gyro", ("x", "y")),)`` -> ``("gyro/x", "gyro/y")``: observation entry names."""
    return tuple(f"{group}/{item}" for group, items in groups for item in items)


def uniform_noise(rng: np.random.Generator, scale: np.ndarray) -> np.ndarray:
    """Additive noise U(-scale, scale) per element (Playground's observation noise model)."""
    return scale * (2.0 * rng.random(scale.shape) - 1.0)


class MujocoRobotEnv(gym.Env[np.ndarray, np.ndarray]):
    """A MuJoCo model stepped ``n_substeps`` physics steps per control step.

    Subclasses own the task: observation, reward, termination, randomization.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        model: Path | mujoco.MjModel,
        control_dt: float,
        render_mode: str | None,
        render_camera: str | int,
        render_size: tuple[int, int] = (480, 640),
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        # A path is loaded; a compiled model (a robot built from its spec) is used as is:
        # the env owns it, and domain randomization edits it in place.
        self.model = model if isinstance(model, mujoco.MjModel) else mujoco.MjModel.from_xml_path(str(model))
        self.data = mujoco.MjData(self.model)
        physics_dt = float(self.model.opt.timestep)
        n_substeps = round(control_dt / physics_dt)
        if n_substeps < 1 or abs(n_substeps * physics_dt - control_dt) > 1e-9:
            raise ValueError(
                f"control_dt={control_dt} must be a whole multiple of the model timestep "
                f"{physics_dt}"
            )
        self.n_substeps = n_substeps
        self.control_dt = control_dt
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": round(1.0 / control_dt)}
        self._render_camera = render_camera
        self._render_size = render_size
        self._renderer: mujoco.Renderer | None = None

    def _id(self, obj: mujoco.mjtObj, name: str) -> int:
        """Look up a model element by name; a clear error when the XML lacks it."""
        idx = mujoco.mj_name2id(self.model, obj, name)
        if idx < 0:
            raise KeyError(f"{obj.name} named {name!r} not found in the model")
        return idx

    def _refresh_derived_constants(self) -> None:
        """Recompute what MuJoCo derives from masses and inertias (subtree masses,
        constraint weights); call after domain randomization edits the model."""
        mujoco.mj_setConst(self.model, self.data)

    def _physics_step(self, ctrl: np.ndarray) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def set_render_size(self, height: int, width: int) -> None:
        """Frame size of :meth:`render` (grows the offscreen buffer when needed)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        vis = self.model.vis.global_
        vis.offwidth = max(int(vis.offwidth), width)
        vis.offheight = max(int(vis.offheight), height)
        self._render_size = (height, width)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """An RGB frame (H, W, 3) uint8 from the env's camera when render_mode is rgb_array.

        Offscreen rendering needs an OpenGL backend: set MUJOCO_GL=egl on a headless Linux
        machine (Mesa's software EGL works without a GPU), glfw with a display.
        """
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        if self._renderer is None:
            height, width = self._render_size
            self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        self._renderer.update_scene(self.data, camera=self._render_camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()
