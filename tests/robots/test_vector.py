"""SubprocVectorEnv: same results as stepping the envs one by one, real worker processes."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import sim2real.robots  # noqa: F401
from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig
from sim2real.robots.vector import _RESET, SubprocVectorEnv, WorkerError

QUAD = "sim2real/QuadrupedJoystick-v0"


def test_matches_sequential_envs_including_autoreset() -> None:
    num_envs, steps = 3, 30
    config = dataclasses.replace(QuadrupedJoystickConfig(), episode_steps=12)
    vec = SubprocVectorEnv(QUAD, num_envs, num_workers=1, env_kwargs={"config": config})
    refs = [gym.make(QUAD, config=config) for _ in range(num_envs)]
    try:
        obs, infos = vec.reset(seed=10)
        for i, ref in enumerate(refs):
            ref_obs, ref_info = ref.reset(seed=10 + i)
            np.testing.assert_array_equal(obs[i], ref_obs)
            np.testing.assert_array_equal(infos["privileged_obs"][i], ref_info["privileged_obs"])
            assert infos["reset_infos"][i]["dr"]["floor_friction"] == ref_info["dr"]["floor_friction"]
        rng = np.random.default_rng(0)
        ended = 0
        for _ in range(steps):
            actions = rng.uniform(-1, 1, (num_envs, 12)).astype(np.float32)
            obs, rewards, terminated, truncated, infos = vec.step(actions)
            for i, ref in enumerate(refs):
                ref_obs, ref_rew, ref_term, ref_trunc, ref_info = ref.step(actions[i])
                assert rewards[i] == ref_rew
                assert (terminated[i], truncated[i]) == (ref_term, ref_trunc)
                for name, value in ref_info["reward_terms"].items():
                    assert infos["reward_terms"][name][i] == value
                if ref_term or ref_trunc:
                    ended += 1
                    assert infos["_final"][i]
                    np.testing.assert_array_equal(infos["final_obs"][i], ref_obs)
                    np.testing.assert_array_equal(
                        infos["final_privileged_obs"][i], ref_info["privileged_obs"]
                    )
                    ref_obs, ref_info = ref.reset()
                    assert i in infos["reset_infos"]
                np.testing.assert_array_equal(obs[i], ref_obs)
                np.testing.assert_array_equal(infos["privileged_obs"][i], ref_info["privileged_obs"])
        assert ended >= num_envs  # every env went through at least one autoreset
    finally:
        vec.close()
        for ref in refs:
            ref.close()


def test_works_for_plain_gymnasium_envs_and_in_process_only() -> None:
    vec = SubprocVectorEnv("Pendulum-v1", 2, num_workers=0)
    try:
        obs, infos = vec.reset(seed=0)
        assert obs.shape == (2, 3) and "privileged_obs" not in infos
        obs, rewards, *_ = vec.step(np.zeros((2, 1), np.float32))
        assert rewards.shape == (2,)
    finally:
        vec.close()


def test_bad_actions_and_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="num_envs must be >= 1, got 0"):
        SubprocVectorEnv(QUAD, 0)
    vec = SubprocVectorEnv("Pendulum-v1", 2, num_workers=1)
    try:
        vec.reset(seed=0)
        with pytest.raises(ValueError, match=r"actions must have shape \(2, 1\), got \(2, 3\)"):
            vec.step(np.zeros((2, 3)))
        # The env still works after the rejected call.
        vec.step(np.zeros((2, 1), np.float32))
        with pytest.raises(ValueError, match=r"seed\[1\] must be an int or None, got 'x'"):
            vec.reset(seed=[0, "x"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="seed list must have 2 entries, got 3"):
            vec.reset(seed=[0, 1, 2])
        vec.reset(seed=[0, None])
    finally:
        vec.close()


def test_worker_failure_surfaces_with_its_traceback() -> None:
    vec = SubprocVectorEnv("Pendulum-v1", 2, num_workers=1)
    try:
        # Row 0 is reset in this process, row 1 in the worker: only the worker's env fails
        # (past reset()'s own seed check, which would refuse this before any env sees it).
        with pytest.raises(WorkerError, match=r"(?s)an env failed in worker .*Traceback.*Seed"):
            vec._run(_RESET, [0, "not-a-seed"])  # type: ignore[list-item]
    finally:
        vec.close()
    assert all(not p.is_alive() for p in vec._processes)


def test_a_killed_worker_raises_instead_of_hanging() -> None:
    vec = SubprocVectorEnv("Pendulum-v1", 2, num_workers=1)
    try:
        vec.reset(seed=0)
        vec._processes[0].kill()
        vec._processes[0].join(timeout=5)
        with pytest.raises(WorkerError, match="died"):
            vec.step(np.zeros((2, 1), np.float32))
    finally:
        vec.close()
