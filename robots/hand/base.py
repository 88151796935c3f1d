"""The hand model: loading, PD actuation and named sensor getters.

Tasks subclass :class:`HandBase` (the hand in any scene of ``xmls/``) or :class:`HandEnv`
(the hand with the free cube) and read the hand and its object through these getters, which
hold precomputed slices into ``data.sensordata``/``qpos``/``qvel`` so a control step does no
name lookups.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from sim2real.robots.hand import constants as consts
from sim2real.robots.mujoco_env import MujocoRobotEnv


class HandBase(MujocoRobotEnv):
    """A LEAP-class hand fixed palm up in the scene ``xml_path`` (which includes hand.xml and
    has a ``home`` keyframe), position-controlled at 20 Hz. Knows the hand only; the
    task's object is the subclass's."""

    def __init__(self, xml_path: Path, render_mode: str | None = None) -> None:
        super().__init__(
            xml_path,
            control_dt=consts.CONTROL_DT,
            render_mode=render_mode,
            render_camera="closeup",
        )
        m = self.model
        joints = [self._id(mujoco.mjtObj.mjOBJ_JOINT, n) for n in consts.JOINT_NAMES]
        qpos_idx = np.array([m.jnt_qposadr[j] for j in joints])
        qvel_idx = np.array([m.jnt_dofadr[j] for j in joints])
        # Contiguous joints let the getters return views instead of fancy-index copies.
        if not (np.all(np.diff(qpos_idx) == 1) and np.all(np.diff(qvel_idx) == 1)):
            raise ValueError("hand joints must be contiguous in qpos/qvel, in JOINT_NAMES order")
        self._qpos_slice = slice(int(qpos_idx[0]), int(qpos_idx[-1]) + 1)
        self._qvel_slice = slice(int(qvel_idx[0]), int(qvel_idx[-1]) + 1)
        self._actuator_ids = np.array(
            [self._id(mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in consts.ACTUATOR_NAMES]
        )
        if np.all(np.diff(self._actuator_ids) == 1):
            self._act_slice = slice(int(self._actuator_ids[0]), int(self._actuator_ids[-1]) + 1)
        else:
            raise ValueError("hand actuators must be contiguous, in ACTUATOR_NAMES order")
        self._palm_site = self._id(mujoco.mjtObj.mjOBJ_SITE, consts.PALM_SITE)
        self._sensor = {"palm_pos": self._sensor_slice("palm_pos")}
        self._touch = np.array(
            [self.model.sensor_adr[self._id(mujoco.mjtObj.mjOBJ_SENSOR, n)]
             for n in consts.TOUCH_SENSORS]
        )
        tips = [self._sensor_slice(n) for n in consts.FINGERTIP_POS_SENSORS]
        # Consecutive sensors let fingertip_positions() return one reshaped view.
        if any(a.stop != b.start for a, b in zip(tips, tips[1:], strict=False)):
            raise ValueError("fingertip position sensors must be consecutive in the XML")
        self._tip_pos = slice(tips[0].start, tips[-1].stop)
        self._home_key = self._id(mujoco.mjtObj.mjOBJ_KEY, "home")
        self.n_joints = len(consts.JOINT_NAMES)
        self.joint_lower = m.jnt_range[joints, 0].copy()
        self.joint_upper = m.jnt_range[joints, 1].copy()
        # Valid data from the start: the palm pose (fixed) and a renderable home scene.
        mujoco.mj_resetDataKeyframe(m, self.data, self._home_key)
        mujoco.mj_forward(m, self.data)

    def _sensor_slice(self, name: str) -> slice:
        sid = self._id(mujoco.mjtObj.mjOBJ_SENSOR, name)
        adr, dim = int(self.model.sensor_adr[sid]), int(self.model.sensor_dim[sid])
        return slice(adr, adr + dim)

    # --- what a real LEAP hand measures --------------------------------------------------
    def joint_pos(self) -> np.ndarray:
        """Joint angles, rad, in constants.JOINT_NAMES order (Dynamixel encoders)."""
        return self.data.qpos[self._qpos_slice]

    def joint_vel(self) -> np.ndarray:
        """Joint velocities, rad/s, in constants.JOINT_NAMES order."""
        return self.data.qvel[self._qvel_slice]

    def joint_torques(self) -> np.ndarray:
        """Torque each servo applies (the PD output after its torque limit), N m."""
        return self.data.actuator_force[self._act_slice]

    def palm_pos(self) -> np.ndarray:
        """World position of the palm site (centre of the palm's top surface), m."""
        return self.data.sensordata[self._sensor["palm_pos"]]

    def palm_rotation(self) -> np.ndarray:
        """Rotation matrix (3, 3) of the palm frame in the world (fixed: the hand is bolted)."""
        return self.data.site_xmat[self._palm_site].reshape(3, 3)

    # --- simulator-only state (privileged) ----------------------------------------------
    def fingertip_positions(self) -> np.ndarray:
        """World positions of the fingertip box centres, (4, 3), constants.TIP_NAMES order."""
        return self.data.sensordata[self._tip_pos].reshape(len(consts.TIP_NAMES), 3)

    def fingertip_contact_forces(self) -> np.ndarray:
        """Normal force on each fingertip (touch sensor), N, constants.TIP_NAMES order.

        The hand collides only with the task's object (the cube, the valve), so this is the
        fingertip-object contact force.
        """
        return self.data.sensordata[self._touch]

    def _reset_hand(self, joint_offsets: np.ndarray) -> None:
        """Reset to the home keyframe with the joints offset (clipped to their ranges) and the
        servos targeting the default pose; the caller places its object, then mj_forward."""
        mujoco.mj_resetDataKeyframe(self.model, self.data, self._home_key)
        self.data.qpos[self._qpos_slice] = np.clip(
            consts.DEFAULT_POSE + joint_offsets, self.joint_lower, self.joint_upper
        )
        self.data.ctrl[self._act_slice] = consts.DEFAULT_POSE


class HandEnv(HandBase):
    """A LEAP-class hand fixed palm up with a free cube, position-controlled at 20 Hz."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(consts.SCENE_XML, render_mode=render_mode)
        cube_joint = self._id(mujoco.mjtObj.mjOBJ_JOINT, consts.CUBE_JOINT)
        self._cube_qpos = int(self.model.jnt_qposadr[cube_joint])
        self._cube_qvel = int(self.model.jnt_dofadr[cube_joint])
        self._cube_geom = self._id(mujoco.mjtObj.mjOBJ_GEOM, consts.CUBE_GEOM)
        for name in ("cube_pos", "cube_quat", "cube_linvel", "cube_angvel"):
            self._sensor[name] = self._sensor_slice(name)

    # --- cube state (a camera/tracker on the real setup; exact in simulation) -------------
    def cube_pos(self) -> np.ndarray:
        """World position of the cube centre, m."""
        return self.data.sensordata[self._sensor["cube_pos"]]

    def cube_pos_in_palm(self) -> np.ndarray:
        """Cube centre relative to the palm site, in the palm frame, m."""
        return self.palm_rotation().T @ (self.cube_pos() - self.palm_pos())

    def cube_quat(self) -> np.ndarray:
        """Cube orientation quaternion (w, x, y, z) in the world frame."""
        return self.data.sensordata[self._sensor["cube_quat"]]

    def cube_linvel(self) -> np.ndarray:
        """Cube centre linear velocity in the world frame, m/s (simulator only)."""
        return self.data.sensordata[self._sensor["cube_linvel"]]

    def cube_angvel(self) -> np.ndarray:
        """Cube angular velocity in the world frame, rad/s (simulator only)."""
        return self.data.sensordata[self._sensor["cube_angvel"]]

    def set_home_state(
        self, joint_offsets: np.ndarray, cube_pos: np.ndarray, cube_quat: np.ndarray
    ) -> None:
        """Reset to the home keyframe with joints offset and the cube at a given pose.

        Joint angles are clipped to their ranges; the servos target the default pose.
        """
        self._reset_hand(joint_offsets)
        q = self.data.qpos
        q[self._cube_qpos : self._cube_qpos + 3] = cube_pos
        q[self._cube_qpos + 3 : self._cube_qpos + 7] = cube_quat
        mujoco.mj_forward(self.model, self.data)

    def cube_half_height(self) -> float:
        """Half the cube's edge as currently modelled (randomization may rescale it), m."""
        return float(self.model.geom_size[self._cube_geom, 2])
