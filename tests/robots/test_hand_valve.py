"""The valve task: contact at reset, the turn reward and its direction, DR (real physics)."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from sim2real.robots.hand import constants as consts
from sim2real.robots.hand.randomize import ValveRandomization
from sim2real.robots.hand.valve_turn import HandValveTurnConfig, HandValveTurnEnv
from sim2real.robots.randomization import IntUniform, InvalidRangeError, Uniform

VALVE_GEOMS = set(consts.VALVE_GEOMS)


def make(dr: bool = True, **randomization: object) -> HandValveTurnEnv:
    config = HandValveTurnConfig(
        randomization=dataclasses.replace(ValveRandomization(), enabled=dr, **randomization)
    )
    return HandValveTurnEnv(config=config)


def obs_index(env: HandValveTurnEnv, name: str) -> int:
    return env.observation_names.index(name)


def test_model_and_episode_numbers() -> None:
    env = make(dr=False)
    m = env.model
    assert env.action_space.shape == (16,)
    assert env.observation_space.shape == (54,)
    assert env.control_dt == pytest.approx(0.05)  # 20 Hz policy, as the cube task
    assert env.config.episode_steps * env.control_dt == pytest.approx(20.0)
    hinge = env._id(mujoco.mjtObj.mjOBJ_JOINT, consts.VALVE_JOINT)
    assert m.jnt_type[hinge] == mujoco.mjtJoint.mjJNT_HINGE
    env.reset(seed=0)
    # The axle is vertical in the world, whatever the palm's tilt.
    axis_world = env.data.xaxis[hinge]
    np.testing.assert_allclose(axis_world, [0.0, 0.0, 1.0], atol=1e-12)
    assert m.body_mass[env._ids.valve_body] == pytest.approx(0.08)
    valve = env._ids.valve_body
    hand_mass = sum(m.body_mass[b] for b in range(1, m.nbody) if b != valve)
    assert hand_mass == pytest.approx(0.746, abs=0.01)  # the same hand as the cube task
    env.close()


@pytest.mark.parametrize("dr", [False, True], ids=["no-dr", "dr"])
def test_every_episode_starts_with_fingertips_on_the_valve(dr: bool) -> None:
    env = make(dr=dr)
    for seed in range(20):
        _, info = env.reset(seed=seed)
        # Read the contacts MuJoCo found after the reset's settling (data.contact).
        pairs = env.valve_contacts()
        assert pairs, f"seed {seed}: no hand-valve contact"
        assert all(valve_geom in VALVE_GEOMS for _, valve_geom in pairs)
        tips = {hand for hand, _ in pairs if hand in consts.FINGERTIP_GEOMS}
        assert {"if_tip", "rf_tip"} <= tips, f"seed {seed}: fingertips in contact {tips}"
        # The touch sensors agree: the index and ring fingertips press on the spokes.
        forces = dict(zip(consts.TIP_NAMES, env.fingertip_contact_forces(), strict=True))
        assert forces["if"] > 0.1 and forces["rf"] > 0.1, forces
        count = info["privileged_obs"][env.privileged_observation_names.index("valve_contacts/count")]
        assert count == len(pairs)
        # Settled: the knob is at rest between the two fingertips.
        assert abs(env.valve_angvel()) < 0.05
    env.close()


def test_zero_action_holds_the_valve_and_scores_about_zero() -> None:
    env = make(dr=True)
    for seed in range(3):
        env.reset(seed=seed)
        start = env.valve_angle()
        rewards, terms = [], {"turn": 0.0, "energy": 0.0, "action_rate": 0.0}
        for _ in range(env.config.episode_steps):
            _, reward, terminated, truncated, info = env.step(np.zeros(16))
            rewards.append(reward)
            for name, value in info["reward_terms"].items():
                terms[name] += value
            assert not terminated
        assert truncated  # 20 s, then the episode is cut
        assert terms["action_rate"] == 0.0
        # The pinched knob creeps by hundredths of a radian at most in 20 s.
        assert abs(env.valve_angle() - start) < 0.1
        assert abs(np.mean(rewards)) < 0.005, (seed, np.mean(rewards), terms)
        assert len(env.valve_contacts()) >= 2  # still held at the end
    env.close()


def test_regularizers_are_small_next_to_turning() -> None:
    env = make(dr=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    costs = []
    for _ in range(200):
        _, _, _, _, info = env.step(env.action_space.sample())
        terms = info["reward_terms"]
        costs.append(terms["energy"] + terms["action_rate"])
    # Uniform random actions, the most a policy could chatter, cost under a tenth of what
    # a 1 rad/s turn earns per step.
    assert -0.1 < np.mean(costs) < 0.0
    assert env.config.rewards.turn * 1.0 > 10 * -np.mean(costs)
    env.close()


def test_turn_term_is_the_clipped_rate_in_the_commanded_direction() -> None:
    env = make(dr=False)
    weight, clip = env.config.rewards.turn, env.config.turn_clip
    dof = env._ids.valve_dof
    for direction in (1, -1):
        env.reset(seed=0, options={"direction": direction})
        for rate in (0.5, -0.3, 5.0, -5.0):
            env.data.qvel[dof] = rate
            mujoco.mj_forward(env.model, env.data)
            terms = env._reward_terms(np.zeros(16))
            expected = min(max(direction * rate, -clip), clip)
            assert terms["turn"] == pytest.approx(weight * expected, rel=1e-9)
    env.close()


@pytest.mark.parametrize("direction", [1, -1], ids=["ccw", "cw"])
def test_driving_the_valve_pays_only_in_the_commanded_direction(direction: int) -> None:
    """Turn the valve kinematically through whole env steps: a flywheel on the hinge (huge
    armature) keeps the velocity we set against the fingers, so the step's physics,
    sensor and reward run as in training."""
    env = make(dr=False)
    clip = env.config.turn_clip
    dof = env._ids.valve_dof
    for rate in (0.8, -0.8):
        obs, _ = env.reset(seed=1, options={"direction": direction})
        assert obs[obs_index(env, "command/direction")] == direction
        env.model.dof_armature[dof] = 1e3
        env.model.dof_frictionloss[dof] = 0.0
        env.model.dof_damping[dof] = 0.0
        env.data.qvel[dof] = rate
        start = env.valve_angle()
        turn = []
        for _ in range(10):
            obs, reward, _, _, info = env.step(np.zeros(16))
            turn.append(info["reward_terms"]["turn"])
            assert obs[obs_index(env, "valve_angvel/z")] == pytest.approx(rate, rel=1e-3)
        # Sensors are read before the last physics substep integrates: one 5 ms substep of
        # lag, 4 mrad at this rate.
        assert env.valve_angle() - start == pytest.approx(rate * 10 * env.control_dt, abs=5e-3)
        expected = min(max(direction * rate, -clip), clip)
        np.testing.assert_allclose(turn, expected, rtol=1e-3)
        assert np.sign(np.mean(turn)) == direction * np.sign(rate)
    env.close()


def test_direction_is_sampled_per_episode_and_can_be_pinned() -> None:
    env = make(dr=True)
    index = obs_index(env, "command/direction")
    drawn = set()
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        assert env.direction in (1, -1)
        assert obs[index] == env.direction
        drawn.add(env.direction)
    assert drawn == {1, -1}
    for direction in (1, -1):
        for seed in range(5):
            obs, info = env.reset(seed=seed, options={"direction": direction})
            assert env.direction == direction and obs[index] == direction
            privileged = info["privileged_obs"]
            assert privileged[env.privileged_observation_names.index("command/direction")] == direction
            _, _, _, _, info = env.step(np.zeros(16))
            assert info["privileged_obs"][env.privileged_observation_names.index(
                "command/direction")] == direction
    # Pinning changes the command only: the rest of the episode is the seed's.
    obs_ccw, _ = env.reset(seed=4, options={"direction": 1})
    obs_cw, _ = env.reset(seed=4, options={"direction": -1})
    keep = np.arange(len(obs_ccw)) != index
    np.testing.assert_array_equal(obs_ccw[keep], obs_cw[keep])
    # Unpinned (None or no options) the seed decides, the same way both times.
    a, _ = env.reset(seed=4, options={"direction": None})
    b, _ = env.reset(seed=4)
    np.testing.assert_array_equal(a, b)
    env.close()


@pytest.mark.parametrize("bad", [0, 2, 0.5, "ccw", True])
def test_a_bad_pinned_direction_is_refused(bad: object) -> None:
    env = make(dr=False)
    with pytest.raises(ValueError, match=r"options\['direction'\] must be \+1 .* or -1"):
        env.reset(seed=0, options={"direction": bad})
    env.close()


def test_observation_is_the_noise_free_state_without_dr() -> None:
    env = make(dr=False)
    obs, info = env.reset(seed=2)
    for _ in range(5):
        obs, _, _, _, info = env.step(np.full(16, 0.3))
    privileged = info["privileged_obs"]
    np.testing.assert_array_equal(obs, privileged[: len(obs)])
    names = env.observation_names
    angle = env.valve_angle()
    np.testing.assert_allclose(obs[names.index("valve_angle/sin")], np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(obs[names.index("valve_angle/cos")], np.cos(angle), atol=1e-6)
    np.testing.assert_allclose(obs[names.index("valve_spoke_phase/sin")], np.sin(3 * angle), atol=1e-6)
    np.testing.assert_allclose(obs[names.index("valve_angvel/z")], env.valve_angvel(), atol=1e-6)
    np.testing.assert_allclose(obs[names.index("joint_vel/if_mcp")], env.joint_vel()[0], atol=1e-6)
    np.testing.assert_allclose(obs[names.index("last_action/th_ipl")], 0.3, atol=1e-6)
    env.close()


def test_observation_noise_has_the_configured_amplitude() -> None:
    env = make(dr=True)
    env.reset(seed=0)
    n_obs = env.observation_space.shape[0]
    errors = []
    for _ in range(100):
        obs, _, _, _, info = env.step(np.zeros(16))
        errors.append(obs - info["privileged_obs"][:n_obs])
    err = np.abs(np.array(errors))
    names = env.observation_names
    dr = env.config.randomization
    joint_pos = [i for i, n in enumerate(names) if n.startswith("joint_pos/")]
    joint_vel = [i for i, n in enumerate(names) if n.startswith("joint_vel/")]
    assert 0.5 * dr.joint_pos_noise < err[:, joint_pos].max() <= dr.joint_pos_noise + 1e-6
    assert 0.5 * dr.joint_vel_noise < err[:, joint_vel].max() <= dr.joint_vel_noise + 1e-6
    rate = names.index("valve_angvel/z")
    assert 0.5 * dr.valve_vel_noise < err[:, rate].max() <= dr.valve_vel_noise + 1e-6
    # sin/cos of an angle off by at most a: each moves by at most a.
    angle = [names.index("valve_angle/sin"), names.index("valve_angle/cos")]
    assert err[:, angle].max() <= dr.valve_angle_noise + 1e-6
    # The command and the previous action are the policy's own: never noisy.
    assert err[:, names.index("command/direction")].max() == 0.0
    env.close()


def test_sampled_randomization_lies_in_its_ranges_and_reaches_the_physics() -> None:
    ranges = ValveRandomization()
    env = make(dr=True)
    ids = env._ids
    nominal = env._nominal
    for seed in range(10):
        _, info = env.reset(seed=seed)
        dr = info["dr"]
        for f in dataclasses.fields(ranges):
            value = getattr(ranges, f.name)
            if isinstance(value, (Uniform, IntUniform)):
                assert value.contains(dr[f.name]), f"{f.name}={dr[f.name]}"
        m = env.model
        np.testing.assert_allclose(m.geom_friction[ids.fingertip_geoms, 0], dr["fingertip_friction"])
        np.testing.assert_allclose(m.dof_frictionloss[ids.valve_dof], dr["valve_friction"])
        np.testing.assert_allclose(m.dof_damping[ids.valve_dof], dr["valve_damping"])
        np.testing.assert_allclose(m.body_mass[ids.valve_body], 0.08 * dr["valve_mass_scale"])
        np.testing.assert_allclose(
            m.geom_size[ids.valve_geoms], nominal.geom_size[ids.valve_geoms] * dr["valve_size_scale"]
        )
        np.testing.assert_allclose(
            m.actuator_gainprm[ids.actuators, 0], consts.KP * dr["kp_scale"]
        )
        np.testing.assert_allclose(m.dof_damping[ids.joint_dofs], consts.KD * dr["kd_scale"])
        assert env._delay.latency == dr["latency_steps"]
        # The spoke ends move with the size: a spoke's far end is size x 50 mm out.
        spoke = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, consts.VALVE_SPOKE_GEOMS[1])
        reach = np.linalg.norm(m.geom_pos[spoke][:2]) + m.geom_size[spoke, 1]
        assert reach == pytest.approx(0.05 * dr["valve_size_scale"])
    env.close()


@pytest.mark.parametrize(("finger", "other", "sign"), [("rf", "if", 1), ("if", "rf", -1)])
def test_curling_one_fingertip_turns_the_valve_its_way(finger: str, other: str, sign: int) -> None:
    """The fingertips have purchase on the spokes: curling the ring fingertip towards the
    wrist while the index lets go turns the knob counter-clockwise, and the reverse
    clockwise, until the next spoke meets the middle fingertip."""
    env = make(dr=False)
    env.reset(seed=3)
    start = env.valve_angle()
    action = np.zeros(16)
    action[consts.JOINT_NAMES.index(f"{finger}_mcp")] = 1.0
    action[consts.JOINT_NAMES.index(f"{other}_mcp")] = -1.0
    for _ in range(20):  # 1 s
        env.step(action)
    assert sign * (env.valve_angle() - start) > 0.2
    env.close()


@pytest.mark.parametrize(("friction", "damping"), [(0.005, 0.002), (0.02, 0.01)])
def test_bearing_friction_and_damping_reach_the_physics(friction: float, damping: float) -> None:
    """A steady torque above the bearing's dry friction spins the valve (fingers out of the
    way: contacts off) at (torque - friction) / damping."""
    env = make(dr=True, valve_friction=Uniform(friction, friction),
               valve_damping=Uniform(damping, damping))
    env.reset(seed=0)
    env.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    torque = 0.03
    env.data.qfrc_applied[env._ids.valve_dof] = torque
    for _ in range(20):  # 1 s: many time constants of armature / damping
        env.step(np.zeros(16))
    assert env.valve_angvel() == pytest.approx((torque - friction) / damping, rel=0.02)
    env.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("valve_friction", Uniform(-0.01, 0.01), r"valve_friction: values must be >= 0"),
        ("valve_damping", Uniform(0.01, 0.001), r"valve_damping: low must be <= high"),
        ("valve_size_scale", Uniform(0.0, 1.0), r"valve_size_scale: values must be > 0"),
        ("valve_mass_scale", Uniform(0.8, float("nan")), r"valve_mass_scale.high must be finite"),
        ("kp_scale", Uniform(1.2, 0.8), r"kp_scale: low must be <= high"),
        ("latency_steps", IntUniform(-1, 1), r"latency_steps: values must be >= 0"),
        ("joint_vel_noise", -0.1, r"joint_vel_noise must be a finite number >= 0"),
        ("valve_angle_noise", float("inf"), r"valve_angle_noise must be a finite number >= 0"),
    ],
)
def test_invalid_ranges_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidRangeError, match=message) as err:
        ValveRandomization(**{field: value})
    assert f"ValveRandomization.{field}" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("episode_steps", 0),
        ("episode_steps", 2.5),
        ("turn_clip", 0.0),
        ("action_scale", -0.6),
        ("init_joint_noise", 0.5),
        ("settle_time", -1.0),
    ],
)
def test_invalid_task_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"HandValveTurnConfig\.{field} must be .*, got {value!r}"):
        HandValveTurnConfig(**{field: value})


def test_task_config_overrides_reach_the_valve_config() -> None:
    from sim2real.robots import registry

    config = registry.task_config(
        "sim2real/HandValveTurn-v0",
        ["turn_clip=1.0", "rewards.action_rate=-0.01", "randomization.valve_friction.low=0.01"],
    )
    assert config.turn_clip == 1.0 and config.rewards.action_rate == -0.01
    assert config.randomization.valve_friction == Uniform(0.01, 0.02)
    with pytest.raises(ValueError, match=r"HandValveTurnConfig\.turn_clip must be > 0"):
        registry.task_config("sim2real/HandValveTurn-v0", ["turn_clip=0"])
