"""The joystick task's gait clock and the trot it suggests (robots/quadruped/gait.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim2real.robots.quadruped import constants as consts
from sim2real.robots.quadruped.gait import ActionPrior, GaitConfig
from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig, QuadrupedJoystickEnv
from sim2real.robots.registry import task_config

ENV_ID = "sim2real/QuadrupedJoystick-v0"


REV1 = "defaults_revision=1"
"""The mechanism tests start from the task's first defaults (no clock, at rest, one command
per episode) and add what they test."""


def make(frequency_hz: float = 2.5, dr: bool = True, **config: object) -> QuadrupedJoystickEnv:
    base = task_config(ENV_ID, [REV1, f"gait.frequency_hz={frequency_hz}", "gait.knee=-0.9"])
    return QuadrupedJoystickEnv(config=dataclasses.replace(base, **config), domain_randomization=dr)


def test_without_a_gait_the_task_is_unchanged() -> None:
    for overrides, dim in (([REV1], 45), (["gait.frequency_hz=0"], 48)):  # 48: with the velocity estimate
        env = QuadrupedJoystickEnv(config=task_config(ENV_ID, overrides))
        assert env.observation_space.shape == (dim,)
        assert env.action_prior is None
        assert not any(name.startswith("gait_clock") for name in env.observation_names)


def test_the_clock_is_the_last_two_entries_exact_and_advancing_at_the_frequency() -> None:
    env = make(2.5, observe_linear_velocity=True)  # the clock follows the velocity estimate
    assert env.observation_space.shape == (50,)
    assert env.observation_names[-2:] == ("gait_clock/sin", "gait_clock/cos")
    obs, info = env.reset(seed=3)
    phases = [math.atan2(obs[-2], obs[-1])]
    for _ in range(20):
        obs, *_ , info = env.step(np.zeros(12))
        # DR adds observation noise to the sensors, never to the controller's own clock.
        np.testing.assert_array_equal(obs[-2:], info["privileged_obs"][48:50])
        assert obs[-2] ** 2 + obs[-1] ** 2 == pytest.approx(1.0, abs=1e-6)
        phases.append(math.atan2(obs[-2], obs[-1]))
    steps = np.diff(np.unwrap(phases))
    np.testing.assert_allclose(steps, 2 * math.pi * 2.5 * env.control_dt, atol=1e-6)
    # Sensor noise still reaches the sensors: the gyro differs from the clean one.
    assert not np.array_equal(obs[:3], info["privileged_obs"][:3])


def test_each_episode_starts_at_a_random_phase() -> None:
    env = make()
    starts = {round(float(env.reset(seed=seed)[0][-2]), 6) for seed in range(5)}
    assert len(starts) == 5


def test_the_trot_alternates_diagonal_pairs_and_fades_out_when_told_to_stand() -> None:
    env = make()
    prior = env.action_prior
    assert prior is not None
    obs = np.zeros(env.observation_space.shape, np.float32)
    sin, cos = env.observation_names.index("gait_clock/sin"), env.observation_names.index("gait_clock/cos")
    vx = env.observation_names.index("command/vx")
    obs[vx] = 0.5
    obs[sin], obs[cos] = 1.0, 0.0  # top of pair 0's swing: FR and RL lift their feet
    action = prior(obs)
    knees = {name: action[i] for i, name in enumerate(consts.ACTUATOR_NAMES) if name.endswith("calf")}
    assert knees == {"FR_calf": pytest.approx(-0.9), "FL_calf": 0.0, "RR_calf": 0.0, "RL_calf": pytest.approx(-0.9)}
    obs[sin], obs[cos] = -1.0, 0.0  # half a period later: the other pair
    knees = {name: prior(obs)[i] for i, name in enumerate(consts.ACTUATOR_NAMES) if name.endswith("calf")}
    assert knees == {"FR_calf": 0.0, "FL_calf": pytest.approx(-0.9), "RR_calf": pytest.approx(-0.9), "RL_calf": 0.0}
    obs[vx] = 0.05  # half of stand_below: half the swing
    assert prior(obs).min() == pytest.approx(-0.45)
    obs[vx] = 0.0
    np.testing.assert_array_equal(prior(obs), np.zeros(12))
    # Batched, as a policy sees it.
    assert prior(np.stack([obs, obs])).shape == (2, 12)


@pytest.mark.parametrize("seed", range(3))
def test_the_suggested_trot_alone_steps_without_falling(seed: int) -> None:
    """Open loop, DR on: the prior by itself lifts every foot off the ground and keeps the
    robot up for 4 s (what a policy starting from it starts from)."""
    env = make()
    obs, _ = env.reset(seed=seed, options={"command": (0.5, 0.0, 0.0)})
    lifted = np.zeros(4, dtype=bool)
    for _ in range(200):
        obs, _, terminated, _, _ = env.step(env.action_prior(obs))
        assert not terminated
        lifted |= env.foot_contact_forces() < consts.CONTACT_FORCE_THRESHOLD
    assert lifted.all()
    # Told to stand, it suggests nothing: the feet stay down.
    obs, _ = env.reset(seed=seed, options={"command": (0.0, 0.0, 0.0)})
    np.testing.assert_array_equal(env.action_prior(obs), np.zeros(12))


def test_prior_round_trips_through_json_and_rejects_bad_input() -> None:
    prior = make().action_prior
    assert prior is not None
    assert ActionPrior.from_dict(prior.to_dict()) == prior
    with pytest.raises(ValueError, match="unknown keys"):
        ActionPrior.from_dict({**prior.to_dict(), "swing_2": []})
    with pytest.raises(ValueError, match="swing_1 must have one entry per action"):
        dataclasses.replace(prior, swing_1=(0.0,))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gait.frequency_hz=-1", "GaitConfig.frequency_hz must be a finite number >= 0"),
        ("gait.knee=-1.5", r"GaitConfig.knee must be in \[-1, 1\]"),
        ("gait.stand_below=0", "GaitConfig.stand_below must be a finite number > 0"),
    ],
)
def test_gait_config_errors_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task_config(ENV_ID, [override])


STEERING = [  # docs/results.md (G2): the open-loop trot that follows a joystick
    REV1, "gait.frequency_hz=4", "gait.knee=1", "gait.thigh=0", "gait.forward_gain=0.8", "gait.sideways_gain=2.2",
    "gait.sideways_phase=3.14159", "gait.turn_gain=-0.7", "action_scale=0.4", "abduction_action_scale=0.2",
]


@pytest.mark.parametrize("command", [(0.5, 0, 0), (-0.5, 0, 0), (0, 0.4, 0), (0, -0.4, 0), (0, 0, 0.8), (0, 0, -0.8)],
                         ids=["forward", "backward", "left", "right", "turn-left", "turn-right"])
def test_the_steering_trot_alone_goes_where_it_is_told(command: tuple[float, float, float]) -> None:
    """Open loop, DR off: the steering terms move the trunk the commanded way at more than
    half the commanded speed (a policy on top of it fine-tunes from there)."""
    env = QuadrupedJoystickEnv(config=task_config(ENV_ID, STEERING), domain_randomization=False)
    obs, _ = env.reset(seed=0, options={"command": command})
    velocities = []
    for step in range(200):
        obs, _, terminated, _, _ = env.step(env.action_prior(obs))
        assert not terminated
        if step >= 50:
            velocities.append((*env.heading_frame_velocity()[:2], env.world_yaw_rate()))
    measured = np.mean(velocities, axis=0)
    k = int(np.argmax(np.abs(command)))
    assert measured[k] * np.sign(command[k]) > 0.5 * abs(command[k]), measured


def test_steering_vanishes_without_a_command_and_touches_only_its_joints() -> None:
    prior = QuadrupedJoystickEnv(config=task_config(ENV_ID, STEERING)).action_prior
    assert prior is not None and prior.steer_sin
    kinds = [name.split("_", 1)[1] for name in consts.ACTUATOR_NAMES]
    forward, sideways, turn = (np.abs(np.asarray(prior.steer_sin[k]) + np.abs(prior.steer_cos[k])) for k in range(3))
    assert {kinds[i] for i in np.flatnonzero(forward)} == {"thigh"}
    assert {kinds[i] for i in np.flatnonzero(sideways)} == {"hip"} == {kinds[i] for i in np.flatnonzero(turn)}
    obs = np.zeros(50)
    obs[-2], obs[-1] = 0.6, 0.8
    np.testing.assert_array_equal(prior(obs), np.zeros(12))
    with pytest.raises(ValueError, match=r"steer_sin must be empty or, with a command, 3 rows"):
        dataclasses.replace(prior, steer_sin=prior.steer_sin[:2])


def test_gait_deviation_is_the_distance_of_the_action_from_the_suggested_trot() -> None:
    env = QuadrupedJoystickEnv(config=task_config(ENV_ID, [*STEERING, "rewards.gait_deviation=-0.1"]))
    obs, _ = env.reset(seed=0, options={"command": (0.3, 0.2, 0.4)})
    # The clock and the command carry no noise: the prior of the observation is exact.
    obs, _, _, _, info = env.step(env.action_prior(obs))
    assert info["reward_terms"]["gait_deviation"] == pytest.approx(0.0, abs=1e-9)  # float32 observation
    suggested = env.action_prior(obs)
    assert np.abs(suggested).max() > 0.2
    action = np.clip(suggested + 0.5, -1, 1)
    _, _, _, _, info = env.step(action)
    expected = -0.1 * float((action - suggested) @ (action - suggested))
    assert expected < -0.1 and info["reward_terms"]["gait_deviation"] == pytest.approx(expected)
    # Without a clock there is nothing to deviate from.
    plain = QuadrupedJoystickEnv(config=task_config(ENV_ID, ["gait.frequency_hz=0", "rewards.gait_deviation=-0.1"]))
    plain.reset(seed=0)
    assert plain.step(np.ones(12))[4]["reward_terms"]["gait_deviation"] == 0.0


def test_the_task_trots_by_default_and_its_first_revision_did_not() -> None:
    """Revision 2 of the defaults is the shipped recipe's task: the steering trot and its
    action scales are the default; revision 1 had no clock. A bare GaitConfig is off."""
    default, steering = task_config(ENV_ID), task_config(ENV_ID, STEERING)
    assert default.defaults_revision == 2 and default.gait == steering.gait
    assert (default.action_scale, default.abduction_action_scale) == (steering.action_scale, steering.abduction_action_scale)
    assert QuadrupedJoystickConfig() == default
    assert not task_config(ENV_ID, [REV1]).gait.enabled
    assert not GaitConfig().enabled and GaitConfig(frequency_hz=2.5).enabled
