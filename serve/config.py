"""`sim2real serve` configuration: one typed dataclass, the CLI is generated from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sim2real.serve.core import SafetyConfig
from sim2real.serve.model import SessionTuning
from sim2real.serve.recorder import RecorderConfig
from sim2real.serve.repository import VersionPolicy, parse_version_policy
from sim2real.serve.security import TlsFiles
from sim2real.serve.uds import DEFAULT_MODE, UNIX_PREFIXES, parse_mode, socket_path


@dataclass
class ServeConfig:
    """Serve ONNX policies over gRPC (sim2real.v1.PolicyService) with onnxruntime."""

    model: Path | None = None
    """One exported policy (policy.onnx). Changes to the file are hot-reloaded as new versions."""
    model_repo: Path | None = None
    """A model repository: DIR/NAME/VERSION/policy.onnx (Triton's layout); the highest valid
    version of each NAME serves, new versions are picked up while running, and removing the
    serving version's folder rolls back to the next highest valid one."""
    version_policy: str = "latest"
    """latest: the highest valid version serves; specific:N: exactly version N (--model-repo
    only; applies to every model, the admin call SetVersionPolicy changes one at run time)."""
    name: str | None = None
    """Name of the --model policy (default: the file's stem)."""
    default_model: str | None = None
    """Model used when a request names none (default: --name, or the first NAME in the repo)."""
    host: str = "127.0.0.1"
    """Address to bind. Loopback unless told otherwise; 0.0.0.0 exposes the robot's policy.
    (A Unix domain socket is --uds, not --host.)"""
    port: int = 50051
    """gRPC port (0 picks a free one; the startup line says which)."""
    tcp: bool = True
    """Listen on --host:--port. --no-tcp (with --uds): only on the Unix socket."""
    uds: Path | None = None
    """Also listen on this Unix domain socket (clients connect to unix:PATH), for controllers
    on the same computer: beside TCP, or alone with --no-tcp. Its file mode (--uds-mode) is
    the access control; the bearer token still applies; TLS does not (plaintext that never
    leaves the kernel). The folder must exist; a stale socket left by a dead server is
    replaced, any other file at PATH is refused; removed on shutdown. At most 107 bytes."""
    uds_mode: str = DEFAULT_MODE
    """File mode of the --uds socket, octal. Connecting needs write permission: 0660 admits
    the server's user and group (give the controller's user the group), 0600 the user only."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when onnxruntime can really run the model there, else CPU. cuda: fail at
    start when CUDA cannot be used."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on http://HOST:PORT/metrics (0 picks a free port; off when unset)."""
    poll_interval: float = 2.0
    """Seconds between scans for new model versions (0 disables; the admin Reload call still works)."""
    nonfinite: Literal["reject", "sanitize"] = "reject"
    """NaN/Inf in an observation: reject with INVALID_ARGUMENT, or sanitize (NaN -> the
    training mean, Inf -> clipped by the policy's normalizer)."""
    max_action_delta: float | None = None
    """Per-step limit on how far a stream's action may move from its previous one ([-1, 1] units)."""
    tls_cert: Path | None = None
    """PEM certificate chain of the server (enables TLS, with --tls-key)."""
    tls_key: Path | None = None
    """PEM private key of the server."""
    tls_client_ca: Path | None = None
    """PEM CA bundle: require client certificates signed by it (mutual TLS)."""
    token_file: Path | None = None
    """File holding the bearer token every call must carry (else $SIM2REAL_TOKEN). Admin
    calls are refused when no token is set."""
    max_message_bytes: int = 1 << 20
    """Largest request accepted; a bigger one gets RESOURCE_EXHAUSTED (in StreamAct, for that
    message only, up to 4x this size; gRPC itself ends a stream that sends a bigger one)."""
    max_concurrent_rpcs: int = 256
    """Calls (streams count one each) beyond this are refused with RESOURCE_EXHAUSTED."""
    max_calls_per_connection: int = 32
    """Calls one client connection may have open at once (streams count one each); more get
    RESOURCE_EXHAUSTED, so one client cannot take all --max-concurrent-rpcs slots. gRPC
    channels in one client process share a connection: this bounds one process."""
    grace_seconds: float = 5.0
    """On SIGTERM: seconds in-flight calls get to finish before the server exits."""
    intra_op_threads: int = 1
    """onnxruntime intra-op threads (1 is fastest for small MLP policies)."""
    record: Path | None = None
    """Record every served step (observation, action, model version, latency) as MCAP logs
    in this directory, written off the request path; steps are dropped and counted rather
    than delay an answer."""
    record_max_file_mb: float = 64.0
    """Rotate to a new log file past this size."""
    record_max_files: int = 20
    """Keep at most this many log files (the oldest is deleted): bounded disk use."""
    record_queue: int = 65536
    """Steps that may wait for the writer; beyond it steps are dropped (and counted)."""
    fast_path: Path | None = None
    """The compiled C++ front end (sim2real_fastpath: `cmake -S serve/fastpath -B
    build/fastpath && cmake --build build/fastpath`). With it, PolicyService (Act,
    StreamAct, GetPolicyInfo) and health are also served on --fast-port and/or --fast-uds
    by gRPC C++, which hands each message to this process's request path: the same
    answers, checks, token, TLS, recording and metrics, without Python gRPC's cost per
    message. Admin calls stay on --port/--uds."""
    fast_port: int | None = None
    """TCP port of the --fast-path listener on --host (0 picks a free one)."""
    fast_uds: Path | None = None
    """Unix socket of the --fast-path listener (mode --uds-mode; the same rules as --uds)."""
    fast_inference: Literal["auto", "cpp", "python"] = "auto"
    """Where the --fast-path listener runs the policy. cpp: in the front end, with the
    onnxruntime library the onnxruntime wheel ships (its C API), on models this process
    validated and hands over on every load; only requests that get an error, and models on
    CUDA, come to this process. python: every message comes to this process's request path.
    auto: cpp where the wheel ships the library, else python."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        if (self.model is None) == (self.model_repo is None):
            raise ValueError("give exactly one of --model FILE or --model-repo DIR")
        if self.name is not None and self.model is None:
            raise ValueError("--name applies to --model only (repository models are named by folder)")
        policy = self.parsed_version_policy()  # ValueError naming --version-policy
        if policy.pinned is not None and self.model is not None:
            raise ValueError(
                f"--version-policy {policy} applies to --model-repo only: a --model file has one "
                "version at a time (use --version-policy latest, or serve a --model-repo)"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0..65535, got {self.port}")
        if self.host.startswith(UNIX_PREFIXES):
            raise ValueError(
                f"--host: expected an IP address or host name, got {self.host!r}; for a Unix domain "
                "socket use --uds PATH (and --no-tcp to listen on it alone)"
            )
        if not self.tcp and self.uds is None:
            raise ValueError("--no-tcp needs --uds PATH: without either the server would listen nowhere")
        self.socket_path()  # ValueError naming --uds: a gRPC address, or too long for sun_path
        self.socket_mode()  # ValueError naming --uds-mode
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port: expected 0..65535, got {self.metrics_port}")
        if self.poll_interval < 0:
            raise ValueError(f"poll_interval: expected >= 0 seconds, got {self.poll_interval}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes: expected >= 1024, got {self.max_message_bytes}")
        if self.max_concurrent_rpcs < 1:
            raise ValueError(f"max_concurrent_rpcs: expected >= 1, got {self.max_concurrent_rpcs}")
        if self.max_calls_per_connection < 1:
            raise ValueError(f"max_calls_per_connection: expected >= 1, got {self.max_calls_per_connection}")
        if self.grace_seconds < 0:
            raise ValueError(f"grace_seconds: expected >= 0, got {self.grace_seconds}")
        if self.intra_op_threads < 1:
            raise ValueError(f"intra_op_threads: expected >= 1, got {self.intra_op_threads}")
        self.safety()  # validates nonfinite / max_action_delta
        self.recorder()  # validates the record_* fields
        self._check_fast_path()

    def _check_fast_path(self) -> None:
        listeners = self.fast_port is not None or self.fast_uds is not None
        if self.fast_path is None:
            if listeners:
                raise ValueError("--fast-port/--fast-uds need --fast-path BINARY (the compiled sim2real_fastpath)")
            return
        if not listeners:
            raise ValueError("--fast-path needs --fast-port PORT and/or --fast-uds PATH: where it should listen")
        if not (self.fast_path.is_file() and os.access(self.fast_path, os.X_OK)):
            raise ValueError(
                f"--fast-path: expected the executable sim2real_fastpath, got {str(self.fast_path)!r} "
                "(build it: cmake -S serve/fastpath -B build/fastpath && cmake --build build/fastpath)"
            )
        if self.fast_port is not None and not 0 <= self.fast_port <= 65535:
            raise ValueError(f"fast_port: expected 0..65535, got {self.fast_port}")
        if self.fast_uds is not None:
            fast = socket_path(self.fast_uds, field="--fast-uds")
            if fast == self.socket_path():
                raise ValueError("--fast-uds and --uds must be different paths")

    def fast_socket_path(self) -> Path | None:
        """The absolute path of the --fast-uds socket (None without it)."""
        return socket_path(self.fast_uds, field="--fast-uds") if self.fast_uds is not None else None

    def socket_path(self) -> Path | None:
        """The absolute path of the --uds socket (None without --uds)."""
        return socket_path(self.uds) if self.uds is not None else None

    def socket_mode(self) -> int:
        return parse_mode(self.uds_mode)

    def parsed_version_policy(self) -> VersionPolicy:
        return parse_version_policy(self.version_policy, field="--version-policy")

    def recorder(self) -> RecorderConfig | None:
        if self.record is None:
            return None
        return RecorderConfig(
            directory=self.record, max_file_bytes=int(self.record_max_file_mb * (1 << 20)),
            max_files=self.record_max_files, queue_size=self.record_queue,
        )

    def safety(self) -> SafetyConfig:
        return SafetyConfig(nonfinite=self.nonfinite, max_action_delta=self.max_action_delta)

    def tuning(self) -> SessionTuning:
        return SessionTuning(intra_op_threads=self.intra_op_threads)

    def tls(self) -> TlsFiles | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)
