"""SAC learns, resumes after a crash, and trains our robots end to end (real envs)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sim2real.train.checkpoint import load_checkpoint
from sim2real.train.config import TrainConfig
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import (
    CHECKPOINT,
    CURVE,
    METRICS,
    Trainer,
    prepare_trainer,
    run_training,
)

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
    """A SIGKILL mid-run leaves a whole checkpoint and `--resume` finishes the run from its
    counters. (That the resume restores the state itself, not only the counters:
    test_resume_restores_the_whole_training_state.)"""
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


def _training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resumed run must continue from, read off the live objects (not through
    the checkpoint format, so a save that leaves something out fails as surely as a load
    that skips it): weights and target weights, log_alpha, each Adam state (moments and
    step, per parameter in order), observation normalizer statistics, RNGs, counters."""
    state: dict[str, Any] = {}
    for name, module in trainer.sac.modules().items():
        state.update({f"{name}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    state["log_alpha"] = trainer.sac.log_alpha.detach().clone()
    for name, optimizer in trainer.sac.optimizers().items():
        for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
            for field, value in optimizer.state[param].items():
                state[f"optim.{name}.{i}.{field}"] = value.detach().clone() if torch.is_tensor(value) else value
        state[f"optim.{name}.lr"] = [group["lr"] for group in optimizer.param_groups]
    norms = {"obs": trainer.obs_norm, "critic": trainer.critic_norm}
    for name, norm in norms.items():
        if norm is not None:
            state.update({f"norm.{name}.{k}": torch.as_tensor(v) for k, v in norm.state().items()})
    state["torch_rng"] = torch.get_rng_state()
    state["numpy_rng"] = trainer.rng.bit_generator.state
    state["counters"] = (trainer.step, trainer.episodes, trainer.sac.updates)
    return state


def _assert_same_state(saved: dict[str, Any], resumed: dict[str, Any]) -> None:
    """Bit-for-bit equal, every entry; the message names the ones that differ."""
    def same(a: Any, b: Any) -> bool:
        return torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else bool(a == b)

    # A key on one side only (an optimizer state never restored) differs too.
    differ = sorted(k for k in set(saved) | set(resumed)
                    if k not in saved or k not in resumed or not same(saved[k], resumed[k]))
    assert not differ, f"not restored by resume: {', '.join(differ)}"


RESUME_STEPS = 600


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A short Pendulum run checkpointed at its last step, with its live state then."""
    run = tmp_path_factory.mktemp("resume") / "run"
    trainer = prepare_trainer(TrainConfig(
        env="Pendulum-v1", total_steps=RESUME_STEPS, seed=4, out=run, learning_starts=200,
        eval_interval=0, eval_episodes=1, num_envs=1, num_workers=0,
        checkpoint_interval=RESUME_STEPS, sac=SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32),
    ))
    try:
        trainer.open_run()
        trainer.run_loop()  # checkpoints at its last step (checkpoint_interval)
        state = _training_state(trainer)
    finally:
        trainer.close()
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == RESUME_STEPS
    # Each piece of the state has moved away from what a fresh trainer starts with, so a
    # resume that skipped restoring it cannot pass by coincidence.
    assert state["log_alpha"] != 0.0  # init_alpha 1
    assert float(state["optim.critic.0.step"]) == RESUME_STEPS - 200 + 1
    assert state["optim.actor.0.exp_avg"].abs().sum() > 0 and state["optim.alpha.0.exp_avg_sq"] > 0
    assert not torch.equal(state["critic_target.out.weight"], state["critic.out.weight"])
    assert state["norm.obs.count"] == RESUME_STEPS and (state["norm.obs.var"] - 1.0).abs().max() > 0.1
    return run, state


def test_resume_restores_the_whole_training_state(saved_run: tuple[Path, dict[str, Any]]) -> None:
    """`--resume` (prepare_trainer, what run_training trains) continues from exactly the
    saved state: not only the counters."""
    run, saved = saved_run
    resumed = prepare_trainer(TrainConfig(resume=run))
    try:
        _assert_same_state(saved, _training_state(resumed))
        # The policy it evaluates with uses the restored normalizer and actor.
        obs = np.random.default_rng(0).normal(0, 2, (8, 3)).astype(np.float32)
        std = np.sqrt(saved["norm.obs.var"].numpy() + saved["norm.obs.eps"].numpy())
        normalized = torch.as_tensor((obs - saved["norm.obs.mean"].numpy()) / std, dtype=torch.float32)
        with torch.no_grad():
            expected = torch.tanh(resumed.sac.actor.distribution_params(normalized)[0]).numpy()
        np.testing.assert_allclose(resumed.deterministic_policy(obs), expected, atol=1e-6)
    finally:
        resumed.close()


def test_resume_drops_evaluations_made_after_the_checkpoint(tmp_path: Path) -> None:
    """A run killed after an evaluation but before the next checkpoint trains those steps
    again on --resume: metrics.jsonl keeps one record per step (the learning curve too)."""
    run = tmp_path / "run"
    trainer = prepare_trainer(TrainConfig(
        env="Pendulum-v1", total_steps=400, seed=0, out=run, learning_starts=100, eval_interval=200,
        eval_episodes=1, num_envs=1, num_workers=0, checkpoint_interval=400,
        sac=SACConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=16),
    ))
    try:
        trainer.open_run()
        trainer.run_loop()
    finally:
        trainer.close()
    metrics = run / "metrics.jsonl"
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [200, 400]
    with metrics.open("a") as f:  # evaluated at 600, then killed before the 800 checkpoint
        f.write(json.dumps({"step": 600, "return_mean": 0.0, "return_std": 0.0}) + "\n")
    resumed = prepare_trainer(TrainConfig(resume=run, total_steps=800))
    resumed.close()
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [200, 400]


def _drop_from_checkpoint(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], Any]:
    """load_checkpoint as Trainer.load sees it, with ``edit`` applied to the tensors: a
    resume that restores the wrong thing for one part of the state."""
    def load(path: Path) -> Any:
        tensors, meta = load_checkpoint(path)
        edit(tensors)
        return tensors, meta
    return load


def _target_from_critic(tensors: dict[str, torch.Tensor]) -> None:
    for key in [k for k in tensors if k.startswith("critic_target.")]:
        tensors[key] = tensors["critic." + key[len("critic_target."):]]


def _alpha_reset(tensors: dict[str, torch.Tensor]) -> None:
    tensors["log_alpha"] = torch.zeros_like(tensors["log_alpha"])


def _adam_steps_reset(tensors: dict[str, torch.Tensor]) -> None:
    for key in [k for k in tensors if k.startswith("optim.") and k.endswith(".step")]:
        tensors[key] = torch.zeros_like(tensors[key])


def _broken_resumes() -> dict[str, tuple[str, Callable[[pytest.MonkeyPatch], None]]]:
    """name -> (a key the state check must name, how to break the resume)."""
    import sim2real.train.trainer as trainer_module
    from sim2real.train.networks import Actor
    from sim2real.train.normalizer import RunningNormalizer

    def skip(cls: type, method: str) -> Callable[[pytest.MonkeyPatch], None]:
        return lambda mp: mp.setattr(cls, method, lambda self, state: None)

    def edit(fn: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[pytest.MonkeyPatch], None]:
        return lambda mp: mp.setattr(trainer_module, "load_checkpoint", _drop_from_checkpoint(fn))

    return {
        "actor-weights-skipped": ("actor.mean.weight", skip(Actor, "load_state_dict")),
        "optimizer-state-skipped": ("optim.critic.0.exp_avg", skip(torch.optim.Adam, "load_state_dict")),
        "normalizer-skipped": ("norm.obs.mean", skip(RunningNormalizer, "load_state")),
        "target-rebuilt-from-critic": ("critic_target.out.weight", edit(_target_from_critic)),
        "log-alpha-reset": ("log_alpha", edit(_alpha_reset)),
        "adam-step-reset": ("optim.actor.0.step", edit(_adam_steps_reset)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("broken", list(_broken_resumes()))
def test_resume_test_fails_on_a_resume_that_skips_part_of_the_state(
    broken: str, saved_run: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state check above is sensitive: a resume that leaves out any one part of the
    state fails it, naming that part, while the counters still come out right (which is
    all the crash test checks)."""
    run, saved = saved_run
    key, breaks = _broken_resumes()[broken]
    breaks(monkeypatch)
    resumed = prepare_trainer(TrainConfig(resume=run))
    try:
        state = _training_state(resumed)
        assert state["counters"] == saved["counters"]
        with pytest.raises(AssertionError, match=re.escape(key)):
            _assert_same_state(saved, state)
    finally:
        resumed.close()


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


@pytest.mark.parametrize("damage", ["cut short", "not a zip", "wrong sizes"])
def test_resume_with_a_damaged_replay_file_goes_on_with_an_empty_buffer_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    from sim2real.train.replay_buffer import ReplayBuffer

    run = tmp_path / "run"
    common = {"env": "Pendulum-v1", "seed": 0, "learning_starts": 200, "eval_interval": 0,
              "eval_episodes": 1, "num_envs": 1, "checkpoint_interval": 600, "save_replay": True,
              "sac": SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32)}
    run_training(TrainConfig(total_steps=600, out=run, **common))
    replay = run / "replay.npz"
    whole = replay.read_bytes()
    if damage == "cut short":
        replay.write_bytes(whole[: len(whole) // 2])
    elif damage == "not a zip":
        replay.write_text("this is not a replay buffer")
    else:
        other = ReplayBuffer(10, obs_dim=5, act_dim=1)
        other.add(np.zeros((1, 5)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 5)), np.zeros(1))
        other.save(replay)
    damaged = replay.read_bytes()
    capsys.readouterr()
    run_training(TrainConfig(total_steps=1000, out=run, resume=run, **common))
    err = capsys.readouterr().err
    assert "replay.npz" in err and "empty buffer" in err and "next 200 steps refill it" in err
    # The damaged file is kept aside, untouched; the resumed run saved a whole buffer again.
    assert (run / "replay.npz.unreadable").read_bytes() == damaged
    assert len(ReplayBuffer.load(replay)) == 400
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == 1000
    assert meta["updates"] == (600 - 200 + 1) + (1000 - 800 + 1)  # the refill, as without a buffer


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
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    # The progress bar's step count (stderr) says where the run is: interrupt it well into
    # training (past learning_starts, updates running), far from a periodic checkpoint.
    progress: list[int] = []

    def read_progress() -> None:
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read(256), ""):
            progress.extend(int(m) for m in re.findall(r"(\d+)/100000", chunk))

    import threading

    from sim2real.serve.testing import wait_until

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    assert wait_until(lambda: bool(progress) and progress[-1] >= 2000, timeout=300), progress[-5:]
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    match = re.search(r"interrupted at step (\d+)", out)
    assert match, out[-2000:]
    _, meta = load_checkpoint(run / CHECKPOINT)
    assert meta["step"] == int(match.group(1)) and 0 < meta["step"] < 50000
