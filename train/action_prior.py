"""An action prior inside the policy: the actor's pre-tanh mean is shifted by atanh(prior(obs)).

With the prior's shift the policy's deterministic action is ``tanh(mean + atanh(prior))``:
exactly the prior where the network's mean is 0 (as at initialization), and a learned
residual around it. Shifting the Gaussian before the tanh keeps SAC's log-probabilities
exact (a shift of u changes nothing in the change of variables), unlike adding the prior
after the squash and clipping. The prior reads raw observation entries (the gait clock and
the command), which the observation normalizer passes through unchanged
(:attr:`ActionPrior.passthrough`), so the actor computes it from its own input: rollouts,
updates, evaluation and the exported ONNX graph all run the same module.
"""

from __future__ import annotations

import torch
from torch import nn

from sim2real.robots.action_prior import ActionPrior

PRIOR_LIMIT = 0.99
"""The prior is clamped to +-this before the atanh: tanh reaches +-1 only at infinity."""


class PriorShift(nn.Module):
    """``atanh(clamp(prior(obs), -0.99, 0.99))`` in torch ([batch, obs] -> [batch, act])."""

    swing_0: torch.Tensor
    swing_1: torch.Tensor

    def __init__(self, prior: ActionPrior) -> None:
        super().__init__()
        self.prior = prior
        self.clock_sin = prior.clock_sin
        self.clock_cos = prior.clock_cos
        self.stand_below = float(prior.stand_below)

        def buffer(name: str, values: object, dtype: torch.dtype = torch.float32) -> None:
            # Buffers, not parameters: the prior is fixed; they follow the module to a device.
            self.register_buffer(name, torch.tensor(values, dtype=dtype), persistent=False)

        buffer("swing_0", prior.swing_0)
        buffer("swing_1", prior.swing_1)
        self.commanded = bool(prior.command)
        if self.commanded:
            buffer("command", prior.command, torch.long)
        self.steering = bool(prior.steer_sin)
        if self.steering:
            buffer("steer_sin", prior.steer_sin)
            buffer("steer_cos", prior.steer_cos)
        self.has_swing_cos = bool(prior.swing_cos)
        if self.has_swing_cos:
            buffer("swing_cos", prior.swing_cos)
        self.has_offset = bool(prior.offset)
        if self.has_offset:
            buffer("offset", prior.offset)

    def action(self, obs: torch.Tensor) -> torch.Tensor:
        """The prior's suggested action (what :class:`ActionPrior` computes in numpy)."""
        s = obs[..., self.clock_sin : self.clock_sin + 1]
        c = obs[..., self.clock_cos : self.clock_cos + 1]
        out = torch.relu(s) * self.swing_0 + torch.relu(-s) * self.swing_1
        if self.commanded:
            command = obs.index_select(-1, self.command)
            out = (command.abs().sum(dim=-1, keepdim=True) / self.stand_below).clamp(max=1.0) * out
            if self.steering:
                out = out + (command * s) @ self.steer_sin + (command * c) @ self.steer_cos
        if self.has_swing_cos:
            out = out + c * self.swing_cos
        if self.has_offset:
            out = out + self.offset
        return out

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        p = self.action(obs).clamp(-PRIOR_LIMIT, PRIOR_LIMIT)
        # atanh, spelled out: the ONNX exporter (opset 17) has no Atanh mapping for aten::atanh.
        return 0.5 * torch.log((1.0 + p) / (1.0 - p))
