"""One sweep trial on the node that runs it: a `sim2real train` process in the trial's run
directory, followed through its metrics.jsonl.

A separate process per trial (not the trainer in the Ray worker): a trial that crashes,
leaks or aborts cannot take the worker or the other trials with it; each process sets its
own torch threads; and SIGTERM, which `sim2real train` answers with a checkpoint of the
current step and exit 0, is how a trial is stopped early or interrupted. Nothing here
imports Ray or torch, so the worker stays small; :func:`run_trial` takes the coordinator
as two callables (sweep.py binds them to the Ray actor, tests to a plain object).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from sim2real.train.metrics_log import trim_metrics
from sim2real.train.sweep_scheduler import INTERRUPT, STOP

# The trainer's file names (train/trainer.py; not imported from there because that pulls
# torch into every Ray worker; tests/train/test_sweep_trial.py checks they agree).
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
LOG = "train.log"
"""The trial process's stdout and stderr, appended to by each attempt (not a trainer file)."""

TRAIN_COMMAND = ("-m", "sim2real.cli", "train")
"""How a trial runs `sim2real train`: the console script's module with this interpreter
(the same environment as the Ray worker, whatever PATH says)."""

_PR_SET_PDEATHSIG = 1
# Started as `python -c _LAUNCHER PARENT_PID python -m sim2real.cli train ...`: ask Linux to
# SIGTERM the trainer if its Ray worker dies (killed, OOM, node shutdown), so the trainer
# checkpoints and exits instead of training on as an orphan that a resumed sweep would run
# twice. The setting survives the exec into the trainer.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('sweep trial: the worker exited before the trainer started')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
_TQDM_LINE = re.compile(r"^.{0,80}:\s+\d+%\|")
_ERROR_LINE = re.compile(r"^(error:|[\w.]*(Error|Exception|Interrupt)\b)")
TAIL_LINES = 15
"""Log lines kept as a failed trial's error context."""


def checkpoint_step(path: Path) -> int | None:
    """The env step a checkpoint was saved at, from its safetensors header alone (no torch):
    8 bytes of header length, then JSON whose __metadata__["sim2real"] is our metadata.
    None when there is no readable checkpoint. Only chooses between resuming and starting
    over: the trainer verifies the whole file (content hash) when it loads it."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(f.read(length))
        return int(json.loads(header["__metadata__"]["sim2real"])["step"])
    except (OSError, struct.error, ValueError, KeyError, TypeError):
        return None


class MetricsFollower:
    """New records of a metrics.jsonl that another process appends to: whole lines only (a
    line being written is read on the next call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        records = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # not the trainer's writing; nothing to score
            if isinstance(record, dict):
                records.append(record)
        return records


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, float | int | None]:
    """A metrics.jsonl record as {dotted key: number}: what a sweep metric names
    (return_mean, task.walking_planar_error, reward_terms.tracking_lin_vel). Lists (each
    episode's return, the judge's per-command rows) and the judge's targets are left out; a
    null (nothing to judge) stays None."""
    out: dict[str, float | int | None] = {}
    for key, value in record.items():
        name = prefix + key
        if isinstance(value, dict):
            if name != "task.targets":
                out.update(flatten_record(value, name + "."))
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[name] = value
    return out


def log_tail(path: Path, since: int = 0, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a trial's log from byte ``since`` (this attempt), without
    the progress bar's redraws."""
    try:
        with open(path, "rb") as f:
            f.seek(max(since, f.seek(0, os.SEEK_END) - 65536))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    out = [s.strip() for s in re.split(r"[\r\n]", text)]
    return [s for s in out if s and not _TQDM_LINE.match(s)][-lines:]


def error_summary(tail: list[str], returncode: int) -> str:
    """One line saying why a trial failed: the trainer's `error: ...` line or the
    exception of a traceback, else the last line, with how the process ended."""
    how = (f"killed by {signal.Signals(-returncode).name}" if returncode < 0
           else f"exit code {returncode}")
    found = [s for s in tail if _ERROR_LINE.match(s)]
    line = found[-1] if found else (tail[-1] if tail else "no output")
    return f"{line} ({how})"


def train_command(argv: list[str]) -> list[str]:
    command = [sys.executable, *TRAIN_COMMAND, *argv]
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *command]
    return command  # no parent-death signal elsewhere: an orphaned trainer runs to its end


def run_trial(
    trial: dict[str, Any],
    start: Callable[[dict[str, Any]], str],
    report: Callable[[list[dict[str, Any]]], str],
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Run (or resume) one trial to its end and return what happened.

    ``trial``: trial_id, run_dir, argv (`sim2real train` flags without --out) and
    total_steps. ``start(info)`` and ``report(records)`` reach the coordinator; each
    answers continue, stop (early stopping) or interrupt. Resumes from the run directory's
    checkpoint when there is one (this node's disk, or shared storage); otherwise starts
    over in an emptied directory. Returns trial_id, status (finished, stopped, failed or
    interrupted), step, wall_s, node, resumed_from, returncode, error and log_tail."""
    run_dir = Path(trial["run_dir"])
    node = socket.gethostname()
    resumed_from = checkpoint_step(run_dir / CHECKPOINT)
    result: dict[str, Any] = {"trial_id": trial["trial_id"], "node": node, "resumed_from": resumed_from,
                              "returncode": None, "error": None, "log_tail": [], "wall_s": 0.0}
    if start({"node": node, "resumed_from": resumed_from}) == INTERRUPT:
        return {**result, "status": "interrupted", "step": resumed_from}
    if resumed_from is not None:
        trim_metrics(run_dir / METRICS, resumed_from)
        argv = ["--resume", str(run_dir)]  # the run's own config.json holds everything else
    else:
        if run_dir.exists():  # an attempt killed before its first checkpoint: start over
            shutil.rmtree(run_dir)
        argv = [*trial["argv"], "--out", str(run_dir)]
    run_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(argv)
    log_path = run_dir / LOG
    with open(log_path, "ab") as log:
        what = f"resume from step {resumed_from}" if resumed_from is not None else "start"
        log.write(f"=== sweep trial {trial['trial_id']}: {what} on {node} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n$ sim2real train {shlex.join(argv)}\n".encode())
        log.flush()
        since = log.tell()
        started = time.monotonic()
        # Own session: a Ctrl-C at the driver's terminal reaches the driver, which stops
        # trials through the coordinator, never the trainers directly and half of them.
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    follower = MetricsFollower(run_dir / METRICS)
    sent: str | None = None
    try:
        while True:
            returncode = proc.poll()
            records = [flatten_record(r) for r in follower.read_new()]
            decision = report(records)
            if decision in (STOP, INTERRUPT) and sent is None and returncode is None:
                sent = decision
                proc.send_signal(signal.SIGTERM)  # checkpoint of this step, exit 0
            if returncode is not None:
                break
            # Wakes at once when the trainer exits: the next trial starts without waiting
            # out the poll interval (a second per trial on a sweep of short runs).
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(poll_s)
    except BaseException:
        # The coordinator is gone (driver killed) or the task was cancelled: leave a
        # checkpoint behind for --resume rather than a process nobody follows.
        _terminate(proc)
        raise
    result["wall_s"] = time.monotonic() - started
    result["returncode"] = returncode
    step = checkpoint_step(run_dir / CHECKPOINT)
    result["step"] = step
    total = int(trial["total_steps"])
    evaluated = [r.get("step", 0) for r in MetricsFollower(run_dir / METRICS).read_new()]
    if step is not None and step >= total and (returncode == 0 or max(evaluated, default=0) >= total):
        # Trained, evaluated and checkpointed at total_steps: finished, even if a stop
        # signal arrived while the process was exiting (after its handler was gone).
        status = "finished"
    elif sent == STOP and (returncode == 0 or returncode == -signal.SIGTERM):
        status = "stopped"
    elif returncode == 0 and step is not None:
        status = "interrupted"  # our interrupt, or a SIGTERM from elsewhere: resumable
    elif sent == INTERRUPT and returncode == -signal.SIGTERM:
        status = "interrupted"  # stopped while still starting, before its signal handler
    else:
        status = "failed"
        result["log_tail"] = log_tail(log_path, since)
        result["error"] = (error_summary(result["log_tail"], returncode) if returncode != 0
                           else f"the training process exited without a checkpoint ({CHECKPOINT})")
    result["status"] = status
    return result


def _terminate(proc: subprocess.Popen[bytes], grace_s: float = 60.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


COORDINATOR_TIMEOUT_S = 120.0
"""How long a trial waits for the coordinator's answer before taking the driver for gone."""


def ray_trial_task(trial: dict[str, Any], coordinator: Any, poll_s: float) -> dict[str, Any]:
    """The Ray task of one trial (sweep.py submits it with the trial's num_cpus/num_gpus).

    It waits for the coordinator's answers through ``ObjectRef.future()``, never
    ``ray.get``: a task blocked in ray.get lends its CPUs back to Ray, which then starts
    another trial on them, so every report would oversubscribe the node."""
    trial_id = trial["trial_id"]

    def ask(ref: Any) -> str:
        try:
            return ref.future().result(timeout=COORDINATOR_TIMEOUT_S)
        except FutureTimeout:
            raise RuntimeError(f"sweep trial {trial_id}: no answer from the sweep's coordinator in "
                               f"{COORDINATOR_TIMEOUT_S:g} s (driver gone?)") from None

    return run_trial(
        trial,
        start=lambda info: ask(coordinator.start.remote(trial_id, info)),
        report=lambda records: ask(coordinator.report.remote(trial_id, records)),
        poll_s=poll_s,
    )

