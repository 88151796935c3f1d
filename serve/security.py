"""Transport security and bearer-token auth for the policy server.

TLS and mutual TLS come from PEM files. The token travels as gRPC metadata
``authorization: Bearer <token>`` and is compared in constant time. Admin calls
(PolicyAdminService) always need the token: a server started without one refuses them.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

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


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate and key, and for mutual TLS the CA that signs
    client certificates."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        for label, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-client-ca", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{label} {path}: no such file")
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def _token_matches(metadata: Any, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    for key, value in metadata or ():
        if key == "authorization":
            given = value.encode() if isinstance(value, str) else value
            return hmac.compare_digest(given, expected)
    return False


def _denying_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with ``code``."""

    async def abort_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort_unary, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort_unary, **kwargs)


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
