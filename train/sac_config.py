"""SAC's hyperparameters, apart from the algorithm so that reading or validating a run's
config (the sweep driver, `sim2real train --help`) does not import torch."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters. Defaults follow the paper and Stable-Baselines3."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target critics: target <- (1 - tau) target + tau critic."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """H_target; None means -|A| (the paper's heuristic)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic."""
    actor_init_std: float | None = None
    """Start the actor's exploration at this standard deviation (pre-tanh), everywhere:
    its log-std head starts with zero weights and log(std) as bias. None: the head's usual
    random init (std about 1). A residual policy on a prior (--action-prior) explores
    around the prior rather than drowning it in noise with a smaller one (e.g. 0.3)."""
    residual_scale: float = 0.0
    """With --action-prior: 0 shifts the actor's pre-tanh mean by the prior; > 0 bounds the
    residual in action space, action = clamp(prior + residual_scale * tanh(u), -1, 1)."""
    n_critics: int = 2
    """Q-functions in the ensemble; the target takes their minimum (clipped double Q)."""
    critic_dropout: float = 0.0
    """Dropout rate after each hidden layer of the critics (DroQ: 0.01). With
    critic_layernorm, the regularizers that let DroQ take many critic updates per env step
    ("A Walk in the Park": 20)."""
    critic_layernorm: bool = False
    """LayerNorm after each hidden layer of the critics (DroQ, SimBa, BRO)."""
    actor_delay: int = 1
    """Update the actor and the temperature on every k-th gradient step only (the critics
    on every one): DroQ's many critic updates per actor update, CrossQ's policy delay 3.
    Saves the actor's share of the compute."""
    actor_warmup_updates: int = 0
    """Gradient steps on the critics alone before the actor and the temperature first
    update: the critics learn the value of the initial policy before the actor follows
    their gradients (the burn-in of residual RL: Silver et al. 2018, "Residual Policy
    Learning"), instead of a near-random critic steering a policy that starts from a
    working prior away from it."""
    asymmetric: bool = False
    """Critics see the env's privileged observation (info["privileged_obs"]) instead of
    the actor's: an asymmetric actor-critic. Needs an env that provides one."""
    exploration_noise_beta: float = 0.0
    """Colour of the noise that samples the policy in the rollouts: power spectral density
    1/f^beta, one sequence per episode and action dimension (train/colored_noise.py). 0:
    white, SAC as published; 1: pink, the default that Eberhard et al. (ICLR 2023, "Pink
    Noise Is All You Need") found best across tasks; 2: red. The updates are unchanged. A
    resumed run draws fresh sequences (not bit-identical to an uninterrupted one)."""
    compile: bool = False
    """torch.compile the update's loss computations (forward and backward graphs). On CUDA
    with mode "reduce-overhead", i.e. CUDA-graph capture, the route LeanRL measured 5.7x
    on SAC with. Off by default: on the 2-core dev CPU it was slower than eager (15.0 vs
    12.3 ms per update) and the first update compiles for ~15 s."""

    def __post_init__(self) -> None:
        checks = {
            "gamma": (0.0 <= self.gamma < 1.0, "in [0, 1)"),
            "tau": (0.0 < self.tau <= 1.0, "in (0, 1]"),
            "actor_lr": (self.actor_lr > 0, "> 0"),
            "critic_lr": (self.critic_lr > 0, "> 0"),
            "alpha_lr": (self.alpha_lr >= 0, ">= 0 (0 freezes alpha)"),
            "init_alpha": (self.init_alpha > 0, "> 0"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "n_critics": (self.n_critics >= 1, ">= 1"),
            "critic_dropout": (0.0 <= self.critic_dropout < 1.0, "in [0, 1)"),
            "actor_delay": (self.actor_delay >= 1, ">= 1"),
            "actor_warmup_updates": (self.actor_warmup_updates >= 0, ">= 0"),
            "residual_scale": (0.0 <= self.residual_scale <= 2.0, "in [0, 2] (0: the pre-tanh shift)"),
            "exploration_noise_beta": (0.0 <= self.exploration_noise_beta <= 3.0, "in [0, 3]"),
            "actor_init_std": (self.actor_init_std is None or 1e-6 <= self.actor_init_std <= 7.0, "in [1e-6, 7] (exp of the log-std bounds)"),
            "actor_hidden": (all(w >= 1 for w in self.actor_hidden), "positive widths"),
            "critic_hidden": (all(w >= 1 for w in self.critic_hidden), "positive widths"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"SACConfig.{name} must be {allowed}, got {getattr(self, name)!r}")
