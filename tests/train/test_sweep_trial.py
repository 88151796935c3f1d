"""One sweep trial without Ray: following metrics.jsonl, reading a checkpoint's step, the
error of a failed run, and a real `sim2real train` process stopped early through SIGTERM."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from sim2real.train import trainer
from sim2real.train.checkpoint import load_checkpoint, save_checkpoint
from sim2real.train.config import TrainConfig
from sim2real.train.sac import SACConfig
from sim2real.train.sweep_scheduler import CONTINUE, INTERRUPT, STOP
from sim2real.train.sweep_spec import train_flags
from sim2real.train.sweep_trial import (
    CHECKPOINT,
    METRICS,
    MetricsFollower,
    checkpoint_step,
    error_summary,
    flatten_record,
    log_tail,
    run_trial,
    trim_metrics,
)


def test_the_file_names_are_the_trainers() -> None:
    assert (CHECKPOINT, METRICS) == (trainer.CHECKPOINT, trainer.METRICS)


def test_checkpoint_step_reads_the_header_only(tmp_path: Path) -> None:
    import torch

    path = tmp_path / CHECKPOINT
    assert checkpoint_step(path) is None
    save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 1234})
    assert checkpoint_step(path) == 1234
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert checkpoint_step(path) is None
    path.write_bytes(b"")
    assert checkpoint_step(path) is None


def test_the_follower_reads_whole_new_lines_only(tmp_path: Path) -> None:
    path = tmp_path / METRICS
    follower = MetricsFollower(path)
    assert follower.read_new() == []  # not written yet
    path.write_text('{"step": 1}\n{"step": 2')
    assert follower.read_new() == [{"step": 1}]
    with open(path, "a") as f:
        f.write('}\nnot json\n{"step": 3}\n')
    assert follower.read_new() == [{"step": 2}, {"step": 3}]
    assert follower.read_new() == []


def test_flatten_record_keeps_the_numbers_a_metric_can_name() -> None:
    record = {"step": 10, "return_mean": -5.0, "returns": [-5.0], "reward_terms": {"pose": -0.5},
              "task": {"fall_rate": 0.0, "turn_yaw_error": None, "targets": {"fall_rate": {"met": True}},
                       "commands": [{"command": "stand"}]}}
    assert flatten_record(record) == {"step": 10, "return_mean": -5.0, "reward_terms.pose": -0.5,
                                      "task.fall_rate": 0.0, "task.turn_yaw_error": None}


def test_trim_metrics_drops_evaluations_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / METRICS
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (100, 200, 300)))
    trim_metrics(path, 200)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [100, 200]
    trim_metrics(tmp_path / "missing.jsonl", 0)  # nothing to trim


def test_the_error_of_a_failed_run_is_its_error_line(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"old attempt\nerror: old\n" + b"train Pendulum-v1:  50%|#####     | 1/2\r"
                    b"Traceback (most recent call last):\n  File x\nValueError: boom\n")
    tail = log_tail(log, since=len(b"old attempt\nerror: old\n"))
    assert tail == ["Traceback (most recent call last):", "File x", "ValueError: boom"]
    assert error_summary(tail, 1) == "ValueError: boom (exit code 1)"
    assert error_summary(["error: SACConfig.asymmetric needs ...", "x"], 2) == \
        "error: SACConfig.asymmetric needs ... (exit code 2)"
    assert error_summary([], -signal.SIGKILL) == "no output (killed by SIGKILL)"


class FakeCoordinator:
    """Answers like the sweep's coordinator: ``answer`` once a record has arrived."""

    def __init__(self, answer: str, at_start: str = CONTINUE) -> None:
        self.answer, self.at_start = answer, at_start
        self.records: list[dict[str, Any]] = []

    def start(self, info: dict[str, Any]) -> str:
        return self.at_start

    def report(self, records: list[dict[str, Any]]) -> str:
        self.records += records
        return self.answer if self.records else CONTINUE


def _trial(tmp_path: Path, total_steps: int) -> dict[str, Any]:
    config = TrainConfig(
        env="Pendulum-v1", total_steps=total_steps, learning_starts=100, eval_interval=100,
        eval_episodes=1, checkpoint_interval=10_000, num_workers=0, torch_threads=1, log_interval=100,
        sac=SACConfig(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=32),
    )
    return {"trial_id": "t000", "run_dir": str(tmp_path / "t000"), "argv": train_flags(config),
            "total_steps": total_steps}


def test_a_stopped_trial_gets_sigterm_and_leaves_a_checkpoint_of_where_it_stopped(tmp_path: Path) -> None:
    trial = _trial(tmp_path, total_steps=3000)
    coordinator = FakeCoordinator(STOP)
    result = run_trial(trial, coordinator.start, coordinator.report, poll_s=0.2)
    assert result["status"] == "stopped", result
    assert result["returncode"] == 0
    run = Path(trial["run_dir"])
    _, meta = load_checkpoint(run / CHECKPOINT)  # hash-checked: a whole checkpoint
    assert 100 <= meta["step"] == result["step"] < 3000
    assert coordinator.records[0]["step"] == 100 and "return_mean" in coordinator.records[0]
    log = (run / "train.log").read_text()
    assert "=== sweep trial t000: start" in log and "SIGTERM: stopping after this step" in log


def test_an_interrupted_sweep_does_not_start_a_queued_trial(tmp_path: Path) -> None:
    coordinator = FakeCoordinator(CONTINUE, at_start=INTERRUPT)
    result = run_trial(_trial(tmp_path, 100), coordinator.start, coordinator.report)
    assert result["status"] == "interrupted" and result["step"] is None
    assert not (tmp_path / "t000").exists()
