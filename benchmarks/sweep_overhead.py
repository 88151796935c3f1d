"""What `sim2real sweep` costs over running the same `sim2real train` processes by hand.

    pip install -e ".[sweep]"
    python benchmarks/sweep_overhead.py                  # 4 Pendulum runs of 5000 steps, 2 at a time
    python benchmarks/sweep_overhead.py --repeats 3      # interleaved, median of the ratios
    python benchmarks/sweep_overhead.py --tiny           # does it run? (300 steps; numbers meaningless)

Both sides run the same four runs (seeds 0-3 of one Pendulum config, 1 torch thread and
in-process envs each), two at a time on a 2-core machine:

- sweep: `python -m sim2real.train.sweep SPEC --out DIR --num-cpus 2` (what `sim2real
  sweep` runs) in a fresh process: its wall clock includes starting and stopping Ray,
  because a user waits for that too;
- plain: the sweep's own trial command lines (`sim2real train ...`, from the same spec) as
  subprocesses, a new one as soon as one of the two ends.

Overhead = sweep wall clock / plain wall clock - 1 (target <= 15% on 2 cores). Memory:
every 2 s the process tree under the sweep's driver is read from /proc (Linux) and split
into the training processes and everything else (Ray's gcs_server, raylet, its agents, the
worker processes and the coordinator actor); reported is the peak of that rest's summed PSS
(each shared page divided among its users; RSS summed double-counts them, shown too), and
the driver's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sim2real.train.sweep_spec import expand_trials, load_spec, train_flags

RUNS = 4
PARALLEL = 2
SAMPLE_INTERVAL_S = 2.0
"""Between two reads of the sweep's memory. Reading PSS (smaps_rollup) of a dozen processes
is CPU the plain runs do not pay: at 0.5 s it slowed the sweep's trials measurably."""


def spec_text(steps: int, tiny: bool) -> str:
    hidden, batch, starts = ((16, 16), 32, 100) if tiny else ((64, 64), 128, 1000)
    return f"""
[base]
env = "Pendulum-v1"
total_steps = {steps}
learning_starts = {starts}
eval_interval = {max(1, steps // 2)}
eval_episodes = {1 if tiny else 5}
checkpoint_interval = {steps}
log_interval = {max(1, steps // 10)}
[base.sac]
actor_hidden = {list(hidden)}
critic_hidden = {list(hidden)}
batch_size = {batch}
actor_lr = 1e-3
critic_lr = 1e-3
alpha_lr = 1e-3

[axes]
seed = {list(range(RUNS))}

[resources]
cpus_per_trial = 1
"""


# --- memory from /proc ---------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo += tree.get(child, [])
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in kB; (0, 0) when it is gone."""
    try:
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0, 0
    try:
        pss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                   if line.startswith("Pss:"))
    except (OSError, StopIteration):
        pss = rss
    return pss, rss


def _name(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    text = b" ".join(cmdline).decode(errors="replace")
    if "sim2real.cli train" in text:
        return "trainer"
    if comm.startswith("python"):  # Ray's helper scripts: name them by their file
        script = next((a.decode(errors="replace") for a in cmdline[1:] if a.endswith(b".py")), "")
        return Path(script).stem or comm
    return comm


class RaySampler(threading.Thread):
    """Peak memory of the process tree under ``root``: the training processes left out."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.done = threading.Event()
        self.peak: dict[str, float] = {"pss": 0.0, "rss": 0.0, "driver_pss": 0.0, "processes": 0}
        self.peak_breakdown: dict[str, float] = {}

    def run(self) -> None:
        while not self.done.wait(SAMPLE_INTERVAL_S):
            tree = _children()
            trainers: set[int] = set()
            others = []
            for pid in _descendants(self.root, tree):
                if pid in trainers:
                    continue
                if _name(pid) == "trainer":
                    trainers.add(pid)
                    trainers.update(_descendants(pid, tree))
                else:
                    others.append(pid)
            others = [p for p in others if p not in trainers]
            pss = rss = 0
            breakdown: dict[str, float] = {}
            for pid in others:
                p, r = _memory_kb(pid)
                pss, rss = pss + p, rss + r
                name = _name(pid)
                breakdown[name] = breakdown.get(name, 0.0) + p / 1024
            if pss / 1024 > self.peak["pss"]:
                self.peak.update(pss=pss / 1024, rss=rss / 1024, processes=len(others))
                self.peak_breakdown = breakdown
            self.peak["driver_pss"] = max(self.peak["driver_pss"], _memory_kb(self.root)[0] / 1024)


# --- the two ways --------------------------------------------------------------------------

def run_sweep(spec: Path, out: Path) -> tuple[float, RaySampler]:
    command = [sys.executable, "-m", "sim2real.train.sweep", str(spec), "--out", str(out),
               "--num-cpus", str(PARALLEL)]
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        sampler = RaySampler(proc.pid)
        sampler.start()
        code = proc.wait()
    elapsed = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"the sweep failed (exit {code}); see {out.with_suffix('.log')}")
    return elapsed, sampler


def run_plain(spec: Path, out: Path) -> float:
    trials = expand_trials(load_spec(spec), out)
    commands = [[sys.executable, "-m", "sim2real.cli", "train", *train_flags(t.config), "--out", str(t.config.out)]
                for t in trials]
    out.mkdir(parents=True)
    started = time.perf_counter()
    running: list[subprocess.Popen[bytes]] = []
    logs = []
    while commands or running:
        while commands and len(running) < PARALLEL:
            log = open(out / f"run{len(logs)}.log", "wb")  # closed at the end
            logs.append(log)
            running.append(subprocess.Popen(commands.pop(0), stdout=log, stderr=subprocess.STDOUT))
        time.sleep(0.05)
        for proc in [p for p in running if p.poll() is not None]:
            running.remove(proc)
            if proc.returncode != 0:
                raise SystemExit(f"a plain run failed (exit {proc.returncode}); logs in {out}")
    elapsed = time.perf_counter() - started
    for log in logs:
        log.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="env steps per run")
    parser.add_argument("--repeats", type=int, default=1, help="sweep/plain pairs, interleaved")
    parser.add_argument("--tiny", action="store_true", help="300 steps, tiny nets: a smoke run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    args = parser.parse_args()
    steps = 300 if args.tiny else args.steps
    work = args.keep or Path(tempfile.mkdtemp(prefix="sweep_overhead_"))
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "spec.toml"
    spec.write_text(spec_text(steps, args.tiny))
    print(f"sweep_overhead: {RUNS} Pendulum-v1 runs x {steps} steps, {PARALLEL} at a time; "
          f"{platform.machine()}, {os.cpu_count()} cores; {args.repeats} repeat(s), in {work}")
    print("\n| repeat | plain s | sweep s | overhead |\n|---|---|---|---|")
    ratios, samplers = [], []
    for i in range(args.repeats):
        # Alternate which goes first: this machine's speed drifts between measurements.
        order = ("plain", "sweep") if i % 2 == 0 else ("sweep", "plain")
        times: dict[str, float] = {}
        for kind in order:
            if kind == "plain":
                times[kind] = run_plain(spec, work / f"plain{i}")
            else:
                times[kind], sampler = run_sweep(spec, work / f"sweep{i}")
                samplers.append(sampler)
        ratios.append(times["sweep"] / times["plain"])
        print(f"| {i} | {times['plain']:.1f} | {times['sweep']:.1f} | {100 * (ratios[-1] - 1):+.1f}% |", flush=True)
    overhead = 100 * (statistics.median(ratios) - 1)
    spread = f" (repeats {100 * (min(ratios) - 1):+.1f}% to {100 * (max(ratios) - 1):+.1f}%)" if len(ratios) > 1 else ""
    print(f"\nsweep overhead: {overhead:+.1f}% of wall clock{spread}; target <= +15% on 2 cores")
    peak = max(samplers, key=lambda s: s.peak["pss"])
    parts = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(peak.peak_breakdown.items(), key=lambda x: -x[1]))
    print(f"Ray's memory at its peak: {peak.peak['pss']:.0f} MB PSS ({peak.peak['rss']:.0f} MB RSS summed) in "
          f"{peak.peak['processes']} processes besides the trainers: {parts} (MB PSS); the sweep's "
          f"driver: {peak.peak['driver_pss']:.0f} MB PSS at most")
    summary = {"steps": steps, "runs": RUNS, "parallel": PARALLEL, "ratios": ratios, "overhead_percent": overhead,
               "ray_pss_mb": peak.peak["pss"], "ray_rss_mb": peak.peak["rss"], "driver_pss_mb": peak.peak["driver_pss"],
               "breakdown_pss_mb": peak.peak_breakdown}
    (work / "sweep_overhead.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
