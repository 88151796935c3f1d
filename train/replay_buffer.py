"""SAC's experience replay buffer: a preallocated ring buffer, O(1) insert, uniform
sampling, no list growth. (Replaying robot logs is another job: sim2real.replay.)"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "privileged", "next_privileged")


class ReplayFileError(ValueError):
    """A saved replay buffer that cannot be read back."""


class ReplayBuffer:
    """Transitions (s, a, r, s', terminated) plus, optionally, privileged observations.

    Raw observations are stored; normalization happens at sampling time, so the buffer
    stays valid while the normalizer's statistics move. ``terminated`` excludes time-limit
    truncation: a truncated transition is stored with terminated=0 and its true next
    observation, so the critic bootstraps through it.
    """

    def __init__(
        self, capacity: int, obs_dim: int, act_dim: int, privileged_dim: int = 0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_dim, self.act_dim, self.privileged_dim = obs_dim, act_dim, privileged_dim
        self.arrays = {
            "obs": np.zeros((capacity, obs_dim), np.float32),
            "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, act_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "terminated": np.zeros(capacity, np.float32),
            "privileged": np.zeros((capacity, privileged_dim), np.float32),
            "next_privileged": np.zeros((capacity, privileged_dim), np.float32),
        }
        self.position = 0  # next row to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        privileged: np.ndarray | None = None,
        next_privileged: np.ndarray | None = None,
    ) -> None:
        """Insert a batch of n transitions (one per env), wrapping around the ring."""
        n = len(rewards)
        if n > self.capacity:
            raise ValueError(f"batch of {n} transitions exceeds replay capacity {self.capacity}")
        rows = (self.position + np.arange(n)) % self.capacity
        a = self.arrays
        a["obs"][rows] = obs
        a["next_obs"][rows] = next_obs
        a["actions"][rows] = actions
        a["rewards"][rows] = rewards
        a["terminated"][rows] = terminated
        if self.privileged_dim:
            if privileged is None or next_privileged is None:
                raise ValueError("this buffer stores privileged observations: pass both")
            a["privileged"][rows] = privileged
            a["next_privileged"][rows] = next_privileged
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Uniformly sampled transitions (with replacement), as tensors on ``device``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        names = FIELDS if self.privileged_dim else FIELDS[:5]
        return {name: torch.as_tensor(self.arrays[name][idx], device=device) for name in names}

    # --- persistence (npz, loaded with allow_pickle=False) -----------------------------
    def save(self, path: Path) -> None:
        """Write the filled part atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(
                f,
                capacity=np.array([self.capacity]),
                position=np.array([self.position]),
                size=np.array([self.size]),
                **{name: arr[: self.size] for name, arr in self.arrays.items()},
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ReplayBuffer:
        """The buffer saved at ``path``; a file that is not a whole, consistent save (cut
        short, overwritten, edited) raises ReplayFileError naming it and what is wrong."""
        try:
            return cls._load(path)
        except ReplayFileError:
            raise
        except (zipfile.BadZipFile, EOFError, KeyError, IndexError, ValueError, OSError) as err:
            raise ReplayFileError(f"replay file {path} is unreadable ({type(err).__name__}: {err})") from err

    @classmethod
    def _load(cls, path: Path) -> ReplayBuffer:
        with np.load(path, allow_pickle=False) as data:
            capacity = int(data["capacity"][0])
            size = int(data["size"][0])
            buffer = cls(
                capacity,
                obs_dim=data["obs"].shape[1],
                act_dim=data["actions"].shape[1],
                privileged_dim=data["privileged"].shape[1],
            )
            for name in FIELDS:
                if data[name].shape[0] != size:
                    raise ReplayFileError(
                        f"replay file {path}: field {name} has {data[name].shape[0]} rows, "
                        f"expected {size}"
                    )
                buffer.arrays[name][:size] = data[name]
            buffer.size = size
            buffer.position = int(data["position"][0])
        return buffer
