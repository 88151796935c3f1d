"""Checkpoint integrity: a content hash over tensors and metadata checked on load, clear
errors for damaged files in every command that reads one, stale temp files cleaned."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sim2real.cli.main import main
from sim2real.train.checkpoint import (
    CheckpointError,
    UnverifiedCheckpointWarning,
    load_checkpoint,
    save_checkpoint,
)
from sim2real.train.config import TrainConfig
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import CHECKPOINT, run_training

META_KEY, INTEGRITY_KEY = "sim2real", "sim2real.sha256"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) Pendulum run: its checkpoint is what resume, export and eval read."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    run_training(TrainConfig(
        env="Pendulum-v1", total_steps=64, seed=0, out=out, learning_starts=32, num_workers=0,
        eval_interval=0, eval_episodes=1, checkpoint_interval=64,
        sac=SACConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=16),
    ))
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _stored_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _rewrite(path: Path, metadata: dict[str, str]) -> None:
    """The same tensors under other safetensors metadata (as a damaged or old file has)."""
    save_file(load_file(str(path)), str(path), metadata=metadata)


def _flip_tensor_bytes(path: Path, count: int, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    rng = np.random.default_rng(seed)
    for offset in rng.choice(np.arange(8 + header_len, len(data)), size=count, replace=False):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_round_trip_is_exact_and_verified(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "scalar": torch.tensor(1.5),
               "bf16": torch.randn(2, dtype=torch.bfloat16)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"step": 7, "nested": {"x": [1, 2]}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified checkpoint loads without a warning
        loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert set(loaded) == set(tensors) and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert meta["step"] == 7 and meta["nested"] == {"x": [1, 2]} and meta["format_version"] == 2
    assert INTEGRITY_KEY in _stored_metadata(tmp_path / "c.safetensors")


def test_flipped_tensor_bytes_are_caught_naming_file_and_tensors(small_run: Path, tmp_path: Path) -> None:
    """The issue's case: 200 flipped bytes in the tensor data resumed and exported with
    exit 0, so a policy was exported from corrupted weights."""
    path = _copy(small_run, tmp_path) / CHECKPOINT
    _flip_tensor_bytes(path, 200)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert str(path) in text and "is corrupt" in text and "tensors (" in text and "metadata" not in text


def test_one_flipped_byte_names_the_one_tensor(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.safetensors", {"actor.w": torch.zeros(64), "critic.w": torch.zeros(64)}, {})
    path = tmp_path / "c.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the data: the last tensor in safetensors' order
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"content hash mismatch in 1 tensor \((actor|critic)\.w\)"):
        load_checkpoint(path)


def test_changed_metadata_is_caught(small_run: Path, tmp_path: Path) -> None:
    path = _copy(small_run, tmp_path) / CHECKPOINT
    stored = _stored_metadata(path)
    assert '"step": 64' in stored[META_KEY]
    _rewrite(path, {**stored, META_KEY: stored[META_KEY].replace('"step": 64', '"step": 65')})
    with pytest.raises(CheckpointError, match=r"is corrupt: content hash mismatch in the metadata"):
        load_checkpoint(path)


def test_missing_hash_in_a_format_2_checkpoint_is_corrupt(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(2)}, {"step": 1})
    stored = _stored_metadata(tmp_path / "c.safetensors")
    _rewrite(tmp_path / "c.safetensors", {META_KEY: stored[META_KEY]})
    with pytest.raises(CheckpointError, match="content hash .* missing"):
        load_checkpoint(tmp_path / "c.safetensors")


def test_format_1_checkpoint_loads_with_a_warning(small_run: Path, tmp_path: Path) -> None:
    """Checkpoints written before the hash (format 1) still resume and export, unverified."""
    path = _copy(small_run, tmp_path) / CHECKPOINT
    stored = _stored_metadata(path)
    meta = json.loads(stored[META_KEY])
    _rewrite(path, {META_KEY: json.dumps({**meta, "format_version": 1})})
    with pytest.warns(UnverifiedCheckpointWarning, match="without an integrity check"):
        tensors, loaded = load_checkpoint(path)
    original = load_file(str(small_run / CHECKPOINT))
    assert loaded["step"] == 64 and set(tensors) == set(original)
    assert all(torch.equal(tensors[k], original[k]) for k in original)


@pytest.mark.parametrize("with_hash", [True, False], ids=["format2", "format1"])
def test_cut_metadata_is_a_clear_error_in_export_eval_and_resume(
    small_run: Path, tmp_path: Path, with_hash: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut metadata string crashed `sim2real export` with a traceback."""
    run = _copy(small_run, tmp_path)
    stored = _stored_metadata(run / CHECKPOINT)
    cut = stored[META_KEY][: len(stored[META_KEY]) // 2]
    _rewrite(run / CHECKPOINT, {META_KEY: cut, **({INTEGRITY_KEY: stored[INTEGRITY_KEY]} if with_hash else {})})
    for args in (["export", str(run), "-o", str(tmp_path / "p.onnx")], ["eval", str(run)],
                 ["train", "--resume", str(run)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: checkpoint ") and "is corrupt" in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "p.onnx").exists()


def test_corrupt_checkpoint_is_refused_by_the_commands_without_traceback(small_run: Path, tmp_path: Path) -> None:
    run = _copy(small_run, tmp_path)
    _flip_tensor_bytes(run / CHECKPOINT, 200)
    sim2real = shutil.which("sim2real")
    assert sim2real
    for args in (["export", str(run), "-o", str(tmp_path / "p.onnx")], ["train", "--resume", str(run)]):
        result = subprocess.run([sim2real, *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert "is corrupt" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "p.onnx").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temp_files_left_by_a_kill_are_cleaned_on_the_next_save_and_load(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale = [run / f".{CHECKPOINT}.tmp-{_dead_pid()}", run / f".replay.npz.tmp-{_dead_pid()}"]
        busy = run / f".{CHECKPOINT}.tmp-{live.pid}"  # a writer still at work: left alone
        for path in [*stale, busy]:
            path.write_bytes(b"half a checkpoint")
        save_checkpoint(run / CHECKPOINT, {"a": torch.ones(1)}, {})
        assert not any(p.exists() for p in stale) and busy.exists()
        stale_again = run / f".{CHECKPOINT}.tmp-{_dead_pid()}"
        stale_again.write_bytes(b"")
        load_checkpoint(run / CHECKPOINT)
        assert not stale_again.exists() and busy.exists()
        assert sorted(p.name for p in run.iterdir()) == sorted([CHECKPOINT, busy.name])
    finally:
        live.kill()
        live.wait()
