"""Soft Actor-Critic with automatic entropy temperature (Haarnoja et al., 2018, "Soft
Actor-Critic Algorithms and Applications"): twin soft Q-functions with Polyak-averaged
targets, a tanh-Gaussian actor trained by reparameterization, and alpha learned by
minimizing J(alpha) = E[-alpha (log pi(a|s) + H_target)].

The loss pieces are plain functions (tested against hand-computed values); :class:`SAC`
owns the networks and optimizers and runs one update on a batch. Data collection and
observation normalization live elsewhere: the batch arrives normalized.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from sim2real.train.networks import Actor, QEnsemble
from sim2real.train.sac_config import SACConfig


# --- the loss pieces -------------------------------------------------------------------
def soft_q_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i Q_i'(s', a') - alpha log pi(a'|s')).

    ``next_q``: [n_critics, batch] target-critic values at a' ~ pi(.|s'). Truncated
    transitions arrive with terminated = 0, so they bootstrap.
    """
    soft_value = next_q.min(dim=0).values - alpha * next_log_prob
    return rewards + gamma * (1.0 - terminated) * soft_value


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over critics of 0.5 * MSE(Q_i, y) (SB3's form). q: [n_critics, batch]."""
    return 0.5 * ((q - target.unsqueeze(0)) ** 2).mean(dim=1).sum()


def actor_loss(q: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a reparameterized sample."""
    return (alpha * log_prob - q.min(dim=0).values).mean()


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """J = E[-alpha (log pi + H_target)], with alpha parameterized as exp(log_alpha).

    Its gradient raises alpha when the policy's entropy (-log pi) is below the target and
    lowers it when above. The gradient of log_alpha carries the sign of -(log pi + H), the
    same as for alpha itself, so optimizing log_alpha (stable, keeps alpha > 0) is what
    SB3 and the authors' code do.
    """
    return -(log_alpha * (log_prob + target_entropy).detach()).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, all parameters in one foreach kernel."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


# --- the learner -------------------------------------------------------------------------
class SAC:
    """Networks, optimizers and one gradient update of SAC."""

    def __init__(
        self,
        config: SACConfig,
        obs_dim: int,
        act_dim: int,
        critic_obs_dim: int | None = None,
        device: str | torch.device = "cpu",
        actor_prior: nn.Module | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.act_dim = act_dim
        critic_obs_dim = critic_obs_dim or obs_dim
        if config.residual_scale and actor_prior is None:
            raise ValueError("SACConfig.residual_scale > 0 needs an action prior (--action-prior)")
        self.actor = Actor(
            obs_dim, act_dim, config.actor_hidden, prior=actor_prior, residual_scale=config.residual_scale
        ).to(self.device)
        if config.actor_init_std is not None:
            with torch.no_grad():
                self.actor.log_std.weight.zero_()
                self.actor.log_std.bias.fill_(math.log(config.actor_init_std))
        self.critic = QEnsemble(
            critic_obs_dim, act_dim, config.critic_hidden, config.n_critics,
            dropout=config.critic_dropout, layer_norm=config.critic_layernorm,
        ).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(
            math.log(config.init_alpha), device=self.device, requires_grad=True
        )
        self.target_entropy = (
            float(-act_dim) if config.target_entropy is None else config.target_entropy
        )
        if config.residual_scale:
            # A residual bounded to +-s spreads over a box of width 2s per action: no policy
            # has more entropy than act_dim * log(2s). Above that the temperature would grow
            # without bound and drown the reward (seen: alpha 6.7e5 at s = 0.2, target -8).
            ceiling = act_dim * math.log(2.0 * config.residual_scale)
            if self.target_entropy >= ceiling:
                raise ValueError(
                    f"SACConfig.target_entropy {self.target_entropy:g} cannot be reached with "
                    f"residual_scale {config.residual_scale:g}: a residual in +-{config.residual_scale:g} "
                    f"over {act_dim} actions has at most {ceiling:.2f} nats; set --sac.target-entropy "
                    f"below that, e.g. {self.target_entropy + act_dim * math.log(config.residual_scale):.1f} "
                    f"(the same target relative to the residual's range)"
                )
        # fused Adam: one kernel per step instead of a handful per parameter tensor.
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=config.critic_lr, fused=True
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, fused=True)
        self.updates = 0
        self._last_actor_metrics: dict[str, float] = {}
        self._critic_step = self._critic_losses
        self._actor_step = self._actor_losses
        if config.compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._critic_step = torch.compile(self._critic_losses, mode=mode)
            self._actor_step = torch.compile(self._actor_losses, mode=mode)

    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    def _critic_losses(
        self, critic_obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
        terminated: torch.Tensor, next_obs: torch.Tensor, next_critic_obs: torch.Tensor,
        alpha: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic loss against the soft target (the target side without gradients)."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs)
            next_q = self.critic_target(next_critic_obs, next_action)
            target = soft_q_target(rewards, terminated, next_q, next_log_prob, alpha, self.config.gamma)
        q = self.critic(critic_obs, actions)
        return critic_loss(q, target), q.detach().mean()

    def _actor_losses(
        self, obs: torch.Tensor, critic_obs: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actor and temperature losses from one actor pass; their sum has exactly the
        gradients of the two (alpha is detached in one, log pi in the other)."""
        action, log_prob = self.actor(obs)
        pi_loss = actor_loss(self.critic(critic_obs, action), log_prob, alpha)
        alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
        return pi_loss + alpha_loss, pi_loss.detach(), alpha_loss.detach(), -log_prob.detach().mean()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on the critics (and, every actor_delay-th call, on the actor and
        the temperature), then the target update.

        ``batch``: normalized ``obs``/``next_obs`` (and ``critic_obs``/``next_critic_obs``
        when the critics see other inputs), ``actions``, ``rewards``, ``terminated``.
        """
        obs, next_obs = batch["obs"], batch["next_obs"]
        critic_obs = batch.get("critic_obs", obs)
        next_critic_obs = batch.get("next_critic_obs", next_obs)
        alpha = self.log_alpha.exp().detach()

        q_loss, q_mean = self._critic_step(
            critic_obs, batch["actions"], batch["rewards"], batch["terminated"], next_obs,
            next_critic_obs, alpha,
        )
        self.critic_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.critic_optimizer.step()

        if self.updates >= self.config.actor_warmup_updates and self.updates % self.config.actor_delay == 0:
            self._last_actor_metrics = self._actor_update(obs, critic_obs, alpha)

        polyak_update(self.critic_target, self.critic, self.config.tau)
        self.updates += 1
        return {
            "loss/critic": q_loss.item(),
            # With actor_delay > 1: the actor's figures from its latest update.
            **self._last_actor_metrics,
            "alpha": alpha.item(),
            "q_mean": q_mean.item(),
        }

    def _actor_update(
        self, obs: torch.Tensor, critic_obs: torch.Tensor, alpha: torch.Tensor
    ) -> dict[str, float]:
        # Gradients flow through the critics into the action. The critics' parameters are
        # frozen meanwhile, so backward skips their weight gradients (about a seventh of
        # the update's matmul work) instead of computing and discarding them.
        self.critic.requires_grad_(False)
        total, pi_loss, alpha_loss, entropy = self._actor_step(obs, critic_obs, alpha)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.critic.requires_grad_(True)
        self.actor_optimizer.step()
        self.alpha_optimizer.step()
        return {"loss/actor": pi_loss.item(), "loss/alpha": alpha_loss.item(), "entropy": entropy.item()}

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
            "alpha": self.alpha_optimizer,
        }
