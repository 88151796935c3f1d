"""MCAP trajectory logs: round trip, damaged files (and what `sim2real replay` says of them);
the server's recorder is tested in tests/serve/test_recorder.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Message

from sim2real.logformat.mcap_log import (
    EPISODES_TOPIC,
    INFO_TOPIC,
    STEPS_TOPIC,
    LogDamagedError,
    LogError,
    LogWriter,
    read_log,
)
from sim2real.serve.synthetic import write_policy
from sim2real.v1 import log_pb2


def _steps(n: int) -> list[log_pb2.RobotStep]:
    rng = np.random.default_rng(0)
    return [
        log_pb2.RobotStep(
            timestamp_ns=1_000_000_000 + i * 20_000_000, sequence=i, episode=i // 100,
            observation=rng.normal(size=45).astype(np.float32).tolist(),
            action=rng.uniform(-1, 1, 12).astype(np.float32).tolist(),
            joint_position=rng.normal(size=12).astype(np.float32).tolist(),
            base_orientation=[1, 0, 0, 0], model_name="walk", model_version=3, latency_ns=150_000 + i,
        )
        for i in range(n)
    ]


def _write(path: Path, steps: list[log_pb2.RobotStep], compression: str = "zstd") -> log_pb2.LogInfo:
    info = log_pb2.LogInfo(source="sim", env_id="sim2real/QuadrupedJoystick-v0", joint_names=["j0", "j1"],
                           control_rate_hz=50.0, tags={"operator": "test"})
    with LogWriter(path, info, compression=compression, chunk_size=8192) as log:  # type: ignore[arg-type]
        for step in steps:
            log.write(step)
    return info


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_write_read_round_trip(tmp_path: Path, compression: str) -> None:
    steps = _steps(500)
    info = _write(tmp_path / "a.mcap", steps, compression)
    log = read_log(tmp_path / "a.mcap")
    assert log.info == info and log.steps == steps
    # Standard MCAP readers see the same: indexed summary, embedded protobuf schemas.
    with open(tmp_path / "a.mcap", "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics.message_count == 501  # info + steps
        topics = {c.topic for c in summary.channels.values()}
        assert topics == {INFO_TOPIC, STEPS_TOPIC, EPISODES_TOPIC}
        assert {s.name for s in summary.schemas.values()} == {"sim2real.v1.LogInfo", "sim2real.v1.RobotStep", "sim2real.v1.EpisodeInfo"}
        assert all(c.compression == compression for c in summary.chunk_indexes)


def test_truncated_file_yields_what_it_can_then_says_so(tmp_path: Path) -> None:
    steps = _steps(2000)
    _write(tmp_path / "a.mcap", steps)
    data = (tmp_path / "a.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(data[: len(data) // 2])
    with pytest.raises(LogDamagedError) as err:
        read_log(tmp_path / "cut.mcap")
    assert err.value.truncated and "truncated" in str(err.value) and f"byte {len(data) // 2}" in str(err.value)
    partial = read_log(tmp_path / "cut.mcap", allow_damaged=True)
    assert 0 < len(partial.steps) < 2000
    assert partial.steps == steps[: len(partial.steps)]  # what came back is exact
    assert f"{len(partial.steps)} steps read" in str(err.value)


def _chunks(path: Path) -> list[tuple[int, int, list[int]]]:
    """(start, end, step sequences) of every chunk, from the intact file's chunk index."""
    from mcap.records import Chunk
    from mcap.stream_reader import ReadDataStream, breakup_chunk

    data = path.read_bytes()
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    steps_channel = next(c.id for c in summary.channels.values() if c.topic == STEPS_TOPIC)
    out = []
    for ci in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
        start, end = ci.chunk_start_offset, ci.chunk_start_offset + ci.chunk_length
        chunk = Chunk.read(ReadDataStream(io.BytesIO(data[start + 9 : end])))
        sequences = [log_pb2.RobotStep.FromString(r.data).sequence for r in breakup_chunk(chunk)
                     if isinstance(r, Message) and r.channel_id == steps_channel]
        out.append((start, end, sequences))
    return out


def _damage(path: Path, out: Path, offsets: list[int], cut: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= 0xFF
    out.write_bytes(bytes(data[:cut]))


def test_corrupted_chunk_is_caught_by_crc(tmp_path: Path) -> None:
    steps = _steps(2000)
    _write(tmp_path / "a.mcap", steps, "none")  # uncompressed: only the CRC can notice
    data = bytearray((tmp_path / "a.mcap").read_bytes())
    data[len(data) // 3] ^= 0x55
    (tmp_path / "bad.mcap").write_bytes(bytes(data))
    with pytest.raises(LogDamagedError) as err:
        read_log(tmp_path / "bad.mcap")
    assert not err.value.truncated and "left unread" in str(err.value)
    # --allow-damaged: only the damaged chunk is lost; reading went on with the next one.
    (start, end, lost), = [c for c in _chunks(tmp_path / "a.mcap") if c[0] <= len(data) // 3 < c[1]]
    partial = read_log(tmp_path / "bad.mcap", allow_damaged=True)
    assert partial.steps == [s for s in steps if s.sequence not in lost] and lost
    damage = partial.damage
    assert damage is not None and damage.steps_lost == len(lost) and damage.steps_recovered == 2000 - len(lost)
    (skipped,) = damage.skipped
    assert (skipped.start, skipped.end, skipped.chunks, skipped.steps) == (start, end, 1, len(lost))
    assert "CRC" in skipped.reason and not damage.truncated and not damage.info_lost
    assert read_log(tmp_path / "a.mcap", allow_damaged=True).damage is None  # intact: nothing to say


def test_flipped_bytes_in_the_first_chunk_lose_only_that_chunk(tmp_path: Path) -> None:
    """The issue's case: 10 flipped bytes in the first chunk of a 3,000-step log (default
    chunk size) used to lose every step, though the later chunks pass their CRC."""
    steps = _steps(3000)
    info = log_pb2.LogInfo(source="sim", env_id="sim2real/QuadrupedJoystick-v0")
    with LogWriter(tmp_path / "a.mcap", info) as log:
        for step in steps:
            log.write(step)
    chunks = _chunks(tmp_path / "a.mcap")
    assert len(chunks) > 1
    first_start, first_end, first_steps = chunks[0]
    _damage(tmp_path / "a.mcap", tmp_path / "bad.mcap", list(range(first_start + 200, first_start + 210)))
    log = read_log(tmp_path / "bad.mcap", allow_damaged=True)
    assert log.steps == steps[len(first_steps):]
    assert log.damage is not None and log.damage.steps_lost == len(first_steps)
    assert log.damage.info_lost  # the LogInfo was in that chunk
    assert [(r.start, r.end, r.steps) for r in log.damage.skipped] == [(first_start, first_end, len(first_steps))]


def test_damaged_chunk_in_a_cut_file_is_skipped_without_the_summary(tmp_path: Path) -> None:
    """A recorder killed mid-file has no summary: the damaged chunk's size comes from its
    own header, its step count from the message index written after it."""
    steps = _steps(2000)
    _write(tmp_path / "a.mcap", steps)
    chunks = _chunks(tmp_path / "a.mcap")
    start, end, lost = chunks[2]
    cut = chunks[-3][1]  # through the end of an intact chunk, summary gone
    _damage(tmp_path / "a.mcap", tmp_path / "bad.mcap", [start + 100, start + 101], cut=cut)
    log = read_log(tmp_path / "bad.mcap", allow_damaged=True)
    kept = {seq for s, e, seqs in chunks if e <= cut and s != start for seq in seqs}
    assert [s.sequence for s in log.steps] == sorted(kept)
    damage = log.damage
    assert damage is not None and damage.truncated and damage.steps_lost is None  # the tail: unknown
    assert (damage.skipped[0].start, damage.skipped[0].end, damage.skipped[0].steps) == (start, end, len(lost))


@pytest.mark.parametrize("summary", [True, False])
def test_garbled_chunk_length_resyncs_on_the_next_intact_chunk(tmp_path: Path, summary: bool) -> None:
    """A flipped length field loses the record framing: the reader finds the next chunk
    (from the chunk index, or by scanning for a chunk whose CRC checks)."""
    steps = _steps(2000)
    _write(tmp_path / "a.mcap", steps)
    chunks = _chunks(tmp_path / "a.mcap")
    start, _, lost = chunks[3]
    cut = None if summary else chunks[-2][1]
    _damage(tmp_path / "a.mcap", tmp_path / "bad.mcap", [start + 1], cut=cut)  # low byte of its length
    log = read_log(tmp_path / "bad.mcap", allow_damaged=True)
    kept = {seq for s, e, seqs in chunks if (cut is None or e <= cut) and s != start for seq in seqs}
    assert [s.sequence for s in log.steps] == sorted(kept)
    assert log.damage is not None and log.damage.skipped[0].start == start
    assert log.damage.steps_lost == (len(lost) if summary else None)


def test_replay_report_says_what_a_damaged_log_lost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sim2real.cli.main import main

    steps = _steps(2000)
    _write(tmp_path / "a.mcap", steps)
    start, end, lost = _chunks(tmp_path / "a.mcap")[4]
    _damage(tmp_path / "a.mcap", tmp_path / "bad.mcap", [start + 60])
    write_policy(tmp_path / "p.onnx", obs_dim=45, act_dim=12)
    args = ["replay", str(tmp_path / "bad.mcap"), "--model", str(tmp_path / "p.onnx"), "--no-sim",
            "--out", str(tmp_path / "report")]
    assert main(args) == 2  # without --allow-damaged: refused, saying where
    assert "damaged at byte" in capsys.readouterr().err
    assert main([*args, "--allow-damaged"]) == 0
    out = capsys.readouterr().out
    assert f"{2000 - len(lost)} steps recovered, {len(lost)} steps lost" in out
    assert f"skipped bytes {start}-{end} (1 chunk, {len(lost)} steps)" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["steps"] == 2000 - len(lost) and report["damage"]["steps_lost"] == len(lost)
    assert f"{len(lost)} steps lost" in (tmp_path / "report" / "summary.txt").read_text()


def test_not_a_log(tmp_path: Path) -> None:
    (tmp_path / "x.mcap").write_text("hello")
    with pytest.raises(LogError, match="not an MCAP file"):
        read_log(tmp_path / "x.mcap")
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path / "missing.mcap")
