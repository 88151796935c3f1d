"""`sim2real serve --fast-path`: the C++ front end (serve/fastpath/fastpath.cpp) and the
thread here that answers it.

Python gRPC costs about 240 us of CPU per message on the 2-core dev machine before any
policy runs, and the GIL keeps it on one core (docs/benchmarks.md). The front end moves
the transport to gRPC C++ and sends each PolicyService message, still serialized, over a
Unix socketpair; this thread answers with the same request path the asyncio servicer runs
(PolicyCore, the size and parse checks, metrics, recording), so both listeners give the
same answers. What Python does per message here is a parse, the policy and a
serialization: no HTTP/2, no event-loop hop.

With --fast-inference cpp (the default where the onnxruntime wheel ships its shared
library), the front end also runs the policy itself (serve/fastpath/policy.cpp, through
onnxruntime's C API): this process sends it the table of models it serves on the CPU (each
validated here, as always) at start and after every reload or unload, and only the
messages that get an error (or a model the table lacks) still come here. The steps served
there are reported back in batches, every few milliseconds, for the metrics and the
recorder; so the metrics of fast-path steps lag by up to that much.

Frames (little-endian; fastpath.cpp and policy.cpp document the same):
  from the front end: u32 length | u64 call id | u8 kind | payload
  to the front end:   u32 length | u64 call id | u8 status | payload
Call id 0 is no call: kind 6 from the front end is a batch of served steps, status 255
to it the model table. With --max-action-delta a stream's rate-limit memory crosses over
with the messages the front end forwards: kind 7 carries it with a stream message (u32
length | message | memory), status 254 hands it back to the stream before the answers, so
the limit applies across both sides in the stream's order (memory: u8 has_previous | str
model | u32 n | f64[n]).
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import grpc
import numpy as np

from sim2real.serve.core import (
    Outcome,
    PolicyCore,
    RequestError,
    StreamState,
    check_size,
    decode_message,
    decode_request,
)
from sim2real.serve.model import CPU, INPUT_NAME, OUTPUT_NAME
from sim2real.serve.security import TlsFiles
from sim2real.serve.uds import SocketFile, bind_umask, prepare_socket_path
from sim2real.v1 import policy_pb2

if TYPE_CHECKING:
    from sim2real.serve.server import PolicyServicer

log = logging.getLogger("sim2real.serve.fastpath")

ACT, STREAM_MESSAGE, STREAM_OPEN, STREAM_CLOSE, INFO, REPORT, STREAM_MESSAGE_WITH_STATE, DRAINING = 1, 2, 3, 4, 5, 6, 7, 8
MODEL_TABLE, STREAM_STATE, DRAIN = 255, 254, 253
TABLE_FORMAT = 2
MAX_TABLE_BYTES = 256 << 20
"""The front end's limit on a model table (fastpath.cpp kMaxTableBytes): models that would
make the table larger are served by this process instead."""
DROPPED_RECORD = 0
"""A report record that carries the number of step reports the front end dropped."""
_HEADER = struct.Struct("<IQB")  # length, call id, kind/status
_U32 = struct.Struct("<I")
_RECORD = struct.Struct("<qqB")  # version, compute_ns, flags (after the method and the name)
FastInference = Literal["auto", "cpp", "python"]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
"""How long the front end may take beyond its grace period to exit after SIGTERM."""
DRAIN_ACK_TIMEOUT_S = 2.0
"""How long a drain waits for the front end to say it refuses new calls."""
DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FastPathAddresses:
    port: int | None
    uds: Path | None
    inference: str = "python"
    """Where the fast path runs the policy: 'cpp' (in the front end, with the onnxruntime
    library named) or 'python' (every message comes to this process)."""


def onnxruntime_library() -> Path | None:
    """The shared library the onnxruntime wheel ships beside its Python module (the same
    build this process runs), or None when the wheel has none."""
    import onnxruntime

    capi = Path(onnxruntime.__file__).resolve().parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so*"))
    return found[0] if found else None


def _text(value: str) -> bytes:
    data = value.encode()
    return _U32.pack(len(data)) + data


def model_table(core: PolicyCore, want_bytes: bool) -> bytes:
    """The table the front end serves from (format in serve/fastpath/policy.cpp): every
    model the repository serves on the CPU, as this process validated it, with the safety
    settings. A model whose file no longer matches the sha256 it was loaded with (being
    rewritten) is left out: its requests come here until the reload settles."""
    repository = core.repository
    safety = core.safety
    parts = [
        struct.pack("<BBdB", TABLE_FORMAT, safety.nonfinite == "sanitize", safety.max_action_delta or 0.0, want_bytes),
        _text(INPUT_NAME), _text(OUTPUT_NAME),  # the contract's names, written once (serve/model.py)
        _text(repository.default_name or ""),
    ]
    size = 9 + sum(len(p) for p in parts) + 4
    entries = []
    for model in repository.serving().values():
        if model.provider != CPU:
            continue  # the front end runs on the CPU; a CUDA model's requests come here
        try:
            onnx = model.path.read_bytes()
        except OSError as err:
            log.warning("fast path: cannot read %s (%s); its requests go through Python", model.path, err)
            continue
        if hashlib.sha256(onnx).hexdigest() != model.sha256:
            continue
        try:
            fill, low, high = core.sanitize_bounds(model)
        except (TypeError, ValueError) as err:  # odd normalizer metadata: Python answers this model
            log.warning("fast path: %s version %d stays with Python (%s)", model.name, model.version, err)
            continue
        entry = (
            _text(model.name) + struct.pack("<qII", model.version, model.obs_dim, model.act_dim) + _text(model.sha256)
            + _U32.pack(len(onnx)) + onnx
            + b"".join(np.asarray(a, "<f4").tobytes() for a in (fill, low, high))
        )
        if size + len(entry) > MAX_TABLE_BYTES:
            log.warning("fast path: %s version %d (%d bytes) would pass the front end's %d MiB table; its requests "
                        "go through Python", model.name, model.version, len(onnx), MAX_TABLE_BYTES >> 20)
            continue
        size += len(entry)
        entries.append(entry)
    parts.append(_U32.pack(len(entries)))
    payload = b"".join(parts + entries)
    return _HEADER.pack(9 + len(payload), 0, MODEL_TABLE) + payload


class FastPathFrontend:
    """Starts sim2real_fastpath as a child process and answers its messages on a thread.

    ``servicer`` is the asyncio server's PolicyServicer: its core, metrics, recorder and
    limits are shared, so a model reload, a recording or a metric sees both listeners.
    """

    def __init__(
        self, binary: Path, servicer: PolicyServicer, *, host: str, port: int | None, uds: Path | None, uds_mode: int,
        token_file: Path | None, token: str | None, tls: TlsFiles | None, max_message_bytes: int,
        transport_factor: int, max_calls: int = 256, max_calls_per_connection: int = 32,
        inference: FastInference = "auto", grace_seconds: float = 5.0,
    ) -> None:
        self.binary = binary
        self.servicer = servicer
        self.host, self.port, self.uds, self.uds_mode = host, port, uds, uds_mode
        self.token_file, self.token, self.tls = token_file, token, tls
        self.max_message_bytes = max_message_bytes
        self.transport_factor = transport_factor
        self.max_calls, self.max_calls_per_connection = max_calls, max_calls_per_connection
        self.inference = inference
        self.grace_seconds = grace_seconds
        self.library: Path | None = None
        self.library_version: str | None = None
        """onnxruntime's version as the front end read it from the library (ready line)."""
        self._send_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._draining = threading.Event()
        """Set when the front end said it refuses new calls (its DRAINING frame)."""
        self._drain_sent = False
        self._table_lock = threading.Lock()
        self._limited = servicer.core.safety.max_action_delta is not None
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_file: SocketFile | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._token_path: Path | None = None
        self.addresses: FastPathAddresses | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FastPathAddresses:
        addresses: list[str] = []
        if self.port is not None:
            addresses.append(f"{self.host}:{self.port}")
        if self.uds is not None:
            if prepare_socket_path(self.uds, field="--fast-uds"):
                log.warning("--fast-uds %s: removed a stale socket left by a server that is no longer running", self.uds)
            addresses.append(f"unix:{self.uds}")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [
            os.fspath(self.binary), "--worker-fd", str(theirs.fileno()),
            "--max-receive-bytes", str(min(self.max_message_bytes * self.transport_factor, 2**31 - 1)),
            "--max-send-bytes", str(self.max_message_bytes),
            "--max-calls", str(self.max_calls), "--max-calls-per-connection", str(self.max_calls_per_connection),
            "--grace-ms", str(round(self.grace_seconds * 1000)),
        ]
        for address in addresses:
            command += ["--address", address]
        self.library = self._library()
        if self.library is not None:
            command += ["--onnxruntime", os.fspath(self.library)]
        command += self._token_args()
        if self.tls is not None:
            command += ["--tls-cert", os.fspath(self.tls.cert), "--tls-key", os.fspath(self.tls.key)]
            if self.tls.client_ca is not None:
                command += ["--tls-client-ca", os.fspath(self.tls.client_ca)]
        try:
            # The child binds the socket file under an owner-only umask (it creates no other
            # file); --uds-mode is applied once it is there, as for --uds.
            with bind_umask():
                self.process = subprocess.Popen(command, stdout=subprocess.PIPE, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self._sock = ours
        try:
            if self.library is not None:
                # Listening first, so that no swap between this table and the listeners is
                # missed; each table is built and sent under one lock, so an older one
                # never follows a newer one.
                repository = self.servicer.core.repository
                repository.add_listener(lambda _model: self._send_table())
                repository.add_unload_listener(lambda _name, _version: self._send_table())
                # Read by the front end before it listens: no request finds it without a table.
                self._send_table()
            ports = self._await_ready()
            if self.uds is not None:
                self.socket_file = SocketFile.created(self.uds, self.uds_mode, field="--fast-uds")
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._serve, name="fastpath-worker", daemon=True)
        self._thread.start()
        self.addresses = FastPathAddresses(
            ports[0] if self.port is not None else None, self.uds, "cpp" if self.library is not None else "python"
        )
        return self.addresses

    def _library(self) -> Path | None:
        if self.inference == "python":
            return None
        library = onnxruntime_library()
        if library is None and self.inference == "cpp":
            raise OSError(
                "--fast-inference cpp: the installed onnxruntime wheel ships no libonnxruntime.so in its capi/ "
                "folder; use --fast-inference python (or auto)"
            )
        return library

    def _send_table(self) -> None:
        """The model table to the front end (at start, and from the loading thread after
        a swap or an unload)."""
        with self._table_lock:
            sock = self._sock
            if sock is None:
                return
            frame = model_table(self.servicer.core, self.servicer.recorder is not None)
            try:
                with self._send_lock:
                    sock.sendall(frame)
            except OSError as err:
                log.error("fast path: could not send the model table (%s)", err)

    def _send_drain(self, grace: float) -> bool:
        sock = self._sock
        if sock is None:
            return False
        payload = _U32.pack(min(round(grace * 1000), 2**32 - 1))
        try:
            with self._send_lock:
                sock.sendall(_HEADER.pack(9 + len(payload), 0, DRAIN) + payload)
        except OSError:
            return False
        return True

    def _token_args(self) -> list[str]:
        if self.token is None:
            return []
        # The token as this process read it (--token-file or $SIM2REAL_TOKEN), so both
        # listeners accept exactly the same one: in a file only this user can read (an
        # argument would show in ps), removed once the child has read it.
        fd, name = _private_file()
        with os.fdopen(fd, "w") as handle:
            handle.write(self.token)
        self._token_path = Path(name)
        return ["--token-file", name]

    def _await_ready(self) -> list[int]:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(f"--fast-path: {self.binary} did not report ready within {READY_TIMEOUT_S:g} s")
            readable, _, _ = select.select([self.process.stdout], [], [], left)
            if not readable:
                continue
            chunk = os.read(self.process.stdout.fileno(), 256)
            if not chunk:
                code = self.process.wait(timeout=STOP_TIMEOUT_S)
                raise OSError(
                    f"--fast-path: {self.binary} exited with status {code} before serving "
                    "(its error is printed above; is the --fast-port in use?)"
                )
            line += chunk
        if self._token_path is not None:
            self._token_path.unlink(missing_ok=True)
            self._token_path = None
        words = line.decode(errors="replace").split()
        if not words or words[0] != "ready":
            raise OSError(f"--fast-path: unexpected first line from {self.binary}: {line!r}")
        ports = []
        for word in words[1:]:
            key, _, value = word.partition("=")
            if key == "onnxruntime" and value:
                self.library_version = value
            elif word.isdigit():
                ports.append(int(word))
            else:
                raise OSError(f"--fast-path: unexpected first line from {self.binary}: {line!r}")
        return ports

    def begin_drain(self, grace: float | None = None) -> bool:
        """Ask the front end to drain (new calls refused at once, open ones given ``grace``
        seconds, default the server's) and wait until it says it refuses new calls; False
        when it could not be asked or did not answer (stop() then signals it)."""
        grace = self.grace_seconds if grace is None else max(0.0, grace)
        with self._stop_lock:
            if not self._drain_sent:
                self._drain_sent = self._send_drain(grace)
            if not self._drain_sent:
                return False
        return self._draining.wait(DRAIN_ACK_TIMEOUT_S)

    def stop(self, grace: float | None = None) -> None:
        """Stop the front end: it drains as the main listener does (begin_drain), exits
        once its open calls end or the grace period does, then the thread. Safe to call
        from several threads and more than once."""
        grace = self.grace_seconds if grace is None else max(0.0, grace)
        self.begin_drain(grace)
        with self._stop_lock:
            self._stop_locked(grace)

    def _stop_locked(self, grace: float) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                if not self._draining.is_set():
                    self.process.terminate()  # SIGTERM: the same drain, with --grace-ms
                try:
                    self.process.wait(timeout=max(grace, self.grace_seconds) + STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._token_path is not None:
            self._token_path.unlink(missing_ok=True)
            self._token_path = None
        if self.socket_file is not None:
            try:
                self.socket_file.remove()
            except OSError as err:
                log.error("could not remove the socket file %s: %s", self.socket_file.path, err)
            self.socket_file = None

    # --- the request path ----------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        streams: dict[int, StreamState] = {}
        buffer = bytearray()
        try:
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                frames: list[tuple[int, int, bytes]] = []
                offset = 0
                while len(buffer) - offset >= 4:
                    length = int.from_bytes(buffer[offset:offset + 4], "little")
                    if len(buffer) - offset - 4 < length:
                        break
                    _, call, kind = _HEADER.unpack_from(buffer, offset)
                    frames.append((call, kind, bytes(buffer[offset + _HEADER.size: offset + 4 + length])))
                    offset += 4 + length
                del buffer[:offset]
                # Everything that arrived together is answered together: one model call
                # for all its observations, one send.
                try:
                    answers = self._answer(frames, streams)
                except Exception:  # noqa: BLE001 - a bug here must not silence the listener
                    log.exception("fast path: answering %d messages failed", len(frames))
                    answers = [_status(call, grpc.StatusCode.INTERNAL, "internal error in the policy server (logged)")
                               for call, kind, _ in frames
                               if kind in (ACT, STREAM_MESSAGE, STREAM_MESSAGE_WITH_STATE, INFO)]
                if answers:
                    with self._send_lock:
                        sock.sendall(b"".join(answers))
        except OSError as err:
            log.debug("fast path worker socket closed: %s", err)
        finally:
            metrics = self.servicer.metrics
            for _ in streams:
                metrics.streams.dec()
            streams.clear()
            if self.process is not None and self.process.poll() is not None:
                log.error("the fast path front end exited (status %s); --fast-port/--fast-uds no longer serve",
                          self.process.returncode)

    def _answer(self, frames: list[tuple[int, int, bytes]], streams: dict[int, StreamState]) -> list[bytes]:
        """The answers to a batch of frames, in frame order (a stream's in its order)."""
        servicer = self.servicer
        answers: list[bytes | None] = []
        batch: list[tuple[policy_pb2.ActRequest, StreamState | None]] = []
        pending: list[tuple[int, int, int, policy_pb2.ActRequest]] = []  # answer slot, call, kind, request
        touched: set[int] = set()  # streams whose rate-limit memory goes back with the answers
        for call, kind, payload in frames:
            if call == 0 and kind == DRAINING:
                self._draining.set()
                continue
            if call == 0 and kind == REPORT:
                try:
                    self._account(payload)
                except Exception:  # noqa: BLE001 - lost metrics must not fail the requests beside them
                    log.exception("fast path: a batch of step reports (%d bytes) could not be counted", len(payload))
                continue
            if kind == STREAM_MESSAGE_WITH_STATE:
                if call in streams:
                    payload = _take_state(payload, streams[call])
                kind = STREAM_MESSAGE
            if kind == STREAM_MESSAGE and self._limited:
                touched.add(call)
            if kind in (STREAM_MESSAGE, ACT):
                state = streams.get(call) if kind == STREAM_MESSAGE else None
                if kind == STREAM_MESSAGE and state is None:  # a stream never opened: not ours
                    answers.append(_status(call, grpc.StatusCode.INTERNAL, "unknown stream"))
                    continue
                request = self._parse(call, kind, payload)
                if isinstance(request, bytes):  # malformed or oversized: answered already
                    answers.append(request)
                    continue
                pending.append((len(answers), call, kind, request))
                batch.append((request, state))
                answers.append(None)
            elif kind == INFO:
                answers.append(self._info(call, payload))
            elif kind == STREAM_OPEN:
                streams[call] = StreamState()
                servicer.metrics.streams.inc()
            elif kind == STREAM_CLOSE:
                if streams.pop(call, None) is not None:
                    servicer.metrics.streams.dec()
            else:
                answers.append(_status(call, grpc.StatusCode.INTERNAL, f"unknown frame kind {kind}"))
        if batch:
            for (slot, call, kind, request), outcome in zip(pending, servicer.core.act_many(batch), strict=True):
                answers[slot] = self._respond(call, kind, request, outcome)
        # Each touched stream's memory after all of its messages here, ahead of their answers:
        # the front end serves that stream again only once all its forwarded messages are
        # answered, and then with this memory.
        states = [_state_frame(call, streams[call]) for call in touched if call in streams]
        return states + [a for a in answers if a is not None]

    def _account(self, payload: bytes) -> None:
        """Metrics and recording for a batch of steps the front end served itself."""
        servicer = self.servicer
        recorder = servicer.recorder
        counts = {ACT: 0, STREAM_MESSAGE: 0}
        offset, end = 0, len(payload)
        while offset < end:
            method = payload[offset]
            if method == DROPPED_RECORD:
                (dropped,) = struct.unpack_from("<Q", payload, offset + 1)
                offset += 9
                servicer.metrics.fastpath_reports_dropped.inc(dropped)
                continue
            (n,) = _U32.unpack_from(payload, offset + 1)
            name = payload[offset + 5: offset + 5 + n].decode()
            offset += 5 + n
            _version, compute_ns, flags = _RECORD.unpack_from(payload, offset)
            offset += _RECORD.size
            (n,) = _U32.unpack_from(payload, offset)
            request = payload[offset + 4: offset + 4 + n]
            offset += 4 + n
            (n,) = _U32.unpack_from(payload, offset)
            response = payload[offset + 4: offset + 4 + n]
            offset += 4 + n
            counts[method] = counts.get(method, 0) + 1
            servicer._observe("StreamAct" if method == STREAM_MESSAGE else "Act", name, compute_ns * 1e-9,
                              bool(flags & 1), bool(flags & 2))
            if recorder is not None and request:
                recorder.submit(policy_pb2.ActRequest.FromString(request), policy_pb2.ActResponse.FromString(response))
        if counts[ACT]:
            servicer._requests_act.inc(counts[ACT])
        if counts[STREAM_MESSAGE]:
            servicer._requests_stream.inc(counts[STREAM_MESSAGE])

    def _parse(self, call: int, kind: int, raw: bytes) -> policy_pb2.ActRequest | bytes:
        """The request, or the answer to a message that does not parse or is too big (as
        the main listener answers it: a status for Act, an in-stream error for StreamAct)."""
        servicer = self.servicer
        method = "StreamAct" if kind == STREAM_MESSAGE else "Act"
        (servicer._requests_stream if kind == STREAM_MESSAGE else servicer._requests_act).inc()
        request: policy_pb2.ActRequest | None = None
        try:
            request = decode_request(raw)
            check_size(len(raw), self.max_message_bytes)
            return request
        except RequestError as err:
            servicer.metrics.errors.labels(method, err.code.name).inc()
            if kind == ACT:
                return _error(call, err)
            # A broken or hostile client, unlike a wrong observation: logged, throttled.
            servicer.throttle.warning(f"bad-request-{err.code.name}", "StreamAct message (fast path): %s", err.message)
            return _ok(call, _step_error(request, err))

    def _respond(self, call: int, kind: int, request: policy_pb2.ActRequest, outcome: Outcome | RequestError) -> bytes:
        servicer = self.servicer
        method = "StreamAct" if kind == STREAM_MESSAGE else "Act"
        if isinstance(outcome, RequestError):
            servicer.metrics.errors.labels(method, outcome.code.name).inc()
            return _error(call, outcome) if kind == ACT else _ok(call, _step_error(request, outcome))
        servicer._observe(method, outcome.model.name, outcome.compute_ns * 1e-9, outcome.clamped, outcome.rate_limited)
        if servicer.recorder is not None:
            servicer.recorder.submit(request, outcome.response)
        return _ok(call, outcome.response.SerializeToString())

    def _info(self, call: int, payload: bytes) -> bytes:
        servicer = self.servicer
        try:
            request = decode_message(payload, policy_pb2.PolicyInfoRequest.FromString, "sim2real.v1.PolicyInfoRequest")
            return _ok(call, servicer.core.policy_info(request.model_name).SerializeToString())
        except RequestError as err:
            servicer.metrics.errors.labels("GetPolicyInfo", err.code.name).inc()
            return _error(call, err)


def _take_state(payload: bytes, state: StreamState) -> bytes:
    """The message of a kind-7 frame; the stream's memory it carries goes into ``state``."""
    (n,) = _U32.unpack_from(payload, 0)
    message, memory = payload[4:4 + n], payload[4 + n:]
    has = memory[0] == 1
    (name_length,) = _U32.unpack_from(memory, 1)
    name = memory[5:5 + name_length].decode()
    (count,) = _U32.unpack_from(memory, 5 + name_length)
    values = np.frombuffer(memory, "<f8", count, 9 + name_length).astype(np.float64)
    state.previous_action = values if has else None
    # The version is not compared (core.py: a reloaded version of the same model stays limited).
    state.model_key = (name, 0) if has else None
    return message


def _state_frame(call: int, state: StreamState) -> bytes:
    has = state.previous_action is not None and state.model_key is not None
    values = np.asarray(state.previous_action, "<f8") if has else np.empty(0, "<f8")
    payload = bytes([has]) + _text(state.model_key[0] if has else "") + _U32.pack(len(values)) + values.tobytes()
    return _HEADER.pack(9 + len(payload), call, STREAM_STATE) + payload


def _step_error(request: policy_pb2.ActRequest | None, err: RequestError) -> bytes:
    """A StreamAct answer carrying its message's error (the stream goes on)."""
    return policy_pb2.ActResponse(
        sequence=request.sequence if request is not None else 0,
        client_time_ns=request.client_time_ns if request is not None else 0,
        error=policy_pb2.StepError(code=err.code.value[0], message=err.wire_message),
    ).SerializeToString()


def _ok(call: int, payload: bytes) -> bytes:
    return _HEADER.pack(9 + len(payload), call, 0) + payload


def _status(call: int, code: grpc.StatusCode, message: str, details: bytes = b"") -> bytes:
    text = message.encode()
    payload = len(text).to_bytes(4, "little") + text + details
    return _HEADER.pack(9 + len(payload), call, code.value[0]) + payload


def _error(call: int, err: RequestError) -> bytes:
    details = b"".join(value for key, value in err.trailing_metadata() if key == DETAILS_KEY)
    return _status(call, err.code, err.wire_message, details)


def _private_file() -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix="sim2real-fastpath-token-")
