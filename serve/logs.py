"""Trajectory logs as MCAP files with protobuf schemas (protos/sim2real/v1/log.proto).

Channels: ``/sim2real/info`` carries one LogInfo (what the vectors mean), ``/sim2real/steps``
one RobotStep per control step. Chunks are zstd (or lz4) compressed with CRCs on, and the
schemas are embedded, so Foxglove and the ``mcap`` CLI read the files as they are.

Reading is sequential and forgiving: a truncated or corrupted file yields every message
before the damage, then raises LogDamagedError saying at which byte reading stopped, how
much of the file was left unread, and why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from google.protobuf import descriptor_pb2
from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

from sim2real.v1 import log_pb2

INFO_TOPIC = "/sim2real/info"
STEPS_TOPIC = "/sim2real/steps"
EPISODES_TOPIC = "/sim2real/episodes"
PROFILE = "sim2real"
MESSAGE_TYPES: dict[str, type[Any]] = {
    log_pb2.LogInfo.DESCRIPTOR.full_name: log_pb2.LogInfo,
    log_pb2.RobotStep.DESCRIPTOR.full_name: log_pb2.RobotStep,
    log_pb2.EpisodeInfo.DESCRIPTOR.full_name: log_pb2.EpisodeInfo,
}
Compression = Literal["zstd", "lz4", "none"]
_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


class LogError(ValueError):
    """A log that cannot be read as a sim2real log (wrong format, unknown schema, empty)."""


class LogDamagedError(LogError):
    """Reading stopped early: every message before the damage was yielded."""

    def __init__(
        self, path: Path, offset: int, size: int, steps_read: int, reason: str, truncated: bool = False
    ) -> None:
        lost = max(size - offset, 0)
        if truncated:
            where = (
                f"truncated: the file ends inside a record at byte {size} (the last chunk, and "
                f"anything after it, was never completely written)"
            )
        else:
            where = (
                f"damaged at byte {offset} of {size}: {lost} bytes "
                f"({100 * lost / max(size, 1):.1f}% of the file) left unread"
            )
        super().__init__(f"{path}: {where}; {steps_read} steps read before it. Cause: {reason}")
        self.path, self.offset, self.size, self.steps_read, self.reason = path, offset, size, steps_read, reason
        self.truncated = truncated


def _file_descriptor_set(message_type: type[Any]) -> bytes:
    """The schema data MCAP's protobuf profile wants: a FileDescriptorSet with dependencies."""
    fds = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor: Any) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dep in file_descriptor.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        fds.file.append(proto)

    add(message_type.DESCRIPTOR.file)
    return fds.SerializeToString()


class LogWriter:
    """Writes one MCAP log: LogInfo first, then steps.

        with LogWriter(path, info) as log:
            log.write(step)

    Close (or leave the ``with``) to write the summary; a file cut short by a crash is
    still readable up to its last complete chunk.
    """

    def __init__(
        self, path: Path, info: log_pb2.LogInfo, compression: Compression = "zstd", chunk_size: int = 256 * 1024
    ) -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"compression: expected one of {sorted(_COMPRESSION)}, got {compression!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=_COMPRESSION[compression], enable_crcs=True)
        self._writer.start(profile=PROFILE, library="sim2real")
        info_schema = self._writer.register_schema(
            log_pb2.LogInfo.DESCRIPTOR.full_name, "protobuf", _file_descriptor_set(log_pb2.LogInfo)
        )
        step_schema = self._writer.register_schema(
            log_pb2.RobotStep.DESCRIPTOR.full_name, "protobuf", _file_descriptor_set(log_pb2.RobotStep)
        )
        episode_schema = self._writer.register_schema(
            log_pb2.EpisodeInfo.DESCRIPTOR.full_name, "protobuf", _file_descriptor_set(log_pb2.EpisodeInfo)
        )
        self._info_channel = self._writer.register_channel(INFO_TOPIC, "protobuf", info_schema)
        self._step_channel = self._writer.register_channel(STEPS_TOPIC, "protobuf", step_schema)
        self._episode_channel = self._writer.register_channel(EPISODES_TOPIC, "protobuf", episode_schema)
        self._writer.add_message(self._info_channel, 0, info.SerializeToString(), 0, 0)
        self.steps_written = 0
        self.bytes_payload = 0
        self._closed = False

    @staticmethod
    def _check_time(t: int) -> None:
        # MCAP times are unsigned 64-bit; a bad value would fail half-way through a record
        # and cost the whole file, so it is refused before anything is written.
        if not 0 <= t < 2**64:
            raise ValueError(f"timestamp_ns: expected 0 <= t < 2**64 (MCAP time), got {t}")

    def write(self, step: log_pb2.RobotStep) -> None:
        data = step.SerializeToString()
        t = step.timestamp_ns
        self._check_time(t)
        self._writer.add_message(self._step_channel, t, data, t, self.steps_written)
        self.steps_written += 1
        self.bytes_payload += len(data)

    def write_episode(self, episode: log_pb2.EpisodeInfo, timestamp_ns: int = 0) -> None:
        self._writer.add_message(self._episode_channel, timestamp_ns, episode.SerializeToString(), timestamp_ns, 0)

    def write_serialized(self, data: bytes, timestamp_ns: int) -> None:
        """A RobotStep already serialized."""
        self._check_time(timestamp_ns)
        self._writer.add_message(self._step_channel, timestamp_ns, data, timestamp_ns, self.steps_written)
        self.steps_written += 1
        self.bytes_payload += len(data)

    def bytes_on_disk(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.finish()
        finally:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CountingReader:
    """Tracks how far into the file the reader got (for the damage report)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.offset = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.offset += len(data)
        return data

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b)
        self.offset += n
        return n


@dataclass
class Log:
    """A whole log in memory."""

    path: Path
    info: log_pb2.LogInfo
    steps: list[log_pb2.RobotStep] = field(default_factory=list)
    episodes: dict[int, log_pb2.EpisodeInfo] = field(default_factory=dict)


def iter_log(path: Path) -> Iterator[log_pb2.LogInfo | log_pb2.RobotStep | log_pb2.EpisodeInfo]:
    """Every message in file order, validating CRCs as it goes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such log file")
    size = path.stat().st_size
    schemas: dict[int, type[Any]] = {}
    channels: dict[int, type[Any]] = {}
    steps = 0
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:5] != b"\x89MCAP":
            raise LogError(f"{path}: not an MCAP file (starts with {head!r})")
        f.seek(0)
        counter = _CountingReader(f)
        reader = StreamReader(counter, validate_crcs=True)  # type: ignore[arg-type]
        records = reader.records
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except (McapError, EOFError, ValueError, OSError, Exception) as err:  # noqa: BLE001 - any damage
                reason = str(err) or type(err).__name__
                truncated = counter.offset >= size
                raise LogDamagedError(path, min(counter.offset, size), size, steps, reason, truncated) from None
            if isinstance(record, Schema):
                if record.encoding != "protobuf" or record.name not in MESSAGE_TYPES:
                    raise LogError(
                        f"{path}: unknown schema {record.name!r} (encoding {record.encoding!r}); "
                        f"expected protobuf {sorted(MESSAGE_TYPES)}"
                    )
                schemas[record.id] = MESSAGE_TYPES[record.name]
            elif isinstance(record, Channel):
                if record.schema_id not in schemas:
                    raise LogError(f"{path}: channel {record.topic!r} uses unknown schema id {record.schema_id}")
                channels[record.id] = schemas[record.schema_id]
            elif isinstance(record, Message):
                message_type = channels.get(record.channel_id)
                if message_type is None:
                    raise LogDamagedError(path, counter.offset, size, steps, f"message on unknown channel {record.channel_id}")
                try:
                    message = message_type.FromString(record.data)
                except Exception as err:  # noqa: BLE001 - protobuf DecodeError
                    raise LogDamagedError(path, counter.offset, size, steps, f"undecodable message: {err}") from None
                if isinstance(message, log_pb2.RobotStep):
                    steps += 1
                yield message


def read_log(path: Path, allow_damaged: bool = False) -> Log:
    """The whole log. A damaged file raises LogDamagedError unless ``allow_damaged``, in
    which case the readable part comes back (check ``len(log.steps)``)."""
    info: log_pb2.LogInfo | None = None
    steps: list[log_pb2.RobotStep] = []
    episodes: dict[int, log_pb2.EpisodeInfo] = {}
    try:
        for message in iter_log(path):
            if isinstance(message, log_pb2.RobotStep):
                steps.append(message)
            elif isinstance(message, log_pb2.EpisodeInfo):
                episodes[message.episode] = message
            else:
                info = message
    except LogDamagedError:
        if not allow_damaged or info is None:
            raise
    if info is None:
        raise LogError(f"{path}: no {INFO_TOPIC} message (not a sim2real log, or empty)")
    return Log(Path(path), info, steps, episodes)
