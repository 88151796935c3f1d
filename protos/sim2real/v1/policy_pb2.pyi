from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActRequest(_message.Message):
    __slots__ = ("observation", "model_name", "sequence", "client_time_ns", "reset_rate_limit")
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    RESET_RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    observation: _containers.RepeatedScalarFieldContainer[float]
    model_name: str
    sequence: int
    client_time_ns: int
    reset_rate_limit: bool
    def __init__(self, observation: _Optional[_Iterable[float]] = ..., model_name: _Optional[str] = ..., sequence: _Optional[int] = ..., client_time_ns: _Optional[int] = ..., reset_rate_limit: _Optional[bool] = ...) -> None: ...

class StepError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ActResponse(_message.Message):
    __slots__ = ("action", "sequence", "model_name", "model_version", "server_compute_ns", "client_time_ns", "clamped", "rate_limited", "error")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_COMPUTE_NS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CLAMPED_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    action: _containers.RepeatedScalarFieldContainer[float]
    sequence: int
    model_name: str
    model_version: int
    server_compute_ns: int
    client_time_ns: int
    clamped: bool
    rate_limited: bool
    error: StepError
    def __init__(self, action: _Optional[_Iterable[float]] = ..., sequence: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., server_compute_ns: _Optional[int] = ..., client_time_ns: _Optional[int] = ..., clamped: _Optional[bool] = ..., rate_limited: _Optional[bool] = ..., error: _Optional[_Union[StepError, _Mapping]] = ...) -> None: ...

class PolicyInfoRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("model_name", "model_version", "observation_dim", "action_dim", "observation_names", "action_names", "joint_names", "action_scale", "action_offset", "control_rate_hz", "kp", "kd", "env_id", "training_steps", "sim2real_version", "execution_provider", "metadata", "model_sha256", "max_action_delta", "nonfinite_policy")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_DIM_FIELD_NUMBER: _ClassVar[int]
    ACTION_DIM_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_NAMES_FIELD_NUMBER: _ClassVar[int]
    ACTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    JOINT_NAMES_FIELD_NUMBER: _ClassVar[int]
    ACTION_SCALE_FIELD_NUMBER: _ClassVar[int]
    ACTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONTROL_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    KP_FIELD_NUMBER: _ClassVar[int]
    KD_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_STEPS_FIELD_NUMBER: _ClassVar[int]
    SIM2REAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTION_DELTA_FIELD_NUMBER: _ClassVar[int]
    NONFINITE_POLICY_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    observation_dim: int
    action_dim: int
    observation_names: _containers.RepeatedScalarFieldContainer[str]
    action_names: _containers.RepeatedScalarFieldContainer[str]
    joint_names: _containers.RepeatedScalarFieldContainer[str]
    action_scale: _containers.RepeatedScalarFieldContainer[float]
    action_offset: _containers.RepeatedScalarFieldContainer[float]
    control_rate_hz: float
    kp: _containers.RepeatedScalarFieldContainer[float]
    kd: _containers.RepeatedScalarFieldContainer[float]
    env_id: str
    training_steps: int
    sim2real_version: str
    execution_provider: str
    metadata: _containers.ScalarMap[str, str]
    model_sha256: str
    max_action_delta: float
    nonfinite_policy: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., observation_dim: _Optional[int] = ..., action_dim: _Optional[int] = ..., observation_names: _Optional[_Iterable[str]] = ..., action_names: _Optional[_Iterable[str]] = ..., joint_names: _Optional[_Iterable[str]] = ..., action_scale: _Optional[_Iterable[float]] = ..., action_offset: _Optional[_Iterable[float]] = ..., control_rate_hz: _Optional[float] = ..., kp: _Optional[_Iterable[float]] = ..., kd: _Optional[_Iterable[float]] = ..., env_id: _Optional[str] = ..., training_steps: _Optional[int] = ..., sim2real_version: _Optional[str] = ..., execution_provider: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., model_sha256: _Optional[str] = ..., max_action_delta: _Optional[float] = ..., nonfinite_policy: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("model_name", "serving_version", "path", "execution_provider", "rejected", "version_policy", "problem")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    VERSION_POLICY_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    serving_version: int
    path: str
    execution_provider: str
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedVersion]
    version_policy: str
    problem: str
    def __init__(self, model_name: _Optional[str] = ..., serving_version: _Optional[int] = ..., path: _Optional[str] = ..., execution_provider: _Optional[str] = ..., rejected: _Optional[_Iterable[_Union[RejectedVersion, _Mapping]]] = ..., version_policy: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class RejectedVersion(_message.Message):
    __slots__ = ("version", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    reason: str
    def __init__(self, version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("models", "loaded", "ignored", "scan_error")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    SCAN_ERROR_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    loaded: _containers.RepeatedScalarFieldContainer[str]
    ignored: _containers.RepeatedCompositeFieldContainer[IgnoredEntry]
    scan_error: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., loaded: _Optional[_Iterable[str]] = ..., ignored: _Optional[_Iterable[_Union[IgnoredEntry, _Mapping]]] = ..., scan_error: _Optional[str] = ...) -> None: ...

class IgnoredEntry(_message.Message):
    __slots__ = ("model_name", "folder", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    folder: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., folder: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetVersionPolicyRequest(_message.Message):
    __slots__ = ("model_name", "version_policy")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_POLICY_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version_policy: str
    def __init__(self, model_name: _Optional[str] = ..., version_policy: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model", "ignored", "scan_error")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    SCAN_ERROR_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    default_model: str
    ignored: _containers.RepeatedCompositeFieldContainer[IgnoredEntry]
    scan_error: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., default_model: _Optional[str] = ..., ignored: _Optional[_Iterable[_Union[IgnoredEntry, _Mapping]]] = ..., scan_error: _Optional[str] = ...) -> None: ...
