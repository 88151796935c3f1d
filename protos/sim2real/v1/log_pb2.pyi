from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LogInfo(_message.Message):
    __slots__ = ("source", "env_id", "robot", "control_rate_hz", "observation_names", "action_names", "joint_names", "action_scale", "action_offset", "model_name", "model_version", "model_sha256", "dynamics_json", "tags", "object_joint_names", "env_config")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    ROBOT_FIELD_NUMBER: _ClassVar[int]
    CONTROL_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_NAMES_FIELD_NUMBER: _ClassVar[int]
    ACTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    JOINT_NAMES_FIELD_NUMBER: _ClassVar[int]
    ACTION_SCALE_FIELD_NUMBER: _ClassVar[int]
    ACTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DYNAMICS_JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_JOINT_NAMES_FIELD_NUMBER: _ClassVar[int]
    ENV_CONFIG_FIELD_NUMBER: _ClassVar[int]
    source: str
    env_id: str
    robot: str
    control_rate_hz: float
    observation_names: _containers.RepeatedScalarFieldContainer[str]
    action_names: _containers.RepeatedScalarFieldContainer[str]
    joint_names: _containers.RepeatedScalarFieldContainer[str]
    action_scale: _containers.RepeatedScalarFieldContainer[float]
    action_offset: _containers.RepeatedScalarFieldContainer[float]
    model_name: str
    model_version: int
    model_sha256: str
    dynamics_json: str
    tags: _containers.ScalarMap[str, str]
    object_joint_names: _containers.RepeatedScalarFieldContainer[str]
    env_config: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., env_id: _Optional[str] = ..., robot: _Optional[str] = ..., control_rate_hz: _Optional[float] = ..., observation_names: _Optional[_Iterable[str]] = ..., action_names: _Optional[_Iterable[str]] = ..., joint_names: _Optional[_Iterable[str]] = ..., action_scale: _Optional[_Iterable[float]] = ..., action_offset: _Optional[_Iterable[float]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., model_sha256: _Optional[str] = ..., dynamics_json: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., object_joint_names: _Optional[_Iterable[str]] = ..., env_config: _Optional[_Iterable[str]] = ...) -> None: ...

class EpisodeInfo(_message.Message):
    __slots__ = ("episode", "seed", "dynamics_json")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DYNAMICS_JSON_FIELD_NUMBER: _ClassVar[int]
    episode: int
    seed: int
    dynamics_json: str
    def __init__(self, episode: _Optional[int] = ..., seed: _Optional[int] = ..., dynamics_json: _Optional[str] = ...) -> None: ...

class RobotStep(_message.Message):
    __slots__ = ("timestamp_ns", "sequence", "episode", "observation", "action", "joint_position", "joint_velocity", "base_orientation", "base_angular_velocity", "model_name", "model_version", "latency_ns", "reward", "terminated", "truncated", "fallback", "base_position", "base_linear_velocity", "joint_target", "object_joint_position", "object_joint_velocity")
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    JOINT_POSITION_FIELD_NUMBER: _ClassVar[int]
    JOINT_VELOCITY_FIELD_NUMBER: _ClassVar[int]
    BASE_ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    BASE_ANGULAR_VELOCITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    BASE_POSITION_FIELD_NUMBER: _ClassVar[int]
    BASE_LINEAR_VELOCITY_FIELD_NUMBER: _ClassVar[int]
    JOINT_TARGET_FIELD_NUMBER: _ClassVar[int]
    OBJECT_JOINT_POSITION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_JOINT_VELOCITY_FIELD_NUMBER: _ClassVar[int]
    timestamp_ns: int
    sequence: int
    episode: int
    observation: _containers.RepeatedScalarFieldContainer[float]
    action: _containers.RepeatedScalarFieldContainer[float]
    joint_position: _containers.RepeatedScalarFieldContainer[float]
    joint_velocity: _containers.RepeatedScalarFieldContainer[float]
    base_orientation: _containers.RepeatedScalarFieldContainer[float]
    base_angular_velocity: _containers.RepeatedScalarFieldContainer[float]
    model_name: str
    model_version: int
    latency_ns: int
    reward: float
    terminated: bool
    truncated: bool
    fallback: bool
    base_position: _containers.RepeatedScalarFieldContainer[float]
    base_linear_velocity: _containers.RepeatedScalarFieldContainer[float]
    joint_target: _containers.RepeatedScalarFieldContainer[float]
    object_joint_position: _containers.RepeatedScalarFieldContainer[float]
    object_joint_velocity: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, timestamp_ns: _Optional[int] = ..., sequence: _Optional[int] = ..., episode: _Optional[int] = ..., observation: _Optional[_Iterable[float]] = ..., action: _Optional[_Iterable[float]] = ..., joint_position: _Optional[_Iterable[float]] = ..., joint_velocity: _Optional[_Iterable[float]] = ..., base_orientation: _Optional[_Iterable[float]] = ..., base_angular_velocity: _Optional[_Iterable[float]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., latency_ns: _Optional[int] = ..., reward: _Optional[float] = ..., terminated: _Optional[bool] = ..., truncated: _Optional[bool] = ..., fallback: _Optional[bool] = ..., base_position: _Optional[_Iterable[float]] = ..., base_linear_velocity: _Optional[_Iterable[float]] = ..., joint_target: _Optional[_Iterable[float]] = ..., object_joint_position: _Optional[_Iterable[float]] = ..., object_joint_velocity: _Optional[_Iterable[float]] = ...) -> None: ...
