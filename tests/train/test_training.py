"""SAC learns, resumes after a crash, and trains our robots end to end (real envs)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sim2real.train.checkpoint import load_checkpoint
from sim2real.train.config import TrainConfig
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import CHECKPOINT, CURVE, METRICS, run_training

SMALL_SAC = SACConfig(
    actor_hidden=(64, 64), critic_hidden=(64, 64), batch_size=128,
    actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3,
)


def test_sac_solves_pendulum(tmp_path: Path) -> None:
    """Mean eval return >= -300 within 6k steps (random policy: about -1200).

    Breaking the target (no bootstrapping), the entropy term or the tanh log-prob
    correction keeps this run far below -300 at this budget.
    """
    config = TrainConfig(
        env="Pendulum-v1", total_steps=6000, seed=0, out=tmp_path / "run",
        learning_starts=1000, eval_interval=3000, eval_episodes=5, num_envs=1,
        checkpoint_interval=3000, sac=SMALL_SAC,
    )
    final = run_training(config)
    assert final["return_mean"] >= -300, final
    # Auto-alpha: the random initial policy is far above the entropy target -|A| = -1,
    # so the temperature must have come down from its initial 1.0.
    assert _alpha(tmp_path / "run") < 0.5
    _, meta = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    # One update per transition from the learning_starts-th transition on.
    assert meta["step"] == 6000 and meta["updates"] == 6000 - 1000 + 1
    records = [json.loads(x) for x in (tmp_path / "run" / METRICS).read_text().splitlines()]
    assert [r["step"] for r in records] == [3000, 6000]
    assert (tmp_path / "run" / CURVE).stat().st_size > 10_000
    assert (tmp_path / "run" / "tb").is_dir()


def _alpha(run: Path) -> float:
    import math

    tensors, _ = load_checkpoint(run / CHECKPOINT)
    return math.exp(float(tensors["log_alpha"]))


def test_resume_after_a_crash_continues_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    sim2real = shutil.which("sim2real")
    assert sim2real
    args = [sim2real, "train", "--env", "Pendulum-v1", "--total-steps", "3000", "--seed", "1",
            "--out", str(run), "--learning-starts", "200", "--checkpoint-interval", "400",
            "--eval-interval", "0", "--eval-episodes", "1", "--save-replay",
            "--sac.actor-hidden", "32", "--sac.critic-hidden", "32", "--sac.batch-size", "64"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it hard once a checkpoint past the first one exists: a crash mid-run.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if (run / CHECKPOINT).is_file():
            try:
                _, meta = load_checkpoint(run / CHECKPOINT)
                if meta["step"] >= 800:
                    break
            except ValueError:
                pass  # never expected (atomic rename); the assertion below would catch it
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    tensors, meta = load_checkpoint(run / CHECKPOINT)  # the last good checkpoint is whole
    crashed_step, alpha_at_crash = meta["step"], _alpha(run)
    assert 800 <= crashed_step < 3000

    result = subprocess.run([sim2real, "train", "--resume", str(run)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == 3000
    assert meta["updates"] == 3000 - 200 + 1  # updates continued from the checkpoint's count
    assert _alpha(run) != alpha_at_crash


def test_resume_without_a_saved_buffer_refills_it_before_updating(tmp_path: Path) -> None:
    """Without --save-replay the buffer starts empty on resume: updates wait until it holds
    learning_starts transitions again (collected by the trained policy), instead of
    fitting the critics to the first few fresh transitions."""
    run = tmp_path / "run"
    common = {"env": "Pendulum-v1", "seed": 0, "learning_starts": 200, "eval_interval": 0,
              "eval_episodes": 1, "num_envs": 1, "checkpoint_interval": 600,
              "sac": SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32)}
    run_training(TrainConfig(total_steps=600, out=run, **common))
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == 600 and meta["updates"] == 600 - 200 + 1
    run_training(TrainConfig(total_steps=1000, out=run, resume=run, **common))
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == 1000
    # 200 refill steps (600 -> 800) without updates, then one update per step from 800 on.
    assert meta["updates"] == (600 - 200 + 1) + (1000 - 800 + 1)


def test_every_evaluation_redraws_the_learning_curve(tmp_path: Path) -> None:
    from sim2real.train.trainer import Trainer

    config = TrainConfig(env="Pendulum-v1", total_steps=400, out=tmp_path / "run", num_envs=1,
                         eval_episodes=1, learning_starts=100, num_workers=0,
                         sac=SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32))
    trainer = Trainer(config)
    try:
        trainer.open_run()
        trainer._evaluate()
        curve = tmp_path / "run" / CURVE
        first = curve.read_bytes()
        assert first.startswith(b"\x89PNG")
        trainer.step = 200
        trainer._evaluate()
        assert curve.read_bytes() != first  # a second point
        assert not list((tmp_path / "run").glob(".*partial"))
    finally:
        trainer.close()


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    sim2real = shutil.which("sim2real")
    assert sim2real
    result = subprocess.run([sim2real, "train", "--resume", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "nope" in result.stderr


def test_train_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="TrainConfig.env is required"):
        TrainConfig()
    with pytest.raises(ValueError, match=r"TrainConfig.num_envs must be >= 1, got 0"):
        TrainConfig(env="Pendulum-v1", num_envs=0)


def _pendulum_return_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, broken: object) -> float:
    import sim2real.train.sac as sac_module

    monkeypatch.setattr(sac_module, name, broken)
    config = TrainConfig(
        env="Pendulum-v1", total_steps=6000, seed=0, out=tmp_path / "run", learning_starts=1000,
        eval_interval=0, eval_episodes=5, checkpoint_interval=6000, sac=SMALL_SAC,
    )
    return float(run_training(config)["return_mean"])


@pytest.mark.slow
def test_pendulum_test_fails_without_bootstrapping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The learning test is sensitive: a target that drops the next-state value
    (no bootstrapping through the target critics) leaves Pendulum unsolved."""
    from sim2real.train import sac as sac_module

    real = sac_module.soft_q_target

    def no_bootstrap(rewards, terminated, next_q, next_log_prob, alpha, gamma):  # type: ignore[no-untyped-def]
        return real(rewards, terminated, next_q, next_log_prob, alpha, 0.0)

    assert _pendulum_return_with(monkeypatch, tmp_path, "soft_q_target", no_bootstrap) < -300


@pytest.mark.slow
def test_pendulum_test_fails_with_a_sign_flipped_temperature(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """...and so does a temperature loss with the wrong sign (alpha grows without bound)."""
    from sim2real.train import sac as sac_module

    real = sac_module.temperature_loss
    flipped = lambda log_alpha, log_prob, target: -real(log_alpha, log_prob, target)  # noqa: E731
    assert _pendulum_return_with(monkeypatch, tmp_path, "temperature_loss", flipped) < -300


def test_ctrl_c_checkpoints_at_the_current_step_and_exits_cleanly(tmp_path: Path) -> None:
    import os
    import re

    run = tmp_path / "run"
    sim2real = shutil.which("sim2real")
    assert sim2real
    args = [sim2real, "train", "--env", "Pendulum-v1", "--total-steps", "100000", "--seed", "2",
            "--out", str(run), "--learning-starts", "200", "--checkpoint-interval", "50000",
            "--eval-interval", "0", "--num-envs", "2",
            "--sac.actor-hidden", "32", "--sac.critic-hidden", "32", "--sac.batch-size", "64"]
    # Its own process group, like a terminal: Ctrl-C reaches the trainer and its env workers.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / METRICS).exists() and not (run / "tb").is_dir():
        time.sleep(0.2)
    time.sleep(3.0)  # well into the run, far from a periodic checkpoint
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    match = re.search(r"interrupted at step (\d+)", out)
    assert match, out[-2000:]
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == int(match.group(1)) and 0 < meta["step"] < 50000
