"""Checkpoints as one safetensors file: tensors plus a JSON header. No pickle anywhere.

Writing goes to a temporary file in the same folder and is renamed over the old one, so a
kill at any moment leaves either the previous or the new checkpoint, never half of one. A
kill mid-write leaves the temporary file behind; the next save or load in that folder
removes it once the process that was writing it is gone.

Integrity: the header carries SHA-256 digests of the metadata string and of every tensor
(name, dtype, shape and bytes), checked on load, so a flipped byte anywhere in the file is
a CheckpointError naming the damaged part, never a policy resumed or exported from
corrupted weights. Checkpoints of format 1 (before the digests) still load, with a
warning that they cannot be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

FORMAT_VERSION = 2
"""2: format 1 plus the content digests (``_INTEGRITY_KEY``)."""
UNVERIFIED_FORMAT_VERSION = 1
"""Read with a warning: written before checkpoints carried a content hash."""
_META_KEY = "sim2real"
_INTEGRITY_KEY = "sim2real.sha256"
# The temporary name save_checkpoint writes to (and ReplayBuffer.save, same scheme):
# ".<name>.tmp-<pid of the writer>".
_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)$")
# Names of damaged tensors listed in an error before "and N more".
_NAMES_SHOWN = 5


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, corrupt or of another format."""


class UnverifiedCheckpointWarning(UserWarning):
    """A format-1 checkpoint: loaded, but it has no content hash to check it against."""


def flatten_optimizer(name: str, state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and plain JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            param_id, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(param_id), {})[field] = value
    for param_id, fields in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(fields)
    return {"state": state, "param_groups": meta["param_groups"]}


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and raw bytes (a reshaped or retyped tensor with
    the same bytes is a different tensor)."""
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    # Viewed as bytes: works for every dtype, including those numpy lacks (bfloat16).
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files in ``directory`` whose writer no longer runs
    (left by a kill mid-write); a live writer's file is left alone. Best effort: a file
    that cannot be removed (read-only folder) stays. Returns the files removed."""
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        # Our own earlier write that failed: its finally already ran, so anything left is
        # stale; a save in progress in another thread of this process is not supported.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        # PermissionError: alive, another user's. Others (pid out of range): cannot tell,
        # so keep the file rather than delete a live writer's.
        return True
    return True


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and JSON-serializable ``metadata`` to ``path``, with
    the content digests :func:`load_checkpoint` checks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    header = {"format_version": FORMAT_VERSION, **metadata}
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta_text = json.dumps(header, default=_json_default)
    integrity = {
        "metadata": _text_digest(meta_text),
        "tensors": {name: tensor_digest(t) for name, t in sorted(contiguous.items())},
    }
    try:
        save_file(contiguous, str(tmp), metadata={_META_KEY: meta_text, _INTEGRITY_KEY: json.dumps(integrity)})
        with open(tmp, "rb+") as f:  # durable before the rename makes it the checkpoint
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint written by :func:`save_checkpoint`.

    Raises CheckpointError for a missing, unreadable or corrupt file (the message names the
    file and the damaged part: metadata, or which tensors)."""
    path = Path(path)
    if path.parent.is_dir():
        remove_stale_temp_files(path.parent)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from err
    try:
        tensors = load_bytes(data)
        header_len = struct.unpack("<Q", data[:8])[0]
        stored = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    # safetensors raises several types for a damaged file, and a Rust panic (pyo3's
    # PanicException) derives from BaseException; interrupts still propagate.
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {err}") from err
    raw = stored.get(_META_KEY)
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a sim2real checkpoint")
    integrity_text = stored.get(_INTEGRITY_KEY)
    if integrity_text is not None:
        _verify(path, raw, integrity_text, tensors)
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its metadata is not valid JSON ({err}); cut or garbled"
        ) from None
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: metadata should be a JSON object, got {type(metadata).__name__}"
        )
    version = metadata.get("format_version")
    if version == FORMAT_VERSION and integrity_text is None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: format {FORMAT_VERSION} carries a content hash "
            f"({_INTEGRITY_KEY!r}) and this file's is missing"
        )
    if version == UNVERIFIED_FORMAT_VERSION and integrity_text is None:
        warnings.warn(
            f"checkpoint {path} has format_version {version}, written before checkpoints carried "
            f"a content hash: loaded without an integrity check (a save rewrites it with one)",
            UnverifiedCheckpointWarning,
            stacklevel=2,
        )
    elif version not in (FORMAT_VERSION, UNVERIFIED_FORMAT_VERSION):
        raise CheckpointError(
            f"checkpoint {path} has format_version {version!r}, this sim2real reads "
            f"{UNVERIFIED_FORMAT_VERSION} and {FORMAT_VERSION}"
        )
    return tensors, metadata


def _verify(path: Path, raw: str, integrity_text: str, tensors: dict[str, torch.Tensor]) -> None:
    """Compare the stored digests with the content; CheckpointError naming what differs."""
    try:
        integrity = json.loads(integrity_text)
        expected_meta = integrity["metadata"]
        expected_tensors = integrity["tensors"]
        if not isinstance(expected_meta, str) or not isinstance(expected_tensors, dict):
            raise TypeError("metadata: expected a hex string, tensors: expected an object")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content hash record {_INTEGRITY_KEY!r} is unreadable ({err})"
        ) from None
    damaged: list[str] = []
    if _text_digest(raw) != expected_meta:
        damaged.append("the metadata (training state and config)")
    bad = sorted(
        name for name in set(tensors) | set(expected_tensors)
        if name not in tensors or name not in expected_tensors
        or tensor_digest(tensors[name]) != expected_tensors[name]
    )
    if bad:
        shown = ", ".join(bad[:_NAMES_SHOWN]) + (f" and {len(bad) - _NAMES_SHOWN} more" if len(bad) > _NAMES_SHOWN else "")
        damaged.append(f"{len(bad)} tensor{'s' if len(bad) != 1 else ''} ({shown})")
    if damaged:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: content hash mismatch in {' and in '.join(damaged)}; "
            f"use an earlier copy or retrain"
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
