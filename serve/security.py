"""Transport security, bearer-token auth and hostile-input guards for the policy server.

TLS and mutual TLS come from PEM files. The token travels as gRPC metadata
``authorization: Bearer <token>`` and is compared in constant time. Admin calls
(PolicyAdminService) always need the token: a server started without one refuses them.

CallGuardInterceptor sits behind the token check on every call: a per-connection limit on
open calls, and request parsing moved out of gRPC (which answers a malformed message with
UNKNOWN and logs a traceback per request) into the handler, after the token check, where
bad bytes become INVALID_ARGUMENT with a rate-limited warning.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc

from sim2real.serve.core import RequestError, check_size, clip_message, decode_message

log = logging.getLogger("sim2real.serve")

ADMIN_PREFIX = "/sim2real.v1.PolicyAdminService/"
# Health checks and reflection stay open: orchestrators probe them without credentials.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
TOKEN_ENV = "SIM2REAL_TOKEN"


def read_token(token_file: Path | None) -> str | None:
    """The bearer token from a file (first line) or $SIM2REAL_TOKEN; None if neither.

    Never from a command-line flag: argv is visible to every user in `ps`.
    """
    if token_file is not None:
        token = Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f"--token-file {token_file}: the file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


class _EncryptedKeyError(Exception):
    """ssl asked for a password: the key file is encrypted."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate and key, and for mutual TLS the CA that signs
    client certificates."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def check(self) -> None:
        """Fail with the file and the reason before binding: gRPC only reports a bad pair
        as a failed bind, which the server would blame on the port (issue 12, item 7)."""
        for label, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-client-ca", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{label} {path}: no such file")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for label, path in (("--tls-cert", self.cert), ("--tls-client-ca", self.client_ca)):
            if path is None:
                continue
            try:
                context.load_verify_locations(cafile=str(path))
            except ssl.SSLError as err:
                raise ValueError(f"{label} {path}: no PEM certificate in it ({err.reason or err})") from None

        def refuse_password() -> str:
            raise _EncryptedKeyError

        try:
            context.load_cert_chain(str(self.cert), str(self.key), password=refuse_password)
        except _EncryptedKeyError:
            raise ValueError(
                f"--tls-key {self.key}: the key is encrypted; gRPC needs an unencrypted PEM key "
                "(protect it with file permissions instead)"
            ) from None
        except ssl.SSLError as err:
            if err.reason == "KEY_VALUES_MISMATCH":
                raise ValueError(
                    f"--tls-key {self.key} does not match the certificate in --tls-cert {self.cert} "
                    "(they are not one key pair)"
                ) from None
            raise ValueError(f"--tls-key {self.key}: not a PEM private key ({err.reason or err})") from None

    def credentials(self) -> grpc.ServerCredentials:
        self.check()
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def _token_matches(metadata: Any, token: str) -> bool:
    """Exactly one authorization header, carrying the token (the C++ front end's rule too:
    with two, which one a proxy checked is anyone's guess)."""
    expected = f"Bearer {token}".encode()
    given = [value for key, value in metadata or () if key == "authorization"]
    if len(given) != 1:
        return False
    value = given[0]
    return hmac.compare_digest(value.encode() if isinstance(value, str) else value, expected)


def _denying_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with ``code``. It never parses
    the request (raw bytes in): an unauthenticated client's bytes cost no parsing and, when
    malformed, no log line."""

    async def abort_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    return _handler_like(handler, abort_stream if handler.response_streaming else abort_unary, None)


def _handler_like(
    handler: grpc.RpcMethodHandler, behavior: Callable[..., Any], request_deserializer: Callable[[bytes], Any] | None
) -> grpc.RpcMethodHandler:
    """A method handler of ``handler``'s streaming shape running ``behavior``."""
    kwargs: dict[str, Any] = {
        "request_deserializer": request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behavior, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behavior, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behavior, **kwargs)
    return grpc.unary_unary_rpc_method_handler(behavior, **kwargs)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token once per call (a stream pays it once, not per message)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if self.token is None:
            if method.startswith(ADMIN_PREFIX):
                return _denying_handler(
                    handler, grpc.StatusCode.PERMISSION_DENIED,
                    "admin calls need auth: start the server with --token-file (or $SIM2REAL_TOKEN)",
                )
            return handler
        if not _token_matches(handler_call_details.invocation_metadata, self.token):
            return _denying_handler(
                handler, grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token (metadata 'authorization: Bearer <token>')",
            )
        return handler


class LogThrottle:
    """At most one warning per ``interval`` seconds per kind, then a count of the rest.

    Bad requests are logged so an operator can find a broken client, but a client sending
    them in a loop must not be able to fill the disk or drown other lines.
    """

    def __init__(
        self, logger: logging.Logger = log, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``kind`` was logged less than ``interval`` ago;
        returns whether it was logged."""
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed and last is not None:
            message += f" ({suppressed} more like it in the last {now - last:.0f} s not logged)"
        self.logger.warning(message, *args)
        return True


UNIX_PEER_PREFIX = "unix:"
"""gRPC's peer string for a Unix-socket connection: "unix:" and the client's socket path,
which is empty for every client that does not bind its socket (all gRPC clients), so the
peer string cannot tell two such connections apart."""


class ConnectionLimiter:
    """Open calls per client connection (HTTP/2 connection, keyed by gRPC's peer string).

    Only touched from the server's event loop, so no lock. gRPC channels in one client
    process share a connection, so the limit bounds one client process. Unix-socket
    connections are not limited: their peer strings are all the same ("unix:"), so a
    limit would be shared by every local controller (the 33rd robot on the socket would be
    refused); callers there are admitted by the socket's file mode and bounded by
    --max-concurrent-rpcs.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, peer: str) -> bool:
        if peer.startswith(UNIX_PEER_PREFIX):
            return True
        count = self._open.get(peer, 0)
        if count >= self.limit:
            return False
        self._open[peer] = count + 1
        return True

    def release(self, peer: str) -> None:
        if peer.startswith(UNIX_PEER_PREFIX):
            return
        count = self._open.get(peer, 0) - 1
        if count > 0:
            self._open[peer] = count
        else:
            self._open.pop(peer, None)


ErrorHook = Callable[[str, grpc.StatusCode], None]
"""Called with (method name, code) for each call or message the guard refuses (metrics)."""


def _short_method(method: str) -> str:
    return method.rsplit("/", 1)[-1]


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    owner = getattr(deserializer, "__self__", None)  # Message.FromString is a bound classmethod
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


class CallGuardInterceptor(grpc.aio.ServerInterceptor):
    """Per-connection call limit and parse-after-auth for every method.

    Placed after TokenAuthInterceptor in the interceptor list, so it wraps the real handler
    and a refused token never reaches it. Each handler is rebuilt with no request
    deserializer; the wrapper checks the size and parses the bytes itself, so a malformed
    or oversized request is INVALID_ARGUMENT / RESOURCE_EXHAUSTED (with a rate-limited
    warning) instead of gRPC's UNKNOWN with a traceback. Handlers registered without a
    deserializer (StreamAct) parse each message themselves, to answer a bad one without
    ending the stream; stream handlers with one get a parsing request iterator (so they
    must read the iterator, not ``context.read()``).
    """

    def __init__(
        self, max_calls_per_connection: int, max_message_bytes: int,
        throttle: LogThrottle | None = None, on_error: ErrorHook | None = None,
    ) -> None:
        self.limiter = ConnectionLimiter(max_calls_per_connection)
        self.max_message_bytes = max_message_bytes
        self.throttle = throttle or LogThrottle()
        self.on_error = on_error
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        # Handlers are fixed per method: wrap each once (this runs on every call).
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._guard(handler, _short_method(handler_call_details.method))
        self._wrapped[handler_call_details.method] = (handler, guarded)
        return guarded

    def _guard(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        behavior = (handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream)
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            return handler  # a sync handler runs on gRPC's thread pool; none in this server
        deserializer = handler.request_deserializer
        if deserializer is None:
            prepare: Callable[[Any, grpc.aio.ServicerContext, str], Awaitable[Any]] = _as_is
        elif handler.request_streaming:
            prepare = self._iterator_parser(method, deserializer)
        else:
            prepare = self._parser(method, deserializer)
        if inspect.isasyncgenfunction(behavior):
            async def guarded_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                peer = await self._enter(method, context)
                try:
                    async for response in behavior(await prepare(request, context, peer), context):
                        yield response
                finally:
                    self.limiter.release(peer)

            return _handler_like(handler, guarded_stream, None)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            peer = await self._enter(method, context)
            try:
                return await behavior(await prepare(request, context, peer), context)
            finally:
                self.limiter.release(peer)

        return _handler_like(handler, guarded, None)

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> str:
        """Take a slot of this connection's limit, or end the call with RESOURCE_EXHAUSTED."""
        peer = context.peer()
        if self.limiter.acquire(peer):
            return peer
        limit = self.limiter.limit
        self.throttle.warning(
            "connection-limit", "refused %s from %s: %d calls already open on that connection",
            method, peer, limit,
        )
        await self._refuse(method, context, RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"this connection already has {limit} calls open, the server's limit per connection "
            f"(--max-calls-per-connection {limit}); finish or cancel one first",
        ))

    async def _refuse(self, method: str, context: grpc.aio.ServicerContext, err: RequestError) -> NoReturn:
        if self.on_error is not None:
            self.on_error(method, err.code)
        await context.abort(err.code, err.wire_message, trailing_metadata=err.trailing_metadata())
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def _decode(self, method: str, peer: str, raw: bytes, deserializer: Callable[[bytes], Any]) -> Any:
        """Size check and parse; RequestError for a bad message, logged (rate-limited)."""
        try:
            check_size(len(raw), self.max_message_bytes)
            return decode_message(raw, deserializer, _type_name(deserializer))
        except RequestError as err:
            self.throttle.warning(
                f"bad-request-{err.code.name}", "%s from %s: %s", method, peer, clip_message(err.message, 200)
            )
            raise

    def _parser(
        self, method: str, deserializer: Callable[[bytes], Any]
    ) -> Callable[[bytes, grpc.aio.ServicerContext, str], Awaitable[Any]]:
        async def parse(raw: bytes, context: grpc.aio.ServicerContext, peer: str) -> Any:
            try:
                return self._decode(method, peer, raw, deserializer)
            except RequestError as err:
                await self._refuse(method, context, err)

        return parse

    def _iterator_parser(
        self, method: str, deserializer: Callable[[bytes], Any]
    ) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext, str], Awaitable[AsyncIterator[Any]]]:
        async def parse(raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext, peer: str) -> AsyncIterator[Any]:
            async def messages() -> AsyncIterator[Any]:
                async for raw in raws:
                    try:
                        message = self._decode(method, peer, raw, deserializer)
                    except RequestError as err:
                        await self._refuse(method, context, err)
                    yield message

            return messages()

        return parse


async def _as_is(request: Any, context: grpc.aio.ServicerContext, peer: str) -> Any:
    return request
