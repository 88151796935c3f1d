"""Recording what a policy server serves, without slowing what it serves.

The request path only appends (request, response) to a bounded queue; a writer thread
turns them into RobotStep messages in rotating MCAP files. When the disk cannot keep up,
the queue fills and further steps are dropped and counted, never waited for: a robot's
action must not queue behind a log write. Disk use is bounded by rotation (file size x
file count; the oldest file goes first).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sim2real.serve.logs import Compression, LogWriter
from sim2real.v1 import log_pb2, policy_pb2

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class RecorderConfig:
    directory: Path
    max_file_bytes: int = 64 << 20
    max_files: int = 20
    queue_size: int = 65536
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
    """Steps in files that were closed or are open and flushed on close."""
    dropped: int = 0
    """Steps not queued because the queue was full (the writer fell behind)."""
    failed: int = 0
    """Steps the writer could not write (e.g. disk full)."""
    files: int = 0
    deleted_files: int = 0


class StepRecorder:
    """Queue + writer thread + rotating LogWriter."""

    def __init__(self, config: RecorderConfig, info: Callable[[str], log_pb2.LogInfo]) -> None:
        """``info(model_name)``: the LogInfo of a file holding that model's steps (each
        model gets its own files, so names, sizes and scales in a file are its own)."""
        self.config = config
        self._info = info
        self.stats = RecorderStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)
        self._writers: dict[str, LogWriter] = {}
        self._paths: list[Path] = []
        config.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="sim2real-recorder", daemon=True)
        self._thread.start()

    # --- hot path ---------------------------------------------------------------------------
    def submit(self, request: policy_pb2.ActRequest, response: policy_pb2.ActResponse) -> None:
        """Never blocks: drops (and counts) when the queue is full."""
        self.stats.submitted += 1
        try:
            self._queue.put_nowait((request, response, time.time_ns()))
        except queue.Full:
            self.stats.dropped += 1

    # --- writer thread ------------------------------------------------------------------------
    def _open(self, model_name: str) -> LogWriter:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name) or "default"
        path = self.config.directory / f"{self.config.prefix}-{safe}-{stamp}-{self.stats.files:05d}.mcap"
        self.stats.files += 1
        self._paths.append(path)
        while len(self._paths) > self.config.max_files:
            oldest = self._paths.pop(0)
            oldest.unlink(missing_ok=True)
            self.stats.deleted_files += 1
        return LogWriter(path, self._info(model_name), compression=self.config.compression)

    def _close_writer(self, model_name: str) -> None:
        writer = self._writers.pop(model_name)  # forgotten even if closing fails
        writer.close()

    def _write(self, item: tuple[policy_pb2.ActRequest, policy_pb2.ActResponse, int]) -> None:
        request, response, received_ns = item
        name = response.model_name
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = self._open(name)
        # The client's clock when it gave one; a missing or negative one (MCAP times are
        # unsigned) falls back to the server's receive time.
        t = request.client_time_ns if request.client_time_ns > 0 else received_ns
        step = log_pb2.RobotStep(
            timestamp_ns=t,
            sequence=request.sequence,
            observation=request.observation,
            action=response.action,
            model_name=name,
            model_version=response.model_version,
            latency_ns=response.server_compute_ns,
        )
        writer.write(step)
        self.stats.written += 1
        if writer.bytes_on_disk() >= self.config.max_file_bytes:
            self._close_writer(name)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                self._write(item)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - a full disk must not kill the recorder thread
                self.stats.failed += 1
                log.exception("recording a step failed")
        for name in list(self._writers):
            try:
                self._close_writer(name)
            except Exception:  # noqa: BLE001
                log.exception("closing the log of %s failed", name)

    def paths(self) -> list[Path]:
        """Log files still on disk, oldest first."""
        return [p for p in self._paths if p.exists()]

    def close(self, timeout: float = 60.0) -> RecorderStats:
        """Write everything queued so far, close the files, stop the thread. Raises
        TimeoutError if the writer has not finished within ``timeout`` seconds."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            raise TimeoutError(f"the recorder's queue stayed full for {timeout:g} s") from None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the recorder did not finish writing within {timeout:g} s")
        return self.stats
