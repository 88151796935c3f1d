"""Convert the tables robot teams already have (CSV, NPZ) into sim2real MCAP logs.

A mapping says which columns (CSV) or arrays (NPZ) fill which RobotStep field:

    {"observation": "obs_*", "action": "act_*", "joint_position": "q_*",
     "timestamp_s": "time", "episode": "episode"}

CSV patterns are shell-style globs over the header, expanded in natural order (q_2 before
q_10), or an explicit comma-separated column list. NPZ values name an array ([steps] or
[steps, dim]); NPZ files are read with allow_pickle=False.
"""

from __future__ import annotations

import csv
import fnmatch
import re
from pathlib import Path

import numpy as np

from sim2real.logformat.mcap_log import LogWriter
from sim2real.v1 import log_pb2

VECTOR_FIELDS = (
    "observation", "action", "joint_position", "joint_velocity", "base_orientation",
    "base_angular_velocity", "base_position", "base_linear_velocity", "joint_target",
    # The task object's measured joints (the valve rig's encoder: angle, rad, and rate, rad/s),
    # which sim replay and system identification of the hand need.
    "object_joint_position", "object_joint_velocity",
)
SCALAR_FIELDS = ("timestamp_s", "timestamp_ns", "episode", "reward", "latency_ns")
REQUIRED = ("observation", "action")


class TableImportError(ValueError):
    """A table that does not fit the mapping (missing columns, ragged rows, bad values)."""


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def parse_mapping(items: list[str] | dict[str, str]) -> dict[str, str]:
    """``["observation=obs_*", ...]`` or a dict -> validated {field: pattern}."""
    mapping = dict(items) if isinstance(items, dict) else {}
    if not isinstance(items, dict):
        for item in items:
            field, sep, pattern = item.partition("=")
            if not sep or not pattern:
                raise TableImportError(f"mapping entry {item!r}: expected FIELD=PATTERN, e.g. observation=obs_*")
            mapping[field.strip()] = pattern.strip()
    unknown = set(mapping) - set(VECTOR_FIELDS) - set(SCALAR_FIELDS)
    if unknown:
        raise TableImportError(
            f"mapping fields {sorted(unknown)} are unknown; choose from {list(VECTOR_FIELDS + SCALAR_FIELDS)}"
        )
    missing = [f for f in REQUIRED if f not in mapping]
    if missing:
        raise TableImportError(f"mapping lacks {missing}: a replayable log needs observations and actions")
    return mapping


def _columns(header: list[str], pattern: str, field: str, path: Path) -> list[int]:
    if "," in pattern or pattern in header:
        names = [p.strip() for p in pattern.split(",")]
        absent = [n for n in names if n not in header]
        if absent:
            raise TableImportError(f"{path}: {field} columns {absent} are not in the header {header}")
        return [header.index(n) for n in names]
    matched = sorted((n for n in header if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)
    if not matched:
        raise TableImportError(f"{path}: {field} pattern {pattern!r} matches no column of {header}")
    return [header.index(n) for n in matched]


def read_csv_table(path: Path, mapping: dict[str, str]) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TableImportError(f"{path}: empty file (no header row)") from None
        rows = [row for row in reader if row]
    if not rows:
        raise TableImportError(f"{path}: the header has no data rows under it")
    table: dict[str, np.ndarray] = {}
    for field, pattern in mapping.items():
        idx = _columns(header, pattern, field, path)
        try:
            values = np.array([[float(row[i]) for i in idx] for row in rows], dtype=np.float64)
        except (ValueError, IndexError) as err:
            raise TableImportError(f"{path}: {field} columns hold a value that is not a number ({err})") from None
        table[field] = values if field in VECTOR_FIELDS else values[:, 0]
    return table


def read_npz_table(path: Path, mapping: dict[str, str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        table = {}
        for field, key in mapping.items():
            if key not in data:
                raise TableImportError(f"{path}: {field} array {key!r} not found; arrays: {sorted(data.files)}")
            arr = np.asarray(data[key], dtype=np.float64)
            if field in VECTOR_FIELDS and arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim != (2 if field in VECTOR_FIELDS else 1):
                raise TableImportError(f"{path}: {field} array {key!r} has shape {arr.shape}")
            table[field] = arr
    return table


def table_to_log(
    table: dict[str, np.ndarray], out: Path, info: log_pb2.LogInfo, source_path: Path, rate_hz: float | None = None
) -> int:
    """Write an MCAP log from a table; returns the number of steps."""
    lengths = {k: len(v) for k, v in table.items()}
    if len(set(lengths.values())) != 1:
        raise TableImportError(f"{source_path}: fields have different numbers of steps: {lengths}")
    n = next(iter(lengths.values()))
    for field, values in table.items():
        if not np.all(np.isfinite(values)) and field not in ("observation",):
            bad = int(np.argwhere(~np.isfinite(values))[0][0])
            raise TableImportError(f"{source_path}: {field} has a non-finite value at row {bad}")
    if "timestamp_ns" in table:
        stamps = table["timestamp_ns"].astype(np.int64)
    elif "timestamp_s" in table:
        stamps = np.round(table["timestamp_s"] * 1e9).astype(np.int64)
    else:
        period = 1.0 / (rate_hz or info.control_rate_hz or 50.0)
        stamps = np.round(np.arange(n) * period * 1e9).astype(np.int64)
    episodes = table.get("episode", np.zeros(n)).astype(np.int64)
    with LogWriter(out, info) as log:
        for i in range(n):
            step = log_pb2.RobotStep(timestamp_ns=int(stamps[i]), sequence=i, episode=int(episodes[i]))
            for field in VECTOR_FIELDS:
                if field in table:
                    getattr(step, field).extend(table[field][i].astype(np.float32).tolist())
            if "reward" in table:
                step.reward = float(table["reward"][i])
            if "latency_ns" in table:
                step.latency_ns = int(table["latency_ns"][i])
            if i + 1 < n and episodes[i + 1] != episodes[i]:
                step.truncated = True
            log.write(step)
    return n


def _object_joint_names(env_id: str) -> tuple[str, ...]:
    """The object joints a task logs (the valve rig: its hinge), as its env class says."""
    from sim2real.robots import registry

    if env_id not in registry.ENVS:
        return ()
    return tuple(getattr(registry.get_record(env_id).load_class(), "OBJECT_JOINT_NAMES", ()))


def import_table(
    path: Path, mapping: list[str] | dict[str, str], out: Path, env_id: str = "", rate_hz: float | None = None
) -> int:
    """CSV or NPZ at ``path`` -> MCAP log at ``out``; returns the number of steps."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fields = parse_mapping(mapping)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = read_csv_table(path, fields)
    elif suffix == ".npz":
        table = read_npz_table(path, fields)
    else:
        raise TableImportError(f"{path}: expected a .csv or .npz file, got {suffix or 'no extension'}")
    info = log_pb2.LogInfo(source="import", env_id=env_id, control_rate_hz=rate_hz or 0.0,
                           tags={"imported_from": path.name})
    if "object_joint_position" in table:
        width = table["object_joint_position"].shape[1]
        names = _object_joint_names(env_id)
        if names and width != len(names):
            raise TableImportError(f"{path}: object_joint_position of {env_id} is {', '.join(names)} "
                                   f"({len(names)} column{'s' if len(names) != 1 else ''}), got {width} columns")
        info.object_joint_names.extend(names or [f"object_{i}" for i in range(width)])
    tmp = out.with_name(f".{out.name}.partial")
    try:
        n = table_to_log(table, tmp, info, path, rate_hz)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return n
