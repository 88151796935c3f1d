"""Client library for robot controllers: `PolicyClient` and its streaming `ControlSession`.

A control loop must never wait on the network longer than its period. `ControlSession.step`
sends the observation on a long-lived stream and waits at most the step deadline; when the
answer is late, carries an error, or the server is unreachable, it returns the fallback
action (hold the last good action, or the default pose) and says so in the result, while a
background thread reconnects with exponential backoff.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from sim2real.v1 import policy_pb2, policy_pb2_grpc

Fallback = Literal["hold", "default"]
STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""gRPC's trailer for a serialized google.rpc.Status (not imported from serve.core: a
client must not pull in onnxruntime)."""


class PolicyCallError(RuntimeError):
    """A unary call the server refused or could not answer: gRPC code and message, and for
    INVALID_ARGUMENT the offending fields as (field path, description) pairs (the
    google.rpc.BadRequest the server sends beside the message)."""

    def __init__(
        self, code: grpc.StatusCode, message: str, field_violations: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field_violations = field_violations


def field_violations(err: grpc.RpcError) -> tuple[tuple[str, str], ...]:
    """BadRequest field violations from a failed call's google.rpc.Status trailer."""
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != STATUS_DETAILS_KEY:
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return ()  # a server that is not ours; the code and message still stand
        out = []
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                out.extend((v.field, v.description) for v in bad.field_violations)
        return tuple(out)
    return ()


@dataclass(frozen=True)
class ActResult:
    """One action for the robot and where it came from."""

    action: np.ndarray
    """In [-1, 1]; joint target = action_offset + action_scale * action (GetPolicyInfo)."""
    sequence: int
    fallback: bool
    """True when ``action`` is the fallback, not the policy's answer to this observation."""
    reason: str = ""
    """Why the fallback was used (deadline missed, server error, disconnected)."""
    latency_s: float = 0.0
    server_compute_s: float = 0.0
    model_name: str = ""
    model_version: int = 0
    clamped: bool = False
    rate_limited: bool = False


def _read(path: Path | str | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


def make_channel(
    target: str,
    *,
    tls_ca: Path | str | None = None,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    server_name: str | None = None,
) -> grpc.Channel:
    """Insecure channel, or TLS when ``tls_ca`` is given (mutual TLS with cert and key)."""
    options = [
        # Reconnect quickly after a server restart: a robot is waiting.
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # Notice a silently dead link (Wi-Fi roam, pulled cable) in about 2 s instead of
        # TCP's minutes: ping every second, give up after one unanswered second.
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    if tls_ca is None:
        if tls_cert is not None or tls_key is not None:
            raise ValueError("a client certificate (mutual TLS) needs tls_ca too")
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca), private_key=_read(tls_key), certificate_chain=_read(tls_cert)
    )
    return grpc.secure_channel(target, credentials, options=options)


class PolicyClient:
    """Talks to `sim2real serve`.

    ``target`` is a gRPC address: ``HOST:PORT``, or ``unix:/abs/path`` for a server started
    with ``--uds /abs/path`` on this computer (plaintext there: no ``tls_*``; a token still
    applies).

        client = PolicyClient("127.0.0.1:50051", token=os.environ.get("SIM2REAL_TOKEN"))
        info = client.info()
        with client.session(deadline_s=0.004, fallback="hold") as loop:
            result = loop.step(observation)      # never blocks past 4 ms
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: Path | str | None = None,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        server_name: str | None = None,
        timeout_s: float = 1.0,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel_args = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key, "server_name": server_name}
        self.channel = make_channel(target, **self._channel_args)
        self.stub = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.admin = policy_pb2_grpc.PolicyAdminServiceStub(self.channel)

    def new_channel(self) -> grpc.Channel:
        return make_channel(self.target, **self._channel_args)

    def _call(self, method: object, request: object, timeout_s: float | None) -> object:
        try:
            return method(request, timeout=timeout_s or self.timeout_s, metadata=self.metadata)  # type: ignore[operator]
        except grpc.RpcError as err:
            raise PolicyCallError(err.code(), err.details() or "", field_violations(err)) from None

    def act(self, observation: Sequence[float] | np.ndarray, model_name: str = "", timeout_s: float | None = None) -> ActResult:
        """One unary call; raises PolicyCallError on any failure (no fallback here)."""
        sent = time.perf_counter()
        request = policy_pb2.ActRequest(
            observation=np.asarray(observation, np.float32).ravel().tolist(),
            model_name=model_name, client_time_ns=time.time_ns(),
        )
        response: policy_pb2.ActResponse = self._call(self.stub.Act, request, timeout_s)  # type: ignore[assignment]
        return ActResult(
            action=np.asarray(response.action, np.float32), sequence=response.sequence, fallback=False,
            latency_s=time.perf_counter() - sent, server_compute_s=response.server_compute_ns * 1e-9,
            model_name=response.model_name, model_version=response.model_version,
            clamped=response.clamped, rate_limited=response.rate_limited,
        )

    def info(self, model_name: str = "", timeout_s: float | None = None) -> policy_pb2.PolicyInfo:
        return self._call(self.stub.GetPolicyInfo, policy_pb2.PolicyInfoRequest(model_name=model_name), timeout_s)  # type: ignore[return-value]

    def reload(self, model_name: str = "", timeout_s: float | None = 60.0) -> policy_pb2.ReloadResponse:
        """Admin: rescan the server's repository now (needs the token)."""
        return self._call(self.admin.Reload, policy_pb2.ReloadRequest(model_name=model_name), timeout_s)  # type: ignore[return-value]

    def list_models(self, timeout_s: float | None = None) -> policy_pb2.ListModelsResponse:
        """Admin: every model's status (serving version, version policy, rejected versions,
        problem), the repository entries ignored with their reasons (``.ignored``) and why
        the repository could not be read, if so (``.scan_error``)."""
        return self._call(self.admin.ListModels, policy_pb2.ListModelsRequest(), timeout_s)  # type: ignore[return-value]

    def set_version_policy(
        self, model_name: str, policy: str, timeout_s: float | None = 60.0
    ) -> policy_pb2.ReloadResponse:
        """Admin: serve ``model_name`` ('' = the default model) by ``policy``, "latest" or
        "specific:N". PolicyCallError: NOT_FOUND (no such model), INVALID_ARGUMENT (a
        malformed policy), FAILED_PRECONDITION (version N cannot serve; nothing changed)."""
        request = policy_pb2.SetVersionPolicyRequest(model_name=model_name, version_policy=policy)
        return self._call(self.admin.SetVersionPolicy, request, timeout_s)  # type: ignore[return-value]

    def session(
        self,
        deadline_s: float,
        *,
        fallback: Fallback = "hold",
        default_action: Sequence[float] | np.ndarray | None = None,
        model_name: str = "",
    ) -> ControlSession:
        """A streaming session for a control loop; see ControlSession. Once open it
        reconnects by itself. Without ``default_action`` it first asks the server for the
        action size, so the server must be up; with it, a session can start before the
        server does and connects when it comes."""
        if default_action is None:
            try:
                info = self.info(model_name)
            except PolicyCallError as err:
                if err.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                raise PolicyCallError(err.code, f"{err.message} (session() asks the server for the action size; "
                                      "give default_action= to start a session before the server is up: it then "
                                      "connects by itself)") from None
            default_action = np.zeros(info.action_dim, np.float32)
        return ControlSession(self, deadline_s, fallback, np.asarray(default_action, np.float32), model_name)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_CLOSE = object()
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class ControlSession:
    """One StreamAct stream driven by a control loop, with deadline and fallback.

    ``fallback``: "hold" returns the last good action (the default action before the first
    one), "default" returns ``default_action`` (all zeros = the robot's default pose for
    sim2real policies). The stream runs on a background thread that reconnects with
    exponential backoff (50 ms doubling to 2 s) while ``step`` keeps answering on time.
    """

    def __init__(
        self, client: PolicyClient, deadline_s: float, fallback: Fallback,
        default_action: np.ndarray, model_name: str = "",
    ) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s: expected > 0, got {deadline_s}")
        if fallback not in ("hold", "default"):
            raise ValueError(f"fallback: expected 'hold' or 'default', got {fallback!r}")
        self.client = client
        self.deadline_s = deadline_s
        self.fallback_mode: Fallback = fallback
        self.default_action = default_action
        self.model_name = model_name
        self.last_action = default_action.copy()
        self.sequence = 0
        self.connected = False
        self.last_error = ""
        self.reconnects = 0
        self.deadline_misses = 0
        self._cond = threading.Condition()
        self._response: policy_pb2.ActResponse | None = None
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(target=self._run, name="sim2real-stream", daemon=True)
        self._thread.start()
        # Give the first connection a moment, bounded by one deadline.
        with self._cond:
            self._cond.wait_for(lambda: self.connected or self._closed, timeout=max(deadline_s, 0.5))

    # --- the background stream ----------------------------------------------------------
    def _requests(self, outbox: queue.SimpleQueue[object]) -> Iterator[policy_pb2.ActRequest]:
        while True:
            item = outbox.get()
            if item is _CLOSE:
                return
            yield item  # type: ignore[misc]

    def _run(self) -> None:
        backoff = 0.05
        channel = self.client.channel
        while not self._closed:
            outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            try:
                call = stub.StreamAct(self._requests(outbox), metadata=self.client.metadata, wait_for_ready=False)
                with self._cond:
                    self._call = call
                    if self._closed:  # close() ran while this stream was being opened
                        call.cancel()
                # The stream is up once the server has sent its headers.
                call.initial_metadata()
                if call.done():  # refused or unreachable: iterating raises the RpcError
                    for _ in call:
                        pass
                with self._cond:
                    self._outbox = outbox
                    self.connected = True
                    self._cond.notify_all()
                backoff = 0.05
                for response in call:
                    with self._cond:
                        if response.sequence == self.sequence:
                            self._response = response
                            self._cond.notify_all()
                # The server ended the stream (shutdown): reconnect.
                self.last_error = "stream closed by the server"
            except grpc.RpcError as err:
                self.last_error = f"{err.code().name}: {err.details()}"
            finally:
                outbox.put(_CLOSE)
                with self._cond:
                    self.connected = False
                    self._cond.notify_all()
            if self._closed:
                break
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            self.reconnects += 1

    # --- the control loop's call ----------------------------------------------------------
    def _fallback(self, sequence: int, reason: str, latency: float) -> ActResult:
        action = self.last_action if self.fallback_mode == "hold" else self.default_action
        return ActResult(action=action.copy(), sequence=sequence, fallback=True, reason=reason, latency_s=latency)

    def step(self, observation: Sequence[float] | np.ndarray, reset_rate_limit: bool = False) -> ActResult:
        """The action for ``observation``, or the fallback within ``deadline_s``."""
        start = time.perf_counter()
        self.sequence += 1
        seq = self.sequence
        request = policy_pb2.ActRequest(
            observation=np.asarray(observation, np.float32).ravel().tolist(), model_name=self.model_name,
            sequence=seq, client_time_ns=time.time_ns(), reset_rate_limit=reset_rate_limit,
        )
        with self._cond:
            if not self.connected:
                return self._fallback(seq, f"disconnected ({self.last_error or 'connecting'})", time.perf_counter() - start)
            self._response = None
            self._outbox.put(request)
            got = self._cond.wait_for(
                lambda: self._response is not None or not self.connected,
                timeout=self.deadline_s - (time.perf_counter() - start),
            )
            response = self._response
        latency = time.perf_counter() - start
        if not got or response is None:
            if not self.connected:
                return self._fallback(seq, f"disconnected ({self.last_error})", latency)
            self.deadline_misses += 1
            return self._fallback(seq, f"deadline of {self.deadline_s * 1e3:.2f} ms missed", latency)
        if response.HasField("error"):
            code = _CODE_NAMES.get(response.error.code, str(response.error.code))
            return self._fallback(seq, f"server error {code}: {response.error.message}", latency)
        action = np.asarray(response.action, np.float32)
        self.last_action = action.copy()  # the caller may modify the array it gets
        return ActResult(
            action=action, sequence=seq, fallback=False, latency_s=latency,
            server_compute_s=response.server_compute_ns * 1e-9, model_name=response.model_name,
            model_version=response.model_version, clamped=response.clamped, rate_limited=response.rate_limited,
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._outbox.put(_CLOSE)
            call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5)

    def __enter__(self) -> ControlSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
