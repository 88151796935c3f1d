"""SAC pieces against hand-computed values on tiny tensors."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from sim2real.train.networks import Actor, QEnsemble, squashed_gaussian_log_prob
from sim2real.train.normalizer import RunningNormalizer
from sim2real.train.replay_buffer import ReplayBuffer
from sim2real.train.sac import (
    SAC,
    SACConfig,
    actor_loss,
    critic_loss,
    polyak_update,
    soft_q_target,
    temperature_loss,
)


def test_log_prob_includes_the_tanh_correction() -> None:
    u = torch.tensor([[0.5, -1.0]])
    mean = torch.tensor([[0.0, 0.0]])
    log_std = torch.tensor([[0.0, math.log(2.0)]])
    # By hand: log N(0.5; 0, 1) + log N(-1; 0, 2) - log(1 - tanh(0.5)^2) - log(1 - tanh(-1)^2)
    expected = (
        -0.5 * 0.25 - 0.5 * math.log(2 * math.pi)
        + -0.5 * 0.25 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
        - math.log(1 - math.tanh(0.5) ** 2) - math.log(1 - math.tanh(-1.0) ** 2)
    )
    got = squashed_gaussian_log_prob(u, mean, log_std)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # Stable where 1 - tanh(u)^2 underflows in float32.
    far = squashed_gaussian_log_prob(torch.tensor([[30.0]]), torch.zeros(1, 1), torch.zeros(1, 1))
    assert torch.isfinite(far).all()


def test_soft_q_target_by_hand() -> None:
    rewards = torch.tensor([1.0, 2.0])
    terminated = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])  # [critics, batch]
    next_log_prob = torch.tensor([-1.0, 0.5])
    y = soft_q_target(rewards, terminated, next_q, next_log_prob, alpha=0.2, gamma=0.9)
    # env 0: 1 + 0.9 * (min(3, 4) - 0.2 * -1) = 1 + 0.9 * 3.2; env 1 terminated: just 2.
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 3.2, 2.0]))


def test_critic_and_actor_losses_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    target = torch.tensor([2.0, 2.0])
    # critic 0: mean((1-2)^2, 0) = 0.5; critic 1: mean(1, 4) = 2.5; 0.5 * (0.5 + 2.5)
    assert critic_loss(q, target).item() == pytest.approx(1.5)
    log_prob = torch.tensor([-1.0, 1.0])
    # mean(0.5 * -1 - 1, 0.5 * 1 - 0) = mean(-1.5, 0.5)
    assert actor_loss(q, log_prob, alpha=0.5).item() == pytest.approx(-0.5)


@pytest.mark.parametrize(("log_prob", "direction"), [(-5.0, "down"), (5.0, "up")])
def test_temperature_moves_alpha_towards_the_entropy_target(log_prob: float, direction: str) -> None:
    # target entropy -1: a policy with entropy 5 (log pi = -5) has too much -> alpha falls;
    # one with entropy -5 has too little -> alpha rises.
    log_alpha = torch.tensor(0.0, requires_grad=True)
    loss = temperature_loss(log_alpha, torch.full((4,), log_prob), target_entropy=-1.0)
    loss.backward()
    # d/dlog_alpha of -(log_alpha * (log_prob + H)) = -(log_prob + H)
    assert log_alpha.grad.item() == pytest.approx(-(log_prob - 1.0))
    step = -log_alpha.grad.item()  # gradient descent
    assert (step < 0) if direction == "down" else (step > 0)


def test_polyak_update_moves_the_target_by_tau() -> None:
    source, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = target.weight.detach().clone()
    polyak_update(target, source, tau=0.1)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * source.weight.detach())


def test_ensemble_matches_independent_critics() -> None:
    torch.manual_seed(0)
    ensemble = QEnsemble(3, 2, (8, 8), n=2)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    q = ensemble(obs, act)
    assert q.shape == (2, 5)
    x = torch.cat([obs, act], -1)
    for i in range(2):
        h = x
        for layer in ensemble.hidden:
            h = torch.relu(h @ layer.weight[i] + layer.bias[i])
        torch.testing.assert_close(q[i], (h @ ensemble.out.weight[i] + ensemble.out.bias[i]).squeeze(-1))


def random_batch(n: int = 32, obs_dim: int = 3, act_dim: int = 1) -> dict[str, torch.Tensor]:
    """A fixed batch of random transitions for update tests."""
    return {
        "obs": torch.randn(n, obs_dim), "next_obs": torch.randn(n, obs_dim),
        "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
        "terminated": torch.zeros(n),
    }


def test_droq_critic_is_linear_dropout_layernorm_relu_per_member() -> None:
    torch.manual_seed(0)
    ensemble = QEnsemble(3, 2, (8, 8), n=2, dropout=0.5, layer_norm=True)
    with torch.no_grad():  # distinct affine parameters per member, so mixing them shows
        for norm in ensemble.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    ensemble.eval()  # dropout off: the deterministic network
    q = ensemble(obs, act)
    x = torch.cat([obs, act], -1)
    for i in range(2):
        h = x
        for layer, norm in zip(ensemble.hidden, ensemble.norms, strict=True):
            h = h @ layer.weight[i] + layer.bias[i]
            h = torch.nn.functional.layer_norm(h, (8,), norm.weight[i, 0], norm.bias[i, 0])
            h = torch.relu(h)
        torch.testing.assert_close(q[i], (h @ ensemble.out.weight[i] + ensemble.out.bias[i]).squeeze(-1))
    # In training mode dropout is active: two passes differ.
    ensemble.train()
    assert not torch.allclose(ensemble(obs, act), ensemble(obs, act))
    torch.testing.assert_close(ensemble.eval()(obs, act), q)


def test_actor_delay_updates_the_actor_every_kth_step_and_the_critics_every_step() -> None:
    torch.manual_seed(0)
    sac = SAC(SACConfig(actor_hidden=(16,), critic_hidden=(16,), actor_delay=3), obs_dim=3, act_dim=1)
    batch = random_batch()
    actor_changed, critic_changed = [], []
    for _ in range(6):
        actor_before = [p.clone() for p in sac.actor.parameters()]
        critic_before = [p.clone() for p in sac.critic.parameters()]
        alpha_before = sac.alpha
        sac.update(batch)
        actor_changed.append(any(not torch.equal(a, b) for a, b in zip(actor_before, sac.actor.parameters(), strict=True)))
        critic_changed.append(any(not torch.equal(a, b) for a, b in zip(critic_before, sac.critic.parameters(), strict=True)))
        assert (sac.alpha != alpha_before) == actor_changed[-1]
    assert actor_changed == [True, False, False, True, False, False]
    assert all(critic_changed)


def test_actor_actions_are_squashed_and_deterministic_is_tanh_mean() -> None:
    torch.manual_seed(0)
    actor = Actor(4, 3, (16, 16))
    obs = torch.randn(64, 4) * 10
    action, log_prob = actor(obs)
    assert action.abs().max() <= 1.0 and log_prob.shape == (64,)
    mean, _ = actor.distribution_params(obs)
    torch.testing.assert_close(actor(obs, deterministic=True)[0], torch.tanh(mean))
    torch.testing.assert_close(actor.act(obs), torch.tanh(mean))


def test_actor_init_std_sets_the_initial_exploration_everywhere() -> None:
    torch.manual_seed(0)
    sac = SAC(SACConfig(actor_hidden=(16,), critic_hidden=(16,), actor_init_std=0.3), obs_dim=4, act_dim=3)
    _, log_std = sac.actor.distribution_params(torch.randn(50, 4) * 10)
    torch.testing.assert_close(log_std.exp(), torch.full((50, 3), 0.3))
    default = SAC(SACConfig(actor_hidden=(16,), critic_hidden=(16,)), obs_dim=4, act_dim=3)
    _, log_std = default.actor.distribution_params(torch.randn(50, 4) * 10)
    assert log_std.std() > 0.01  # the usual init: state-dependent from the start
    with pytest.raises(ValueError, match=r"SACConfig.actor_init_std must be in \[1e-6, 7\]"):
        SACConfig(actor_init_std=0.0)


def test_actor_warmup_updates_the_critics_alone_first() -> None:
    torch.manual_seed(0)
    sac = SAC(SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32, actor_warmup_updates=3), obs_dim=3, act_dim=1)
    actor0, critic0 = copy.deepcopy(sac.actor.state_dict()), copy.deepcopy(sac.critic.state_dict())
    alpha0 = sac.alpha
    batch = random_batch()
    for _ in range(3):
        sac.update(batch)
    assert all(torch.equal(v, actor0[k]) for k, v in sac.actor.state_dict().items()) and sac.alpha == alpha0
    assert not all(torch.equal(v, critic0[k]) for k, v in sac.critic.state_dict().items())
    metrics = sac.update(batch)  # the 4th: the actor's first
    assert "loss/actor" in metrics and sac.alpha != alpha0
    assert not all(torch.equal(v, actor0[k]) for k, v in sac.actor.state_dict().items())
    with pytest.raises(ValueError, match=r"SACConfig.actor_warmup_updates must be >= 0, got -1"):
        SACConfig(actor_warmup_updates=-1)
    with pytest.raises(ValueError, match=r"SACConfig.residual_scale must be in \[0, 2\]"):
        SACConfig(residual_scale=-0.1)
    with pytest.raises(ValueError, match=r"SACConfig.residual_scale > 0 needs an action prior"):
        SAC(SACConfig(actor_hidden=(8,), critic_hidden=(8,), residual_scale=0.3), obs_dim=3, act_dim=1)


def test_an_entropy_target_a_bounded_residual_cannot_reach_is_refused() -> None:
    """A residual in +-0.2 over 16 actions has at most 16 log 0.4 = -14.66 nats: a target of
    -8 would let the temperature grow without bound (a cube run reached alpha 6.7e5)."""
    from torch import nn

    class Zero(nn.Module):
        def action(self, obs: torch.Tensor) -> torch.Tensor:
            return torch.zeros(obs.shape[0], 16)

    small = dict(actor_hidden=(8,), critic_hidden=(8,), residual_scale=0.2)
    with pytest.raises(ValueError, match=r"target_entropy -8 cannot be reached with residual_scale 0.2: .* "
                                         r"at most -14.66 nats; .* e.g. -33.8"):
        SAC(SACConfig(**small, target_entropy=-8.0), obs_dim=3, act_dim=16, actor_prior=Zero())
    agent = SAC(SACConfig(**small, target_entropy=-33.75), obs_dim=3, act_dim=16, actor_prior=Zero())
    assert agent.target_entropy == -33.75


def test_update_reduces_critic_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    sac = SAC(SACConfig(actor_hidden=(32,), critic_hidden=(32,), batch_size=32), obs_dim=3, act_dim=1)
    batch = random_batch()
    first = sac.update(batch)["loss/critic"]
    for _ in range(200):
        last = sac.update(batch)["loss/critic"]
    assert last < first
    assert sac.updates == 201


def test_invalid_sac_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"SACConfig.gamma must be in \[0, 1\), got 1.5"):
        SACConfig(gamma=1.5)
    with pytest.raises(ValueError, match=r"SACConfig.tau"):
        SACConfig(tau=0.0)
    with pytest.raises(ValueError, match=r"SACConfig.critic_dropout must be in \[0, 1\), got 1.0"):
        SACConfig(critic_dropout=1.0)
    with pytest.raises(ValueError, match=r"SACConfig.actor_delay must be >= 1, got 0"):
        SACConfig(actor_delay=0)


def test_normalizer_matches_numpy_and_freezes() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (1000, 4))
    norm = RunningNormalizer(4)
    for chunk in np.array_split(data, 7):
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.var, data.var(0), rtol=1e-10)
    norm.frozen = True
    norm.update(data + 100)
    np.testing.assert_allclose(norm.mean, data.mean(0), rtol=1e-10)
    restored = RunningNormalizer(4)
    restored.load_state(norm.state())
    np.testing.assert_array_equal(restored.normalize(data[:3]), norm.normalize(data[:3]))
    with pytest.raises(ValueError, match=r"normalizer mean must have shape \(5,\), got \(4,\)"):
        RunningNormalizer(5).load_state(norm.state())


def test_replay_ring_buffer_wraps_samples_and_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    buf = ReplayBuffer(5, obs_dim=2, act_dim=1, privileged_dim=3)
    for step in range(3):  # 3 batches of 2 = 6 transitions into 5 slots
        obs = np.full((2, 2), step, np.float32)
        buf.add(obs, np.zeros((2, 1)), np.array([step, step]), obs + 1, np.zeros(2),
                np.zeros((2, 3)), np.ones((2, 3)))
    assert len(buf) == 5 and buf.position == 1
    assert buf.arrays["rewards"][0] == 2  # the oldest row was overwritten
    batch = buf.sample(64, np.random.default_rng(0))
    assert batch["obs"].shape == (64, 2) and batch["next_privileged"].shape == (64, 3)
    path = tmp_path / "replay.npz"
    buf.save(path)
    loaded = ReplayBuffer.load(path)
    assert (loaded.size, loaded.position, loaded.capacity) == (5, 1, 5)
    for name, arr in buf.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], arr)
    with pytest.raises(ValueError, match="pass both"):
        buf.add(obs, np.zeros((2, 1)), np.zeros(2), obs, np.zeros(2))


def _compile_batch(batch_size: int = 32, obs_dim: int = 5, act_dim: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randn(batch_size, obs_dim, generator=g),
        "next_obs": torch.randn(batch_size, obs_dim, generator=g),
        "actions": torch.rand(batch_size, act_dim, generator=g) * 2 - 1,
        "rewards": torch.randn(batch_size, generator=g),
        "terminated": (torch.rand(batch_size, generator=g) < 0.1).float(),
    }


COMPILE_UPDATES = 5


def _run_updates(compiled: bool) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    """COMPILE_UPDATES updates from the same seed: every update's metrics, then the whole
    learner state (weights, target weights, log_alpha, Adam moments and steps)."""
    batch = _compile_batch()
    torch.manual_seed(1)
    config = SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32, compile=compiled)
    sac = SAC(config, obs_dim=5, act_dim=2)
    metrics = [sac.update(batch) for _ in range(COMPILE_UPDATES)]
    state = {f"{name}.{k}": v.detach().clone() for name, m in sac.modules().items() for k, v in m.state_dict().items()}
    state["log_alpha"] = sac.log_alpha.detach().clone()
    for name, optimizer in sac.optimizers().items():
        for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
            for field, value in optimizer.state[param].items():
                state[f"optim.{name}.{i}.{field}"] = value.detach().clone()
    return metrics, state


def _assert_same_updates(
    eager: tuple[list[dict[str, float]], dict[str, torch.Tensor]],
    compiled: tuple[list[dict[str, float]], dict[str, torch.Tensor]],
) -> None:
    """Every update's losses, alpha and Q estimate, and the final state, agree within
    float32 reordering error (fused kernels sum in another order: about 1e-7 relative per
    update was measured here; 1e-5 leaves room for five updates and other CPUs)."""
    for i, (e, c) in enumerate(zip(eager[0], compiled[0], strict=True)):
        assert set(e) == set(c)
        for key in e:
            assert c[key] == pytest.approx(e[key], rel=1e-5, abs=1e-6), f"update {i}: {key}"
    assert set(eager[1]) == set(compiled[1])
    for key, value in eager[1].items():
        torch.testing.assert_close(compiled[1][key], value, rtol=1e-5, atol=1e-6, msg=lambda m, k=key: f"{k}: {m}")


@pytest.fixture
def compiled_rng_as_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled code draws the actor's reparameterization noise from inductor's own
    generator unless fallback_random: then the graphs call the eager RNG, so compiled and
    eager updates see the same noise and can be compared past the first forward pass
    (without it they agree only until the first sample, which is why the old test
    compared the first update's Q estimate alone). The math is unchanged by the switch."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)


def test_compiled_updates_match_eager_updates(compiled_rng_as_eager: None) -> None:
    """--sac.compile (CUDA graphs on a GPU; plain torch.compile here) runs the same math,
    update after update: losses, alpha, the weights the optimizers move, Adam's moments."""
    eager, compiled = _run_updates(compiled=False), _run_updates(compiled=True)
    assert all(math.isfinite(v) for m in compiled[0] for v in m.values())
    # The state moved (else equal states would say nothing): alpha fell from 1, targets
    # left the critics they were copied from.
    assert eager[0][-1]["alpha"] < 1.0
    assert not torch.equal(eager[1]["critic_target.out.weight"], eager[1]["critic.out.weight"])
    _assert_same_updates(eager, compiled)


def _stale_critic_compile(fn: Any, mode: str | None = None) -> Any:
    """A "compiler" that bakes the critic's weights in as constants at compile time (what
    a graph that captures parameters by value does): the critic loss is computed with the
    initial critic forever, so the live critic gets no gradient."""
    if fn.__name__ != "_critic_losses":
        return fn
    sac = fn.__self__
    frozen = copy.deepcopy(sac.critic)

    def stale(*args: torch.Tensor) -> Any:
        live, sac.critic = sac.critic, frozen
        try:
            return fn(*args)
        finally:
            sac.critic = live

    return stale


def _constant_alpha_compile(fn: Any, mode: str | None = None) -> Any:
    """A "compiler" that treats log_alpha as a constant in the actor graph: the temperature
    loss has no gradient to the real log_alpha, so alpha never moves."""
    if fn.__name__ != "_actor_losses":
        return fn
    sac = fn.__self__

    def constant_alpha(*args: torch.Tensor) -> Any:
        live = sac.log_alpha
        sac.log_alpha = live.detach().clone()
        try:
            return fn(*args)
        finally:
            sac.log_alpha = live

    return constant_alpha


@pytest.mark.slow
@pytest.mark.parametrize("broken", [_stale_critic_compile, _constant_alpha_compile], ids=["stale-critic", "constant-alpha"])
def test_compiled_update_test_fails_on_a_miscompiled_update(monkeypatch: pytest.MonkeyPatch, broken: Any) -> None:
    """The comparison above is sensitive: a compiled path that goes wrong only after the
    first update (the first forward pass is still right, so the old first-update check
    passed) fails it."""
    monkeypatch.setattr(torch, "compile", broken)
    eager, compiled = _run_updates(compiled=False), _run_updates(compiled=True)
    # What the old test checked still holds for these broken variants...
    assert compiled[0][0]["q_mean"] == pytest.approx(eager[0][0]["q_mean"], abs=1e-5)
    assert compiled[0][0]["alpha"] == eager[0][0]["alpha"] == 1.0
    # ...and the new check catches them.
    with pytest.raises(AssertionError):
        _assert_same_updates(eager, compiled)
