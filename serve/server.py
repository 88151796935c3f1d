"""The gRPC policy server: thin asyncio servicers over PolicyCore.

asyncio (grpc.aio) rather than the thread-pool server: a policy evaluation takes tens of
microseconds, so running it inline on the event loop costs less than handing each
message to a worker thread and back, which is most of the sync server's per-message
latency.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sim2real.serve.config import ServeConfig
from sim2real.serve.core import PolicyCore, RequestError, StreamState, check_size, decode_request
from sim2real.serve.frontend import FastPathAddresses, FastPathFrontend
from sim2real.serve.metrics import ServerMetrics
from sim2real.serve.model import LoadedModel
from sim2real.serve.recorder import StepRecorder
from sim2real.serve.repository import (
    ModelNotFoundError,
    ModelRepository,
    VersionPolicyError,
    parse_version_policy,
)
from sim2real.serve.security import (
    CallGuardInterceptor,
    LogThrottle,
    TokenAuthInterceptor,
    read_token,
)
from sim2real.serve.uds import SocketFile, bind_umask, prepare_socket_path
from sim2real.v1 import log_pb2, policy_pb2, policy_pb2_grpc

log = logging.getLogger("sim2real.serve")

POLICY_SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
ADMIN_SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyAdminService"].full_name

TRANSPORT_MESSAGE_FACTOR = 4
"""gRPC's own receive limit is this many times --max-message-bytes. gRPC enforces its limit
by ending the whole call, which in StreamAct would cost a robot its stream; the server
enforces --max-message-bytes itself, per message, and gRPC's limit only stops a client
from making the server buffer arbitrarily large messages."""
SHUTDOWN_SETTLE_SECONDS = 2.0
"""After gRPC stops, how long the tasks of the calls it cancelled get to finish."""
MAX_LISTED_IGNORED = 1000
"""Ignored repository entries listed in one ListModels/Reload answer; beyond it one last
entry says how many more there are. A folder full of junk must not push the answer past
the send limit (--max-message-bytes) and fail the admin call that would explain it."""
ResultT = TypeVar("ResultT")


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(
        self, core: PolicyCore, metrics: ServerMetrics, recorder: StepRecorder | None = None, *,
        max_message_bytes: int = 1 << 20, throttle: LogThrottle | None = None,
    ) -> None:
        self.core = core
        self.metrics = metrics
        self.recorder = recorder
        self.max_message_bytes = max_message_bytes
        self.throttle = throttle or LogThrottle()
        m = metrics
        self._requests_act = m.requests.labels("Act")
        self._requests_stream = m.requests.labels("StreamAct")
        self._latency_children: dict[tuple[str, str], object] = {}

    def _observe(self, method: str, model_name: str, seconds: float, clamped: bool, limited: bool) -> None:
        key = (method, model_name)
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency_children[key] = self.metrics.latency.labels(method, model_name)
        child.observe(seconds)  # type: ignore[attr-defined]
        if clamped:
            self.metrics.clamped.labels(model_name).inc()
        if limited:
            self.metrics.rate_limited.labels(model_name).inc()

    async def Act(
        self, request: policy_pb2.ActRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ActResponse:
        # Parsed by CallGuardInterceptor (after the token check), which answers malformed
        # and oversized requests itself.
        self._requests_act.inc()
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            self.metrics.errors.labels("Act", "DEADLINE_EXCEEDED").inc()
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the request ran")
        try:
            outcome = self.core.act(request)
        except RequestError as err:
            self.metrics.errors.labels("Act", err.code.name).inc()
            await context.abort(err.code, err.wire_message, trailing_metadata=err.trailing_metadata())
        self._observe("Act", outcome.model.name, outcome.compute_ns * 1e-9, outcome.clamped, outcome.rate_limited)
        if self.recorder is not None:
            self.recorder.submit(request, outcome.response)
        return outcome.response

    async def StreamAct(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:
        # context.read()/write() rather than an async generator: one less coroutine hop
        # per message (5-20% lower echo latency on the dev machine). Registered without a
        # request deserializer: read() gives the raw bytes, parsed here so that a malformed
        # or oversized message is answered with its own error and the stream goes on
        # (the proto's promise), where gRPC's parsing would end the stream.
        state = StreamState()
        self.metrics.streams.inc()
        try:
            # Headers now, not with the first answer: the client knows the stream is up
            # (and its credentials accepted) before its control loop sends anything.
            await context.send_initial_metadata(())
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    break
                self._requests_stream.inc()
                request: policy_pb2.ActRequest | None = None
                try:
                    request = self._decode(raw, context)
                    self._check_size(raw, context)
                    outcome = self.core.act(request, state)
                except RequestError as err:
                    # Answer this message with its error and keep the stream: the control
                    # loop's next observation may be fine.
                    self.metrics.errors.labels("StreamAct", err.code.name).inc()
                    await context.write(policy_pb2.ActResponse(
                        sequence=request.sequence if request is not None else 0,
                        client_time_ns=request.client_time_ns if request is not None else 0,
                        error=policy_pb2.StepError(code=err.code.value[0], message=err.wire_message),
                    ))
                    continue
                self._observe(
                    "StreamAct", outcome.model.name, outcome.compute_ns * 1e-9, outcome.clamped, outcome.rate_limited
                )
                if self.recorder is not None:
                    self.recorder.submit(request, outcome.response)
                await context.write(outcome.response)
        except grpc.aio.AbortError:
            raise
        except grpc.aio.BaseError as err:
            # The call ended under the handler: the client went away mid-write (a failed
            # write batch), or the server is stopping. gRPC logs the former with a
            # traceback and the latter as a warning per stream; neither is news. It logs
            # a CancelledError at debug level only, and sends nothing more on the call.
            log.debug("StreamAct from %s ended: %s: %s", context.peer(), type(err).__name__, err)
            raise asyncio.CancelledError from None
        finally:
            self.metrics.streams.dec()

    def _decode(self, raw: bytes, context: grpc.aio.ServicerContext) -> policy_pb2.ActRequest:
        """One streamed message. A malformed one is logged (rate-limited): it means a
        broken or hostile client, unlike a wrong observation."""
        try:
            return decode_request(raw)
        except RequestError as err:
            self._warn(err, context)
            raise

    def _check_size(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        """After parsing, so an oversized message still gets its sequence number back: it
        is at most TRANSPORT_MESSAGE_FACTOR x the limit, so parsing it is bounded work."""
        try:
            check_size(len(raw), self.max_message_bytes)
        except RequestError as err:
            self._warn(err, context)
            raise

    def _warn(self, err: RequestError, context: grpc.aio.ServicerContext) -> None:
        self.throttle.warning(
            f"bad-request-{err.code.name}", "StreamAct message from %s: %s", context.peer(), err.message
        )

    async def GetPolicyInfo(
        self, request: policy_pb2.PolicyInfoRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.PolicyInfo:
        try:
            return self.core.policy_info(request.model_name)
        except RequestError as err:
            self.metrics.errors.labels("GetPolicyInfo", err.code.name).inc()
            await context.abort(err.code, err.wire_message, trailing_metadata=err.trailing_metadata())
            raise  # unreachable: abort raises


def add_policy_service(servicer: PolicyServicer, server: grpc.aio.Server) -> None:
    """Register PolicyService like the generated add_PolicyServiceServicer_to_server, but
    with StreamAct taking raw bytes (it parses each message itself, see StreamAct)."""
    handlers = {
        "Act": grpc.unary_unary_rpc_method_handler(
            servicer.Act,
            request_deserializer=policy_pb2.ActRequest.FromString,
            response_serializer=policy_pb2.ActResponse.SerializeToString,
        ),
        "StreamAct": grpc.stream_stream_rpc_method_handler(
            servicer.StreamAct,
            request_deserializer=None,
            response_serializer=policy_pb2.ActResponse.SerializeToString,
        ),
        "GetPolicyInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetPolicyInfo,
            request_deserializer=policy_pb2.PolicyInfoRequest.FromString,
            response_serializer=policy_pb2.PolicyInfo.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(POLICY_SERVICE, handlers),))
    server.add_registered_method_handlers(POLICY_SERVICE, handlers)


def model_statuses(repository: ModelRepository) -> list[policy_pb2.ModelStatus]:
    out = []
    for name, state in sorted(repository.states().items()):
        serving = state.serving
        out.append(policy_pb2.ModelStatus(
            model_name=name,
            serving_version=serving.version if serving else 0,
            path=str(serving.path) if serving else "",
            execution_provider=serving.provider if serving else "",
            rejected=[
                policy_pb2.RejectedVersion(version=v, reason=reason)
                for v, (_, reason) in sorted(state.rejected.items())
            ],
            version_policy=str(repository.version_policy(name)),
            problem=state.problem or "",
        ))
    return out


def ignored_entries(repository: ModelRepository, limit: int = MAX_LISTED_IGNORED) -> list[policy_pb2.IgnoredEntry]:
    """The last scan's ignored entries (at most ``limit``, then a count of the rest)."""
    ignored = repository.ignored()
    out = [policy_pb2.IgnoredEntry(model_name=e.name, folder=e.folder, reason=e.reason) for e in ignored[:limit]]
    if len(ignored) > limit:
        out.append(policy_pb2.IgnoredEntry(reason=f"{len(ignored) - limit} more ignored entries not listed"))
    return out


class AdminServicer(policy_pb2_grpc.PolicyAdminServiceServicer):
    """Operator calls. Repository errors become status codes with the reason (NOT_FOUND,
    INVALID_ARGUMENT with a BadRequest field violation, FAILED_PRECONDITION), never
    UNKNOWN with Python's exception text."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    async def Reload(
        self, request: policy_pb2.ReloadRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ReloadResponse:
        async def reload() -> policy_pb2.ReloadResponse:
            # Loading a model takes milliseconds to seconds: off the event loop, so streams
            # keep being served meanwhile.
            name = request.model_name
            loaded = await asyncio.to_thread(self.repository.poll, name or None)
            if name and name not in self.repository.states():
                raise ModelNotFoundError(name, sorted(self.repository.serving()))
            return self._reload_response(loaded)

        return await self._answer("Reload", context, reload)

    async def ListModels(
        self, request: policy_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListModelsResponse:
        async def list_models() -> policy_pb2.ListModelsResponse:
            repository = self.repository
            return policy_pb2.ListModelsResponse(
                models=model_statuses(repository), default_model=repository.default_name or "",
                ignored=ignored_entries(repository), scan_error=repository.scan_error or "",
            )

        return await self._answer("ListModels", context, list_models)

    async def SetVersionPolicy(
        self, request: policy_pb2.SetVersionPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ReloadResponse:
        async def set_policy() -> policy_pb2.ReloadResponse:
            try:
                policy = parse_version_policy(request.version_policy, field="version_policy")
            except ValueError as err:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(err), field="version_policy") from None
            # Settling the policy may load a model: off the event loop.
            loaded = await asyncio.to_thread(self.repository.set_version_policy, request.model_name, policy)
            log.info(
                "version policy of %s set to %s by an admin call",
                request.model_name or self.repository.default_name, policy,
            )
            return self._reload_response(loaded)

        return await self._answer("SetVersionPolicy", context, set_policy)

    def _reload_response(self, loaded: list[str]) -> policy_pb2.ReloadResponse:
        repository = self.repository
        return policy_pb2.ReloadResponse(
            models=model_statuses(repository), loaded=loaded,
            ignored=ignored_entries(repository), scan_error=repository.scan_error or "",
        )

    async def _answer(
        self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[ResultT]]
    ) -> ResultT:
        try:
            return await work()
        except RequestError as err:
            error = err
        except ModelNotFoundError as err:
            error = RequestError(grpc.StatusCode.NOT_FOUND, err.message)
        except VersionPolicyError as err:
            # The request is well formed; the repository's state does not allow it now.
            error = RequestError(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except Exception as err:  # noqa: BLE001 - a bug: INTERNAL with the reason, traceback in the log only
            log.exception("admin call %s failed", method)
            error = RequestError(
                grpc.StatusCode.INTERNAL, f"{method} failed: {type(err).__name__}: {err} (see the server log)"
            )
        await context.abort(error.code, error.wire_message, trailing_metadata=error.trailing_metadata())
        raise AssertionError("unreachable: abort raises")  # pragma: no cover


async def _settle_call_tasks(timeout: float) -> None:
    """Let the tasks of the calls gRPC cancelled at the end of the grace period finish.

    grpc.aio's stop() returns before they have run their last steps. asyncio.run (and a
    test's loop.stop) would then cancel them while gRPC's wrapper awaits them, which gRPC
    logs as "Exception not handled" with a CancelledError traceback per open stream. This
    server's loop runs nothing else, so every other task is one of those.
    """
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


@dataclass
class ServerAddresses:
    grpc_port: int | None
    """The TCP port (None with --no-tcp)."""
    metrics_port: int | None
    uds: Path | None = None
    """The Unix socket's path (None without --uds); clients connect to ``unix:`` + it."""
    fast_path: FastPathAddresses | None = None
    """Where the C++ front end (--fast-path) listens (None without it)."""


class PolicyServer:
    """Everything one `sim2real serve` runs: repository, gRPC server, health, metrics."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.repository = ModelRepository(
            root=config.model_repo, model_file=config.model, name=config.name,
            default_model=config.default_model, device=config.device, tuning=config.tuning(),
            version_policy=config.parsed_version_policy(),
        )
        self.metrics = ServerMetrics()
        self._providers: dict[str, str] = {}
        self.repository.add_listener(self._on_model_loaded)
        self.repository.add_unload_listener(self._on_model_unloaded)
        self.core = PolicyCore(self.repository, config.safety())
        self.token = read_token(config.token_file)
        self.health = health.aio.HealthServicer()
        self.recorder: StepRecorder | None = None
        self.server: grpc.aio.Server | None = None
        self.addresses: ServerAddresses | None = None
        self.socket_file: SocketFile | None = None
        self._poller: asyncio.Task[None] | None = None
        self.fast_path: FastPathFrontend | None = None

    async def start(self) -> ServerAddresses:
        config = self.config
        # Loading is blocking work (onnxruntime session creation); fine before serving.
        self.repository.load_initial()
        options = [
            # The real per-message limit is enforced by the handlers (TRANSPORT_MESSAGE_FACTOR).
            # (gRPC's channel arguments are C ints.)
            ("grpc.max_receive_message_length", min(config.max_message_bytes * TRANSPORT_MESSAGE_FACTOR, 2**31 - 1)),
            ("grpc.max_send_message_length", config.max_message_bytes),
            # Two servers on one port must fail, not silently share it.
            ("grpc.so_reuseport", 0),
            # Accept the clients' 1 s keepalive pings, and ping idle connections ourselves
            # so a dead robot's stream stops holding a max_concurrent_rpcs slot.
            ("grpc.http2.min_ping_interval_without_data_ms", 500),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        # Checked before anything binds: a bad pair must be reported as such, not as a
        # failed bind.
        tls = config.tls()
        credentials = tls.credentials() if tls else None
        throttle = LogThrottle(log)
        guard = CallGuardInterceptor(
            config.max_calls_per_connection, config.max_message_bytes, throttle,
            on_error=lambda method, code: self.metrics.errors.labels(method, code.name).inc(),
        )
        server = grpc.aio.server(
            # Token first: the guard (parsing, per-connection limit) only sees calls whose
            # credentials passed.
            interceptors=[TokenAuthInterceptor(self.token), guard],
            options=options,
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        self._servicer = PolicyServicer(
            self.core, self.metrics, max_message_bytes=config.max_message_bytes, throttle=throttle
        )
        add_policy_service(self._servicer, server)
        policy_pb2_grpc.add_PolicyAdminServiceServicer_to_server(AdminServicer(self.repository), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (POLICY_SERVICE, ADMIN_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port: int | None = None
        if config.tcp:
            address = f"{config.host}:{config.port}"
            try:
                port = (
                    server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
                )
            except RuntimeError as err:
                raise OSError(f"cannot bind {address} (--host/--port): {err} (is the port in use?)") from err
        # TCP first: a taken port (the likelier failure) then leaves no socket file behind.
        self._bind_socket(server)
        try:
            recorder_config = config.recorder()
            if recorder_config is not None:
                self.recorder = StepRecorder(recorder_config, self._log_info)
            self._servicer.recorder = self.recorder
            await server.start()
        except BaseException:
            self._remove_socket()
            raise
        self.server = server
        try:
            metrics_port = None
            if config.metrics_port is not None:
                metrics_port = self.metrics.serve_http(config.host, config.metrics_port)
            serving = health_pb2.HealthCheckResponse.SERVING
            await self.health.set("", serving)
            await self.health.set(POLICY_SERVICE, serving)
            if config.poll_interval > 0:
                self._poller = asyncio.create_task(self._poll_forever(config.poll_interval))
            fast_addresses = await asyncio.to_thread(self._start_fast_path)
        except BaseException:
            await self.stop(0)  # e.g. the metrics port is taken: leave nothing listening
            raise
        self.addresses = ServerAddresses(
            port, metrics_port, self.socket_file.path if self.socket_file else None, fast_addresses
        )
        return self.addresses

    def _start_fast_path(self) -> FastPathAddresses | None:
        config = self.config
        if config.fast_path is None:
            return None
        self.fast_path = FastPathFrontend(
            config.fast_path, self._servicer, host=config.host, port=config.fast_port,
            uds=config.fast_socket_path(), uds_mode=config.socket_mode(), token_file=config.token_file,
            token=self.token, tls=config.tls(), max_message_bytes=config.max_message_bytes,
            transport_factor=TRANSPORT_MESSAGE_FACTOR, max_calls=config.max_concurrent_rpcs,
            max_calls_per_connection=config.max_calls_per_connection, inference=config.fast_inference,
            grace_seconds=config.grace_seconds,
        )
        return self.fast_path.start()

    def _bind_socket(self, server: grpc.aio.Server) -> None:
        """--uds: bind the Unix socket (plaintext whatever the TLS flags: see ServeConfig.uds)
        safely (serve/uds.py), with --uds-mode."""
        path = self.config.socket_path()
        if path is None:
            return
        if prepare_socket_path(path):
            log.warning("--uds %s: removed a stale socket left by a server that is no longer running", path)
        try:
            with bind_umask():
                server.add_insecure_port(f"unix:{path}")
        except RuntimeError as err:
            raise OSError(f"cannot bind unix:{path} (--uds): {err}") from err
        self.socket_file = SocketFile.created(path, self.config.socket_mode())
        if self.socket_file.mode & 0o002:
            log.warning("--uds %s: mode %04o lets every local user call the policy", path, self.socket_file.mode)

    def _remove_socket(self) -> None:
        if self.socket_file is not None:
            try:
                self.socket_file.remove()
            except OSError as err:  # shutdown goes on; the next start replaces a stale socket
                log.error("could not remove the socket file %s: %s", self.socket_file.path, err)
            self.socket_file = None

    def _on_model_loaded(self, model: LoadedModel) -> None:
        self._providers[model.name] = model.provider
        self.metrics.on_model_loaded(model)

    def _on_model_unloaded(self, name: str, version: int) -> None:
        """A removed version that no other replaced: /metrics stops reporting a serving
        version (and provider) for a model that serves nothing."""
        with suppress(KeyError):
            self.metrics.model_version.remove(name)
        provider = self._providers.pop(name, None)
        if provider is not None:
            with suppress(KeyError):
                self.metrics.provider.remove(name, provider)

    async def _poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.repository.poll)
            except Exception:  # noqa: BLE001 - a scan error (e.g. repo deleted) must not stop serving
                log.exception("model repository scan failed; %s", self.repository.serving_text())

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, give in-flight ones ``grace`` seconds, release everything."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        # One drain for both listeners: each refuses new calls, then health says
        # NOT_SERVING (so no call is taken after it does), then both give their open calls
        # the same grace period side by side.
        grace = self.config.grace_seconds if grace is None else grace
        drains = []
        if self.server is not None:
            drains.append(asyncio.ensure_future(self.server.stop(grace)))
            await asyncio.sleep(0)  # its first step refuses new calls
        fast_path = self.fast_path
        if fast_path is not None:
            await asyncio.to_thread(fast_path.begin_drain, grace)
            drains.append(asyncio.ensure_future(asyncio.to_thread(fast_path.stop, grace)))
        await self.health.enter_graceful_shutdown()
        await asyncio.gather(*drains)
        self.fast_path = None
        if self.server is not None:
            self.server = None
            await _settle_call_tasks(SHUTDOWN_SETTLE_SECONDS)
        self._remove_socket()
        if self.recorder is not None:
            try:
                stats = await asyncio.to_thread(self.recorder.close)
            except TimeoutError as err:
                log.error("recording: %s", err)
                stats = self.recorder.stats
            log.info("recording: %d steps written, %d dropped, %d failed, %d files", stats.written, stats.dropped, stats.failed, stats.files)
            self.recorder = None
        self.metrics.close()

    def _log_info(self, model_name: str) -> log_pb2.LogInfo:
        """LogInfo of a recorded file: what that model's vectors mean."""
        info = self.core.policy_info(model_name)
        model = self.repository.get(model_name)
        robot = model.metadata_value("robot", "")
        # The task config the policy trained with (which robot among it): sim replay of
        # this log rebuilds that env. A malformed entry is left out, never fatal here.
        env_config = model.metadata_value("env_config", [])
        if not (isinstance(env_config, list) and all(isinstance(i, str) for i in env_config)):
            env_config = []
        return log_pb2.LogInfo(
            env_config=env_config,
            source="server", env_id=info.env_id, robot=str(robot or ""),
            control_rate_hz=info.control_rate_hz, observation_names=info.observation_names,
            action_names=info.action_names, joint_names=info.joint_names,
            action_scale=info.action_scale, action_offset=info.action_offset,
            model_name=info.model_name, model_version=info.model_version, model_sha256=info.model_sha256,
        )

    def describe(self) -> str:
        assert self.addresses is not None
        scheme = "grpcs" if self.config.tls() else "grpc"
        models = ", ".join(
            f"{m.name} v{m.version} ({m.obs_dim} obs -> {m.act_dim} actions, {m.provider})"
            for m in self.repository.serving().values()
        )
        listeners = []
        if self.addresses.grpc_port is not None:
            listeners.append(f"{scheme}://{self.config.host}:{self.addresses.grpc_port}")
        if self.socket_file is not None:
            listeners.append(f"unix:{self.socket_file.path}")
        lines = [f"serving {models} on {' and '.join(listeners)}"]
        fast = self.addresses.fast_path
        if fast is not None:
            fast_listeners = []
            if fast.port is not None:
                fast_listeners.append(f"{scheme}://{self.config.host}:{fast.port}")
            if fast.uds is not None:
                fast_listeners.append(f"unix:{fast.uds}")
            runs = (
                "the policy runs in the front end (onnxruntime's C API)" if fast.inference == "cpp"
                else "every message is answered by this process"
            )
            lines.append(f"fast path (C++ front end, PolicyService only) on {' and '.join(fast_listeners)}: {runs}")
        if self.socket_file is not None:
            # What admits a caller on the socket, said where the operator looks.
            lines.append(
                f"unix socket {self.socket_file.path}: mode {self.socket_file.mode:04o} (who may connect), "
                f"plaintext{' (TLS applies to TCP only)' if self.config.tls() else ''}"
            )
        if self.addresses.metrics_port is not None:
            lines.append(f"metrics on http://{self.config.host}:{self.addresses.metrics_port}/metrics")
        lines.append(f"auth: {'bearer token' if self.token else 'none (admin calls disabled)'}"
                     f"{', mutual TLS' if self.config.tls_client_ca else ''}")
        if self.recorder is not None:
            lines.append(f"recording served steps to {self.recorder.config.directory}/")
        return "\n".join(lines)


async def serve_until_signal(config: ServeConfig) -> None:
    """`sim2real serve`: run until SIGTERM/SIGINT, then drain gracefully."""
    server = PolicyServer(config)
    await server.start()
    print(server.describe(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(f"shutting down: draining in-flight calls (up to {config.grace_seconds:g} s)", flush=True)
    await server.stop()
    print("stopped", flush=True)
