"""Early stopping of hopeless sweep trials, and the coordinator every trial reports to.

The schedulers are plain classes fed (trial, step, value) one report at a time, in the
order the evaluations arrive: asynchronous, so a trial never waits for the others (the
asynchronous forms of both rules; a synchronous one would idle cores on stragglers).
:class:`SweepCoordinator` wraps one, with the sweep's interrupt flag and the event queue
the driver drains; sweep.py runs it as a Ray actor, tests use it directly.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Protocol

CONTINUE = "continue"
STOP = "stop"
"""Early-stopped by the scheduler: the trial checkpoints and ends as "stopped"."""
INTERRUPT = "interrupt"
"""The sweep is being interrupted (Ctrl-C / SIGTERM on the driver): checkpoint and end,
to be resumed by `sim2real sweep --resume`."""


class Scheduler(Protocol):
    def report(self, trial_id: str, step: int, score: float) -> bool:
        """Record ``score`` (higher is better) of ``trial_id`` at env step ``step``;
        False: stop the trial."""
        ...


class NoStopping:
    def report(self, trial_id: str, step: int, score: float) -> bool:
        return True


class MedianStopping:
    """The median stopping rule (Golovin et al. 2017, "Google Vizier", section 3.2.2):
    stop a trial at step s when its best score so far is worse than the median of the
    other trials' running means up to s. Only trials that have themselves reported at or
    beyond s count (they are comparable at s), and at least ``min_trials`` of them must
    exist; nothing stops before ``grace_steps``."""

    def __init__(self, grace_steps: int = 0, min_trials: int = 3) -> None:
        self.grace_steps, self.min_trials = grace_steps, min_trials
        self.history: dict[str, list[tuple[int, float]]] = {}

    def report(self, trial_id: str, step: int, score: float) -> bool:
        history = self.history.setdefault(trial_id, [])
        history.append((step, score))
        if step < self.grace_steps:
            return True
        best = max(s for _, s in history)
        means = [
            statistics.fmean(s for t, s in other if t <= step)
            for tid, other in self.history.items()
            if tid != trial_id and other[-1][0] >= step and other[0][0] <= step
        ]
        if len(means) < self.min_trials:
            return True
        return best >= statistics.median(means)


class ASHA:
    """Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
    Hyperparameter Tuning"), in the stopping form Ray Tune's ASHAScheduler uses: rungs at
    ``grace_steps * eta**k`` env steps; a trial's first score at or past a rung is recorded
    there, and it continues only if that score is among the top ``max(1, n // eta)`` of the
    ``n`` scores recorded at the rung so far. The first trials to reach a rung always
    continue (nothing to compare with yet): the price of never waiting."""

    def __init__(self, grace_steps: int, eta: float = 3.0) -> None:
        if grace_steps < 1 or not eta > 1:
            raise ValueError(f"ASHA needs grace_steps >= 1 and eta > 1, got {grace_steps}, {eta}")
        self.grace_steps, self.eta = grace_steps, eta
        self.rungs: dict[int, dict[str, float]] = {}
        """rung index -> {trial: its score recorded at that rung}"""

    def milestone(self, rung: int) -> float:
        return self.grace_steps * self.eta**rung

    def report(self, trial_id: str, step: int, score: float) -> bool:
        keep = True
        rung = 0
        while step >= self.milestone(rung):
            recorded = self.rungs.setdefault(rung, {})
            if trial_id not in recorded:  # a rung decides once per trial (resume replays)
                recorded[trial_id] = score
                better = sum(1 for s in recorded.values() if s > score)
                keep = keep and better < max(1, math.floor(len(recorded) / self.eta))
            rung += 1
        return keep


def make_scheduler(stopping: dict[str, Any]) -> Scheduler:
    """The scheduler of a [stopping] table (sweep_spec.StoppingSpec as a dict)."""
    kind = stopping.get("scheduler", "none")
    if kind == "median":
        return MedianStopping(stopping.get("grace_steps", 0), stopping.get("min_trials", 3))
    if kind == "asha":
        return ASHA(stopping["grace_steps"], stopping.get("eta", 3.0))
    if kind == "none":
        return NoStopping()
    raise ValueError(f"unknown scheduler {kind!r}; valid: none, median, asha")


def metric_value(record: dict[str, Any], metric: str) -> float | None:
    """``metric`` of a flattened metrics record as a finite float, or None (missing, or the
    judge had nothing to judge: null in metrics.jsonl)."""
    value = record.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class SweepCoordinator:
    """What trials report to while a sweep runs: it feeds the scheduler, answers each
    report with continue/stop/interrupt, and queues events (a trial started, new metrics
    records, a stop) for the driver, which writes them to SWEEP_DIR. Run as a Ray actor so
    that trials on any node reach it without shared storage."""

    def __init__(self, stopping: dict[str, Any], metric: str, mode: str) -> None:
        self.scheduler = make_scheduler(stopping)
        self.metric = metric
        self.sign = 1.0 if mode == "max" else -1.0  # schedulers maximize
        self.stopped: dict[str, int] = {}
        self.interrupted = False
        self.events: list[dict[str, Any]] = []

    def start(self, trial_id: str, info: dict[str, Any]) -> str:
        """A trial's task is about to start its training process (``info``: node,
        resume step); INTERRUPT if the sweep is being stopped meanwhile."""
        if self.interrupted:
            return INTERRUPT
        self.events.append({"type": "started", "trial_id": trial_id, **info})
        return CONTINUE

    def report(self, trial_id: str, records: list[dict[str, Any]]) -> str:
        """New flattened metrics records of a running trial (possibly none: a heartbeat
        that asks whether to go on)."""
        if records:
            self.events.append({"type": "records", "trial_id": trial_id, "records": records})
        for record in records:
            self._score(trial_id, record)
        if self.interrupted:
            return INTERRUPT
        return STOP if trial_id in self.stopped else CONTINUE

    def replay(self, trial_id: str, records: list[dict[str, Any]]) -> None:
        """Feed a finished or stopped trial's records of an earlier session (resume), so the
        rungs and medians include it; no decisions, no events."""
        for record in records:
            value = metric_value(record, self.metric)
            if value is not None and "step" in record:
                self.scheduler.report(trial_id, int(record["step"]), self.sign * value)

    def _score(self, trial_id: str, record: dict[str, Any]) -> None:
        value = metric_value(record, self.metric)
        if value is None or "step" not in record or trial_id in self.stopped:
            return
        step = int(record["step"])
        if not self.scheduler.report(trial_id, step, self.sign * value):
            self.stopped[trial_id] = step
            self.events.append({"type": "stop", "trial_id": trial_id, "step": step,
                                "metric": self.metric, "value": value})

    def interrupt(self) -> None:
        self.interrupted = True

    def drain(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events
