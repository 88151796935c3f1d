"""Trajectory logs as MCAP files with protobuf schemas (protos/sim2real/v1/log.proto).

Channels: ``/sim2real/info`` carries one LogInfo (what the vectors mean), ``/sim2real/steps``
one RobotStep per control step. Chunks are zstd (or lz4) compressed with CRCs on, and the
schemas are embedded, so Foxglove and the ``mcap`` CLI read the files as they are.

Reading is sequential. By default a truncated or corrupted file yields every message before
the damage, then raises LogDamagedError saying at which byte reading stopped, how much of
the file was left unread, and why. With ``allow_damaged`` the reader recovers: a chunk
whose CRC fails (or that cannot be parsed) is skipped and reading continues with the next
intact chunk (found through the summary's chunk index when the summary is intact, else by
scanning for the next chunk whose CRC checks), so every step in an intact chunk comes back;
``LogDamage`` says which byte ranges were skipped and how many steps they held.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from google.protobuf import descriptor_pb2
from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile
from mcap.opcode import Opcode
from mcap.records import (
    Channel,
    ChunkIndex,
    DataEnd,
    Footer,
    Header,
    McapRecord,
    Message,
    MessageIndex,
    Schema,
    Statistics,
)
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
# Schema and channel ids LogWriter registers (the mcap Writer numbers them from 1 in
# registration order). A damaged first chunk takes the channel definitions with it; in a
# file from LogWriter (profile sim2real) the reader then falls back on these to decode the
# intact chunks after it.
WRITER_CHANNELS: dict[int, type[Any]] = {1: log_pb2.LogInfo, 2: log_pb2.RobotStep, 3: log_pb2.EpisodeInfo}
_WRITER_STEPS_CHANNEL = next(k for k, v in WRITER_CHANNELS.items() if v is log_pb2.RobotStep)
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
        # Data-section CRC too: it catches flips outside the chunks' own CRCs (chunk times,
        # message indexes) that the reader would otherwise not notice.
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=_COMPRESSION[compression],
                              enable_crcs=True, enable_data_crcs=True)
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
        registered = {self._info_channel: log_pb2.LogInfo, self._step_channel: log_pb2.RobotStep,
                      self._episode_channel: log_pb2.EpisodeInfo}
        if registered != WRITER_CHANNELS:  # the recovery fallback must describe what we write
            raise RuntimeError(f"LogWriter channel ids {registered} differ from WRITER_CHANNELS")
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


LogMessage = log_pb2.LogInfo | log_pb2.RobotStep | log_pb2.EpisodeInfo

_MAGIC = b"\x89MCAP0\r\n"
_RECORD_HEADER = 9  # opcode u8 + length u64
_OPCODES = frozenset(int(op) for op in Opcode)
# A DataEnd record is its 9-byte header (opcode, length 4) and a u32 CRC.
_DATA_END_HEADER = struct.pack("<BQ", Opcode.DATA_END, 4)
_DATA_END_SIZE = _RECORD_HEADER + 4
_FOOTER_SIZE = _RECORD_HEADER + 20
_CHUNK_FIXED = 8 + 8 + 8 + 4 + 4 + 8  # chunk fields besides the compression name and records
_COMPRESSIONS = ("", "zstd", "lz4")
_MESSAGE_HEADER = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_MESSAGE_FIXED = _MESSAGE_HEADER.size
# A chunk claiming more than this is damage, not data (LogWriter's chunks are 256 KiB), and
# is refused before anything is allocated for it.
_MAX_CHUNK_BYTES = 1 << 28
_RECORD_READERS: dict[int, Callable[[ReadDataStream], McapRecord]] = {
    Opcode.HEADER: Header.read,
    Opcode.SCHEMA: Schema.read,
    Opcode.CHANNEL: Channel.read,
    Opcode.MESSAGE_INDEX: MessageIndex.read,
    Opcode.CHUNK_INDEX: ChunkIndex.read,
    Opcode.DATA_END: DataEnd.read,
    Opcode.STATISTICS: Statistics.read,
    Opcode.FOOTER: Footer.read,
}


class _Damaged(Exception):
    """A record that does not parse or fails its CRC (internal to the reader).

    ``framed``: its length field agrees with its content, so the next record starts where
    the length says (a chunk with a flipped byte in its data); otherwise the framing is
    lost and the reader searches for the next intact chunk. ``past_end``: the record runs
    past the end of the file (a cut file, or a garbled length)."""

    def __init__(self, reason: str, framed: bool = False, past_end: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.framed, self.past_end = reason, framed, past_end


class _ExactStream(ReadDataStream):
    """mcap's ReadDataStream, except that a read past the end raises instead of coming
    back short: a short read would let a garbled length pass for a parsed record."""

    def read(self, length: int) -> bytes:
        if length < 0:
            raise EndOfFile()
        data = super().read(length)
        if len(data) != length:
            raise EndOfFile()
        return data


def _parse(opcode: int, body: bytes) -> McapRecord:
    """One record's body, which its fields must fill exactly (LogWriter, like every mcap
    writer we know, pads nothing; a length that disagrees with the fields is damage)."""
    stream = _ExactStream(io.BytesIO(body))
    name = Opcode(opcode).name if opcode in _OPCODES else f"unknown ({opcode:#04x})"
    try:
        if opcode == Opcode.MESSAGE:
            record: McapRecord = Message.read(stream, len(body))
        elif opcode in _RECORD_READERS:
            record = _RECORD_READERS[opcode](stream)
        else:  # attachments, metadata and their indexes: not read here, length trusted
            return McapRecord()
    except (EndOfFile, struct.error, UnicodeDecodeError, ValueError) as err:
        raise _Damaged(f"unparsable {name} record ({type(err).__name__}: {err})") from None
    if stream.count != len(body):
        raise _Damaged(f"{name} record holds {len(body) - stream.count} bytes beyond its fields")
    return record


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        import zstandard

        # A streaming decompressor grows its output as it goes: a garbled size field in the
        # frame header cannot make it allocate gigabytes up front.
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    import lz4.frame

    return lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=size + 1)


def _decode_chunk(body: bytes) -> list[McapRecord]:
    """The records of one chunk record's body, after its size and CRC checks."""
    stream = _ExactStream(io.BytesIO(body))
    try:
        stream.read8()  # message start time
        stream.read8()  # message end time
        uncompressed_size = stream.read8()
        uncompressed_crc = stream.read4()
        compression = stream.read_prefixed_string()
        records_length = stream.read8()
    except (EndOfFile, struct.error, UnicodeDecodeError) as err:
        raise _Damaged(f"unparsable chunk header ({type(err).__name__})") from None
    if compression not in _COMPRESSIONS or records_length != len(body) - stream.count:
        raise _Damaged("chunk header disagrees with the chunk's length")
    data = body[stream.count:]
    # From here the chunk's own fields agree with its length: the next record follows it.
    if uncompressed_size > _MAX_CHUNK_BYTES:
        raise _Damaged(f"chunk claims {uncompressed_size} bytes uncompressed", framed=True)
    try:
        raw = _decompress(compression, data, uncompressed_size)
    except Exception as err:  # noqa: BLE001 - zstandard/lz4 raise their own error types
        raise _Damaged(f"{compression} chunk does not decompress ({err})", framed=True) from None
    if len(raw) != uncompressed_size:
        raise _Damaged(f"chunk decompresses to {len(raw)} bytes, its header says {uncompressed_size}", framed=True)
    if uncompressed_crc != 0 and zlib.crc32(raw) != uncompressed_crc:
        raise _Damaged(
            f"chunk CRC mismatch (written {uncompressed_crc:#010x}, read {zlib.crc32(raw):#010x})", framed=True
        )
    records: list[McapRecord] = []
    pos = 0
    while pos < len(raw):
        if len(raw) - pos < _RECORD_HEADER:
            raise _Damaged("chunk ends inside a record header", framed=True)
        opcode, length = struct.unpack_from("<BQ", raw, pos)
        body_in = raw[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        if len(body_in) != length:
            raise _Damaged("a record inside the chunk runs past its end", framed=True)
        if opcode == Opcode.MESSAGE:
            # The hot path (one per step): unpacked in place rather than through a stream.
            if length < _MESSAGE_FIXED:
                raise _Damaged("a message record inside the chunk is shorter than its fields", framed=True)
            channel_id, sequence, log_time, publish_time = _MESSAGE_HEADER.unpack_from(raw, pos + _RECORD_HEADER)
            records.append(Message(channel_id=channel_id, sequence=sequence, log_time=log_time,
                                   publish_time=publish_time, data=body_in[_MESSAGE_FIXED:]))
        elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL):
            try:
                records.append(_parse(opcode, body_in))
            except _Damaged as err:
                raise _Damaged(f"inside the chunk: {err.reason}", framed=True) from None
        pos += _RECORD_HEADER + length  # other record types inside a chunk: skipped (spec)
    return records


@dataclass
class SkippedRange:
    """Bytes ``[start, end)`` of a log that a damaged read skipped."""

    start: int
    end: int
    reason: str
    chunks: int | None = None
    """Chunks that started in the range (None: not known: no intact chunk index)."""
    steps: int | None = None
    """Steps those chunks held, from the message indexes (None: not known)."""

    def describe(self) -> str:
        held = []
        if self.chunks is not None:
            held.append(f"{self.chunks} chunk{'s' if self.chunks != 1 else ''}")
        if self.steps is not None:
            held.append(f"{self.steps} steps")
        what = f" ({', '.join(held)})" if held else ""
        return f"bytes {self.start}-{self.end}{what}: {self.reason}"


@dataclass
class LogDamage:
    """What a read with ``allow_damaged`` skipped, and what it cost."""

    path: Path
    size: int
    skipped: list[SkippedRange] = field(default_factory=list)
    steps_recovered: int = 0
    steps_lost: int | None = None
    """Steps the file held that did not come back: exact when the summary is intact (its
    statistics count every step written), else the sum over the skipped ranges when each
    range's count is known, else None. A cut file's unwritten tail is not counted."""
    truncated: bool = False
    """The file never got its footer: the writer stopped (crash, kill) before closing it."""
    info_lost: bool = False
    """The LogInfo (what the vectors mean) was in a damaged chunk."""
    notes: list[str] = field(default_factory=list)
    """Damage that cost no steps, or steps not in any skipped range (undecodable messages)."""

    def describe(self) -> str:
        """One line: how many steps came back and what was skipped."""
        lost = "an unknown number of" if self.steps_lost is None else str(self.steps_lost)
        parts = [f"{self.path}: damaged log, {self.steps_recovered} steps recovered, {lost} steps lost"]
        if self.truncated:
            parts.append("the file was cut short (no footer)")
        if self.info_lost:
            parts.append("the LogInfo was lost")
        if self.skipped:
            parts.append("skipped " + "; ".join(r.describe() for r in self.skipped))
        parts += self.notes
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "steps_recovered": self.steps_recovered,
            "steps_lost": self.steps_lost,
            "truncated": self.truncated,
            "info_lost": self.info_lost,
            "skipped": [
                {"start": r.start, "end": r.end, "reason": r.reason, "chunks": r.chunks, "steps": r.steps}
                for r in self.skipped
            ],
            "notes": list(self.notes),
        }


@dataclass
class _Tail:
    """What the end of the file says: whether it was finished, and its summary."""

    complete: bool = False
    """End magic present: the writer finished the file."""
    summary_start: int | None = None
    data_end: int | None = None
    """Offset of the DataEnd record (just before the summary), when the footer says."""
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    statistics: Statistics | None = None
    chunk_indexes: list[ChunkIndex] | None = None
    """Every chunk's position, when the summary passed its CRC (None otherwise)."""
    problem: str | None = None


def _read_tail(mm: mmap.mmap, size: int) -> _Tail:
    tail = _Tail()
    if size < 2 * len(_MAGIC) + _FOOTER_SIZE or mm[size - len(_MAGIC) : size] != _MAGIC:
        return tail
    tail.complete = True
    footer_pos = size - len(_MAGIC) - _FOOTER_SIZE
    try:
        opcode, length = struct.unpack_from("<BQ", mm, footer_pos)
        if opcode != Opcode.FOOTER or length != 20:
            raise _Damaged("the footer record is damaged")
        footer = _parse(opcode, mm[footer_pos + _RECORD_HEADER : footer_pos + _FOOTER_SIZE])
        assert isinstance(footer, Footer)
        if footer.summary_start == 0:
            return tail  # written without a summary
        if not len(_MAGIC) <= footer.summary_start <= footer_pos:
            raise _Damaged(f"the footer's summary offset {footer.summary_start} is outside the file")
        # The summary CRC covers the summary section and the footer up to the CRC itself,
        # so it also vouches for summary_start: only then is it used to end the data section
        # (a garbled offset would otherwise cut the reading short).
        crc_end = footer_pos + _RECORD_HEADER + 16
        if footer.summary_crc != 0 and zlib.crc32(mm[footer.summary_start : crc_end]) != footer.summary_crc:
            raise _Damaged("the summary section fails its CRC")
        tail.summary_start = footer.summary_start
        data_end = footer.summary_start - _DATA_END_SIZE
        if data_end >= len(_MAGIC) and mm[data_end : data_end + _RECORD_HEADER] == _DATA_END_HEADER:
            tail.data_end = data_end
        pos, indexes = footer.summary_start, []
        while pos < footer_pos:
            opcode, length = struct.unpack_from("<BQ", mm, pos)
            end = pos + _RECORD_HEADER + length
            if end > footer_pos:
                raise _Damaged("a summary record runs into the footer")
            record = _parse(opcode, mm[pos + _RECORD_HEADER : end])
            if isinstance(record, Schema):
                tail.schemas[record.id] = record
            elif isinstance(record, Channel):
                tail.channels[record.id] = record
            elif isinstance(record, Statistics):
                tail.statistics = record
            elif isinstance(record, ChunkIndex):
                indexes.append(record)
            pos = end
        tail.chunk_indexes = sorted(indexes, key=lambda ci: ci.chunk_start_offset)
    except (_Damaged, struct.error) as err:
        tail.problem = f"summary not usable: {err}"
    return tail


class LogReader:
    """Reads one log, message by message, in file order.

        reader = LogReader(path, allow_damaged=True)
        for message in reader: ...
        reader.damage  # None, or what was skipped

    Without ``allow_damaged`` the first damage raises LogDamagedError (after every message
    before it was yielded)."""

    def __init__(self, path: Path, allow_damaged: bool = False) -> None:
        self.path = Path(path)
        self.allow_damaged = allow_damaged
        self.damage: LogDamage | None = None
        self.steps_read = 0
        self.info_read = False
        self._size = 0
        self._mm: mmap.mmap  # the file, mapped while iterating
        self._message_types: dict[int, type[Any]] = {}
        self._schemas: dict[int, type[Any]] = {}
        self._steps_channel: int | None = None
        self._header: Header | None = None
        self._tail = _Tail()
        self._pending: SkippedRange | None = None  # a damaged chunk whose index may follow
        self._undecodable = 0
        self._assumed_layout = False

    # --- damage bookkeeping --------------------------------------------------------------
    def _record_damage(self, start: int, end: int, reason: str, truncated: bool = False) -> SkippedRange:
        """Raise (strict) or note a skipped range."""
        if not self.allow_damaged:
            raise LogDamagedError(self.path, start, self._size, self.steps_read, reason, truncated)
        if self.damage is None:
            self.damage = LogDamage(self.path, self._size)
        skipped = SkippedRange(start, end, reason)
        indexes = self._tail.chunk_indexes
        if indexes is not None:  # the summary knows what was in the range
            lost = [ci for ci in indexes if start <= ci.chunk_start_offset < end]
            skipped.chunks = len(lost)
            counts = [self._indexed_steps(ci) for ci in lost]
            skipped.steps = None if None in counts else sum(c for c in counts if c is not None)
        self.damage.skipped.append(skipped)
        return skipped

    def _note(self, text: str, offset: int, truncated: bool = False) -> None:
        """Raise (strict) or note damage that skipped no bytes."""
        if not self.allow_damaged:
            raise LogDamagedError(self.path, offset, self._size, self.steps_read, text, truncated)
        if self.damage is None:
            self.damage = LogDamage(self.path, self._size)
        self.damage.notes.append(text)

    def _indexed_steps(self, ci: ChunkIndex) -> int | None:
        """Steps in one chunk, from its message index record (None: unreadable)."""
        if self._steps_channel is None:
            return None
        offset = ci.message_index_offsets.get(self._steps_channel)
        if offset is None:
            return 0  # the writer indexes every channel with messages in the chunk
        try:
            opcode, length = struct.unpack_from("<BQ", self._mm, offset)
            if opcode != Opcode.MESSAGE_INDEX or offset + _RECORD_HEADER + length > self._size:
                return None
            index = _parse(opcode, self._mm[offset + _RECORD_HEADER : offset + _RECORD_HEADER + length])
        except (_Damaged, struct.error):
            return None
        return len(index.records) if isinstance(index, MessageIndex) else None

    # --- reading -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[LogMessage]:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such log file")
        self._size = size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC))
            if head[:5] != _MAGIC[:5] and (not self.allow_damaged or size < len(_MAGIC)):
                raise LogError(f"{path}: not an MCAP file (starts with {head!r})")
            if size < len(_MAGIC):  # nothing to recover, whatever the mode
                raise LogDamagedError(path, 0, size, 0, "the file ends inside the MCAP magic", truncated=True)
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                if head != _MAGIC:
                    self._record_damage(0, len(_MAGIC), f"the MCAP magic bytes are damaged ({head!r})")
                yield from self._read()
            finally:
                self._mm.close()
        if self.damage is not None:
            self._finish_damage()

    def _read(self) -> Iterator[LogMessage]:
        mm, size = self._mm, self._size
        self._tail = tail = _read_tail(mm, size)
        for schema in tail.schemas.values():
            self._add_schema(schema)
        for channel in tail.channels.values():
            self._add_channel(channel)
        data_end = tail.summary_start if tail.summary_start is not None else size
        pos = len(_MAGIC)
        crc = zlib.crc32(mm[:pos])
        contiguous = True  # every byte so far was read in order: the data CRC applies
        while True:
            if pos >= data_end:
                if pos < size or tail.complete:
                    self._note("the data section has no DataEnd record", pos)
                else:
                    self._record_damage(pos, size, "the file ends here, before its DataEnd and summary "
                                        "(never completely written)", truncated=True)
                return
            if size - pos < _RECORD_HEADER:
                self._record_damage(pos, size, f"the file ends inside a record header at byte {size}",
                                    truncated=not tail.complete)
                return
            opcode, length = struct.unpack_from("<BQ", mm, pos)
            end = pos + _RECORD_HEADER + length
            try:
                if opcode not in _OPCODES:
                    raise _Damaged(f"unknown record type {opcode:#04x}")
                if end > size:
                    raise _Damaged(f"a {Opcode(opcode).name} record of {length} bytes runs past the end "
                                   f"of the file", past_end=True)
                body = mm[pos + _RECORD_HEADER : end]
                if opcode == Opcode.CHUNK:
                    records = _decode_chunk(body)
                else:
                    records = [_parse(opcode, body)]
                messages = [self._take(r, pos) for r in records]
            except _Damaged as err:
                if not self.allow_damaged:  # strict: say where, without looking further
                    raise LogDamagedError(self.path, pos, size, self.steps_read, err.reason,
                                          err.past_end and not tail.complete) from None
                contiguous = False
                if err.framed:
                    self._pending = self._record_damage(pos, end, err.reason)
                    if self._tail.chunk_indexes is None:
                        self._pending.chunks, self._pending.steps = 1, None
                    pos = end
                    continue
                nxt = self._resync(pos + 1)
                self._pending = None
                self._record_damage(pos, nxt, err.reason, err.past_end and nxt >= size and not tail.complete)
                if nxt >= size:
                    return  # nothing intact after the damage
                pos = nxt
                continue
            record = records[0] if records else None
            if isinstance(record, DataEnd):
                if contiguous and record.data_section_crc not in (0, crc):
                    self._note("the data section fails its CRC outside any chunk (index or header "
                               "records damaged; no steps lost)", pos)
                if tail.problem is not None:
                    self._note(f"{tail.problem} (no steps lost)", end)
                elif not tail.complete:
                    self._note("the file ends after its data section: summary and footer missing "
                               "(cut short; no steps lost)", end, truncated=True)
                return
            if isinstance(record, Footer):
                self._note("the data section has no DataEnd record", pos)
                return
            if isinstance(record, MessageIndex):
                self._count_pending(record)
            elif opcode == Opcode.CHUNK:
                self._pending = None
            if contiguous:
                crc = zlib.crc32(mm[pos:end], crc)
            for message in messages:
                if message is not None:
                    yield message
            pos = end

    def _resync(self, start: int) -> int:
        """Offset of the next intact chunk (or the DataEnd, or the file's end) at or after
        ``start``: from the summary's chunk index when it is intact, else by scanning for
        a chunk record whose header is consistent and whose CRC checks."""
        tail, mm = self._tail, self._mm
        # The data section ends at the DataEnd record (or the summary) when the footer says.
        ends = [e for e in (tail.data_end, tail.summary_start) if e is not None and e >= start]
        limit = ends[0] if ends else self._size
        if tail.chunk_indexes is not None:
            starts = [ci.chunk_start_offset for ci in tail.chunk_indexes if start <= ci.chunk_start_offset < limit]
            return starts[0] if starts else limit
        pos = start
        while True:
            pos = mm.find(bytes([Opcode.CHUNK]), pos, limit)
            if pos < 0:
                return limit
            if self._chunk_at(pos, limit):
                return pos
            pos += 1

    def _chunk_at(self, pos: int, limit: int) -> bool:
        """Whether an intact chunk record starts at ``pos`` (cheap checks first)."""
        mm = self._mm
        if pos + _RECORD_HEADER + _CHUNK_FIXED > limit:
            return False
        (length,) = struct.unpack_from("<Q", mm, pos + 1)
        end = pos + _RECORD_HEADER + length
        if end > limit or length < _CHUNK_FIXED:
            return False
        (name_length,) = struct.unpack_from("<I", mm, pos + _RECORD_HEADER + 28)
        if name_length not in (0, 3, 4) or length < _CHUNK_FIXED + name_length:
            return False
        try:
            _decode_chunk(mm[pos + _RECORD_HEADER : end])
        except _Damaged:
            return False
        return True

    def _count_pending(self, index: MessageIndex) -> None:
        """A message index right after a damaged chunk says how many steps it held."""
        pending = self._pending
        if pending is None or self._tail.chunk_indexes is not None:
            return
        steps = self._steps_channel
        if steps is None and self._writer_layout():
            steps = _WRITER_STEPS_CHANNEL
        if steps is None:
            return
        pending.steps = (pending.steps or 0) + (len(index.records) if index.channel_id == steps else 0)

    def _writer_layout(self) -> bool:
        return self._header is not None and self._header.profile == PROFILE and self._header.library == PROFILE

    def _add_schema(self, record: Schema) -> None:
        if record.encoding != "protobuf" or record.name not in MESSAGE_TYPES:
            raise LogError(
                f"{self.path}: unknown schema {record.name!r} (encoding {record.encoding!r}); "
                f"expected protobuf {sorted(MESSAGE_TYPES)}"
            )
        self._schemas[record.id] = MESSAGE_TYPES[record.name]

    def _add_channel(self, record: Channel) -> None:
        if record.schema_id not in self._schemas:
            raise LogError(f"{self.path}: channel {record.topic!r} uses unknown schema id {record.schema_id}")
        self._message_types[record.id] = self._schemas[record.schema_id]
        if self._schemas[record.schema_id] is log_pb2.RobotStep:
            self._steps_channel = record.id

    def _take(self, record: McapRecord, pos: int) -> LogMessage | None:
        """A record of the data section: definitions are kept, messages decoded."""
        if isinstance(record, Header):
            self._header = record
        elif isinstance(record, Schema):
            self._add_schema(record)
        elif isinstance(record, Channel):
            self._add_channel(record)
        elif isinstance(record, Message):
            return self._decode(record, pos)
        return None

    def _decode(self, record: Message, pos: int) -> LogMessage | None:
        message_type = self._message_types.get(record.channel_id)
        if message_type is None and self.allow_damaged and self._writer_layout():
            # The definitions were in a damaged chunk; this file is LogWriter's, whose
            # channel ids are fixed.
            message_type = WRITER_CHANNELS.get(record.channel_id)
            self._assumed_layout = self._assumed_layout or message_type is not None
        if message_type is None:
            if not self.allow_damaged:
                raise LogDamagedError(self.path, pos, self._size, self.steps_read,
                                      f"message on unknown channel {record.channel_id}")
            self._undecodable += 1
            return None
        try:
            message = message_type.FromString(record.data)
        except Exception as err:  # noqa: BLE001 - protobuf DecodeError
            if not self.allow_damaged:
                raise LogDamagedError(self.path, pos, self._size, self.steps_read,
                                      f"undecodable message: {err}") from None
            self._undecodable += 1
            return None
        if isinstance(message, log_pb2.RobotStep):
            self.steps_read += 1
        elif isinstance(message, log_pb2.LogInfo):
            self.info_read = True
        return message

    def _finish_damage(self) -> None:
        damage, tail = self.damage, self._tail
        assert damage is not None
        damage.steps_recovered = self.steps_read
        damage.truncated = not tail.complete
        damage.info_lost = not self.info_read
        if tail.problem is not None and not any(tail.problem in note for note in damage.notes):
            damage.notes.append(tail.problem)
        if self._undecodable:
            damage.notes.append(f"{self._undecodable} messages in intact chunks could not be decoded")
        if self._assumed_layout:
            damage.notes.append("the channel definitions were lost; decoded with LogWriter's fixed channel ids")
        counts = tail.statistics.channel_message_counts if tail.statistics is not None else None
        if counts is not None and self._steps_channel is not None and tail.chunk_indexes is not None:
            # The intact summary counted every step written.
            damage.steps_lost = max(counts.get(self._steps_channel, 0) - self.steps_read, 0)
        elif not damage.truncated and all(r.steps is not None for r in damage.skipped):
            damage.steps_lost = sum(r.steps or 0 for r in damage.skipped)


@dataclass
class Log:
    """A whole log in memory."""

    path: Path
    info: log_pb2.LogInfo
    steps: list[log_pb2.RobotStep] = field(default_factory=list)
    episodes: dict[int, log_pb2.EpisodeInfo] = field(default_factory=dict)
    damage: LogDamage | None = None
    """What a read with ``allow_damaged`` skipped (None: the file was intact)."""


def read_log(path: Path, allow_damaged: bool = False) -> Log:
    """The whole log. A damaged file raises LogDamagedError unless ``allow_damaged``, in
    which case every step in an intact chunk comes back and ``log.damage`` says which byte
    ranges were skipped and how many steps were lost."""
    reader = LogReader(path, allow_damaged)
    info: log_pb2.LogInfo | None = None
    steps: list[log_pb2.RobotStep] = []
    episodes: dict[int, log_pb2.EpisodeInfo] = {}
    for message in reader:
        if isinstance(message, log_pb2.RobotStep):
            steps.append(message)
        elif isinstance(message, log_pb2.EpisodeInfo):
            episodes[message.episode] = message
        elif info is None:
            info = message
    damage = reader.damage
    if info is None:
        if damage is None or not steps:
            what = "not a sim2real log, or empty" if damage is None else damage.describe()
            raise LogError(f"{path}: no {INFO_TOPIC} message ({what})")
        info = log_pb2.LogInfo()  # lost with its chunk: the steps are still worth having
    return Log(Path(path), info, steps, episodes, damage)
