"""SAC networks: a tanh-squashed Gaussian actor and an ensemble of Q-functions.

Kept apart from the algorithm (sac.py), as Stable-Baselines3 keeps policies.py apart from
sac.py: the exporter needs the actor alone, the update needs both.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Log-std bounds of the actor (SB3 and CleanRL use the same): below -20 the Gaussian is a
# point mass and log-probs explode; above 2 the tanh saturates for most samples.
LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear-ReLU stack: in -> hidden... -> out (no activation on the output)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """pi(a|s): a Gaussian in pre-tanh space, squashed to [-1, 1] by tanh.

    ``prior``: a fixed module (train/action_prior.py) around whose suggested action the
    network learns a residual. It has no parameters: checkpoints of the actor are the same
    with or without it. ``residual_scale`` 0: the prior shifts the pre-tanh mean (by
    atanh(prior)); > 0: the action is ``clamp(prior + residual_scale * tanh(u), -1, 1)``,
    a residual bounded in action space, so the network cannot flatten the prior's swing
    by saturating the tanh (the log-prob is that of the unclamped sample).
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], prior: nn.Module | None = None,
        residual_scale: float = 0.0,
    ) -> None:
        super().__init__()
        if residual_scale > 0 and prior is None:
            raise ValueError("Actor: residual_scale > 0 needs a prior")
        self.prior = prior
        self.residual_scale = float(residual_scale)
        self.trunk = mlp(obs_dim, hidden[:-1], hidden[-1]) if hidden else nn.Identity()
        trunk_out = hidden[-1] if hidden else obs_dim
        self.trunk_activation = nn.ReLU() if hidden else nn.Identity()
        self.mean = nn.Linear(trunk_out, act_dim)
        self.log_std = nn.Linear(trunk_out, act_dim)

    def distribution_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and clamped log-std."""
        features = self.trunk_activation(self.trunk(obs))
        log_std = self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        mean = self.mean(features)
        if self.prior is not None and not self.residual_scale:
            mean = mean + self.prior(obs)
        return mean, log_std

    def squash(self, obs: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """The action of a pre-tanh sample: tanh(u), or with a bounded residual
        clamp(prior + scale * tanh(u), -1, 1)."""
        if not self.residual_scale:
            return torch.tanh(pre_tanh)
        assert self.prior is not None
        return (self.prior.action(obs) + self.residual_scale * torch.tanh(pre_tanh)).clamp(-1.0, 1.0)

    def forward(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Action in [-1, 1] and its log-probability (with the tanh change of variables).

        ``deterministic``: the tanh of the mean (what the robot runs); its log-prob is
        still reported, evaluated at that action.
        """
        mean, log_std = self.distribution_params(obs)
        std = log_std.exp()
        if deterministic:
            pre_tanh = mean
        else:
            # Reparameterization trick: the sample is a differentiable function of (mean, std).
            pre_tanh = mean + std * torch.randn_like(mean)
        log_prob = squashed_gaussian_log_prob(pre_tanh, mean, log_std)
        if self.residual_scale:
            # a = prior + scale * tanh(u): the scale's Jacobian, per action dimension.
            log_prob = log_prob - mean.shape[-1] * math.log(self.residual_scale)
        return self.squash(obs, pre_tanh), log_prob

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mean): the policy that gets exported and deployed."""
        mean, _ = self.distribution_params(obs)
        return self.squash(obs, mean)


def squashed_gaussian_log_prob(
    pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)^2), summed over action dims.

    log pi(a) = log N(u) - sum log(1 - tanh(u)^2); the correction is computed as
    2 (log 2 - u - softplus(-2u)), which equals log(1 - tanh(u)^2) without the
    cancellation that 1 - tanh(u)^2 suffers for |u| >> 1 (SAC paper, appendix C).
    """
    gaussian = (
        -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    )
    correction = 2.0 * (math.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh))
    return (gaussian - correction).sum(dim=-1)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers evaluated as one batched matmul."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        # nn.Linear's default init, per member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [n, batch, in] -> [n, batch, out]."""
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the features of each ensemble member, with per-member affine
    parameters (what separate networks with their own LayerNorm would have)."""

    def __init__(self, n: int, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, width))
        self.bias = nn.Parameter(torch.zeros(n, 1, width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [n, batch, width]."""
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, x, self.weight)


class QEnsemble(nn.Module):
    """``n`` soft Q-functions Q_i(s, a), fused into batched matmuls (one kernel per layer
    instead of one per member: faster on CPU and GPU than separate twin networks).

    ``dropout`` > 0 and ``layer_norm``: DroQ's critic (Hiraoka et al. 2022, used by "A Walk
    in the Park"): each hidden layer is Linear -> Dropout -> LayerNorm -> ReLU. Dropout is
    active whenever the module is in training mode, for the target values too, as in DroQ.
    """

    def __init__(
        self, in_dim: int, act_dim: int, hidden: tuple[int, ...], n: int = 2,
        dropout: float = 0.0, layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.n = n
        dims = (in_dim + act_dim, *hidden)
        self.hidden = nn.ModuleList(EnsembleLinear(n, a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.norms = nn.ModuleList(EnsembleLayerNorm(n, b) for b in hidden) if layer_norm else None
        self.dropout = dropout
        self.out = EnsembleLinear(n, dims[-1], 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q-values of every member: [n, batch]."""
        x = torch.cat([obs, action], dim=-1).unsqueeze(0).expand(self.n, -1, -1)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if self.dropout > 0:
                x = nn.functional.dropout(x, self.dropout, self.training)
            if self.norms is not None:
                x = self.norms[i](x)
            x = torch.relu(x)
        return self.out(x).squeeze(-1)
