"""The action prior inside the policy (train/action_prior.py): what it computes, that
training, a reloaded run and the exported ONNX all run it, and its errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sim2real.robots.quadruped.joystick import QuadrupedJoystickEnv
from sim2real.robots.registry import task_config
from sim2real.train.action_prior import PRIOR_LIMIT, PriorShift
from sim2real.train.config import TrainConfig
from sim2real.train.export import OnnxPolicy, RunPolicy, export_onnx, read_metadata
from sim2real.train.networks import Actor, squashed_gaussian_log_prob
from sim2real.train.normalizer import RunningNormalizer
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import Trainer, prepare_trainer

ENV_ID = "sim2real/QuadrupedJoystick-v0"
GAIT = ("gait.frequency_hz=2.5",)
TINY = SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64)


STEERING = ("gait.frequency_hz=4", "gait.knee=1", "gait.forward_gain=0.8", "gait.sideways_gain=2.2",
            "gait.sideways_phase=3.14159", "gait.turn_gain=-0.7")


def _env(gait: tuple[str, ...] = GAIT) -> QuadrupedJoystickEnv:
    return QuadrupedJoystickEnv(config=task_config(ENV_ID, gait))


def _observations(env: QuadrupedJoystickEnv, n: int = 300) -> np.ndarray:
    """Observations with every clock phase and a mix of walking and standing commands."""
    rng = np.random.default_rng(0)
    obs = rng.normal(0, 1, (n, env.observation_space.shape[0])).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n)
    obs[:, -2], obs[:, -1] = np.sin(phase), np.cos(phase)
    command = obs[:, 6:9]
    command[: n // 4] = 0.0  # standing
    command[n // 4 : n // 2] *= 0.03  # inside the fade-out
    return obs


@pytest.mark.parametrize("gait", [GAIT, STEERING], ids=["in-place", "steering"])
def test_the_torch_shift_is_the_atanh_of_the_numpy_prior(gait: tuple[str, ...]) -> None:
    env = _env(gait)
    prior = env.action_prior
    assert prior is not None
    obs = _observations(env)
    shift = PriorShift(prior)(torch.as_tensor(obs))
    expected = np.clip(prior(obs), -PRIOR_LIMIT, PRIOR_LIMIT)
    np.testing.assert_allclose(torch.tanh(shift).numpy(), expected, atol=1e-6)
    assert np.abs(expected).max() > 0.85 and (expected == 0).all(axis=1).sum() >= 75


def test_an_actor_with_a_prior_starts_from_it_and_keeps_exact_log_probs() -> None:
    env = _env()
    prior = env.action_prior
    assert prior is not None
    torch.manual_seed(0)
    actor = Actor(env.observation_space.shape[0], 12, (32, 32), prior=PriorShift(prior))
    bare = Actor(env.observation_space.shape[0], 12, (32, 32))
    bare.load_state_dict(actor.state_dict())  # the prior adds no parameters
    obs = torch.as_tensor(_observations(env))
    with torch.no_grad():
        actor.mean.weight.zero_()
        actor.mean.bias.zero_()
        bare.mean.weight.zero_()
        bare.mean.bias.zero_()
        np.testing.assert_allclose(actor.act(obs).numpy(), np.clip(prior(obs.numpy()), -PRIOR_LIMIT, PRIOR_LIMIT), atol=1e-6)
        np.testing.assert_array_equal(bare.act(obs).numpy(), np.zeros((len(obs), 12)))
        # The sample's log-prob is the tanh-Gaussian's around the shifted mean.
        torch.manual_seed(1)
        action, log_prob = actor(obs)
        mean, log_std = actor.distribution_params(obs)
        pre_tanh = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
        np.testing.assert_allclose(
            log_prob.numpy(), squashed_gaussian_log_prob(pre_tanh, mean, log_std).numpy(), rtol=1e-3, atol=1e-2
        )
        np.testing.assert_allclose(mean.numpy(), PriorShift(prior)(obs).numpy(), atol=1e-6)


def test_normalizer_passes_the_priors_inputs_through() -> None:
    rng = np.random.default_rng(0)
    norm = RunningNormalizer(6, passthrough=(1, 4))
    for _ in range(5):
        norm.update(rng.normal(3.0, 2.0, (100, 6)))
    x = rng.normal(3.0, 2.0, (10, 6)).astype(np.float32)
    out = norm.normalize(x)
    np.testing.assert_array_equal(out[:, [1, 4]], x[:, [1, 4]])
    np.testing.assert_array_equal(norm.normalize_torch(torch.as_tensor(x))[:, [1, 4]].numpy(), x[:, [1, 4]])
    assert abs(out[:, 0].mean()) < 1.0 and abs(x[:, 0].mean()) > 2.0  # the others are normalized
    restored = RunningNormalizer(6)
    restored.load_state(norm.state())
    np.testing.assert_array_equal(restored.normalize(x), out)
    with pytest.raises(ValueError, match=r"passthrough: indices \[6\] are outside \[0, 6\)"):
        RunningNormalizer(6, passthrough=(6,))


@contextlib.contextmanager
def _trained(out: Path, steps: int, seed: int, sac: SACConfig = TINY) -> Iterator[Trainer]:
    """A short run with the steering trot as its action prior, its Trainer kept open."""
    trainer = prepare_trainer(TrainConfig(
        env=ENV_ID, total_steps=steps, seed=seed, out=out, learning_starts=steps // 2, num_envs=2,
        num_workers=0, eval_interval=0, eval_episodes=1, checkpoint_interval=steps, sac=sac,
        action_prior=True, env_config=STEERING,
    ))
    try:
        trainer.open_run()
        trainer.run_loop()
        yield trainer
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def prior_trainer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trainer]:
    with _trained(tmp_path_factory.mktemp("prior") / "run", 400, seed=2) as trainer:
        yield trainer


def test_the_warm_up_samples_the_prior_not_uniform_actions(prior_trainer: Trainer) -> None:
    """Before the first update the actions come from the initial policy: the prior plus
    the actor's noise: where the prior suggests a large action, the actions lean its way."""
    prior = prior_trainer.action_prior
    assert prior is not None
    n = prior_trainer.config.learning_starts  # the warm-up's transitions come first
    obs = prior_trainer.buffer.arrays["obs"][:n]
    actions = prior_trainer.buffer.arrays["actions"][:n]
    suggested = prior(obs)
    large = np.abs(suggested) > 0.5
    assert large.sum() > 50
    leaning = actions[large] * np.sign(suggested[large])
    assert leaning.mean() > 0.3 and abs(actions[np.abs(suggested) < 0.05].mean()) < 0.1


def test_run_export_and_reload_all_compute_the_prior(prior_trainer: Trainer, tmp_path: Path) -> None:
    run = prior_trainer.run_dir
    env = _env(STEERING)
    obs = _observations(env)
    expected = prior_trainer.deterministic_policy(obs)
    np.testing.assert_allclose(RunPolicy(run)(obs), expected, atol=1e-6)
    onnx_path = tmp_path / "policy.onnx"
    export_onnx(run, onnx_path)
    np.testing.assert_allclose(OnnxPolicy(onnx_path)(obs), expected, atol=1e-5)
    meta = read_metadata(onnx_path)
    assert float(meta["gait_clock_hz"]) == 4.0
    assert meta["observation_names"].endswith('"gait_clock/sin", "gait_clock/cos"]')
    # Planted: the same weights without the prior act differently, so agreement above is
    # the prior's, not the network's alone.
    bare = RunPolicy(run)
    bare.module.actor.prior = None
    assert np.abs(bare(obs) - expected).max() > 0.3


def test_an_export_whose_network_outputs_zero_serves_the_prior(prior_trainer: Trainer, tmp_path: Path) -> None:
    """What the robot gets from the ONNX file is the whole action: with the network's mean
    zeroed, exactly the trot (the prior is in the graph, not left to the controller)."""
    import shutil

    from sim2real.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(prior_trainer.run_dir, run)
    tensors, meta = load_checkpoint(run / "checkpoint.safetensors")
    tensors["actor.mean.weight"] = torch.zeros_like(tensors["actor.mean.weight"])
    tensors["actor.mean.bias"] = torch.zeros_like(tensors["actor.mean.bias"])
    save_checkpoint(run / "checkpoint.safetensors", tensors, meta)
    export_onnx(run, tmp_path / "p.onnx")
    env = _env(STEERING)
    obs = _observations(env)
    prior = env.action_prior
    assert prior is not None
    np.testing.assert_allclose(OnnxPolicy(tmp_path / "p.onnx")(obs), np.clip(prior(obs), -PRIOR_LIMIT, PRIOR_LIMIT), atol=1e-5)


def test_a_new_run_with_a_prior_starts_as_the_prior(tmp_path: Path) -> None:
    trainer = prepare_trainer(TrainConfig(
        env=ENV_ID, total_steps=10, out=tmp_path / "run", num_workers=0, sac=TINY,
        action_prior=True, env_config=STEERING,
    ))
    try:
        env = _env(STEERING)
        obs = _observations(env)
        prior = env.action_prior
        assert prior is not None
        np.testing.assert_allclose(
            trainer.deterministic_policy(obs), np.clip(prior(obs), -PRIOR_LIMIT, PRIOR_LIMIT), atol=1e-6
        )
    finally:
        trainer.close()


def test_asking_for_a_prior_the_env_does_not_have_is_a_clear_error(tmp_path: Path) -> None:
    config = TrainConfig(env=ENV_ID, total_steps=10, out=tmp_path / "run", num_workers=0, action_prior=True,
                         env_config=("gait.frequency_hz=0",))
    with pytest.raises(ValueError, match=r"suggests no action with this config .*gait.frequency_hz > 0, its default 4"):
        prepare_trainer(config)
    with pytest.raises(ValueError, match="Pendulum-v1 suggests no action"):
        prepare_trainer(TrainConfig(env="Pendulum-v1", total_steps=10, out=tmp_path / "p", num_workers=0, action_prior=True))


def test_a_bounded_residual_stays_within_its_scale_of_the_prior() -> None:
    env = _env(STEERING)
    prior = env.action_prior
    assert prior is not None
    torch.manual_seed(0)
    actor = Actor(env.observation_space.shape[0], 12, (32, 32), prior=PriorShift(prior), residual_scale=0.3)
    obs = torch.as_tensor(_observations(env))
    suggested = np.clip(prior(obs.numpy()), -1, 1)
    with torch.no_grad():
        actor.mean.bias.fill_(5.0)  # a saturated network: the residual is at its bound
        action, log_prob = actor(obs)
        expected_act = np.clip(prior(obs.numpy()) + 0.3 * np.tanh(actor.distribution_params(obs)[0].numpy()), -1, 1)
        np.testing.assert_allclose(actor.act(obs).numpy(), expected_act, atol=1e-6)
        deviation = action.numpy() - suggested
        assert np.all(deviation <= 0.3 + 1e-6) and np.all(deviation >= -0.3 - 1e-6)
        # The prior's swing survives a saturated residual (the pre-tanh shift flattens it).
        swing = np.ptp(actor.act(obs).numpy()[:, 2])
        assert swing > 0.8 * np.ptp(suggested[:, 2]) - 0.3
        # log-prob: the tanh-Gaussian's, less log(scale) per dimension (unsaturated here).
        actor.mean.bias.zero_()
        torch.manual_seed(3)
        action, log_prob = actor(obs)
        mean, log_std = actor.distribution_params(obs)
        pre_tanh = torch.atanh(((torch.as_tensor(action) - torch.as_tensor(suggested, dtype=torch.float32)) / 0.3).clamp(-1 + 1e-6, 1 - 1e-6))
        unclamped = (np.abs(suggested) + 0.3 < 1).all(axis=1)
        expected = squashed_gaussian_log_prob(pre_tanh, mean, log_std) - 12 * np.log(0.3)
        np.testing.assert_allclose(log_prob.numpy()[unclamped], expected.numpy()[unclamped], rtol=1e-3, atol=5e-2)
    with pytest.raises(ValueError, match="residual_scale > 0 needs a prior"):
        Actor(10, 12, (8,), residual_scale=0.3)


def test_a_bounded_residual_run_exports_what_it_trained(tmp_path: Path) -> None:
    sac = SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64, residual_scale=0.4)
    with _trained(tmp_path / "run", 300, seed=1, sac=sac) as trainer:
        env = _env(STEERING)
        obs = _observations(env)
        expected = trainer.deterministic_policy(obs)
        prior = env.action_prior
        assert prior is not None
        assert np.abs(expected - np.clip(prior(obs), -1, 1)).max() <= 0.4 + 1e-5
        export_onnx(trainer.run_dir, tmp_path / "p.onnx")
        np.testing.assert_allclose(OnnxPolicy(tmp_path / "p.onnx")(obs), expected, atol=1e-5)
        np.testing.assert_allclose(RunPolicy(trainer.run_dir)(obs), expected, atol=1e-6)


def test_the_cube_gait_trains_inside_the_policy_and_the_export_carries_it(tmp_path: Path) -> None:
    """The free cube's finger gait (a prior without a command, with an offset and a cosine
    swing) through the same path: a short run with a bounded residual, its reload and
    its ONNX export compute the same actions, which lean on the gait."""
    from sim2real.robots.hand.cube_rotate import HandCubeRotateConfig, HandCubeRotateEnv

    run = tmp_path / "cube"
    trainer = prepare_trainer(TrainConfig(
        env="sim2real/HandCubeRotate-v0", total_steps=200, seed=0, out=run, learning_starts=100,
        num_envs=2, num_workers=0, eval_interval=0, eval_episodes=1, checkpoint_interval=200,
        sac=SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64, residual_scale=0.5),
        action_prior=True, env_config=("gait_frequency_hz=0.5",),
    ))
    try:
        trainer.open_run()
        trainer.run_loop()
    finally:
        trainer.close()
    env = HandCubeRotateEnv(config=HandCubeRotateConfig(gait_frequency_hz=0.5))
    prior = env.action_prior
    assert prior is not None and prior.offset and prior.swing_cos
    rng = np.random.default_rng(0)
    obs = rng.normal(0, 0.3, (50, 41)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 50)
    obs[:, -2], obs[:, -1] = np.sin(phase), np.cos(phase)
    torch_actions = RunPolicy(run)(obs)
    onnx_path = tmp_path / "cube.onnx"
    export_onnx(run, onnx_path)
    np.testing.assert_allclose(OnnxPolicy(onnx_path)(obs), torch_actions, atol=1e-5)
    assert float(read_metadata(onnx_path)["gait_clock_hz"]) == 0.5
    # A residual bounded by 0.5 around the gait: every action within 0.5 of it (clipped).
    assert np.abs(torch_actions - np.clip(prior(obs), -1, 1)).max() <= 0.5 + 1e-5
    with pytest.raises(ValueError, match=r"gait_frequency_hz=0.5"):
        prepare_trainer(TrainConfig(env="sim2real/HandCubeRotate-v0", total_steps=10, out=tmp_path / "x",
                                    action_prior=True, num_workers=0))
