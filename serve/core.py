"""Observation in, safe action out: the server's logic, free of gRPC plumbing.

The servicers (server.py) only translate between this and the wire; everything a robot
depends on (input checks, clamping, rate limiting, withholding NaN) lives here and is
tested directly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from sim2real.serve.model import LoadedModel
from sim2real.serve.repository import ModelNotFoundError, ModelRepository
from sim2real.v1 import policy_pb2

NonFinitePolicy = Literal["reject", "sanitize"]
MessageT = TypeVar("MessageT")

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The trailing-metadata key gRPC libraries (grpc-status, grpc++'s ErrorDetails) read a
serialized google.rpc.Status from."""
MAX_MESSAGE_UTF8_BYTES = 1000
"""Cap on an error message sent to a client. The message travels percent-encoded in the
grpc-message trailer and again inside grpc-status-details-bin; a client refuses trailers
past 8-16 KiB and reports RESOURCE_EXHAUSTED instead of the real code (issue 12, item 8)."""


def clip_message(message: str, limit: int = MAX_MESSAGE_UTF8_BYTES) -> str:
    """``message`` cut to ``limit`` UTF-8 bytes, saying how long it was; lone surrogates
    (which protobuf refuses to encode) escaped."""
    encoded = message.encode("utf-8", "backslashreplace")
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    head = encoded[: limit - 32].decode("utf-8", "ignore")
    return f"{head}…({len(message)} chars)"


class RequestError(Exception):
    """A request that gets no action: a gRPC status code and a message naming the field.

    ``field`` is the request field at fault (``observation``, ``observation[3]``), sent to
    unary callers as a google.rpc.BadRequest field violation beside the message.
    """

    def __init__(self, code: grpc.StatusCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def wire_message(self) -> str:
        return clip_message(self.message)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The error as google.rpc.Status in grpc-status-details-bin, so clients in any
        language (C++ controllers included) get it in structured form. Code and message
        equal the call's status, as grpc-status's from_call checks."""
        status = status_pb2.Status(code=self.code.value[0], message=self.wire_message)
        if self.field is not None and self.code == grpc.StatusCode.INVALID_ARGUMENT:
            detail = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.wire_message),
            ])
            status.details.add().Pack(detail)
        return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def decode_message(raw: bytes, parse: Callable[[bytes], MessageT], type_name: str) -> MessageT:
    """``parse(raw)``, with malformed bytes as INVALID_ARGUMENT rather than an exception
    that gRPC would answer with UNKNOWN and a traceback in the log."""
    try:
        return parse(raw)
    except DecodeError:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {type_name} message ({len(raw)} bytes that do not parse)",
        ) from None


def decode_request(raw: bytes) -> policy_pb2.ActRequest:
    """One StreamAct/Act message from its wire bytes; RequestError if malformed."""
    return decode_message(raw, policy_pb2.ActRequest.FromString, "sim2real.v1.ActRequest")


def check_size(size: int, max_bytes: int) -> None:
    """RESOURCE_EXHAUSTED for a message over ``max_bytes`` (--max-message-bytes)."""
    if size > max_bytes:
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request is {size} bytes; this server accepts at most {max_bytes} (--max-message-bytes)",
        )


@dataclass(frozen=True)
class SafetyConfig:
    """What the server does to keep actions safe for hardware."""

    nonfinite: NonFinitePolicy = "reject"
    """NaN/Inf in an observation: 'reject' (INVALID_ARGUMENT) or 'sanitize' (NaN -> the
    training mean of that entry, +-Inf -> the edge of the policy's normalizer clip)."""
    max_action_delta: float | None = None
    """Per-step limit on |action - previous action| within a stream (in the [-1, 1] action
    units), like a max relative joint target. None: no limit."""

    def __post_init__(self) -> None:
        if self.nonfinite not in ("reject", "sanitize"):
            raise ValueError(f"nonfinite: expected 'reject' or 'sanitize', got {self.nonfinite!r}")
        if self.max_action_delta is not None and not (0.0 < self.max_action_delta <= 2.0):
            raise ValueError(
                f"max_action_delta: expected a value in (0, 2] (actions span [-1, 1]), "
                f"got {self.max_action_delta}"
            )


@dataclass
class StreamState:
    """Per-stream memory: the previous action, for rate limiting."""

    previous_action: np.ndarray | None = None
    model_key: tuple[str, int] | None = None


@dataclass
class Outcome:
    """What one request produced, for the servicer and for metrics."""

    response: policy_pb2.ActResponse
    model: LoadedModel
    clamped: bool = False
    rate_limited: bool = False
    compute_ns: int = 0


def _nonfinite_error(obs: np.ndarray) -> RequestError:
    bad = np.flatnonzero(~np.isfinite(obs))
    first = int(bad[0])
    more = f" (and {len(bad) - 1} more non-finite values)" if len(bad) > 1 else ""
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"observation[{first}] is {obs[first]}{more}; observations must be finite",
        field=f"observation[{first}]",
    )


class PolicyCore:
    """Runs requests against a repository's serving models."""

    def __init__(self, repository: ModelRepository, safety: SafetyConfig | None = None) -> None:
        self.repository = repository
        self.safety = safety or SafetyConfig()
        self._sanitize_cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def model(self, name: str) -> LoadedModel:
        try:
            return self.repository.get(name)
        except ModelNotFoundError as err:
            raise RequestError(grpc.StatusCode.NOT_FOUND, err.message) from None

    def act(self, request: policy_pb2.ActRequest, state: StreamState | None = None) -> Outcome:
        """One observation -> one action in [-1, 1]. Raises RequestError for bad input."""
        start = time.perf_counter_ns()
        model, obs = self._prepare(request)
        return self._finish(request, state, model, model.run_one(obs).tolist(), start)

    def act_many(
        self, items: Sequence[tuple[policy_pb2.ActRequest, StreamState | None]]
    ) -> list[Outcome | RequestError]:
        """``act`` for several requests at once, each answered (or refused) exactly as
        ``act`` would answer it in this order; the observations that pass their checks run
        through each model as one batch. Messages of one stream must come in stream order
        (its rate limit is applied in that order)."""
        start = time.perf_counter_ns()
        prepared: list[tuple[LoadedModel, np.ndarray] | RequestError] = []
        for request, _ in items:
            try:
                prepared.append(self._prepare(request))
            except RequestError as err:
                prepared.append(err)
        # One model call per model in the batch (usually one model).
        rows: dict[int, list[int]] = {}
        for i, entry in enumerate(prepared):
            if not isinstance(entry, RequestError):
                rows.setdefault(id(entry[0]), []).append(i)
        actions: dict[int, list[float]] = {}
        for indices in rows.values():
            model = prepared[indices[0]][0]  # type: ignore[index]
            if len(indices) == 1:
                out = model.run_one(prepared[indices[0]][1])[None]  # type: ignore[index]
            else:
                out = model.run(np.stack([prepared[i][1] for i in indices]))  # type: ignore[index]
            for i, row in zip(indices, out.tolist(), strict=True):
                actions[i] = row
        results: list[Outcome | RequestError] = []
        for i, (request, state) in enumerate(items):
            entry = prepared[i]
            if isinstance(entry, RequestError):
                results.append(entry)
                continue
            try:
                results.append(self._finish(request, state, entry[0], actions[i], start))
            except RequestError as err:
                results.append(err)
        return results

    def _prepare(self, request: policy_pb2.ActRequest) -> tuple[LoadedModel, np.ndarray]:
        """The serving model and the checked (or sanitized) observation; RequestError else."""
        model = self.model(request.model_name)
        obs = np.array(request.observation, dtype=np.float32)
        if obs.shape[0] != model.obs_dim:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"observation: model {model.name!r} version {model.version} expects "
                f"{model.obs_dim} values, got {obs.shape[0]}",
                field="observation",
            )
        if not np.isfinite(obs).all():
            if self.safety.nonfinite == "reject":
                raise _nonfinite_error(obs)
            fill, low, high = self.sanitize_bounds(model)
            obs = np.where(np.isnan(obs), fill, obs)
            obs = np.where(np.isposinf(obs), high, np.where(np.isneginf(obs), low, obs)).astype(np.float32)
        return model, obs

    def _finish(
        self, request: policy_pb2.ActRequest, state: StreamState | None, model: LoadedModel,
        values: list[float], start: int,
    ) -> Outcome:
        """The model's raw action -> the answer: withheld if non-finite, clamped, rate-limited."""
        # Checks and clamping on a Python list: for 12-16 actions this is several times
        # cheaper than numpy's per-call overhead (the request path is ~50 us in total).
        # A non-finite sum means NaN/Inf somewhere, or huge finite values overflowing it.
        if not math.isfinite(sum(values)) and not all(math.isfinite(v) for v in values):
            # Never hand a robot NaN: withhold the action; the client falls back.
            raise RequestError(
                grpc.StatusCode.INTERNAL,
                f"model {model.name!r} version {model.version} produced a non-finite action "
                f"({values}); withheld",
            )
        clamped = min(values) < -1.0 or max(values) > 1.0
        if clamped:
            values = [-1.0 if v < -1.0 else 1.0 if v > 1.0 else v for v in values]
        rate_limited = False
        if state is not None:
            limit = self.safety.max_action_delta
            previous = state.previous_action
            if (
                limit is not None
                and previous is not None
                and not request.reset_rate_limit
                # The previous action came from this model (a stream may switch models; a
                # hot-reloaded version of the same model stays limited, the point of it).
                and state.model_key is not None
                and state.model_key[0] == model.name
                and len(previous) == len(values)
            ):
                limited = np.clip(np.asarray(values), previous - limit, previous + limit)
                rate_limited = bool((limited != np.asarray(values)).any())
                values = limited.tolist()
            if limit is not None:
                state.previous_action = np.asarray(values)
                state.model_key = (model.name, model.version)
        compute_ns = time.perf_counter_ns() - start
        response = policy_pb2.ActResponse(
            action=values,
            sequence=request.sequence,
            model_name=model.name,
            model_version=model.version,
            server_compute_ns=compute_ns,
            client_time_ns=request.client_time_ns,
            clamped=clamped,
            rate_limited=rate_limited,
        )
        return Outcome(response, model, clamped, rate_limited, compute_ns)

    def sanitize_bounds(self, model: LoadedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NaN -> the training mean; +-Inf -> the edge of the policy's normalizer clip
        (mean +- clip * std), where the exported policy saturates anyway. Without those
        statistics: 0 and +-1e6."""
        key = model.sha256  # a re-written file keeps its version number in single-file mode
        cached = self._sanitize_cache.get(key)
        if cached is None:
            n = model.obs_dim
            mean, std = model.metadata_value("observation_mean"), model.metadata_value("observation_std")
            clip = model.metadata_value("observation_clip")
            if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == n and clip:
                m, sd = np.asarray(mean, np.float32), np.asarray(std, np.float32)
                cached = (m, m - float(clip) * sd, m + float(clip) * sd)
            else:
                cached = (np.zeros(n, np.float32), np.full(n, -1e6, np.float32), np.full(n, 1e6, np.float32))
            self._sanitize_cache[key] = cached
        return cached

    def policy_info(self, name: str) -> policy_pb2.PolicyInfo:
        model = self.model(name)
        meta = model.metadata_value

        def floats(key: str) -> list[float]:
            value = meta(key)
            return [float(v) for v in value] if isinstance(value, list) else []

        def strings(key: str) -> list[str]:
            value = meta(key)
            return [str(v) for v in value] if isinstance(value, list) else []

        rate = meta("control_rate_hz")
        steps = meta("training_steps")
        return policy_pb2.PolicyInfo(
            model_name=model.name,
            model_version=model.version,
            observation_dim=model.obs_dim,
            action_dim=model.act_dim,
            observation_names=strings("observation_names"),
            action_names=strings("action_names"),
            joint_names=strings("joint_names"),
            action_scale=floats("action_scale"),
            action_offset=floats("action_offset"),
            control_rate_hz=float(rate) if isinstance(rate, int | float) else 0.0,
            kp=floats("kp"),
            kd=floats("kd"),
            env_id=str(meta("env_id", "")),
            training_steps=int(steps) if isinstance(steps, int | float) else 0,
            sim2real_version=str(meta("sim2real_version", "")),
            execution_provider=model.provider,
            metadata=model.metadata,
            model_sha256=model.sha256,
            max_action_delta=self.safety.max_action_delta or 0.0,
            nonfinite_policy=self.safety.nonfinite,
        )
