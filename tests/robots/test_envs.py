"""Properties every registered env must have: real MuJoCo physics, no mocks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim2real.robots as robots

ENV_IDS = sorted(robots.ENVS)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("dr", [True, False], ids=["dr", "no-dr"])
def test_passes_gymnasium_env_checker(env_id: str, dr: bool) -> None:
    env = gym.make(env_id, domain_randomization=dr)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_thousand_random_steps_stay_finite(env_id: str) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    env.action_space.seed(3)
    episodes = 0
    for _ in range(1000):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.all(np.isfinite(obs)), "observation has NaN/Inf"
        assert np.isfinite(reward)
        assert np.all(np.isfinite(info["privileged_obs"]))
        if terminated or truncated:
            episodes += 1
            obs, info = env.reset()
    env.close()


def _rollout(env_id: str, seed: int, steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    observations, rewards = [obs], []
    for _ in range(steps):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_deterministic_for_a_fixed_seed(env_id: str) -> None:
    obs_a, rew_a = _rollout(env_id, seed=7)
    obs_b, rew_b = _rollout(env_id, seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    obs_c, _ = _rollout(env_id, seed=8)
    assert not np.array_equal(obs_a[: len(obs_c)], obs_c[: len(obs_a)])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reward_is_the_sum_of_its_terms(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    seen_nonzero: set[str] = set()
    for _ in range(300):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        terms = info["reward_terms"]
        assert reward == pytest.approx(sum(terms.values()), abs=1e-12)
        seen_nonzero |= {name for name, value in terms.items() if value != 0.0}
        if terminated or truncated:
            env.reset()
    # Every term is live (except the rare ones that need a touchdown or a fall).
    weights = env.unwrapped.config.rewards
    expected_live = {n for n in ("torques", "action_rate", "orientation") if n in terms and getattr(weights, n) != 0}
    assert expected_live <= seen_nonzero, f"dead reward terms: {expected_live - seen_nonzero}"
    # One term per weight, plus the clip that keeps a nonnegative reward at 0.
    clip = {"nonnegative_clip"} if getattr(env.unwrapped.config, "nonnegative_reward", False) else set()
    assert set(terms) == {f for f in weights.__dataclass_fields__} | clip
    env.close()


# What domain randomization writes into the model, on every robot (friction, masses,
# inertias, joint damping/armature/friction, servo gains, geometry).
_DR_MODEL_ARRAYS = (
    "geom_friction", "geom_size", "body_mass", "body_inertia", "dof_damping",
    "dof_armature", "dof_frictionloss", "actuator_gainprm", "actuator_biasprm",
)


def _physics_after_reset(env: gym.Env, seed: int) -> dict[str, np.ndarray]:
    _, info = env.reset(seed=seed)
    model = env.unwrapped.model
    return {"dr": info["dr"], **{name: getattr(model, name).copy() for name in _DR_MODEL_ARRAYS}}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_domain_randomization_varies_the_physics(env_id: str) -> None:
    env = gym.make(env_id)
    a, b, a_again = (_physics_after_reset(env, seed) for seed in (0, 1, 0))
    changed = [name for name in _DR_MODEL_ARRAYS if not np.array_equal(a[name], b[name])]
    # Every family of parameters moves between episodes, not just one.
    assert {"geom_friction", "body_mass", "dof_damping", "actuator_gainprm"} <= set(changed), changed
    for name in _DR_MODEL_ARRAYS:
        np.testing.assert_array_equal(a[name], a_again[name], err_msg=f"{name}: not reproducible")
    env.close()
    # Off: the nominal model at every reset, and the nominal values reported.
    nominal = gym.make(env_id, domain_randomization=False)
    c, d = (_physics_after_reset(nominal, seed) for seed in (0, 1))
    for name in _DR_MODEL_ARRAYS:
        np.testing.assert_array_equal(c[name], d[name], err_msg=f"{name} varies with DR off")
    assert c["dr"]["latency_steps"] == d["dr"]["latency_steps"] == 0
    nominal.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_names_agree(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(env.observation_names),)
    assert info["privileged_obs"].shape == env.privileged_observation_space.shape
    assert len(env.privileged_observation_names) == env.privileged_observation_space.shape[0]
    spec = env.deployment_spec
    assert spec.env_id == env_id
    assert len(spec.action_names) == env.action_space.shape[0] == len(spec.default_pose)
    assert len(spec.kp) == len(spec.kd) == env.action_space.shape[0]
    env.close()


def test_action_shape_is_checked() -> None:
    env = gym.make("sim2real/QuadrupedJoystick-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(12,\), got \(3,\)"):
        env.step(np.zeros(3))
    env.close()
