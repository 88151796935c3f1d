"""Build a policy's observation from a robot's raw sensor readings, following the model.

A robot controller has joint encoders, an IMU, a state estimator, a joystick and a clock;
the policy wants a vector laid out as its metadata says (``observation_names``, e.g.
``gyro/x``, ``joint_pos/FR_hip_joint``, ``gait_clock/sin``). :class:`ObservationBuilder`
turns one into the other, the same code for every robot that runs our policies: the
PyBullet driver (replay/bullet_robot.py) and a real robot's controller alike. It needs
nothing but numpy, so a controller host installs no simulator and no torch.

What each observation group is made of (the quadruped task's layout; any model whose
entries all come from these groups is served):

| group | entries | from the readings |
|---|---|---|
| ``gyro`` | x, y, z | ``angular_velocity``: IMU rate, rad/s, IMU frame |
| ``gravity`` | x, y, z | ``orientation`` (w, x, y, z; IMU to world): R^T (0, 0, -1) |
| ``command`` | vx, vy, yaw_rate | ``command`` |
| ``joint_pos`` | one per joint name | ``joint_position`` minus the model's ``action_offset`` (the standing pose) |
| ``joint_vel`` | one per joint name | ``joint_velocity`` |
| ``last_action`` | one per action | the action the controller sent last (zeros at start) |
| ``linvel_estimate`` | x, y, z | ``linear_velocity``: the estimator's trunk velocity, m/s, trunk frame |
| ``gait_clock`` | sin, cos | ``time_s``: phase 2 pi ``gait_clock_hz`` t (+ ``clock_phase``) |

Joint readings are given in the model's joint order or as a mapping by joint name. A
model whose metadata names an entry the readings cannot make, or that lacks what the
builder needs (joint_names, action_offset, gait_clock_hz), is refused by
:class:`ObservationLayoutError` naming the entry; a reading missing at build time is a
:class:`MissingReadingError` naming the reading and the entries that need it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

AXES = ("x", "y", "z")
COMMAND_ENTRIES = ("vx", "vy", "yaw_rate")
GROUPS = ("gyro", "gravity", "command", "joint_pos", "joint_vel", "last_action", "linvel_estimate", "gait_clock")

JointReading = Sequence[float] | np.ndarray | Mapping[str, float]


class ObservationLayoutError(ValueError):
    """The model's observation layout asks for something no sensor reading provides."""


class MissingReadingError(ValueError):
    """A reading the model's observation needs was not given."""


@dataclasses.dataclass
class SensorReadings:
    """What a legged robot's controller reads in one control period. Leave out what the
    model does not use; a reading it needs and lacks is a MissingReadingError."""

    joint_position: JointReading | None = None
    """rad, the model's joint order or {joint name: value}."""
    joint_velocity: JointReading | None = None
    """rad/s, as joint_position."""
    orientation: Sequence[float] | np.ndarray | None = None
    """IMU orientation quaternion (w, x, y, z), IMU frame to world (z up)."""
    angular_velocity: Sequence[float] | np.ndarray | None = None
    """IMU angular rate, rad/s, IMU frame."""
    linear_velocity: Sequence[float] | np.ndarray | None = None
    """State estimate of the trunk's linear velocity, m/s, trunk frame."""
    command: Sequence[float] | np.ndarray | None = None
    """(vx m/s, vy m/s, yaw rate rad/s)."""
    time_s: float | None = None
    """Seconds since the controller started the policy (drives the gait clock)."""


def metadata_list(metadata: Mapping[str, Any], key: str, error: type[ValueError] = ObservationLayoutError,
                  needed_by: str = "the observation builder") -> list[Any]:
    """A list-valued model metadata entry, as ONNX metadata and GetPolicyInfo carry it (a
    JSON string) or already parsed; ``error`` (naming ``key``) when absent or not a list."""
    if key not in metadata or metadata[key] is None:
        raise error(f"model metadata has no {key!r}; {needed_by} needs it")
    value = metadata[key]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise error(f"model metadata {key!r}: expected a JSON list, got {value[:80]!r}") from None
    if not isinstance(value, list):
        raise error(f"model metadata {key!r}: expected a list, got {type(value).__name__}")
    return value


def quaternion_gravity(orientation: np.ndarray) -> np.ndarray:
    """Unit gravity (0, 0, -1) in the frame of the orientation (w, x, y, z): R^T (0, 0, -1),
    minus the third row of R."""
    w, x, y, z = orientation / np.linalg.norm(orientation)
    return -np.array([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])


class ObservationBuilder:
    """The observation a model wants, from a robot's readings (see the module docstring)."""

    def __init__(self, metadata: Mapping[str, Any], clock_phase: float = 0.0) -> None:
        self.names: tuple[str, ...] = tuple(metadata_list(metadata, "observation_names"))
        groups = {name.partition("/")[0] for name in self.names}
        for name in self.names:
            group, sep, item = name.partition("/")
            if not sep or group not in GROUPS:
                raise ObservationLayoutError(
                    f"observation entry {name!r}: no sensor reading makes it (known groups: {', '.join(GROUPS)})")
        self.joint_names: tuple[str, ...] = ()
        self.default_pose = np.zeros(0)
        if groups & {"joint_pos", "joint_vel"}:
            self.joint_names = tuple(metadata_list(metadata, "joint_names"))
            offset = metadata_list(metadata, "action_offset")
            if len(offset) != len(self.joint_names):
                raise ObservationLayoutError(
                    f"model metadata 'action_offset' has {len(offset)} entries for {len(self.joint_names)} joints")
            self.default_pose = np.asarray(offset, dtype=np.float64)
        self.action_dim = int(metadata.get("action_dim", 0) or 0)
        self.clock_hz = 0.0
        if "gait_clock" in groups:
            raw = metadata.get("gait_clock_hz")
            try:
                self.clock_hz = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ObservationLayoutError(
                    f"observation entries gait_clock/* need model metadata 'gait_clock_hz' (a number), got {raw!r}"
                ) from None
        self.clock_phase = float(clock_phase)
        self._plan = [self._source(name) for name in self.names]
        self.last_action = np.zeros(sum(1 for n in self.names if n.startswith("last_action/")))

    def _source(self, name: str) -> tuple[str, int]:
        """(reading, index) that fills the entry ``name``."""
        group, _, item = name.partition("/")
        if group in ("gyro", "gravity", "linvel_estimate"):
            if item not in AXES:
                raise ObservationLayoutError(f"observation entry {name!r}: expected {group}/x, /y or /z")
            return group, AXES.index(item)
        if group == "command":
            if item not in COMMAND_ENTRIES:
                raise ObservationLayoutError(f"observation entry {name!r}: expected command/vx, /vy or /yaw_rate")
            return group, COMMAND_ENTRIES.index(item)
        if group in ("joint_pos", "joint_vel"):
            if item not in self.joint_names:
                raise ObservationLayoutError(
                    f"observation entry {name!r}: joint {item!r} is not in the model's joint_names")
            return group, self.joint_names.index(item)
        if group == "gait_clock":
            if item not in ("sin", "cos"):
                raise ObservationLayoutError(f"observation entry {name!r}: expected gait_clock/sin or /cos")
            return group, 0 if item == "sin" else 1
        return group, sum(1 for n in self.names[: self.names.index(name)] if n.startswith("last_action/"))

    def reset(self, clock_phase: float | None = None) -> None:
        """A new episode: the last action back to zeros (and the clock's phase, if given)."""
        self.last_action[:] = 0.0
        if clock_phase is not None:
            self.clock_phase = float(clock_phase)

    def record_action(self, action: Sequence[float] | np.ndarray) -> None:
        """The action just sent to the robot: the next observation's last_action."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.last_action.shape:
            raise ValueError(f"action: expected {self.last_action.shape[0]} values, got shape {action.shape}")
        self.last_action[:] = action

    def _joints(self, reading: JointReading | None, field: str) -> np.ndarray:
        if reading is None:
            raise MissingReadingError(self._missing(field))
        if isinstance(reading, Mapping):
            missing = [j for j in self.joint_names if j not in reading]
            if missing:
                raise MissingReadingError(f"{field}: no reading for joint(s) {missing}")
            return np.array([float(reading[j]) for j in self.joint_names])
        values = np.asarray(reading, dtype=np.float64)
        if values.shape != (len(self.joint_names),):
            raise MissingReadingError(
                f"{field}: expected {len(self.joint_names)} values in the model's joint order, got shape {values.shape}")
        return values

    def _vector(self, reading: Any, field: str, size: int) -> np.ndarray:
        if reading is None:
            raise MissingReadingError(self._missing(field))
        values = np.asarray(reading, dtype=np.float64)
        if values.shape != (size,) or not np.all(np.isfinite(values)):
            raise MissingReadingError(f"{field}: expected {size} finite numbers, got {reading!r}")
        return values

    def _missing(self, field: str) -> str:
        need = {"joint_position": "joint_pos", "joint_velocity": "joint_vel", "orientation": "gravity",
                "angular_velocity": "gyro", "linear_velocity": "linvel_estimate", "command": "command",
                "time_s": "gait_clock"}[field]
        entries = [n for n in self.names if n.startswith(need + "/")]
        return f"reading {field!r} is missing; the model's entries {entries[:3]}{'...' if len(entries) > 3 else ''} need it"

    def build(self, readings: SensorReadings) -> np.ndarray:
        """The observation, float32, in the model's order."""
        sources: dict[str, np.ndarray] = {}
        groups = {group for group, _ in self._plan}
        if "gyro" in groups:
            sources["gyro"] = self._vector(readings.angular_velocity, "angular_velocity", 3)
        if "gravity" in groups:
            sources["gravity"] = quaternion_gravity(self._vector(readings.orientation, "orientation", 4))
        if "linvel_estimate" in groups:
            sources["linvel_estimate"] = self._vector(readings.linear_velocity, "linear_velocity", 3)
        if "command" in groups:
            sources["command"] = self._vector(readings.command, "command", 3)
        if "joint_pos" in groups:
            sources["joint_pos"] = self._joints(readings.joint_position, "joint_position") - self.default_pose
        if "joint_vel" in groups:
            sources["joint_vel"] = self._joints(readings.joint_velocity, "joint_velocity")
        if "gait_clock" in groups:
            if readings.time_s is None or not math.isfinite(readings.time_s):
                raise MissingReadingError(self._missing("time_s"))
            phase = 2 * math.pi * self.clock_hz * readings.time_s + self.clock_phase
            sources["gait_clock"] = np.array([math.sin(phase), math.cos(phase)])
        sources["last_action"] = self.last_action
        return np.array([sources[group][index] for group, index in self._plan], dtype=np.float32)
