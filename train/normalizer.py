"""Running observation normalization: updated while training, frozen for evaluation and
export (the exported ONNX graph bakes in the frozen mean and std)."""

from __future__ import annotations

import numpy as np
import torch


class RunningNormalizer:
    """Per-dimension running mean and variance (Chan et al.'s parallel update, float64).

    ``normalize(x) = clip((x - mean) / sqrt(var + eps), -clip, clip)``.

    ``passthrough``: entries kept at mean 0 and variance 1 (left as they are, up to the eps
    that float32 rounds away), for a policy that reads them raw (an action prior reads the
    gait clock and the command). The saved statistics hold those values, so a loaded
    normalizer needs no list of them.
    """

    def __init__(
        self, dim: int, clip: float = 10.0, eps: float = 1e-8, passthrough: tuple[int, ...] = ()
    ) -> None:
        self.dim = dim
        self.clip = clip
        self.eps = eps
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)
        self.count = 0.0
        self.frozen = False
        bad = [i for i in passthrough if not 0 <= i < dim]
        if bad:
            raise ValueError(f"RunningNormalizer.passthrough: indices {bad} are outside [0, {dim})")
        self.passthrough = np.asarray(passthrough, dtype=np.int64)

    def update(self, batch: np.ndarray) -> None:
        """Fold a batch [n, dim] of raw observations into the statistics (no-op when frozen)."""
        if self.frozen:
            return
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, self.dim)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta**2 * (self.count * n / total)
        self.var = m2 / total
        self.count = total
        self.mean[self.passthrough] = 0.0
        self.var[self.passthrough] = 1.0

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + self.eps)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)

    def normalize_torch(self, obs: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=obs.dtype, device=obs.device)
        std = torch.as_tensor(self.std, dtype=obs.dtype, device=obs.device)
        return ((obs - mean) / std).clamp(-self.clip, self.clip)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for a checkpoint (no pickle: plain float64 arrays)."""
        return {
            "mean": self.mean.copy(),
            "var": self.var.copy(),
            "count": np.array([self.count]),
            "clip": np.array([self.clip]),
            "eps": np.array([self.eps]),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        mean = np.asarray(state["mean"], dtype=np.float64)
        if mean.shape != (self.dim,):
            raise ValueError(
                f"normalizer mean must have shape ({self.dim},), got {mean.shape}"
            )
        self.mean = mean
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(np.asarray(state["count"]).reshape(-1)[0])
        self.clip = float(np.asarray(state["clip"]).reshape(-1)[0])
        self.eps = float(np.asarray(state["eps"]).reshape(-1)[0])
