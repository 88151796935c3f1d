"""Offline policy evaluation on a log: does this policy act like the one that was logged?

The logged observations go through the policy (a local ONNX file, batched; or a policy
server, one streamed request per step, optionally at the log's own timing) and the
answers are compared with the logged actions: per-joint RMSE and max error, the worst
time windows, and observations outside what the policy saw in training (from the
normalizer statistics in the model metadata).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sim2real.logformat.mcap_log import Log


class ReplayError(ValueError):
    """A log and a policy that cannot be compared (sizes, empty log)."""


@dataclass
class LogArrays:
    """The log's step vectors as arrays [steps, dim]."""

    observation: np.ndarray
    action: np.ndarray
    timestamp_ns: np.ndarray
    episode: np.ndarray
    fallback: np.ndarray | None = None
    """Steps whose action was the controller's fallback, not the policy's answer (bool)."""

    @classmethod
    def from_log(cls, log: Log) -> LogArrays:
        if not log.steps:
            raise ReplayError(f"{log.path}: the log has no steps")
        obs_sizes = {len(s.observation) for s in log.steps}
        act_sizes = {len(s.action) for s in log.steps}
        if len(obs_sizes) != 1 or len(act_sizes) != 1:
            raise ReplayError(
                f"{log.path}: steps disagree on sizes (observation sizes {sorted(obs_sizes)}, "
                f"action sizes {sorted(act_sizes)})"
            )
        return cls(
            observation=np.array([s.observation for s in log.steps], np.float32),
            action=np.array([s.action for s in log.steps], np.float32),
            timestamp_ns=np.array([s.timestamp_ns for s in log.steps], np.int64),
            episode=np.array([s.episode for s in log.steps], np.int64),
            fallback=np.array([s.fallback for s in log.steps], bool),
        )


def check_sizes(arrays: LogArrays, obs_dim: int, act_dim: int, what: str, log_path: Path) -> None:
    if arrays.observation.shape[1] != obs_dim:
        raise ReplayError(
            f"observation size: {log_path} has {arrays.observation.shape[1]} values per step, "
            f"{what} expects {obs_dim}"
        )
    if arrays.action.shape[1] != act_dim:
        raise ReplayError(
            f"action size: {log_path} has {arrays.action.shape[1]} values per step, {what} outputs {act_dim}"
        )


def worst_windows(error: np.ndarray, window: int, count: int = 3) -> list[dict[str, float]]:
    """The ``count`` non-overlapping windows of ``window`` steps with the largest mean |error|."""
    per_step = np.abs(error).mean(axis=1)
    n = len(per_step)
    window = max(1, min(window, n))
    sums = np.convolve(per_step, np.ones(window), mode="valid") / window
    out: list[dict[str, float]] = []
    taken = np.zeros(len(sums), bool)
    for start in np.argsort(-sums):
        if taken[start]:
            continue
        out.append({"start_step": int(start), "end_step": int(start + window), "mean_abs_error": float(sums[start])})
        taken[max(0, start - window + 1) : start + window] = True
        if len(out) == count:
            break
    return out


def out_of_distribution(
    obs: np.ndarray, mean: np.ndarray | None, std: np.ndarray | None, names: list[str], z_limit: float
) -> dict[str, Any]:
    """Steps with any observation further than ``z_limit`` training std from the training mean."""
    if mean is None or std is None:
        return {"available": False, "reason": "the model metadata has no observation_mean/observation_std"}
    z = np.abs(obs - mean) / np.maximum(std, 1e-8)
    flagged = (z > z_limit).any(axis=1)
    per_dim = (z > z_limit).sum(axis=0)
    top = np.argsort(-per_dim)[:5]
    return {
        "available": True,
        "z_limit": z_limit,
        "steps_flagged": int(flagged.sum()),
        "fraction_flagged": float(flagged.mean()),
        "first_flagged_step": int(np.argmax(flagged)) if flagged.any() else None,
        "max_z": float(z.max()),
        "worst_observations": [
            {"name": names[i] if i < len(names) else f"obs/{i}", "steps": int(per_dim[i]), "max_z": float(z[:, i].max())}
            for i in top if per_dim[i] > 0
        ],
    }


@dataclass
class PolicyComparison:
    """Replayed actions against logged ones."""

    replayed: np.ndarray
    logged: np.ndarray
    action_names: list[str]
    window: int

    def report(self) -> dict[str, Any]:
        err = self.replayed - self.logged
        rmse = np.sqrt((err**2).mean(axis=0))
        max_err = np.abs(err).max(axis=0)
        return {
            "steps": int(len(err)),
            "rmse": float(np.sqrt((err**2).mean())),
            "max_abs_error": float(np.abs(err).max()),
            "per_joint": [
                {"name": n, "rmse": float(r), "max_abs_error": float(m)}
                for n, r, m in zip(self.action_names, rmse, max_err, strict=True)
            ],
            "worst_windows": worst_windows(err, self.window),
        }


def replay_local(arrays: LogArrays, model: Any, batch: int = 4096) -> np.ndarray:
    """A loaded policy's actions for every logged observation (batched onnxruntime)."""
    return np.concatenate([
        np.clip(model.run(arrays.observation[i : i + batch]), -1, 1)
        for i in range(0, len(arrays.observation), batch)
    ])


def replay_server(
    arrays: LogArrays, session: Any, realtime: bool, progress: bool = True
) -> dict[str, Any]:
    """Stream every logged observation to a server; at the log's timing when ``realtime``."""
    actions = np.zeros_like(arrays.action)
    latencies = np.zeros(len(actions))
    fallback = np.zeros(len(actions), bool)
    start_wall = time.perf_counter()
    t0 = arrays.timestamp_ns[0]
    for i in tqdm(range(len(actions)), desc="replay via server", unit="step", disable=not progress, leave=False):
        if realtime:
            due = start_wall + (arrays.timestamp_ns[i] - t0) * 1e-9
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        # A new episode starts fresh: no rate limit against the previous episode's action.
        new_episode = i == 0 or arrays.episode[i] != arrays.episode[i - 1]
        r = session.step(arrays.observation[i], reset_rate_limit=new_episode)
        actions[i] = r.action
        latencies[i] = r.latency_s
        fallback[i] = r.fallback
    wall = time.perf_counter() - start_wall
    us = latencies * 1e6
    return {
        "actions": actions,
        "fallback_mask": fallback,
        "fallbacks": int(fallback.sum()),
        "deadline_misses": int(session.deadline_misses),
        "latency_p50_us": float(np.percentile(us, 50)),
        "latency_p99_us": float(np.percentile(us, 99)),
        "steps_per_second": len(actions) / wall if wall > 0 else 0.0,
    }
