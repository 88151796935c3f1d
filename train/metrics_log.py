"""A run's metrics.jsonl (one JSON record per periodic evaluation), kept consistent with
its checkpoint. Torch-free: the sweep's trial worker uses it too."""

from __future__ import annotations

import json
import os
from pathlib import Path


def trim_metrics(path: Path, step: int) -> None:
    """Drop records after ``step`` (evaluated after the checkpoint a resume starts from:
    the resumed run evaluates those steps again)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if int(json.loads(line)["step"]) > step:
                continue
        except (ValueError, KeyError, TypeError):
            continue
        kept.append(line)
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
