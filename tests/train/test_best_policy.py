"""best.safetensors: the trainer keeps the best-evaluated policy of a run, ranked by the
task's targets (or return), across resumes; eval and export take it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim2real.cli.main import main
from sim2real.train import trainer as trainer_module
from sim2real.train.best_policy import BEST, relative_misses, selection_key
from sim2real.train.checkpoint import load_checkpoint
from sim2real.train.config import TrainConfig
from sim2real.train.evaluate import EvalResult
from sim2real.train.export import OnnxPolicy, RunPolicy
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import CHECKPOINT, METRICS, prepare_trainer, run_training

PROBE = np.random.default_rng(3).normal(0, 1, (6, 3)).astype(np.float32)


def _judged(**values: tuple[float | None, str, float]) -> dict[str, Any]:
    """An evaluation record of a judged task with these targets (value, kind, bound)."""
    return {"return_mean": 0.0, "task": {"targets": {
        name: {"value": value, kind: bound} for name, (value, kind, bound) in values.items()
    }}}


def test_relative_misses_of_both_kinds_of_bound() -> None:
    misses = relative_misses(_judged(falls=(0.1, "at_most", 0.05), turn=(0.4, "at_least", 0.8),
                                     planar=(0.12, "at_most", 0.15), none=(None, "at_most", 1.0))["task"]["targets"])
    assert misses["falls"] == pytest.approx(1.0)
    assert misses["turn"] == pytest.approx(0.5)
    assert misses["planar"] == pytest.approx(-0.2)
    assert misses["none"] == math.inf


def test_ranking_by_targets_then_margin() -> None:
    quadruped = [  # (falls, planar, yaw) as the quadruped judge reports them
        ("all met, more margin", (0.0, 0.10, 0.10)),
        ("all met", (0.0, 0.14, 0.19)),
        ("yaw missed by 25%", (0.0, 0.10, 0.25)),
        ("yaw missed by 25%, planar by 20%", (0.0, 0.18, 0.25)),
        ("a fall in 7 episodes", (1 / 7, 0.10, 0.10)),
        ("nothing to judge", (0.0, 0.10, None)),
    ]
    keys = [selection_key(_judged(fall_rate=(f, "at_most", 0.05), planar=(p, "at_most", 0.15),
                                  yaw=(y, "at_most", 0.2))) for _, (f, p, y) in quadruped]
    assert keys == sorted(keys, reverse=True), [name for name, _ in quadruped]
    assert len(set(keys)) == len(keys)
    assert keys[1][0] == 0.0 and keys[2][0] == pytest.approx(-0.25)


def test_ranking_without_a_judge_is_by_return() -> None:
    assert selection_key({"return_mean": -150.0}) > selection_key({"return_mean": -400.0})


def _pendulum_config(run: Path, total_steps: int, **overrides: Any) -> TrainConfig:
    return TrainConfig(**{
        "env": "Pendulum-v1", "total_steps": total_steps, "seed": 1, "out": run, "learning_starts": 100,
        "eval_interval": 100, "eval_episodes": 1, "num_envs": 1, "num_workers": 0,
        "checkpoint_interval": 200, "sac": SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32),
        **overrides,
    })


@pytest.fixture
def scripted_returns(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[float], dict[int, np.ndarray]]]:
    """The trainer's evaluations report the next of ``returns`` (the test's script) and
    record what the live policy did on PROBE at that moment, by step."""
    returns: list[float] = []
    seen: dict[int, np.ndarray] = {}

    def scripted_evaluate(policy: Any, env_id: str, episodes: int, seed: int, **kwargs: Any) -> EvalResult:
        seen[len(seen)] = np.asarray(policy(PROBE)).copy()
        return EvalResult(returns=np.array([returns.pop(0)]), lengths=np.array([200]), reward_terms={},
                          terminated=0)

    monkeypatch.setattr(trainer_module, "evaluate", scripted_evaluate)
    yield returns, seen


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / METRICS).read_text().splitlines()]


def test_the_best_evaluation_is_kept_and_is_that_policy(
    tmp_path: Path, scripted_returns: tuple[list[float], dict[int, np.ndarray]]
) -> None:
    returns, seen = scripted_returns
    returns += [-900.0, -200.0, -700.0, -300.0]  # evaluations at 100, 200, 300, 400
    run = tmp_path / "run"
    run_training(_pendulum_config(run, 400))

    records = _records(run)
    assert [r["step"] for r in records] == [100, 200, 300, 400]
    assert [r["best"] for r in records] == [True, True, False, False]
    _, meta = load_checkpoint(run / BEST)
    assert meta["step"] == 200 and meta["best_key"] == [0.0, -200.0]
    _, last = load_checkpoint(run / CHECKPOINT)
    assert last["step"] == 400
    # The file holds the policy as it was evaluated at step 200, not the latest one.
    best = RunPolicy(run / BEST)
    np.testing.assert_allclose(best(PROBE), seen[1], atol=1e-6)
    assert not np.allclose(RunPolicy(run)(PROBE), seen[1], atol=1e-3)


def test_resume_keeps_the_best_it_has_to_beat(
    tmp_path: Path, scripted_returns: tuple[list[float], dict[int, np.ndarray]]
) -> None:
    returns, _ = scripted_returns
    run = tmp_path / "run"
    returns += [-300.0, -250.0]
    run_training(_pendulum_config(run, 200))
    assert load_checkpoint(run / BEST)[1]["step"] == 200

    returns += [-260.0, -100.0]  # 300: worse than the kept -250; 400: better
    resumed = prepare_trainer(TrainConfig(resume=run, total_steps=400))
    try:
        assert resumed.best_key == (0.0, -250.0)
        resumed.open_run()
        resumed.run_loop()
    finally:
        resumed.close()
    assert [r["best"] for r in _records(run)] == [True, True, False, True]
    assert load_checkpoint(run / BEST)[1]["step"] == 400


def test_a_damaged_best_file_does_not_stop_a_resume_and_is_rewritten(
    tmp_path: Path, scripted_returns: tuple[list[float], dict[int, np.ndarray]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    returns, _ = scripted_returns
    run = tmp_path / "run"
    returns += [-300.0, -250.0]
    run_training(_pendulum_config(run, 200))
    (run / BEST).write_bytes(b"not a checkpoint")

    returns += [-400.0, -500.0]
    resumed = prepare_trainer(TrainConfig(resume=run, total_steps=400))
    try:
        # The policy the damaged file held is gone: its rank is no bar to the next one.
        assert resumed.best_key is None
        assert "best.safetensors will be rewritten" in capsys.readouterr().err
        resumed.open_run()
        resumed.run_loop()
    finally:
        resumed.close()
    assert [r["best"] for r in _records(run)] == [True, True, True, False]
    assert load_checkpoint(run / BEST)[1]["step"] == 300


def test_keep_best_off_writes_no_file(
    tmp_path: Path, scripted_returns: tuple[list[float], dict[int, np.ndarray]]
) -> None:
    returns, _ = scripted_returns
    returns += [-300.0, -250.0]
    run = tmp_path / "run"
    run_training(_pendulum_config(run, 200, keep_best=False))
    assert not (run / BEST).exists()
    assert [r["best"] for r in _records(run)] == [True, True]


def test_eval_and_export_take_the_best_file(
    tmp_path: Path, scripted_returns: tuple[list[float], dict[int, np.ndarray]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    returns, seen = scripted_returns
    returns += [-100.0, -800.0]
    run = tmp_path / "run"
    run_training(_pendulum_config(run, 200))
    onnx = tmp_path / "best.onnx"
    assert main(["export", str(run / BEST), "-o", str(onnx)]) == 0
    assert "100 training steps" in capsys.readouterr().out
    np.testing.assert_allclose(OnnxPolicy(onnx)(PROBE), seen[0], atol=1e-5)
    assert main(["eval", str(run / BEST), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    (tmp_path / "notes.txt").write_text("x")
    assert main(["eval", str(tmp_path / "notes.txt")]) == 2
    assert "nor a .safetensors checkpoint" in capsys.readouterr().err
