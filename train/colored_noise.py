"""Temporally correlated exploration noise for SAC's rollouts (``--sac.exploration-noise-beta``).

SAC explores by sampling its Gaussian policy with fresh white noise every step. A gait is
an oscillation over many steps, which white noise at 50 Hz averages away. Eberhard,
Hollenstein, Pinneri and Martius ("Pink Noise Is All You Need: Colored Noise Exploration
in Deep Reinforcement Learning", ICLR 2023) replace that noise, in the rollouts only, by
colored noise with power spectral density proportional to 1/f^beta: beta 0 is white
noise (SAC as published), 2 red (Brownian), and pink (beta 1) was the best default across
their tasks, with one noise sequence per episode. The update is unchanged: the critics and
the actor are trained on the stored actions as with any off-policy data.
"""

from __future__ import annotations

import numpy as np


def powerlaw_noise(beta: float, shape: tuple[int, ...], length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sequences with PSD proportional to 1/f^beta, ``[*shape, length]``, each
    scaled to zero mean and unit standard deviation over its length.

    Random Fourier coefficients with amplitude f^(-beta/2), transformed back; the zero
    frequency gets the lowest frequency's amplitude (1/length) rather than an infinite one.
    """
    if length < 2:
        raise ValueError(f"powerlaw_noise: length must be >= 2, got {length}")
    freqs = np.fft.rfftfreq(length)
    freqs[0] = 1.0 / length
    amplitude = freqs ** (-beta / 2.0)
    coefficients = (rng.standard_normal((*shape, freqs.size)) + 1j * rng.standard_normal((*shape, freqs.size)))
    coefficients *= amplitude
    coefficients[..., 0] = coefficients[..., 0].real  # the mean and (even length) the
    if length % 2 == 0:  # Nyquist term of a real signal are real
        coefficients[..., -1] = coefficients[..., -1].real
    x = np.fft.irfft(coefficients, n=length, axis=-1)
    x -= x.mean(axis=-1, keepdims=True)
    return x / np.maximum(x.std(axis=-1, keepdims=True), 1e-12)


class ColoredNoise:
    """One noise sequence per env and action dimension, read a step at a time; an env's
    sequence is drawn afresh when its episode ends (``reset``) or the sequence runs out."""

    def __init__(self, beta: float, num_envs: int, act_dim: int, length: int, rng: np.random.Generator) -> None:
        self.beta, self.act_dim, self.length, self.rng = beta, act_dim, length, rng
        self._sequences: list[np.ndarray | None] = [None] * num_envs
        self._position = [0] * num_envs

    def sample(self) -> np.ndarray:
        """The next noise value of every env: ``[num_envs, act_dim]``, each entry N(0, 1)
        marginally, correlated over time by the spectrum."""
        out = np.empty((len(self._sequences), self.act_dim), np.float32)
        for i, sequence in enumerate(self._sequences):
            if sequence is None or self._position[i] >= self.length:
                sequence = self._sequences[i] = powerlaw_noise(self.beta, (self.act_dim,), self.length, self.rng)
                self._position[i] = 0
            out[i] = sequence[:, self._position[i]]
            self._position[i] += 1
        return out

    def reset(self, env_index: int) -> None:
        """A new episode in ``env_index``: a new sequence from its next step."""
        self._sequences[env_index] = None
