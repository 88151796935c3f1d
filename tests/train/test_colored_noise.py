"""Colored exploration noise (train/colored_noise.py, --sac.exploration-noise-beta)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim2real.train.colored_noise import ColoredNoise, powerlaw_noise
from sim2real.train.config import TrainConfig
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import prepare_trainer


def _lag1(x: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(row[:-1], row[1:])[0, 1] for row in x]))


def _spectral_slope(x: np.ndarray) -> float:
    """Slope of log power against log frequency, averaged over the sequences (mid band)."""
    power = np.mean(np.abs(np.fft.rfft(x, axis=-1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(x.shape[-1])
    band = (freqs > 0.005) & (freqs < 0.25)
    return float(np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0])


@pytest.mark.parametrize(("beta", "lag1_range"), [(0.0, (-0.05, 0.05)), (1.0, (0.4, 0.95)), (2.0, (0.95, 1.0))])
def test_the_spectrum_has_the_asked_slope_and_unit_variance(beta: float, lag1_range: tuple[float, float]) -> None:
    x = powerlaw_noise(beta, (200,), 1000, np.random.default_rng(0))
    assert x.shape == (200, 1000)
    np.testing.assert_allclose(x.std(axis=-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(x.mean(axis=-1), 0.0, atol=1e-9)
    assert _spectral_slope(x) == pytest.approx(-beta, abs=0.15)
    low, high = lag1_range
    assert low <= _lag1(x) <= high


def test_each_env_reads_its_own_sequence_step_by_step_and_reset_draws_a_new_one() -> None:
    noise = ColoredNoise(1.0, num_envs=2, act_dim=3, length=50, rng=np.random.default_rng(1))
    first = np.stack([noise.sample() for _ in range(50)])  # [step, env, dim]
    assert first.shape == (50, 2, 3) and first.dtype == np.float32
    assert not np.allclose(first[:, 0], first[:, 1])  # envs do not share a sequence
    np.testing.assert_allclose(first[:, 0, 0].std(), 1.0, rtol=1e-5)  # one whole sequence
    after = noise.sample()  # the sequence ran out: a new one
    noise.reset(1)
    again = noise.sample()
    assert not np.allclose(after[1], again[1])


def test_the_noise_option_is_checked_and_used_by_the_trainer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"SACConfig.exploration_noise_beta must be in \[0, 3\], got 4.0"):
        SACConfig(exploration_noise_beta=4.0)
    config = TrainConfig(
        env="Pendulum-v1", total_steps=400, seed=0, out=tmp_path / "run", learning_starts=200,
        eval_interval=0, eval_episodes=1, num_envs=2, num_workers=0, checkpoint_interval=400,
        sac=SACConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=16, exploration_noise_beta=1.0),
    )
    trainer = prepare_trainer(config)
    try:
        assert trainer.noise is not None and trainer.noise.act_dim == 1
        trainer.open_run()
        trainer.run_loop()
        # 200 rollout steps per env after learning_starts (400 steps over 2 envs: 100 each).
        assert trainer.noise._position == [100, 100]
        # Rows 200-399 are those 100 steps of the two envs, interleaved: one env's
        # pink-noise actions move slowly from step to step (white noise: about 0).
        per_env = trainer.buffer.arrays["actions"][200:400, 0].reshape(-1, 2)[:, 0]
        assert np.corrcoef(per_env[:-1], per_env[1:])[0, 1] > 0.3
    finally:
        trainer.close()
    white = prepare_trainer(TrainConfig(
        env="Pendulum-v1", total_steps=10, out=tmp_path / "white", num_workers=0, num_envs=1,
        sac=SACConfig(actor_hidden=(8,), critic_hidden=(8,)),
    ))
    try:
        assert white.noise is None
    finally:
        white.close()
