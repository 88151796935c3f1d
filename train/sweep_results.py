"""A sweep's files and results: the per-trial state files, results.csv, the table of
configurations (mean +- std over seeds), the learning curves and the best configuration
as a `sim2real train` command line.

Everything is computed from SWEEP_DIR/state/, which the driver writes from what trials
report through the coordinator: the results need no access to the trial directories,
which on a cluster without shared storage stay on the nodes that ran them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim2real.train.sweep_scheduler import metric_value
from sim2real.train.sweep_spec import (
    SweepSpec,
    Trial,
    params_label,
    train_flags,
    trial_config,
    value_text,
)

SWEEP_FILE = "sweep.json"
"""The resolved spec and the trial list (id, axis values, whole config, flags)."""
TRIALS_DIR = "trials"
STATE_DIR = "state"
RESULTS_CSV = "results.csv"
CURVES_PNG = "learning_curves.png"
SUMMARY_MD = "summary.md"
STATUSES = ("pending", "running", "finished", "stopped", "failed")
"""A trial's status in its state file. pending: not run yet, or interrupted (resumes from
its checkpoint); running: started (a driver killed meanwhile leaves it so: resumed too);
finished: trained to total_steps; stopped: ended early by the scheduler (with a
checkpoint); failed: the training process failed, with its error."""
DONE = ("finished", "stopped", "failed")


def new_state(trial: Trial) -> dict[str, Any]:
    return {"trial_id": trial.trial_id, "status": "pending", "params": trial.params, "step": None,
            "wall_s": 0.0, "attempts": 0, "node": None, "resumed_from": None, "stopped_at": None,
            "error": None, "log_tail": [], "records": []}


def state_path(sweep_dir: Path, trial_id: str) -> Path:
    return sweep_dir / STATE_DIR / f"{trial_id}.json"


def write_state(sweep_dir: Path, state: dict[str, Any]) -> None:
    """Atomically (write aside, rename): a driver killed mid-write leaves the old state."""
    path = state_path(sweep_dir, state["trial_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def read_state(sweep_dir: Path, trial: Trial) -> dict[str, Any]:
    """The trial's state file, or a fresh pending state when it has none (a sweep killed
    before writing it) or it is unreadable."""
    try:
        state = json.loads(state_path(sweep_dir, trial.trial_id).read_text())
    except (OSError, ValueError):
        return new_state(trial)
    if not isinstance(state, dict) or state.get("status") not in STATUSES:
        return new_state(trial)
    return {**new_state(trial), **state}


def final_record(state: dict[str, Any]) -> dict[str, Any]:
    records = state.get("records") or []
    return records[-1] if records else {}


def metric_columns(states: Sequence[dict[str, Any]], metric: str) -> list[str]:
    """The metrics the table shows: the sweep's metric, the return, and the judge's
    headline numbers (task.*) that the trials' final records carry."""
    task = sorted({k for s in states for k in final_record(s) if k.startswith("task.") and k.count(".") == 1})
    columns = [metric]
    for name in ("return_mean", *task):
        if name not in columns:
            columns.append(name)
    return columns


# --- results.csv ---------------------------------------------------------------------------

def write_results_csv(path: Path, trials: Sequence[Trial], states: dict[str, dict[str, Any]],
                      metric: str) -> list[str]:
    """One row per trial: id, status, the axis values, the final metrics, wall clock,
    error. Returns the columns."""
    axes = list(trials[0].params) if trials else []
    metrics = metric_columns(list(states.values()), metric)
    if "return_std" not in metrics:
        metrics.append("return_std")
    # step: the trial's checkpoint; evaluated_at: the evaluation its metrics come from
    # (an interrupted trial checkpoints past its last evaluation).
    columns = ["trial_id", "status", *axes, "step", "evaluated_at", *metrics, "wall_s", "attempts", "node", "error"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for trial in trials:
            state = states[trial.trial_id]
            record = final_record(state)
            writer.writerow([
                trial.trial_id, state["status"], *(value_text(trial.params[a]) for a in axes),
                "" if state.get("step") is None else state["step"],
                record.get("step", ""),
                *("" if record.get(m) is None else record[m] for m in metrics),
                f"{state.get('wall_s') or 0.0:.1f}", state.get("attempts", 0), state.get("node") or "",
                state.get("error") or "",
            ])
    os.replace(tmp, path)
    return columns


# --- configurations: mean +- std over seeds ---------------------------------------------------

def summarize(trials: Sequence[Trial], states: dict[str, dict[str, Any]], metric: str,
              mode: str) -> tuple[list[dict[str, Any]], list[str]]:
    """One entry per configuration (axis values except the seed), best first by the mean
    of ``metric`` over its finished trials (configurations without one last, in spec
    order). Each: label, configuration, trial ids, status counts, and per metric column the
    values of its finished trials (stopped trials ended early: their numbers are from
    another point of training and stay out of the means; results.csv has them)."""
    columns = metric_columns(list(states.values()), metric)
    groups: dict[str, dict[str, Any]] = {}
    for trial in trials:
        key = json.dumps(trial.configuration, sort_keys=True)
        group = groups.setdefault(key, {
            "label": params_label(trial.configuration), "configuration": trial.configuration,
            "trials": [], "seeds": [], "status": {}, "values": {c: [] for c in columns},
            "wall_s": [], "steps": [],
        })
        state = states[trial.trial_id]
        group["trials"].append(trial.trial_id)
        group["seeds"].append(trial.config.seed)
        group["status"][state["status"]] = group["status"].get(state["status"], 0) + 1
        if state["status"] == "finished":
            record = final_record(state)
            for column in columns:
                value = metric_value(record, column)
                if value is not None:
                    group["values"][column].append(value)
            group["wall_s"].append(float(state.get("wall_s") or 0.0))
            if state.get("step") is not None:
                group["steps"].append(int(state["step"]))
    sign = 1.0 if mode == "max" else -1.0
    order = list(groups.values())

    def rank(group: dict[str, Any]) -> float:
        values = group["values"][metric]
        return -sign * statistics.fmean(values) if values else math.inf

    order.sort(key=rank)  # stable: ties and configurations without a value keep spec order
    return order, columns


def mean_std(values: Sequence[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value), None for no values."""
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def number_text(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"


def mean_std_text(values: Sequence[float], fmt: str | None = None) -> str:
    """``mean +- std`` (just the value for one), each as ``fmt`` or 4 significant digits."""
    stats = mean_std(values)
    if stats is None:
        return "-"
    texts = [format(v, fmt) if fmt else number_text(v) for v in stats]
    return texts[0] if len(values) == 1 else f"{texts[0]} +- {texts[1]}"


def format_table(groups: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """The per-configuration table as text (Markdown-compatible): finished trials' mean +-
    std over seeds of each final metric and of the wall clock."""
    head = ["configuration", "trials", "status", *columns, "steps", "wall clock s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in groups:
        status = ", ".join(f"{n} {s}" for s in STATUSES if (n := group["status"].get(s)))
        steps = sorted(set(group["steps"]))
        cells = [group["label"], str(len(group["trials"])), status,
                 *(mean_std_text(group["values"][c]) for c in columns),
                 "-" if not steps else "/".join(str(s) for s in steps),
                 mean_std_text(group["wall_s"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_in_progress(trials: Sequence[Trial], states: dict[str, dict[str, Any]], columns: Sequence[str]) -> str:
    """The unfinished trials' latest evaluations, one row each (empty text if none has
    one): where an interrupted or still running sweep stands, which the per-configuration
    means over finished trials cannot show."""
    rows = []
    for trial in trials:
        state = states[trial.trial_id]
        record = final_record(state)
        if state["status"] in ("pending", "running") and record:
            cells = [trial.trial_id, params_label(trial.params), str(record.get("step", "-")),
                     *("-" if (v := metric_value(record, c)) is None else number_text(v) for c in columns)]
            rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return ""
    head = ["trial", "parameters", "evaluated at step", *columns]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows])


def best_group(groups: Sequence[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The best configuration (``summarize`` puts it first), if any trial finished."""
    return groups[0] if groups and groups[0]["values"][metric] else None


def best_command(spec: SweepSpec, group: dict[str, Any], out: Path) -> str:
    """`sim2real train` with the best configuration: [base], its axis values, the sweep's
    per-trial defaults (threads, workers); the seed is [base]'s, since the sweep averaged
    over seeds."""
    config = trial_config(spec, group["configuration"], out, f"configuration {group['label']}")
    return "sim2real train " + shlex.join([*train_flags(config), "--out", str(out)])


def failures(trials: Sequence[Trial], states: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{t.trial_id} ({t.label}): {states[t.trial_id].get('error')}"
            for t in trials if states[t.trial_id]["status"] == "failed"]


# --- learning curves ------------------------------------------------------------------------

def plot_curves(path: Path, trials: Sequence[Trial], states: dict[str, dict[str, Any]],
                metric: str) -> Path | None:
    """Learning curves grouped by configuration: one colour each, a thin line per trial
    (seed) and a thick one for the mean over the seeds at the steps they all reached. One
    panel for ``metric``, one for the return when that is another metric."""
    panels = [metric] if metric == "return_mean" else [metric, "return_mean"]
    curves: dict[str, list[tuple[list[int], list[float]]]] = {}
    for trial in trials:
        records = states[trial.trial_id].get("records") or []
        for panel in panels:
            points = [(int(r["step"]), v) for r in records
                      if "step" in r and (v := metric_value(r, panel)) is not None]
            if points:
                curves.setdefault(f"{panel}\0{params_label(trial.configuration)}", []).append(
                    ([p[0] for p in points], [p[1] for p in points]))
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    labels = list(dict.fromkeys(params_label(t.configuration) for t in trials))
    colors = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, label in enumerate(labels):
            runs = curves.get(f"{panel}\0{label}", [])
            color = colors(i % colors.N)
            for steps, values in runs:
                ax.plot(steps, values, color=color, lw=0.8, alpha=0.45)
            common = sorted(set.intersection(*(set(s) for s, _ in runs))) if runs else []
            if common:
                means = [statistics.fmean(v[s.index(step)] for s, v in runs) for step in common]
                short = label if len(label) <= 60 else label[:57] + "..."
                ax.plot(common, means, color=color, lw=2.2, marker="o", ms=3,
                        label=f"{short} (n={len(runs)})")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("sweep learning curves: one colour per configuration (thin: each seed, thick: mean)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
