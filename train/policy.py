"""The deterministic policy: the one definition that training evaluation, the ONNX export
and `sim2real eval` of a run directory all run.

``observation [batch, obs_dim] float32 -> action [batch, act_dim] float32 in [-1, 1]``:
frozen observation normalization, the actor's tanh(mean), a clamp. Mapping the action onto
an env's Box (or a robot's joint targets) is not part of it: evaluate() does that for an
env, the exported model's metadata says how for a robot.

Before this module the trainer normalized in float64 numpy while the export baked float32
statistics into its own wrapper, so what training evaluated was not bit for bit what was
deployed. Now the trainer evaluates this module, the exporter traces this module, and a
run directory is loaded into this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sim2real.robots.action_prior import ActionPrior
from sim2real.train.action_prior import PriorShift
from sim2real.train.networks import Actor
from sim2real.train.normalizer import RunningNormalizer


class DeterministicPolicy(nn.Module):
    """``clamp(tanh(mean(clip((obs - mean) / std, -clip, clip))), -1, 1)``.

    Shares ``actor`` (no copy): the trainer's instance sees every update. The normalizer's
    statistics are copied in by :meth:`set_normalizer` (float32 buffers, what the ONNX graph
    bakes in); without one (``normalize_obs`` off) the normalization is the identity.
    """

    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(self, actor: Actor, obs_dim: int, normalizer: RunningNormalizer | None = None) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        # A Python float, not a buffer: the exporter's trace bakes it into the Clip node.
        self.clip = float("inf")
        self.set_normalizer(normalizer)

    def set_normalizer(self, normalizer: RunningNormalizer | None) -> None:
        """Freeze ``normalizer``'s current statistics into the policy (None: identity).

        ``obs_std`` is the normalizer's own ``std`` (sqrt(var + eps), float64) cast once to
        float32, so training, export and a reloaded run share one definition of it.
        """
        with torch.no_grad():
            if normalizer is None:
                self.obs_mean.zero_()
                self.obs_std.fill_(1.0)
                # (x - 0) / 1 clamped to +-inf is x exactly: the identity, bit for bit.
                self.clip = float("inf")
                return
            if normalizer.dim != self.obs_mean.shape[0]:
                raise ValueError(
                    f"normalizer has dim {normalizer.dim}, the policy's observations have {self.obs_mean.shape[0]}"
                )
            self.obs_mean.copy_(torch.as_tensor(normalizer.mean, dtype=torch.float32))
            self.obs_std.copy_(torch.as_tensor(normalizer.std, dtype=torch.float32))
            self.clip = float(normalizer.clip)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        x = ((observation - self.obs_mean) / self.obs_std).clamp(-self.clip, self.clip)
        return self.actor.act(x).clamp(-1.0, 1.0)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations (numpy, any float dtype) -> [-1, 1] actions (float32 numpy)."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, np.float32), device=self.obs_mean.device)
            return self(x).cpu().numpy()


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The checkpoint tensors under ``prefix.`` with the prefix removed (a module's or a
    normalizer's state). One spelling of the key scheme for the trainer and the loaders."""
    start = f"{prefix}."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def normalizer_from_checkpoint(tensors: dict[str, torch.Tensor], name: str, dim: int) -> RunningNormalizer:
    """The normalizer ``name`` (``obs``, ``critic``) saved as ``norm.<name>.*``."""
    norm = RunningNormalizer(dim)
    norm.load_state({k: v.numpy() for k, v in with_prefix(tensors, f"norm.{name}").items()})
    return norm


def policy_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> DeterministicPolicy:
    """The deterministic policy of a checkpoint (``load_checkpoint``'s tensors and metadata),
    on the CPU, in eval mode."""
    config = meta["config"]
    obs_dim = int(meta["obs_dim"])
    prior = meta.get("action_prior")
    actor = Actor(
        obs_dim, int(meta["act_dim"]), tuple(config["sac"]["actor_hidden"]),
        prior=PriorShift(ActionPrior.from_dict(prior)) if prior else None,
        residual_scale=float(config["sac"].get("residual_scale", 0.0)),
    )
    actor.load_state_dict(with_prefix(tensors, "actor"))
    normalizer = normalizer_from_checkpoint(tensors, "obs", obs_dim) if config["normalize_obs"] else None
    return DeterministicPolicy(actor, obs_dim, normalizer).eval()
