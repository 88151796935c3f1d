"""Recording what a policy server serves, without slowing what it serves.

The request path only appends the already-encoded request and response bytes to an
in-memory buffer. A flusher thread wakes every 10 ms and hands the buffer to a writer
*process* through a pipe; that process decodes the steps and writes rotating MCAP files
(one series per model). The MCAP work (building RobotStep messages, indexing, zstd) runs
outside the server's interpreter, so it never holds the GIL the server answers robots
with, and no thread is woken per request (benchmarks/replay_speed.py measured both of
these as request latency when the writer was a thread).

When the writer cannot keep up, the pipe fills, the buffer grows to its bound, and
further steps are dropped and counted, never waited for. Disk use is bounded by rotation
(file size x file count, oldest file first). No pickle: frames are length-prefixed
protobuf bytes and the writer's final report is one JSON line.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from sim2real.logformat.mcap_log import Compression, LogWriter
from sim2real.v1 import log_pb2, policy_pb2

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.01
# Frame: kind (0 = step, 1 = LogInfo of a model), payload length, server receive time.
_HEADER = struct.Struct("<BIq")
_REQUEST_LENGTH = struct.Struct("<I")
STEP, INFO = 0, 1


@dataclass(frozen=True)
class RecorderConfig:
    directory: Path
    max_file_bytes: int = 64 << 20
    max_files: int = 20
    queue_size: int = 65536
    """Steps that may wait for the writer; beyond it they are dropped and counted."""
    compression: Compression = "zstd"
    prefix: str = "serve"

    def __post_init__(self) -> None:
        if self.max_file_bytes < 4096:
            raise ValueError(f"record max file size: expected >= 4096 bytes, got {self.max_file_bytes}")
        if self.max_files < 1:
            raise ValueError(f"record max files: expected >= 1, got {self.max_files}")
        if self.queue_size < 1:
            raise ValueError(f"record queue size: expected >= 1, got {self.queue_size}")


@dataclass
class RecorderStats:
    submitted: int = 0
    written: int = 0
    """Steps in the closed log files."""
    dropped: int = 0
    """Steps not buffered because the writer had fallen a whole buffer behind."""
    failed: int = 0
    """Steps the writer could not write (e.g. disk full)."""
    files: int = 0
    deleted_files: int = 0


class RotatingLogs:
    """The writing side: per-model LogWriters with size rotation and a file-count bound."""

    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self.stats = RecorderStats()
        self.infos: dict[str, log_pb2.LogInfo] = {}
        self._writers: dict[str, LogWriter] = {}
        self.paths: list[Path] = []
        config.directory.mkdir(parents=True, exist_ok=True)

    def _open(self, model_name: str) -> LogWriter:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name) or "default"
        path = self.config.directory / f"{self.config.prefix}-{safe}-{stamp}-{self.stats.files:05d}.mcap"
        self.stats.files += 1
        self.paths.append(path)
        while len(self.paths) > self.config.max_files:
            oldest = self.paths.pop(0)
            oldest.unlink(missing_ok=True)
            self.stats.deleted_files += 1
        info = self.infos.get(model_name) or log_pb2.LogInfo(source="server", model_name=model_name)
        return LogWriter(path, info, compression=self.config.compression)

    def _close(self, model_name: str) -> None:
        writer = self._writers.pop(model_name)  # forgotten even if closing fails
        writer.close()

    def write(self, request: policy_pb2.ActRequest, response: policy_pb2.ActResponse, received_ns: int) -> None:
        name = response.model_name
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = self._open(name)
        # The client's clock when it gave one; a missing or negative one (MCAP times are
        # unsigned) falls back to the server's receive time.
        t = request.client_time_ns if request.client_time_ns > 0 else received_ns
        writer.write(log_pb2.RobotStep(
            timestamp_ns=t, sequence=request.sequence, observation=request.observation,
            action=response.action, model_name=name, model_version=response.model_version,
            latency_ns=response.server_compute_ns,
        ))
        self.stats.written += 1
        if writer.bytes_on_disk() >= self.config.max_file_bytes:
            self._close(name)

    def close(self) -> None:
        for name in list(self._writers):
            try:
                self._close(name)
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing the log of %s failed", name)


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def writer_process_main(argv: list[str]) -> int:
    """The writer process: frames on stdin -> MCAP files; a JSON report on stdout at EOF."""
    config_json = json.loads(argv[0])
    config = RecorderConfig(**{**config_json, "directory": Path(config_json["directory"])})
    logs = RotatingLogs(config)
    stdin = sys.stdin.buffer
    while (header := _read_exact(stdin, _HEADER.size)) is not None:
        kind, length, received_ns = _HEADER.unpack(header)
        payload = _read_exact(stdin, length)
        if payload is None:
            break
        try:
            if kind == INFO:
                info = log_pb2.LogInfo.FromString(payload)
                logs.infos[info.model_name] = info
                continue
            (request_length,) = _REQUEST_LENGTH.unpack_from(payload)
            start = _REQUEST_LENGTH.size
            request = policy_pb2.ActRequest.FromString(payload[start : start + request_length])
            response = policy_pb2.ActResponse.FromString(payload[start + request_length :])
            logs.write(request, response, received_ns)
        except Exception as err:  # noqa: BLE001 - one bad step must not end the recording
            logs.stats.failed += 1
            print(f"recording a step failed: {err}", file=sys.stderr)
    logs.close()
    report = {**asdict(logs.stats), "paths": [str(p) for p in logs.paths]}
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


class StepRecorder:
    """Buffer on the request path, flusher thread, writer process."""

    def __init__(self, config: RecorderConfig, info: Callable[[str], log_pb2.LogInfo]) -> None:
        """``info(model_name)``: the LogInfo of that model's files (each model gets its
        own, so the names, sizes and scales in a file are its own)."""
        self.config = config
        self._info = info
        self.stats = RecorderStats()
        self._known_models: set[str] = set()
        self._pending = bytearray()
        self._pending_steps = 0
        self._lock = threading.Lock()  # the swap of the buffer vs. appends from other threads
        self._stop = threading.Event()
        config.directory.mkdir(parents=True, exist_ok=True)
        settings = {**asdict(config), "directory": str(config.directory)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sim2real.serve.recorder", json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
        )
        self._paths: list[Path] = []
        self._flusher = threading.Thread(target=self._flush_forever, name="sim2real-recorder", daemon=True)
        self._flusher.start()

    # --- hot path ---------------------------------------------------------------------------
    def submit(self, request: policy_pb2.ActRequest, response: policy_pb2.ActResponse) -> None:
        """Never blocks on the writer: drops (and counts) when a whole buffer is waiting."""
        self.stats.submitted += 1
        if self._pending_steps >= self.config.queue_size:
            self.stats.dropped += 1
            return
        name = response.model_name
        request_bytes = request.SerializeToString()
        payload = _REQUEST_LENGTH.pack(len(request_bytes)) + request_bytes + response.SerializeToString()
        with self._lock:
            if name not in self._known_models:
                self._known_models.add(name)
                info = self._info(name).SerializeToString()
                self._pending += _HEADER.pack(INFO, len(info), 0) + info
            self._pending += _HEADER.pack(STEP, len(payload), time.time_ns()) + payload
            self._pending_steps += 1

    # --- flusher thread -----------------------------------------------------------------------
    def _flush(self) -> bool:
        with self._lock:
            data, self._pending = self._pending, bytearray()
            self._pending_steps = 0
        if not data:
            return True
        try:
            assert self._process.stdin is not None
            self._process.stdin.write(data)  # blocks (GIL released) while the writer catches up
            self._process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            log.error("the recorder's writer process is gone; steps are no longer recorded")
            return False

    def _flush_forever(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            if not self._flush():
                return
        self._flush()

    def paths(self) -> list[Path]:
        """Log files on disk, oldest first (complete once the recorder is closed)."""
        return [p for p in self._paths if p.exists()]

    def close(self, timeout: float = 60.0) -> RecorderStats:
        """Write everything submitted so far, close the files, stop the writer process.
        Raises TimeoutError if the writer has not finished within ``timeout`` seconds."""
        self._stop.set()
        self._flusher.join(timeout)
        try:
            out, _ = self._process.communicate(timeout=timeout)  # closes stdin: EOF
        except subprocess.TimeoutExpired:
            self._process.kill()
            raise TimeoutError(f"the recorder's writer did not finish within {timeout:g} s") from None
        try:
            report = json.loads(out.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            log.error("the recorder's writer exited %s without a report", self._process.returncode)
            return self.stats
        for key in ("written", "failed", "files", "deleted_files"):
            setattr(self.stats, key, int(report[key]))
        self._paths = [Path(p) for p in report["paths"]]
        return self.stats


if __name__ == "__main__":
    sys.exit(writer_process_main(sys.argv[1:]))
