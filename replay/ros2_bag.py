"""ROS 2 bags: what real robots record, written and imported without ROS installed.

A legged robot's controller under ROS 2 records standard messages: ``sensor_msgs/JointState``
(encoders), ``sensor_msgs/Imu``, ``nav_msgs/Odometry`` (the state estimator),
``geometry_msgs/Twist`` (the joystick) and the joint commands it sends
(``sensor_msgs/JointState`` positions). :class:`Ros2BagWriter` writes such a bag (rosbag2,
MCAP or sqlite3 storage, with the ``rosbags`` library); the PyBullet driver records one
(replay/bullet_robot.py). :func:`import_ros2_bag` turns a bag into our MCAP log, so
`sim2real replay` evaluates a policy on it and measures the sim-to-real gap as on any log.

The mapping says which topic carries what (KEY=TOPIC; :data:`DEFAULT_TOPICS` where not
given):

| key | message | fills |
|---|---|---|
| joint_states | sensor_msgs/JointState | joint position, velocity (by joint name) |
| imu | sensor_msgs/Imu | trunk orientation, angular velocity (IMU frame) |
| odometry | nav_msgs/Odometry | trunk position, linear velocity (child frame: the velocity estimate) |
| command | geometry_msgs/Twist or TwistStamped | the joystick command (linear x, y; angular z) |
| joint_commands | sensor_msgs/JointState (position) | joint targets; the action, as (target - offset) / scale |
| observation | std_msgs/Float32MultiArray or Float64MultiArray | the policy's observation as it saw it |
| action | std_msgs/Float32MultiArray or Float64MultiArray | the policy's action |
| gait_phase | std_msgs/Float64 | the controller's gait clock phase, rad |

One log step per message on the step topic (``action`` when the bag has it, else
``joint_commands``); every other field is the latest message at or before that time (what
the controller had read). Without an observation topic the observation is built from the
sensor messages by the controller library (serve/observation.py) following the model's
metadata, so a bag that lacks what the model needs is refused naming the entry. A gap of
more than 2.5 control periods between steps starts a new episode (the robot restarted).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import mujoco  # quaternion arithmetic (mju_quat2Mat)
import numpy as np

from sim2real.logformat.mcap_log import LogWriter
from sim2real.serve.observation import (
    MissingReadingError,
    ObservationBuilder,
    ObservationLayoutError,
    SensorReadings,
    metadata_list,
)
from sim2real.v1 import log_pb2

DEFAULT_TOPICS: dict[str, str] = {
    "joint_states": "/joint_states",
    "imu": "/imu/data",
    "odometry": "/odom",
    "command": "/cmd_vel",
    "joint_commands": "/joint_commands",
    "observation": "/policy/observation",
    "action": "/policy/action",
    "gait_phase": "/policy/gait_phase",
}
MESSAGE_TYPES: dict[str, tuple[str, ...]] = {
    "joint_states": ("sensor_msgs/msg/JointState",),
    "imu": ("sensor_msgs/msg/Imu",),
    "odometry": ("nav_msgs/msg/Odometry",),
    "command": ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"),
    "joint_commands": ("sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray"),
    "observation": ("std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray"),
    "action": ("std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray"),
    "gait_phase": ("std_msgs/msg/Float64",),
}
EPISODE_GAP_PERIODS = 2.5
"""A pause longer than this many control periods between steps starts a new episode."""
Storage = Literal["mcap", "sqlite3"]


class Ros2BagError(ValueError):
    """A bag that cannot be imported with the mapping (names the topic or key)."""


def _typestore() -> Any:
    try:
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise RuntimeError("ROS 2 bags need the rosbags package: pip install 'sim2real[robots]'") from None
    return get_typestore(Stores.ROS2_HUMBLE)


def parse_topics(items: Sequence[str]) -> dict[str, str]:
    """``["imu=/my/imu", ...]`` over :data:`DEFAULT_TOPICS`; an unknown key or an entry
    without ``=`` is an error that lists the keys."""
    topics = dict(DEFAULT_TOPICS)
    for item in items:
        key, sep, topic = item.partition("=")
        key, topic = key.strip(), topic.strip()
        if not sep or not topic.startswith("/"):
            raise Ros2BagError(f"topic mapping {item!r}: expected KEY=/topic, e.g. imu=/imu/data")
        if key not in DEFAULT_TOPICS:
            raise Ros2BagError(f"topic mapping {item!r}: unknown key {key!r}; keys: {', '.join(DEFAULT_TOPICS)}")
        topics[key] = topic
    return topics


def is_ros2_bag(path: Path) -> bool:
    """A rosbag2 folder (it has metadata.yaml)."""
    return Path(path).is_dir() and (Path(path) / "metadata.yaml").is_file()


# --- writing -------------------------------------------------------------------------------
class Ros2BagWriter:
    """Write a legged robot's control loop as a ROS 2 bag of standard messages."""

    def __init__(self, path: Path, joint_names: Sequence[str], storage: Storage = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path}: a ROS 2 bag is a new folder; this one exists")
        self._ts = _typestore()
        self.joint_names = list(joint_names)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections = {}
        types = {"joint_states": "sensor_msgs/msg/JointState", "imu": "sensor_msgs/msg/Imu",
                 "odometry": "nav_msgs/msg/Odometry", "command": "geometry_msgs/msg/Twist",
                 "joint_commands": "sensor_msgs/msg/JointState", "observation": "std_msgs/msg/Float32MultiArray",
                 "action": "std_msgs/msg/Float32MultiArray", "gait_phase": "std_msgs/msg/Float64"}
        for key, msgtype in types.items():
            self._connections[key] = self._writer.add_connection(DEFAULT_TOPICS[key], msgtype, typestore=self._ts)
        self.messages = 0

    def _header(self, t_ns: int, frame: str) -> Any:
        T = self._ts.types
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000,
                                                                               nanosec=t_ns % 1_000_000_000),
                                        frame_id=frame)

    def _write(self, key: str, t_ns: int, message: Any) -> None:
        data = self._ts.serialize_cdr(message, message.__msgtype__)
        self._writer.write(self._connections[key], t_ns, data)
        self.messages += 1

    def write_step(self, t_ns: int, *, joint_position: np.ndarray, joint_velocity: np.ndarray, joint_effort: np.ndarray,
                   orientation: np.ndarray, angular_velocity: np.ndarray, base_position: np.ndarray,
                   linear_velocity: np.ndarray, command: np.ndarray, joint_target: np.ndarray,
                   observation: np.ndarray | None = None, action: np.ndarray | None = None,
                   gait_phase: float | None = None) -> None:
        """One control tick: the sensors the controller read, the command, what it sent.
        ``orientation`` (w, x, y, z) trunk to world; ``angular_velocity`` and
        ``linear_velocity`` in the trunk frame."""
        T = self._ts.types
        Vector3, Quaternion = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
        f64 = np.float64
        self._write("joint_states", t_ns, T["sensor_msgs/msg/JointState"](
            header=self._header(t_ns, "base_link"), name=self.joint_names, position=np.asarray(joint_position, f64),
            velocity=np.asarray(joint_velocity, f64), effort=np.asarray(joint_effort, f64)))
        w, x, y, z = (float(v) for v in orientation)
        unknown = np.zeros(9)
        unknown[0] = -1.0  # REP 145: covariance[0] = -1, the field is not provided
        self._write("imu", t_ns, T["sensor_msgs/msg/Imu"](
            header=self._header(t_ns, "imu_link"), orientation=Quaternion(x=x, y=y, z=z, w=w),
            orientation_covariance=np.zeros(9), angular_velocity=Vector3(*(float(v) for v in angular_velocity)),
            angular_velocity_covariance=np.zeros(9), linear_acceleration=Vector3(0.0, 0.0, 0.0),
            linear_acceleration_covariance=unknown))
        pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](*(float(v) for v in base_position)),
                                           orientation=Quaternion(x=x, y=y, z=z, w=w))
        twist = T["geometry_msgs/msg/Twist"](linear=Vector3(*(float(v) for v in linear_velocity)),
                                             angular=Vector3(*(float(v) for v in angular_velocity)))
        self._write("odometry", t_ns, T["nav_msgs/msg/Odometry"](
            header=self._header(t_ns, "odom"), child_frame_id="base_link",
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36))))
        cx, cy, cyaw = (float(v) for v in command)
        self._write("command", t_ns, T["geometry_msgs/msg/Twist"](linear=Vector3(cx, cy, 0.0),
                                                                   angular=Vector3(0.0, 0.0, cyaw)))
        self._write("joint_commands", t_ns, T["sensor_msgs/msg/JointState"](
            header=self._header(t_ns, "base_link"), name=self.joint_names, position=np.asarray(joint_target, f64),
            velocity=np.zeros(0), effort=np.zeros(0)))
        for key, values in (("observation", observation), ("action", action)):
            if values is not None:
                array = np.asarray(values, np.float32)
                layout = T["std_msgs/msg/MultiArrayLayout"](
                    dim=[T["std_msgs/msg/MultiArrayDimension"](label=key, size=len(array), stride=len(array))],
                    data_offset=0)
                self._write(key, t_ns, T["std_msgs/msg/Float32MultiArray"](layout=layout, data=array))
        if gait_phase is not None:
            self._write("gait_phase", t_ns, T["std_msgs/msg/Float64"](data=float(gait_phase)))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# --- importing -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Stream:
    """One topic's messages, deserialized: times (ns, sorted) and messages."""

    key: str
    topic: str
    times: np.ndarray
    messages: list[Any]

    def at(self, t_ns: int) -> Any | None:
        """The latest message at or before ``t_ns`` (None before the first)."""
        i = int(np.searchsorted(self.times, t_ns, side="right")) - 1
        return self.messages[i] if i >= 0 else None


def _read_streams(path: Path, topics: Mapping[str, str], wanted: set[str]) -> dict[str, _Stream]:
    from rosbags.rosbag2 import Reader

    ts = _typestore()
    try:
        reader = Reader(path)
        reader.open()
    except Exception as err:  # rosbags raises its own errors for a damaged or foreign folder
        raise Ros2BagError(f"{path}: not a readable ROS 2 bag: {err}") from None
    try:
        by_topic = {c.topic: c for c in reader.connections}
        streams: dict[str, _Stream] = {}
        for key in sorted(wanted):
            topic = topics[key]
            connection = by_topic.get(topic)
            if connection is None:
                continue
            if connection.msgtype not in MESSAGE_TYPES[key]:
                raise Ros2BagError(f"{path}: topic {topic!r} ({key}) carries {connection.msgtype}; "
                                   f"expected {' or '.join(MESSAGE_TYPES[key])}")
            times, messages = [], []
            for _, t_ns, raw in reader.messages(connections=[connection]):
                times.append(t_ns)
                messages.append(ts.deserialize_cdr(raw, connection.msgtype))
            order = np.argsort(np.asarray(times, dtype=np.int64), kind="stable")
            streams[key] = _Stream(key, topic, np.asarray(times, dtype=np.int64)[order], [messages[i] for i in order])
        return streams
    finally:
        reader.close()


def _by_name(message: Any, joint_names: Sequence[str], field: str, topic: str) -> np.ndarray:
    values = np.asarray(getattr(message, field), dtype=np.float64)
    names = list(message.name)
    if not names:  # no names: the values are in the model's joint order
        if len(values) != len(joint_names):
            raise Ros2BagError(f"topic {topic!r}: {field} has {len(values)} values and no names; the model has "
                               f"{len(joint_names)} joints")
        return values
    missing = [j for j in joint_names if j not in names]
    if missing:
        raise Ros2BagError(f"topic {topic!r}: no {field} for joint(s) {missing} (the bag names {names})")
    if len(values) != len(names):
        raise Ros2BagError(f"topic {topic!r}: {len(names)} names but {len(values)} {field} values")
    return np.array([values[names.index(j)] for j in joint_names])


def _quaternion(q: Any) -> np.ndarray:
    return np.array([q.w, q.x, q.y, q.z], dtype=np.float64)


def _vector(v: Any) -> np.ndarray:
    return np.array([v.x, v.y, v.z], dtype=np.float64)


def rotation_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion (w, x, y, z), normalized first."""
    q = np.asarray(q, dtype=np.float64)
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, q / np.linalg.norm(q))
    return matrix.reshape(3, 3)


def _metadata_list(metadata: Mapping[str, Any], key: str) -> list[Any]:
    return metadata_list(metadata, key, Ros2BagError, "importing a ROS 2 bag")


def import_ros2_bag(path: Path, metadata: Mapping[str, Any], out: Path, topics: Sequence[str] = ()) -> dict[str, Any]:
    """Convert the bag at ``path`` into our MCAP log at ``out`` for the model whose
    ``metadata`` (ONNX metadata: names, action scale and offset, rate) lays out the
    observation and action. Returns what was imported (steps, episodes, topics used)."""
    mapping = parse_topics(topics)
    if not is_ros2_bag(path):
        raise Ros2BagError(f"{path}: not a ROS 2 bag (a rosbag2 folder with metadata.yaml)")
    joint_names = _metadata_list(metadata, "joint_names")
    offset = np.asarray(_metadata_list(metadata, "action_offset"), dtype=np.float64)
    scale = np.asarray(_metadata_list(metadata, "action_scale"), dtype=np.float64)
    rate = float(json.loads(metadata["control_rate_hz"]) if isinstance(metadata.get("control_rate_hz"), str)
                 else metadata.get("control_rate_hz") or 0.0)
    if not rate > 0:
        raise Ros2BagError("model metadata has no control_rate_hz; importing a ROS 2 bag needs it")
    streams = _read_streams(Path(path), mapping, set(mapping))
    step_key = "action" if "action" in streams else "joint_commands"
    if step_key not in streams:
        raise Ros2BagError(f"{path}: the bag has neither {mapping['action']!r} (action) nor "
                           f"{mapping['joint_commands']!r} (joint_commands): nothing says what the robot was told; "
                           f"its topics: {_topics(path)}")
    builder = None
    if "observation" not in streams:
        try:
            builder = ObservationBuilder(metadata)
        except ObservationLayoutError as err:
            raise Ros2BagError(f"the model's observation cannot be built from sensor messages: {err}") from None
        groups = {name.partition("/")[0] for name in builder.names}
        needs = {"joint_pos": "joint_states", "joint_vel": "joint_states", "gyro": "imu", "gravity": "imu",
                 "linvel_estimate": "odometry", "command": "command", "gait_clock": "gait_phase"}
        for group, key in needs.items():
            if group in groups and key not in streams:
                raise Ros2BagError(
                    f"{path}: the model's observation entries {group}/* need topic {mapping[key]!r} ({key}), which the "
                    f"bag lacks (map it with {key}=/topic, or give the observation topic); its topics: {_topics(path)}")
    step_stream = streams[step_key]
    period_ns = 1e9 / rate
    info = log_pb2.LogInfo(
        source="ros2", env_id=str(metadata.get("env_id", "")), robot=str(metadata.get("robot", "")),
        control_rate_hz=rate, observation_names=_metadata_list(metadata, "observation_names"),
        action_names=_metadata_list(metadata, "action_names"), joint_names=joint_names,
        action_scale=scale.tolist(), action_offset=offset.tolist(),
        env_config=_metadata_list(metadata, "env_config") if metadata.get("env_config") else [],
        tags={"imported_from": str(path), "step_topic": step_stream.topic},
    )
    episode, sequence, skipped = 0, 0, 0
    last_t: int | None = None
    start_t = 0
    written = 0
    with LogWriter(out, info) as writer:
        for t_ns, message in zip(step_stream.times.tolist(), step_stream.messages, strict=True):
            at = {key: stream.at(t_ns) for key, stream in streams.items()}
            at[step_key] = message  # itself, even where two share a time stamp
            if any(at[key] is None for key in streams if key not in ("observation", "action")) and builder is not None:
                skipped += 1  # a sensor has not reported yet: the controller could not have acted
                continue
            if last_t is not None and t_ns - last_t > EPISODE_GAP_PERIODS * period_ns:
                episode += 1
                sequence = 0
                if builder is not None:
                    builder.reset()
            if sequence == 0:
                start_t = t_ns
                writer.write_episode(log_pb2.EpisodeInfo(episode=episode, seed=0, dynamics_json="{}"))
            last_t = t_ns
            step = _step(at, streams, joint_names, offset, scale, builder, (t_ns - start_t) / 1e9, mapping)
            step.timestamp_ns = int(t_ns)
            step.sequence = sequence
            step.episode = episode
            writer.write(step)
            sequence += 1
            written += 1
    if written == 0:
        raise Ros2BagError(f"{path}: no step could be imported ({skipped} {step_key} messages came before the "
                           "first sensor messages)")
    return {"steps": written, "episodes": episode + 1, "skipped": skipped, "step_topic": step_stream.topic,
            "topics": {k: s.topic for k, s in streams.items()}, "observation": "topic" if builder is None else "built"}


def _topics(path: Path) -> list[str]:
    from rosbags.rosbag2 import Reader

    reader = Reader(path)
    reader.open()
    try:
        return sorted(c.topic for c in reader.connections)
    finally:
        reader.close()


def _array(message: Any) -> np.ndarray:
    return np.asarray(message.data, dtype=np.float64)


def _step(at: dict[str, Any], streams: dict[str, _Stream], joint_names: Sequence[str], offset: np.ndarray,
          scale: np.ndarray, builder: ObservationBuilder | None, time_s: float,
          mapping: Mapping[str, str]) -> log_pb2.RobotStep:
    fields: dict[str, Any] = {}
    joints = at.get("joint_states")
    if joints is not None:
        fields["joint_position"] = _by_name(joints, joint_names, "position", mapping["joint_states"])
        if len(joints.velocity):
            fields["joint_velocity"] = _by_name(joints, joint_names, "velocity", mapping["joint_states"])
    orientation = angular = None
    imu = at.get("imu")
    if imu is not None:
        orientation, angular = _quaternion(imu.orientation), _vector(imu.angular_velocity)
    odom = at.get("odometry")
    local_velocity = None
    if odom is not None:
        fields["base_position"] = _vector(odom.pose.pose.position)
        pose_orientation = _quaternion(odom.pose.pose.orientation)
        orientation = orientation if orientation is not None else pose_orientation
        local_velocity = _vector(odom.twist.twist.linear)
        # The log keeps the trunk's linear velocity in the world frame (as MuJoCo's free joint).
        fields["base_linear_velocity"] = rotation_matrix(pose_orientation) @ local_velocity
        angular = angular if angular is not None else _vector(odom.twist.twist.angular)
    if orientation is not None:
        fields["base_orientation"] = orientation
    if angular is not None:
        fields["base_angular_velocity"] = angular
    target = None
    commands = at.get("joint_commands")
    if commands is not None:
        target = (_array(commands) if not hasattr(commands, "name")
                  else _by_name(commands, joint_names, "position", mapping["joint_commands"]))
        fields["joint_target"] = target
    if at.get("action") is not None:
        action = _array(at["action"])
    elif target is not None:
        action = (target - offset) / scale
    else:
        raise Ros2BagError("no action and no joint command at this step")
    if at.get("observation") is not None:
        observation = _array(at["observation"])
    else:
        assert builder is not None
        command = None
        twist = at.get("command")
        if twist is not None:
            twist = twist.twist if hasattr(twist, "twist") else twist
            command = np.array([twist.linear.x, twist.linear.y, twist.angular.z])
        phase = at.get("gait_phase")
        if phase is not None:
            builder.clock_phase = float(phase.data)
        try:
            observation = builder.build(SensorReadings(
                joint_position=fields.get("joint_position"), joint_velocity=fields.get("joint_velocity"),
                orientation=orientation, angular_velocity=angular, linear_velocity=local_velocity,
                command=command, time_s=0.0 if phase is not None else time_s))
        except MissingReadingError as err:
            raise Ros2BagError(f"building the observation: {err}") from None
        builder.record_action(np.clip(action, -1.0, 1.0))
    if not (np.all(np.isfinite(observation)) and np.all(np.isfinite(action))):
        raise Ros2BagError("a step's observation or action is not finite")
    return log_pb2.RobotStep(observation=observation.astype(np.float32).tolist(),
                             action=action.astype(np.float32).tolist(),
                             **{k: np.asarray(v, np.float32).tolist() for k, v in fields.items()})

