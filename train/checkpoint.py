"""Checkpoints as one safetensors file: tensors plus a JSON header. No pickle anywhere.

Writing goes to a temporary file in the same folder and is renamed over the old one, so a
kill at any moment leaves either the previous or the new checkpoint, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
_META_KEY = "sim2real"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or of another format."""


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


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and JSON-serializable ``metadata`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    header = {"format_version": FORMAT_VERSION, **metadata}
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        save_file(contiguous, str(tmp), metadata={_META_KEY: json.dumps(header, default=_json_default)})
        with open(tmp, "rb+") as f:  # durable before the rename makes it the checkpoint
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as err:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from err
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a sim2real checkpoint")
    metadata = json.loads(raw)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {metadata.get('format_version')!r}, "
            f"this sim2real reads {FORMAT_VERSION}"
        )
    return tensors, metadata


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
