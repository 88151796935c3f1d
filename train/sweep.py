"""`sim2real sweep`: many `sim2real train` runs (a grid or random search over config fields
and seeds) on Ray, on this machine or a cluster.

Ray core, not Ray Tune. Each trial is one Ray task (num_cpus / num_gpus from the spec)
that runs an ordinary `sim2real train` process in SWEEP_DIR/trials/TRIAL_ID
(sweep_trial.py), so a trial directory is a run directory like any other: `sim2real
eval`, `export` and `train --resume` work on it. Tune would own that directory's layout,
the checkpointing and the restore, all of which our trainer already does (atomic,
hash-checked checkpoints; `--resume`; SIGTERM -> checkpoint and exit), and would run the
trainer inside its worker, where one crashing trial takes the worker down. What Tune
would add, early stopping, is two small rules here (sweep_scheduler.py) in one Ray actor
that every trial reports its evaluations to; it answers continue, stop or interrupt.
That actor is also how the driver learns what happens, so nothing needs storage shared
between the nodes of a cluster (a trial directory stays on the node that ran it unless
SWEEP_DIR is on shared storage; see docs/sweeps.md).

SWEEP_DIR holds sweep.json (the resolved spec and the trial list), trials/ (the run
directories), state/TRIAL_ID.json (status, error, metrics so far), results.csv,
learning_curves.png and summary.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import tyro

from sim2real.train import sweep_results as results
from sim2real.train.sweep_scheduler import SweepCoordinator, metric_value
from sim2real.train.sweep_spec import (
    SpecError,
    SweepSpec,
    Trial,
    check_trials,
    expand_trials,
    load_spec,
    spec_from_json,
    train_flags,
)
from sim2real.train.sweep_trial import ray_trial_task

RAY_MISSING = (
    "sim2real sweep runs on Ray, which is not installed. Install the sweep extra:\n"
    '    pip install -e ".[sweep]"     (in a checkout; or: pip install "sim2real[sweep]")'
)
SWEEP_FORMAT = 1
LOCK_FILE = ".driver.lock"
"""Held by the driver of a sweep while it runs, so a second driver (a --resume in another
terminal) is refused instead of running the same trials again."""
HEARTBEAT_S = 60.0
"""Seconds between progress lines while nothing changes."""


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Run many `sim2real train` runs (grid or random search over config fields and seeds)
    on Ray, on this machine or a cluster; early stopping, resume, a results table."""

    spec: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="SPEC.toml")] = None
    """The sweep spec (TOML): [base] `sim2real train` config fields, [axes] the values to
    sweep, [search], [resources], [stopping]; docs/sweeps.md. Not with --resume."""
    out: Path | None = None
    """The new sweep's directory (SWEEP_DIR): sweep.json, trials/ (one run directory per
    trial), state/, results.csv, learning_curves.png."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """An axis from the command line, KEY=V1,V2,... (repeatable), e.g. --set seed=0,1,2
    --set sac.actor_lr=3e-4,1e-3: adds the axis, or replaces the spec's of that name."""
    resume: Path | None = None
    """Continue the sweep in this SWEEP_DIR: finished, stopped (and failed) trials are kept,
    unfinished ones resume from their last checkpoint."""
    retry_failed: bool = False
    """With --resume: run the failed trials again (from their checkpoint if they have one)."""
    address: str | None = None
    """Join this Ray cluster (e.g. 10.0.0.1:6379 of `ray start --head`; "auto": the one
    this node is part of) instead of starting Ray on this machine."""
    num_cpus: int | None = None
    """CPUs of the local Ray instance (default: the cores this process may use). Not with
    --address: a cluster's nodes declare theirs at `ray start`."""
    max_concurrent: int | None = None
    """At most this many trials at once (default: as many as the CPUs/GPUs fit)."""
    poll_interval: float = 1.0
    """Seconds between a trial's checks of its metrics.jsonl (and the driver's updates)."""

    def __post_init__(self) -> None:
        if (self.spec is None) == (self.resume is None):
            raise ValueError("give a SPEC.toml with --out SWEEP_DIR for a new sweep, or --resume "
                             "SWEEP_DIR to continue one (not both)")
        if self.spec is not None and self.out is None:
            raise ValueError("--out SWEEP_DIR is required: where the sweep's trials and results go")
        if self.resume is not None and (self.out is not None or self.set):
            raise ValueError("--resume continues the sweep as saved in SWEEP_DIR/sweep.json: "
                             "--out and --set apply to a new sweep only")
        if self.retry_failed and self.resume is None:
            raise ValueError("--retry-failed goes with --resume SWEEP_DIR")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent}")
        if self.num_cpus is not None and (self.num_cpus < 1 or self.address is not None):
            raise ValueError("num_cpus must be >= 1 and is for a local Ray instance (not --address)")
        if not self.poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {self.poll_interval}")


@dataclasses.dataclass
class Plan:
    """A sweep ready to run: where, the spec, every trial with its state, which run now."""

    sweep_dir: Path
    spec: SweepSpec
    trials: list[Trial]
    states: dict[str, dict[str, Any]]
    to_run: list[Trial]
    new: bool = False
    """Made by this command (plan_new): a sweep that cannot start at all is removed again,
    so that its --out can be used as it was."""


def sweep_main(argv: list[str], prog: str = "sim2real sweep") -> int:
    config = tyro.cli(SweepConfig, args=argv, prog=prog)
    try:
        import ray  # noqa: F401  (only whether it is there)
    except ImportError:
        print(RAY_MISSING, file=sys.stderr)
        return 2
    try:
        plan = plan_new(config) if config.resume is None else plan_resume(config)
    except (SpecError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(plan.sweep_dir / LOCK_FILE, "w") as lock:
        if not _try_lock(lock):
            print(f"error: another `sim2real sweep` is running the sweep in {plan.sweep_dir} (it "
                  f"holds {LOCK_FILE}); two drivers would run the same trials twice", file=sys.stderr)
            return 2
        return run_plan(plan, config)


def _try_lock(f: Any) -> bool:
    """An exclusive lock on ``f`` for this process's lifetime (released when it exits,
    however it exits); True where file locks do not exist."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# --- planning (before Ray) ------------------------------------------------------------------

def plan_new(config: SweepConfig) -> Plan:
    """Read and check the spec and every trial; SpecError before anything is written."""
    assert config.spec is not None and config.out is not None
    sweep_dir = config.out.resolve()
    if (sweep_dir / results.SWEEP_FILE).exists():
        raise SpecError(f"--out {config.out} holds a sweep already: continue it with "
                        f"`sim2real sweep --resume {config.out}`, or choose another --out")
    if sweep_dir.exists() and (not sweep_dir.is_dir() or any(sweep_dir.iterdir())):
        raise SpecError(f"--out {config.out} exists and is not an empty directory")
    spec = load_spec(config.spec, config.set)
    trials = expand_trials(spec, sweep_dir / results.TRIALS_DIR)
    check_trials(spec, trials)
    if config.address is None:  # a local Ray: its CPUs are known before it starts
        cpus = config.num_cpus or _local_cpus()
        if spec.resources.cpus_per_trial > cpus:
            raise SpecError(f"[resources] cpus_per_trial is {spec.resources.cpus_per_trial:g}, more than the "
                            f"{cpus} CPUs the local Ray gets (--num-cpus, or this machine's); nothing was written")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    saved = {
        "format": SWEEP_FORMAT,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "spec_file": str(config.spec),
        "set": list(config.set),
        "spec": spec.as_json(),
        "trials": [{"trial_id": t.trial_id, "params": t.params, "argv": train_flags(t.config),
                    "config": _config_dict(t)} for t in trials],
    }
    (sweep_dir / results.SWEEP_FILE).write_text(json.dumps(saved, indent=1))
    states = {t.trial_id: results.new_state(t) for t in trials}
    for state in states.values():
        results.write_state(sweep_dir, state)
    return Plan(sweep_dir, spec, trials, states, list(trials), new=True)


def plan_resume(config: SweepConfig) -> Plan:
    assert config.resume is not None
    sweep_dir = config.resume.resolve()
    path = sweep_dir / results.SWEEP_FILE
    if not path.is_file():
        raise SpecError(f"--resume {config.resume}: no {results.SWEEP_FILE} in it (not a sweep directory)")
    from sim2real.train.config import config_from_dict

    trials = []
    try:
        saved = json.loads(path.read_text())
        spec = spec_from_json(saved["spec"])
        for entry in saved["trials"]:
            trial_id = entry["trial_id"]
            # The trial lives where the sweep directory is now, wherever it was made.
            data = {**entry["config"], "out": str(sweep_dir / results.TRIALS_DIR / trial_id)}
            trials.append(Trial(trial_id, entry["params"], config_from_dict(data, f"{path}: trial {trial_id}")))
    except SpecError:
        raise
    except (KeyError, TypeError) as err:
        raise SpecError(f"{path}: not a sweep file of this version (missing or wrong {err})") from None
    except ValueError as err:  # not JSON, or a trial config this version refuses (RunDirError)
        raise SpecError(f"{path}: {err}") from None
    states = {t.trial_id: results.read_state(sweep_dir, t) for t in trials}
    rerun = ("pending", "running", "failed") if config.retry_failed else ("pending", "running")
    to_run = [t for t in trials if states[t.trial_id]["status"] in rerun]
    return Plan(sweep_dir, spec, trials, states, to_run)


def _config_dict(trial: Trial) -> dict[str, Any]:
    from sim2real.train.config import config_to_dict

    return config_to_dict(trial.config)


# --- running (on Ray) ------------------------------------------------------------------------

def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (taskset, cgroups' cpuset)
    except AttributeError:
        return os.cpu_count() or 1


def run_plan(plan: Plan, config: SweepConfig) -> int:
    import ray

    owns_ray = not ray.is_initialized()  # already up: an embedding program's (or a test's)
    if owns_ray:
        try:
            if config.address is not None:
                ray.init(address=config.address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                # worker_niceness 0: Ray starts its workers, and so our trainers, at nice 15
                # by default, where anything else on the machine (Ray's own daemons
                # included) preempts them; a trial then trains ~35% slower than the same
                # `sim2real train` started by hand (benchmarks/sweep_overhead.py). A
                # cluster joined with --address keeps its own setting (`ray start
                # --system-config='{"worker_niceness": 0}'`, docs/sweeps.md).
                ray.init(num_cpus=config.num_cpus or _local_cpus(), include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING,
                         _system_config={"worker_niceness": 0})
        except Exception as err:  # ConnectionError for a wrong address, among others
            print(f"error: cannot start or reach Ray ({type(err).__name__}: {err}); the sweep is "
                  f"saved: continue with `sim2real sweep --resume {plan.sweep_dir}`", file=sys.stderr)
            return 2
    try:
        problem = _resources_problem(plan.spec)
        if problem:
            if plan.new:  # nothing ran: leave --out as it was, reusable with a fixed spec
                _discard_new_sweep(plan)
                problem += "; nothing was kept"
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return Driver(plan, config).run()
    finally:
        if owns_ray:
            ray.shutdown()


def _discard_new_sweep(plan: Plan) -> None:
    """Remove what plan_new wrote (sweep.json, the trials' state files, the lock); the
    directory itself goes too when it is then empty (plan_new made it or found it empty).
    Nothing ran, so nothing else is in it."""
    import shutil

    (plan.sweep_dir / results.SWEEP_FILE).unlink(missing_ok=True)
    shutil.rmtree(plan.sweep_dir / results.STATE_DIR, ignore_errors=True)
    shutil.rmtree(plan.sweep_dir / results.TRIALS_DIR, ignore_errors=True)
    (plan.sweep_dir / LOCK_FILE).unlink(missing_ok=True)
    try:
        plan.sweep_dir.rmdir()
    except OSError:
        pass


def _resources_problem(spec: SweepSpec) -> str | None:
    """A trial needs its CPUs and GPUs on one node: say so now rather than wait forever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    need = spec.resources
    if not any(n.get("CPU", 0) >= need.cpus_per_trial and n.get("GPU", 0) >= need.gpus_per_trial
               for n in nodes):
        have = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes) or "none"
        return (f"no Ray node has the {need.cpus_per_trial:g} CPUs and {need.gpus_per_trial:g} GPUs a "
                f"trial asks for ([resources]); nodes: {have}")
    return None


class Driver:
    """Submits the trials, follows them through the coordinator, writes the state files,
    prints progress and, at the end, the results."""

    def __init__(self, plan: Plan, config: SweepConfig) -> None:
        self.plan, self.config = plan, config
        self.spec = plan.spec
        self.metric, self.mode = plan.spec.search.metric, plan.spec.search.mode
        self.started = time.monotonic()
        self.signals = 0
        self.last_progress = ""
        self.last_print = 0.0

    # The first Ctrl-C / SIGTERM stops the trials (each checkpoints); a second aborts.
    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals > 1:
            raise KeyboardInterrupt
        self._print(f"{signal.Signals(signum).name}: stopping the running trials (each saves a "
                    f"checkpoint); Ctrl-C again to abort at once")

    def run(self) -> int:
        import ray

        plan = self.plan
        kept = len(plan.trials) - len(plan.to_run)
        resources = self.spec.resources
        stopping = self.spec.stopping
        cluster = ray.cluster_resources()
        self._print(
            f"sweep: {len(plan.trials)} trials in {plan.sweep_dir}"
            + (f" ({kept} kept from before, {len(plan.to_run)} to run)" if kept else "")
            + f"; Ray: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs; per trial "
            f"{resources.cpus_per_trial:g} CPU, {resources.gpus_per_trial:g} GPU; metric {self.metric} "
            f"({self.mode}); early stopping: {stopping.scheduler}"
        )
        coordinator = ray.remote(num_cpus=0)(SweepCoordinator).remote(
            dataclasses.asdict(stopping), self.metric, self.mode)
        # Earlier sessions' results count for the rungs and medians (before any trial reports).
        ray.get([coordinator.replay.remote(t.trial_id, plan.states[t.trial_id]["records"])
                 for t in plan.trials
                 if plan.states[t.trial_id]["status"] in ("finished", "stopped")])
        # Ray retries a task whose worker or node died (max_retries): the retry resumes from
        # the checkpoint when it can see it. A trial that fails by itself returns "failed"
        # instead of raising, so it is never retried.
        task = ray.remote(ray_trial_task).options(
            num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial, max_retries=3)
        queue = list(plan.to_run)
        inflight: dict[Any, str] = {}
        interrupted = False
        in_main = threading.current_thread() is threading.main_thread()
        previous = ({s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
                    if in_main else {})
        try:
            while queue or inflight:
                if self.signals and not interrupted:
                    interrupted = True
                    coordinator.interrupt.remote()
                    queue.clear()
                limit = self.config.max_concurrent or len(queue) + len(inflight)
                while queue and len(inflight) < limit:
                    trial = queue.pop(0)
                    payload = {"trial_id": trial.trial_id, "run_dir": str(trial.config.out),
                               "argv": train_flags(trial.config),
                               "total_steps": trial.config.total_steps}
                    inflight[task.remote(payload, coordinator, self.config.poll_interval)] = trial.trial_id
                if not inflight:
                    break
                # Returns as soon as one trial ends (its core goes to the next in the queue
                # at once), else after the poll interval for the progress events.
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=self.config.poll_interval)
                self._apply_events(ray.get(coordinator.drain.remote()))
                for ref in ready:
                    trial_id = inflight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as err:  # the task itself died (after Ray's retries)
                        outcome = {"trial_id": trial_id, "status": "failed",
                                   "error": f"{type(err).__name__}: {str(err).strip().splitlines()[-1]}"}
                    self._apply_outcome(outcome)
                self._progress()
        except KeyboardInterrupt:
            self._print(f"aborted: {len(inflight)} trial(s) in flight left as they were (their last "
                        f"checkpoints stay); continue with `sim2real sweep --resume {plan.sweep_dir}`")
            self._write_results()
            return 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._finish(interrupted)

    # --- state ---------------------------------------------------------------------------
    def _apply_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            state = self.plan.states[event["trial_id"]]
            if event["type"] == "started":
                # The trial reports its metrics.jsonl from the top (trimmed to the
                # checkpoint it resumes from): the state mirrors it from here.
                state.update(status="running", node=event.get("node"),
                             resumed_from=event.get("resumed_from"), records=[], error=None, log_tail=[])
                what = (f"resuming from step {event['resumed_from']}"
                        if event.get("resumed_from") is not None else "started")
                self._print(f"{event['trial_id']} {what} ({self._label(event['trial_id'])}) on {event.get('node')}")
            elif event["type"] == "records":
                state["records"].extend(event["records"])
                state["step"] = event["records"][-1].get("step", state["step"])
            elif event["type"] == "stop":
                state["stopped_at"] = event["step"]
                self._print(f"{event['trial_id']} stopping early at step {event['step']}: "
                            f"{self.metric} {results.number_text(event['value'])} "
                            f"({self.spec.stopping.scheduler})")
            results.write_state(self.plan.sweep_dir, state)

    def _apply_outcome(self, outcome: dict[str, Any]) -> None:
        trial_id = outcome["trial_id"]
        state = self.plan.states[trial_id]
        status = outcome["status"]
        state["attempts"] = int(state.get("attempts") or 0) + 1
        state["wall_s"] = float(state.get("wall_s") or 0.0) + float(outcome.get("wall_s") or 0.0)
        if outcome.get("step") is not None:
            state["step"] = outcome["step"]
        state["error"], state["log_tail"] = outcome.get("error"), outcome.get("log_tail") or []
        if status == "interrupted":
            state["status"] = "pending"  # resumes from its checkpoint
            step = outcome.get("step")
            self._print(f"{trial_id} interrupted " + (f"at step {step}" if step is not None else "before it started"))
        else:
            state["status"] = status
            final = results.final_record(state)
            value = metric_value(final, self.metric)
            shown = results.number_text(value) if value is not None else "-"
            if status == "failed":
                self._print(f"{trial_id} FAILED ({self._label(trial_id)}): {state['error']}")
            else:
                self._print(f"{trial_id} {status} at step {state['step']}: {self.metric} {shown}, "
                            f"{state['wall_s']:.0f} s")
        results.write_state(self.plan.sweep_dir, state)

    def _label(self, trial_id: str) -> str:
        return next(t.label for t in self.plan.trials if t.trial_id == trial_id)

    # --- output ----------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {text}", flush=True)
        self.last_print = time.monotonic()

    def _progress(self) -> None:
        """A line with the counts and the best so far, when they change (or every minute)."""
        states = self.plan.states.values()
        counts = {s: sum(1 for x in states if x["status"] == s) for s in results.STATUSES}
        done = counts["finished"] + counts["stopped"] + counts["failed"]
        line = (f"{done}/{len(self.plan.trials)} done ({counts['finished']} finished, "
                f"{counts['stopped']} stopped, {counts['failed']} failed), {counts['running']} running, "
                f"{counts['pending']} pending")
        best = self._best_so_far()
        if best:
            line += f"; best {self.metric} so far {best}"
        if line != self.last_progress or time.monotonic() - self.last_print > HEARTBEAT_S:
            if line == self.last_progress:  # heartbeat: where the running trials are
                running = [f"{s['trial_id']} step {s['step']}" for s in states
                           if s["status"] == "running" and s.get("step") is not None]
                line += ("; " + ", ".join(running)) if running else ""
            self.last_progress = line
            self._print(line)

    def _best_so_far(self) -> str | None:
        sign = 1.0 if self.mode == "max" else -1.0
        best: tuple[float, str, Any] | None = None
        # The best evaluation any trial has reported so far (not each trial's latest, which
        # goes down when a trial gets worse): the line never goes backwards.
        for state in self.plan.states.values():
            if state["status"] == "failed":
                continue
            for record in state.get("records") or []:
                value = metric_value(record, self.metric)
                if value is not None and (best is None or sign * value > sign * best[0]):
                    best = (value, state["trial_id"], record.get("step"))
        return None if best is None else f"{results.number_text(best[0])} ({best[1]}, step {best[2]})"

    def _write_results(self) -> tuple[list[dict[str, Any]], list[str]]:
        plan = self.plan
        results.write_results_csv(plan.sweep_dir / results.RESULTS_CSV, plan.trials, plan.states, self.metric)
        results.plot_curves(plan.sweep_dir / results.CURVES_PNG, plan.trials, plan.states, self.metric)
        return results.summarize(plan.trials, plan.states, self.metric, self.mode)

    def _finish(self, interrupted: bool) -> int:
        plan = self.plan
        groups, columns = self._write_results()
        table = results.format_table(groups, columns)
        lines = [f"results ({len(plan.trials)} trial(s), {len(groups)} configuration(s); means over "
                 f"finished trials; {results.RESULTS_CSV} has every trial):", "", table, ""]
        best = results.best_group(groups, self.metric)
        if best is not None:
            out = Path("runs") / f"{plan.sweep_dir.name}-best"
            stats = results.mean_std_text(best["values"][self.metric])
            lines += [f"best configuration by {self.metric} ({self.mode}): {best['label']}: {stats} "
                      f"over {len(best['values'][self.metric])} finished trial(s); to train it:",
                      "    " + results.best_command(self.spec, best, out), ""]
        failed = results.failures(plan.trials, plan.states)
        if failed:
            lines += [f"{len(failed)} failed trial(s) (their logs: trials/TRIAL_ID/train.log; "
                      f"re-run them with --resume {plan.sweep_dir} --retry-failed):",
                      *(f"  {f}" for f in failed), ""]
        unfinished = [s for s in plan.states.values() if s["status"] in ("pending", "running")]
        if interrupted or unfinished:
            progress = results.format_in_progress(plan.trials, plan.states, columns)
            if progress:
                lines += ["not finished, their latest evaluations (not comparable with finished "
                          "trials' final ones):", "", progress, ""]
            lines += [f"interrupted: {len(unfinished)} trial(s) not finished; continue with "
                      f"`sim2real sweep --resume {plan.sweep_dir}`", ""]
        text = "\n".join(lines)
        print(text, flush=True)
        (plan.sweep_dir / results.SUMMARY_MD).write_text(text)
        written = [plan.sweep_dir / name for name in (results.RESULTS_CSV, results.CURVES_PNG, results.SUMMARY_MD)]
        print("wrote " + ", ".join(str(p) for p in written if p.is_file()), flush=True)
        return 1 if failed else 0


def main() -> int:  # `python -m sim2real.train.sweep SPEC.toml --out DIR`
    return sweep_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
