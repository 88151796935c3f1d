"""The quadruped: standing, sensors, PD actuation and domain randomization (real physics)."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from sim2real.robots.quadruped import constants as consts
from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig, QuadrupedJoystickEnv
from sim2real.robots.quadruped.randomize import QuadrupedRandomization
from sim2real.robots.randomization import IntUniform, InvalidRangeError, Uniform
from sim2real.robots.registry import task_config

GO1_TORQUE_LIMITS = np.tile([23.7, 23.7, 35.55], 4)
GO1_DEFAULT_POSE = np.tile([0.0, 0.9, -1.8], 4)
REV1 = "defaults_revision=1"
"""These tests check each mechanism against the task's first defaults (at rest, one
command per episode, no gait clock): robots/quadruped/joystick.py, REVISION_OVERRIDES."""


def make(dr: bool = True, **randomization: object) -> QuadrupedJoystickEnv:
    config = dataclasses.replace(
        task_config("sim2real/QuadrupedJoystick-v0", [REV1]),
        randomization=dataclasses.replace(QuadrupedRandomization(), enabled=dr, **randomization),
    )
    return QuadrupedJoystickEnv(config=config)


def test_model_matches_go1_numbers() -> None:
    env = make(dr=False)
    m = env.model
    trunk = env._ids.trunk_body
    assert m.body_mass[trunk] == pytest.approx(5.204)
    assert m.body_subtreemass[trunk] == pytest.approx(12.74, abs=0.02)
    assert m.opt.timestep <= 0.002 and env.n_substeps * m.opt.timestep == pytest.approx(0.02)
    # Menagerie go1 forcerange, Playground go1 gains (docs/robot_facts.md)
    np.testing.assert_allclose(np.abs(m.actuator_forcerange[:, 1]), GO1_TORQUE_LIMITS)
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], 35.0)
    np.testing.assert_allclose(-m.actuator_biasprm[:, 2], 0.5)
    np.testing.assert_allclose(env.default_pose, GO1_DEFAULT_POSE)  # Menagerie keyframe "home"
    env.close()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dr", [False, True], ids=["no-dr", "dr"])
def test_stands_for_five_seconds_holding_the_default_pose(seed: int, dr: bool) -> None:
    env = make(dr=dr)
    env.reset(seed=seed)
    for _ in range(250):  # 5 s at 50 Hz
        _, _, terminated, truncated, _ = env.step(np.zeros(12))
        assert not terminated and not truncated
    assert env.trunk_height() > 0.2
    assert env.upvector()[2] > 0.95
    assert np.all(env.foot_contact_forces() > consts.CONTACT_FORCE_THRESHOLD)
    env.close()


def test_sensors_read_physical_values_at_rest() -> None:
    env = make(dr=False)
    env.reset(seed=0)
    for _ in range(100):
        env.step(np.zeros(12))
    # At rest the accelerometer reads the reaction to gravity, in the trunk frame.
    np.testing.assert_allclose(env.accelerometer(), -9.81 * env.projected_gravity(), atol=0.05)
    np.testing.assert_allclose(env.projected_gravity(), [0, 0, -1], atol=0.08)
    np.testing.assert_allclose(env.gyro(), 0, atol=0.02)
    # The feet carry the robot's weight (12.74 kg).
    assert env.foot_contact_forces().sum() == pytest.approx(12.74 * 9.81, rel=0.05)
    env.close()


def test_torques_respect_the_motor_limits() -> None:
    env = make(dr=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        env.step(rng.choice([-1.0, 1.0], 12))
        assert np.all(np.abs(env.joint_torques()) <= env.robot.torque_limits + 1e-9)
    env.close()


def test_motors_apply_the_pd_law_with_torque_limits() -> None:
    env = make(dr=True, kp_scale=Uniform(1.1, 1.1), kd_scale=Uniform(0.9, 0.9))
    env.reset(seed=0)
    action = np.zeros(12)
    action[2] = 0.4  # FR knee target 0.2 rad above the default pose
    for _ in range(5):
        env.step(action)
    mujoco.mj_forward(env.model, env.data)  # forces at the current state, not the last substep's
    target = env.data.ctrl
    expected = 1.1 * env.robot.kp * (target - env.joint_pos()) - 0.9 * env.robot.kd * env.joint_vel()
    expected = np.clip(expected, -env.robot.torque_limits, env.robot.torque_limits)
    np.testing.assert_allclose(env.joint_torques(), expected, rtol=1e-9, atol=1e-9)
    assert target[2] == pytest.approx(env.default_pose[2] + env.config.action_scale * 0.4)
    env.close()


def test_sampled_randomization_lies_in_its_ranges() -> None:
    ranges = QuadrupedRandomization()
    env = make(dr=True)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        dr = info["dr"]
        for name in ("floor_friction", "link_mass_scale", "trunk_added_mass", "trunk_com_offset",
                     "joint_damping_scale", "armature_scale", "frictionloss_scale", "kp_scale",
                     "kd_scale", "latency_steps"):
            assert getattr(ranges, name).contains(dr[name]), f"{name}={dr[name]}"
        # ...and is what the physics uses.
        ids = env._ids
        assert env.model.geom_friction[ids.floor_geom, 0] == dr["floor_friction"]
        np.testing.assert_allclose(
            env.model.actuator_gainprm[ids.actuators, 0], env.robot.kp * dr["kp_scale"]
        )
        np.testing.assert_allclose(
            env.model.body_mass[ids.trunk_body], env.robot.base_mass + dr["trunk_added_mass"]
        )
    env.close()


def test_randomization_never_compounds_and_off_restores_nominal() -> None:
    env = make(dr=True)
    nominal_mass = env._nominal.body_mass.copy()
    for seed in range(10):
        env.reset(seed=seed)
    _, info = env.reset(seed=3)
    again = make(dr=True)
    _, info_fresh = again.reset(seed=3)
    np.testing.assert_array_equal(env.model.body_mass, again.model.body_mass)
    assert info["dr"]["floor_friction"] == info_fresh["dr"]["floor_friction"]
    off = make(dr=False)
    off.reset(seed=3)
    np.testing.assert_array_equal(off.model.body_mass, nominal_mass)
    for e in (env, again, off):
        e.close()


def _trajectory(env: QuadrupedJoystickEnv, seed: int) -> np.ndarray:
    env.reset(seed=seed)
    rng = np.random.default_rng(0)
    states = []
    for _ in range(60):
        env.step(rng.uniform(-1, 1, 12))
        states.append(env.data.qpos.copy())
    return np.array(states)


def test_friction_changes_the_physics() -> None:
    slippery = make(dr=True, floor_friction=Uniform(0.4, 0.4))
    grippy = make(dr=True, floor_friction=Uniform(1.0, 1.0))
    a, b = _trajectory(slippery, seed=1), _trajectory(grippy, seed=1)
    # Same seed, same actions, same everything but friction: different trajectories.
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a, _trajectory(slippery, seed=1))


def test_latency_delays_the_command_by_whole_control_steps() -> None:
    action = np.full(12, 0.5)
    for latency in (0, 2):
        env = make(dr=True, latency_steps=IntUniform(latency, latency))
        env.reset(seed=0)
        targets = []
        for _ in range(3):
            env.step(action)
            targets.append(env.data.ctrl.copy())
        moved = [not np.allclose(t, env.default_pose) for t in targets]
        assert moved == [i >= latency for i in range(3)], f"latency {latency}: {moved}"
        env.close()


def test_pushes_kick_the_trunk() -> None:
    def trunk_velocities(push_speed: float) -> np.ndarray:
        env = make(dr=True, push_interval_s=Uniform(0.1, 0.1),
                   push_velocity=Uniform(push_speed, push_speed))
        env.reset(seed=0)
        velocities = []
        for _ in range(8):
            env.step(np.zeros(12))
            velocities.append(env.data.qvel[:2].copy())
        env.close()
        return np.array(velocities)

    # Identical episodes but for the push: the trunk velocity jumps by the push speed.
    kick = np.linalg.norm(trunk_velocities(0.5) - trunk_velocities(0.0), axis=1)
    assert kick[:4].max() < 1e-12  # first push after 0.1 s = 5 control steps
    assert kick.max() > 0.3


def test_observation_noise_only_with_randomization() -> None:
    for dr in (True, False):
        env = make(dr=dr)
        obs, info = env.reset(seed=0)
        clean = info["privileged_obs"][: obs.shape[0]]
        assert np.allclose(obs, clean) is (not dr)
        env.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("floor_friction", Uniform(1.0, 0.4), r"floor_friction: low must be <= high"),
        ("floor_friction", Uniform(-0.1, 0.4), r"floor_friction: values must be > 0"),
        ("link_mass_scale", Uniform(-0.5, 1.0), r"link_mass_scale: values must be > 0"),
        ("latency_steps", IntUniform(-1, 1), r"latency_steps: values must be >= 0"),
        ("latency_steps", IntUniform(0, 1.5), r"latency_steps.high must be an integer"),  # type: ignore[arg-type]
        ("kp_scale", Uniform(float("nan"), 1.0), r"kp_scale.low must be finite"),
        ("gyro_noise", -0.1, r"gyro_noise must be a finite number >= 0"),
    ],
)
def test_invalid_ranges_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidRangeError, match=message) as err:
        QuadrupedRandomization(**{field: value})
    assert f"QuadrupedRandomization.{field}" in str(err.value)


@pytest.mark.parametrize(("robot", "low", "message"), [
    ("go1", -6.0, r"trunk_added_mass: values must be > -5.204 \(the go1 trunk's mass"),
    ("a1", -4.8, r"trunk_added_mass: values must be > -4.713 \(the a1 trunk's mass"),
])
def test_trunk_mass_range_is_bounded_by_the_robots_own_trunk(robot: str, low: float, message: str) -> None:
    config = dataclasses.replace(
        task_config("sim2real/QuadrupedJoystick-v0", [f"robot={robot}"]),
        randomization=QuadrupedRandomization(trunk_added_mass=Uniform(low, 0.0)),
    )
    with pytest.raises(InvalidRangeError, match=message):
        QuadrupedJoystickEnv(config=config)


def test_invalid_task_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"QuadrupedJoystickConfig.action_scale must be > 0, got 0"):
        QuadrupedJoystickConfig(action_scale=0.0)
    with pytest.raises(InvalidRangeError, match=r"CommandRanges.lin_vel_x: low must be <= high"):
        from sim2real.robots.quadruped.joystick import CommandRanges

        CommandRanges(lin_vel_x=Uniform(1.0, -1.0))


def test_nonnegative_reward_lifts_a_negative_sum_to_zero_as_a_named_term() -> None:
    from sim2real.robots.registry import task_config

    # A large torque cost makes every step's sum negative while the robot holds its pose.
    overrides = ["rewards.torques=-1.0", "nonnegative_reward=true"]
    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, *overrides]),
                               domain_randomization=False)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, _, _, info = env.step(np.zeros(12))
        terms = info["reward_terms"]
        assert reward == 0.0
        assert terms["nonnegative_clip"] > 0
        assert sum(terms.values()) == pytest.approx(reward, abs=1e-12)
    env.close()
    plain = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, *overrides[:1]]),
                                 domain_randomization=False)
    plain.reset(seed=0)
    _, reward, _, _, info = plain.step(np.zeros(12))
    assert reward < 0 and "nonnegative_clip" not in info["reward_terms"]
    plain.close()


def test_pose_and_stand_still_terms_measure_the_distance_to_the_home_pose() -> None:
    from sim2real.robots.registry import task_config

    overrides = ["rewards.pose=1.0", "rewards.stand_still=-1.0", "init_joint_noise=0.0"]
    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, *overrides]),
                               domain_randomization=False)
    env.reset(seed=0, options={"command": (0.0, 0.0, 0.0)})
    _, _, _, _, info = env.step(np.zeros(12))
    q_err = env.joint_pos() - env.default_pose
    w = np.tile([1.0, 1.0, 0.1], 4)
    assert info["reward_terms"]["pose"] == pytest.approx(np.exp(-np.sum(w * q_err**2)))
    assert info["reward_terms"]["stand_still"] == pytest.approx(-np.abs(q_err).sum())
    # Bent knees: the pose reward drops; with a walking command stand_still is off.
    env.reset(seed=0, options={"command": (0.5, 0.0, 0.0)})
    for _ in range(25):
        _, _, _, _, info = env.step(np.tile([0.0, 0.0, 1.0], 4))
    assert info["reward_terms"]["pose"] < 0.95
    assert info["reward_terms"]["stand_still"] == 0.0
    env.close()


def test_observe_linear_velocity_appends_the_noisy_estimate() -> None:
    from sim2real.robots.registry import task_config

    config = task_config("sim2real/QuadrupedJoystick-v0", [REV1, *["observe_linear_velocity=true"]])
    env = QuadrupedJoystickEnv(config=config, domain_randomization=False)
    assert env.observation_space.shape == (48,)
    assert env.observation_names[-3:] == ("linvel_estimate/x", "linvel_estimate/y", "linvel_estimate/z")
    assert env.deployment_spec.observation_names == env.observation_names
    env.reset(seed=0)
    for _ in range(10):
        obs, _, _, _, _ = env.step(np.full(12, 0.3))
    np.testing.assert_allclose(obs[-3:], env.local_linvel(), atol=1e-6)  # no DR: exact
    env.close()
    noisy = QuadrupedJoystickEnv(config=config, domain_randomization=True)
    noisy.reset(seed=0)
    obs, _, _, _, _ = noisy.step(np.zeros(12))
    error = obs[-3:] - noisy.local_linvel()
    assert np.all(np.abs(error) <= 0.1 + 1e-6) and np.any(np.abs(error) > 1e-4)
    noisy.close()
    # Off (revision 1's default), the observation is the 45 entries the docstring lists.
    assert make(dr=False).observation_space.shape == (45,)


def test_command_components_are_zeroed_with_their_probabilities() -> None:
    from sim2real.robots.registry import task_config

    overrides = ["commands.zero_probability=0", "commands.lin_vel_x_zero_probability=0.1",
                 "commands.lin_vel_y_zero_probability=0.75", "commands.yaw_rate_zero_probability=0.5"]
    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, *overrides]))
    commands = np.array([env.reset(seed=seed)[1]["command"] for seed in range(400)])
    zero_share = (commands == 0.0).mean(axis=0)
    np.testing.assert_allclose(zero_share, [0.1, 0.75, 0.5], atol=0.07)
    default = make(dr=False)  # revision 1: only whole commands are zeroed
    commands = np.array([default.reset(seed=seed)[1]["command"] for seed in range(200)])
    assert ((commands == 0.0).all(axis=1).mean()) == pytest.approx(0.1, abs=0.05)
    assert ((commands == 0.0).sum(axis=1) == 1).sum() == 0  # no single component zeroed
    env.close()
    default.close()


def test_abduction_action_scale_narrows_only_the_abduction_joints() -> None:
    from sim2real.robots.registry import task_config

    overrides = ["action_scale=0.4", "abduction_action_scale=0.2"]
    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, *overrides]),
                               domain_randomization=False)
    env.reset(seed=0)
    env.step(np.ones(12))
    targets = env.data.ctrl[env._actuator_ids]
    expected = env.default_pose + np.tile([0.2, 0.4, 0.4], 4)
    np.testing.assert_allclose(targets, expected)
    # The deployed law (ONNX metadata, controllers) is the same per-joint one.
    np.testing.assert_allclose(env.deployment_spec.joint_targets(np.ones(12)), expected)
    assert env.deployment_spec.action_scales == (0.2, 0.4, 0.4) * 4
    env.close()


def test_init_base_velocity_starts_episodes_moving_within_the_range() -> None:
    from sim2real.robots.registry import task_config

    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, "init_base_velocity=0.5"]),
                               domain_randomization=False)
    velocities = []
    for seed in range(20):
        env.reset(seed=seed)
        velocities.append(env.data.qvel[env._root_qvel : env._root_qvel + 6].copy())
    velocities = np.array(velocities)
    assert np.all(np.abs(velocities) <= 0.5) and np.abs(velocities).max() > 0.3
    env.close()
    still = make(dr=False)  # revision 1: episodes start at rest
    still.reset(seed=0)
    np.testing.assert_array_equal(still.data.qvel[still._root_qvel : still._root_qvel + 6], 0.0)
    still.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"command_resample_s": -1.0}, r"command_resample_s must be a finite number >= 0 .*got -1.0"),
        ({"init_base_velocity": float("nan")}, r"init_base_velocity must be a finite number >= 0, got nan"),
        ({"abduction_action_scale": -0.1}, r"abduction_action_scale must be >= 0 \(0: action_scale\), got -0.1"),
    ],
)
def test_new_task_options_refuse_bad_values_naming_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuadrupedJoystickConfig(**overrides)


def test_command_zero_probabilities_must_be_probabilities() -> None:
    from sim2real.robots.quadruped.joystick import CommandRanges

    with pytest.raises(InvalidRangeError, match=r"CommandRanges.lin_vel_y_zero_probability must be in \[0, 1\], got 1.5"):
        CommandRanges(lin_vel_y_zero_probability=1.5)


def test_feet_air_time_pays_capped_swing_time_minus_the_target_at_touchdown() -> None:
    from sim2real.robots.quadruped.joystick import feet_air_time_reward

    air = np.array([0.3, 2.0, 0.05, 0.4])
    down = np.array([True, True, True, False])
    # 0.3 - 0.1, min(2.0, 0.5) - 0.1, 0.05 - 0.1; the foot still in the air earns nothing.
    assert feet_air_time_reward(air, down, 0.1, 0.5) == pytest.approx(0.2 + 0.4 - 0.05)
    assert feet_air_time_reward(air, down, 0.1, np.inf) == pytest.approx(0.2 + 1.9 - 0.05)
    with pytest.raises(ValueError, match=r"air_time_max must be >= air_time_target, got 0.05"):
        QuadrupedJoystickConfig(air_time_max=0.05)


def test_a_foot_held_up_for_seconds_earns_no_more_than_the_cap() -> None:
    from sim2real.robots.registry import task_config

    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [REV1, *["rewards.feet_air_time=1.0"]]),
                               domain_randomization=False)
    env.reset(seed=0, options={"command": (0.5, 0.0, 0.0)})
    for _ in range(10):  # settle: all four feet on the ground
        env.step(np.zeros(12))
    assert (env.foot_contact_forces() > consts.CONTACT_FORCE_THRESHOLD).all()
    env._air_time[:] = [3.0, 0.0, 0.0, 0.0]  # as if the first foot had just come down after 3 s
    _, _, _, _, info = env.step(np.zeros(12))
    assert info["reward_terms"]["feet_air_time"] == pytest.approx(0.5 - 0.1)
    # Standing command: no reward for stepping, however long the swing.
    env.reset(seed=0, options={"command": (0.0, 0.0, 0.0)})
    for _ in range(10):
        env.step(np.zeros(12))
    env._air_time[:] = [3.0, 0.0, 0.0, 0.0]
    _, _, _, _, info = env.step(np.zeros(12))
    assert info["reward_terms"]["feet_air_time"] == 0.0
    env.close()
