"""`sim2real sweep` on a local Ray instance with 2 CPUs (tiny Pendulum runs): a 2 x 2 grid
gives four run directories and the results table; an invalid configuration fails alone
with its error named; an interrupted sweep resumes without re-running finished trials.

One Ray instance serves the module; the interrupted sweep's driver is a separate process
that joins it with --address (the console command's path, and a SIGTERM to a real
driver), the other sweeps run in this process."""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tyro

from sim2real.serve.testing import wait_until
from sim2real.train.checkpoint import load_checkpoint
from sim2real.train.config import TrainConfig
from sim2real.train.sweep import sweep_main
from sim2real.train.sweep_trial import checkpoint_step

BASE = """
[base]
env = "Pendulum-v1"
learning_starts = 100
eval_episodes = 1
log_interval = 100
[base.sac]
actor_hidden = [16, 16]
critic_hidden = [16, 16]
batch_size = 32
"""
POLL = ["--poll-interval", "0.5"]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _states(sweep: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((sweep / "state").glob("*.json"))}


def _rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "results.csv") as f:
        return list(csv.DictReader(f))


def test_a_2x2_grid_gives_four_run_directories_and_the_results_table(
        tmp_path: Path, ray_address: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "grid.toml"
    spec.write_text(BASE.replace("[base]\n", "[base]\ntotal_steps = 300\neval_interval = 150\n"
                                 "checkpoint_interval = 300\n")
                    + '[axes]\nseed = [0, 1]\n"sac.actor_lr" = [1e-3, 3e-3]\n')
    sweep = tmp_path / "sweep"
    assert sweep_main([str(spec), "--out", str(sweep), *POLL]) == 0
    out = capsys.readouterr().out
    print(out)  # the run's output, shown with -s

    assert sorted(p.name for p in (sweep / "trials").iterdir()) == ["t000", "t001", "t002", "t003"]
    saved = json.loads((sweep / "sweep.json").read_text())
    for entry in saved["trials"]:
        run = sweep / "trials" / entry["trial_id"]
        _, meta = load_checkpoint(run / "checkpoint.safetensors")  # hash-checked
        assert meta["step"] == 300
        config = json.loads((run / "config.json").read_text())
        assert (config["seed"], config["sac"]["actor_lr"]) == (entry["params"]["seed"], entry["params"]["sac.actor_lr"])
        assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [150, 300]
    assert {s["status"] for s in _states(sweep).values()} == {"finished"}

    rows = _rows(sweep)
    assert [(r["trial_id"], r["status"], r["seed"], r["sac.actor_lr"]) for r in rows] == [
        ("t000", "finished", "0", "0.001"), ("t001", "finished", "0", "0.003"),
        ("t002", "finished", "1", "0.001"), ("t003", "finished", "1", "0.003")]
    assert all(float(r["return_mean"]) < 0 and r["step"] == "300" for r in rows)

    # One table row per configuration (the seeds averaged), the best as a train command.
    table = [line for line in out.splitlines() if line.startswith("| sac.actor_lr=")]
    assert len(table) == 2 and all("| 2 | 2 finished | " in line and " +- " in line for line in table)
    assert "4/4 done (4 finished, 0 stopped, 0 failed)" in out
    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("sim2real train "))
    best = tyro.cli(TrainConfig, args=shlex.split(command)[2:])
    assert best.sac.actor_lr in (1e-3, 3e-3) and best.total_steps == 300 and best.sac.batch_size == 32
    assert table[0].startswith(f"| sac.actor_lr={best.sac.actor_lr!r} |")
    assert (sweep / "learning_curves.png").stat().st_size > 10_000
    assert "best configuration by return_mean" in (sweep / "summary.md").read_text()


def _trainer_pid(run: Path) -> int | None:
    """The `sim2real train` process training into ``run`` (from /proc), if there is one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in argv and {str(run).encode(), str(run.resolve()).encode()} & set(argv):
            return int(entry.name)
    return None


def _sigterm_pending(pid: int) -> bool:
    """SIGTERM is pending for ``pid`` (delivered to a stopped process, not yet handled)."""
    bit = 1 << (signal.SIGTERM - 1)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit:
            return True
    return False


def test_a_failing_configuration_fails_alone_and_an_interrupted_sweep_resumes(
        tmp_path: Path, ray_address: str, capsys: pytest.CaptureFixture[str]) -> None:
    # sac.asymmetric needs a privileged observation, which Pendulum has not: a configuration
    # that passes the spec's checks and fails in the trainer, on both seeds.
    spec = tmp_path / "mixed.toml"
    spec.write_text(BASE.replace("[base]\n", "[base]\ntotal_steps = 400\neval_interval = 200\n"
                                 "checkpoint_interval = 100\n")
                    + '[axes]\nseed = [0, 1]\n"sac.asymmetric" = [false, true]\n')
    sweep = tmp_path / "sweep"
    log = tmp_path / "driver.log"
    # The console command's path in its own process, joining this module's Ray instance.
    code = "import sys; from sim2real.train.sweep import sweep_main; sys.exit(sweep_main(sys.argv[1:]))"
    with open(log, "w") as f:
        driver = subprocess.Popen(
            [sys.executable, "-c", code, str(spec), "--out", str(sweep), "--address", ray_address,
             "--max-concurrent", "1", *POLL], stdout=f, stderr=subprocess.STDOUT)
    paused: int | None = None
    try:
        # One trial at a time: interrupt once t000 has finished (and t001 failed) and t002
        # (seed 1) is under way with a checkpoint. t002's trainer is stopped (SIGSTOP) the
        # moment its first checkpoint is seen, so it cannot run on to its end; the driver's
        # SIGTERM reaches it while it is stopped (seen pending in /proc) and it is let go.
        def caught() -> bool:
            nonlocal paused
            states = _states(sweep) if (sweep / "state").is_dir() else {}
            if (states.get("t000", {}).get("status") != "finished"
                    or checkpoint_step(sweep / "trials" / "t002" / "checkpoint.safetensors") is None):
                return False
            paused = _trainer_pid(sweep / "trials" / "t002")
            if paused is not None:
                os.kill(paused, signal.SIGSTOP)
            return True

        assert wait_until(lambda: caught() or driver.poll() is not None, timeout=240, interval=0.005)
        assert driver.poll() is None and paused is not None, log.read_text()
        driver.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _sigterm_pending(paused), timeout=60)
        os.kill(paused, signal.SIGCONT)
        paused = None
        driver.wait(timeout=120)
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
        if driver.poll() is None:
            driver.kill()
    first = log.read_text()
    print(first)
    assert driver.returncode == 1, first  # a trial failed
    assert "SIGTERM: stopping the running trials" in first
    assert ("t001 FAILED (seed=0 sac.asymmetric=true): error: SACConfig.asymmetric needs an env with a "
            "privileged observation; Pendulum-v1 has none (exit code 2)") in first
    assert f"continue with `sim2real sweep --resume {sweep}`" in first

    states = _states(sweep)
    assert states["t000"]["status"] == "finished"
    assert states["t001"]["status"] == "failed" and "SACConfig.asymmetric" in states["t001"]["error"]
    assert states["t001"]["log_tail"]  # the log's last lines, for the whole story
    interrupted_at = states["t002"]["step"]
    assert states["t002"]["status"] == "pending" and 100 <= interrupted_at < 400
    assert checkpoint_step(sweep / "trials" / "t002" / "checkpoint.safetensors") == interrupted_at
    assert states["t003"]["status"] == "pending"  # queued behind t002, never started
    t000 = sweep / "trials" / "t000"
    before = {name: (t000 / name).read_bytes() for name in ("metrics.jsonl", "train.log", "checkpoint.safetensors")}

    # Resume (in this process, two at a time): t000 is kept, t001 stays failed (no
    # --retry-failed), t002 continues from its checkpoint, t003 runs (and fails).
    capsys.readouterr()  # the first session's output, printed above
    assert sweep_main(["--resume", str(sweep), *POLL]) == 1
    out = capsys.readouterr().out
    print(out)
    assert f"sweep: 4 trials in {sweep} (" in out and "kept from before" in out
    assert f"t002 resuming from step {interrupted_at}" in out
    assert "t000 started" not in out and "t001 started" not in out
    assert {name: (t000 / name).read_bytes() for name in before} == before

    states = _states(sweep)
    assert [states[t]["status"] for t in ("t000", "t001", "t002", "t003")] == ["finished", "failed", "finished", "failed"]
    assert states["t001"]["attempts"] == 1
    assert states["t002"]["attempts"] == 2 and states["t002"]["resumed_from"] == interrupted_at
    run = sweep / "trials" / "t002"
    _, meta = load_checkpoint(run / "checkpoint.safetensors")
    assert meta["step"] == 400
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [200, 400]
    assert f"resume from step {interrupted_at}" in (run / "train.log").read_text()
    assert [r["status"] for r in _rows(sweep)] == ["finished", "failed", "finished", "failed"]
    assert "| sac.asymmetric=false | 2 | 2 finished |" in out
    assert "| sac.asymmetric=true | 2 | 2 failed | - |" in out
    assert "2 failed trial(s)" in out and "--retry-failed" in out
