"""Held-out worlds (robots/quadruped/stress.py, robots/hand/stress.py, terrain.py): each
changes what it names and nothing else, checked on the model, the data and the
observation against the same env and seed without it."""

from __future__ import annotations

import dataclasses
import math

import mujoco
import numpy as np
import pytest

from sim2real.robots.hand.stress import ValveStress
from sim2real.robots.hand.stress import stress_scenarios as valve_scenarios
from sim2real.robots.hand.valve_turn import HandValveTurnEnv
from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig, QuadrupedJoystickEnv
from sim2real.robots.quadruped.stress import QuadrupedStress
from sim2real.robots.quadruped.stress import stress_scenarios as quadruped_scenarios
from sim2real.robots.quadruped.terrain import STEP_GEOM, TerrainConfig

MODEL_ARRAYS = (
    "geom_friction", "geom_size", "geom_pos", "body_mass", "body_inertia", "body_ipos", "dof_damping",
    "dof_armature", "dof_frictionloss", "actuator_gainprm", "actuator_biasprm", "actuator_forcerange",
)
COMMAND = (0.5, 0.0, 0.0)


def _snapshot(env, obs: np.ndarray) -> dict[str, np.ndarray]:
    snap = {name: getattr(env.model, name).copy() for name in MODEL_ARRAYS}
    snap["gravity"] = env.model.opt.gravity.copy()
    snap["qpos"] = env.data.qpos.copy()
    snap["qvel"] = env.data.qvel.copy()
    snap["obs"] = obs.copy()
    snap["latency"] = np.array(env._delay.latency)
    return snap


def _differences(env, stress, seed: int = 3, options: dict | None = None) -> dict[str, np.ndarray]:
    """What differs between a reset without and with ``stress`` (same env, same seed):
    name -> the indices (first axis) that changed."""
    env.set_stress(None)
    obs, _ = env.reset(seed=seed, options=options)
    before = _snapshot(env, obs)
    env.set_stress(stress)
    obs, _ = env.reset(seed=seed, options=options)
    after = _snapshot(env, obs)
    out = {}
    for name, value in before.items():
        changed = ~np.isclose(value, after[name], rtol=0, atol=1e-12)
        if changed.any():
            out[name] = np.unique(np.nonzero(changed)[0]) if changed.ndim else np.array([0])
    return out


@pytest.fixture(scope="module")
def quadruped() -> QuadrupedJoystickEnv:
    return QuadrupedJoystickEnv()


def _obs_indices(env: QuadrupedJoystickEnv, prefixes: tuple[str, ...]) -> np.ndarray:
    return np.array([i for i, name in enumerate(env.observation_names) if name.startswith(prefixes)])


def test_low_friction_changes_the_floor_friction_only(quadruped: QuadrupedJoystickEnv) -> None:
    diff = _differences(quadruped, QuadrupedStress(floor_friction=0.3), options={"command": COMMAND})
    assert set(diff) == {"geom_friction"}
    assert diff["geom_friction"].tolist() == [quadruped._ids.floor_geom]
    assert quadruped.model.geom_friction[quadruped._ids.floor_geom, 0] == 0.3


def test_payload_changes_the_trunk_mass_and_centre_of_mass_only(quadruped: QuadrupedJoystickEnv) -> None:
    stress = QuadrupedStress(payload_mass=2.0, payload_offset=(0.1, 0.0, 0.0))
    diff = _differences(quadruped, stress, options={"command": COMMAND})
    trunk = quadruped._ids.trunk_body
    assert set(diff) == {"body_mass", "body_inertia", "body_ipos"}
    assert all(v.tolist() == [trunk] for v in diff.values())
    nominal = quadruped._nominal
    assert quadruped.model.body_mass[trunk] == pytest.approx(nominal.body_mass[trunk] + 2.0)
    # The centre of mass moves by payload / (trunk + payload) of the payload's offset.
    share = 2.0 / (nominal.body_mass[trunk] + 2.0)
    np.testing.assert_allclose(quadruped.model.body_ipos[trunk] - nominal.body_ipos[trunk], [0.1 * share, 0, 0])


def test_weak_motors_change_kp_and_torque_limits_only(quadruped: QuadrupedJoystickEnv) -> None:
    diff = _differences(quadruped, QuadrupedStress(motor_strength=0.75), options={"command": COMMAND})
    acts = quadruped._ids.actuators.tolist()
    assert set(diff) <= {"actuator_gainprm", "actuator_biasprm", "actuator_forcerange"}
    assert "actuator_forcerange" in diff and "actuator_gainprm" in diff
    assert all(v.tolist() == acts for v in diff.values())
    nominal = quadruped._nominal
    np.testing.assert_allclose(quadruped.model.actuator_forcerange[acts], 0.75 * nominal.actuator_forcerange[acts])
    np.testing.assert_allclose(quadruped.model.actuator_gainprm[acts, 0], 0.75 * nominal.actuator_gainprm[acts, 0])


def test_latency_adds_control_steps_and_nothing_else(quadruped: QuadrupedJoystickEnv) -> None:
    quadruped.set_stress(None)
    _, info = quadruped.reset(seed=3)
    drawn = int(info["dr"]["latency_steps"])
    diff = _differences(quadruped, QuadrupedStress(extra_latency_steps=2))
    assert set(diff) == {"latency"}
    assert quadruped._delay.latency == drawn + 2
    # The motors get the action of two (plus the drawn) steps ago: zeros until then.
    action = np.full(12, 0.5)
    before = quadruped.data.ctrl.copy()
    for _ in range(drawn + 2):
        quadruped.step(action)
        np.testing.assert_allclose(quadruped.data.ctrl, before)
    quadruped.step(action)
    assert not np.allclose(quadruped.data.ctrl, before)


@pytest.mark.parametrize(
    ("stress", "prefixes"),
    [
        (QuadrupedStress(gyro_bias=(0.1, -0.2, 0.3)), ("gyro/",)),
        (QuadrupedStress(imu_tilt_deg=(3.0, -2.0)), ("gravity/",)),
        (QuadrupedStress(joint_pos_bias=0.05), ("joint_pos/",)),
        (QuadrupedStress(linvel_bias=(0.1, 0.1, 0.0)), ("linvel_estimate/x", "linvel_estimate/y")),
    ],
    ids=["gyro", "imu tilt", "encoders", "velocity estimate"],
)
def test_sensor_biases_change_their_observation_entries_only(
        quadruped: QuadrupedJoystickEnv, stress: QuadrupedStress, prefixes: tuple[str, ...]) -> None:
    diff = _differences(quadruped, stress, options={"command": COMMAND})
    assert set(diff) == {"obs"}
    assert diff["obs"].tolist() == _obs_indices(quadruped, prefixes).tolist()


def test_sensor_bias_values(quadruped: QuadrupedJoystickEnv) -> None:
    quadruped.set_stress(None)
    clean, _ = quadruped.reset(seed=4)
    quadruped.set_stress(QuadrupedStress(gyro_bias=(0.1, -0.2, 0.3), joint_pos_bias=0.05))
    biased, _ = quadruped.reset(seed=4)
    gyro, joints = _obs_indices(quadruped, ("gyro/",)), _obs_indices(quadruped, ("joint_pos/",))
    np.testing.assert_allclose(biased[gyro] - clean[gyro], [0.1, -0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(biased[joints] - clean[joints], 0.05, atol=1e-6)
    # A tilted IMU rotates the gravity reading: same length, turned by the tilt.
    quadruped.set_stress(QuadrupedStress(imu_tilt_deg=(0.0, 5.0)))
    tilted, _ = quadruped.reset(seed=4)
    g = _obs_indices(quadruped, ("gravity/",))
    assert np.linalg.norm(tilted[g]) == pytest.approx(np.linalg.norm(clean[g]), rel=1e-5)
    cos = float(tilted[g] @ clean[g]) / float(np.linalg.norm(clean[g]) ** 2)
    assert math.degrees(math.acos(min(1.0, cos))) == pytest.approx(5.0, abs=0.01)
    quadruped.set_stress(None)


@pytest.mark.parametrize("command", [(0.5, 0.0, 0.0), (0.0, 0.4, 0.0), (0.0, 0.0, 0.8)])
def test_a_slope_tilts_gravity_against_the_commanded_travel_and_the_imu_sees_it(command) -> None:
    env = QuadrupedJoystickEnv(domain_randomization=False)
    diff = _differences(env, QuadrupedStress(slope_deg=6.0), options={"command": command})
    assert set(diff) == {"gravity", "obs"}
    # The gravity reading changes (which of its components depends on the trunk's pose).
    assert set(diff["obs"].tolist()) <= set(_obs_indices(env, ("gravity/",)).tolist())
    g = env.model.opt.gravity
    assert np.linalg.norm(g) == pytest.approx(9.81, rel=1e-3)
    # Uphill along the travel: gravity's horizontal part points against it, sin(6 deg) of g.
    travel = env.trunk_yaw() + (math.atan2(command[1], command[0]) if command[:2] != (0.0, 0.0) else 0.0)
    along = g[0] * math.cos(travel) + g[1] * math.sin(travel)
    assert along == pytest.approx(-9.81 * math.sin(math.radians(6.0)), rel=1e-3)
    obs, _ = env.reset(seed=3, options={"command": command})
    gravity = obs[_obs_indices(env, ("gravity/",))]
    r = env.data.site_xmat[env._imu_site].reshape(3, 3)
    np.testing.assert_allclose(gravity, r.T @ (g / np.linalg.norm(g)), atol=1e-6)
    env.set_stress(None)
    env.reset(seed=3)
    np.testing.assert_allclose(env.model.opt.gravity, [0, 0, -9.81], atol=1e-9)


def test_pushes_shove_the_trunk_sideways_at_the_interval_only() -> None:
    stressed, plain = QuadrupedJoystickEnv(domain_randomization=False), QuadrupedJoystickEnv(domain_randomization=False)
    stress = QuadrupedStress(push_velocity=1.0, push_interval_s=0.1)
    stressed.set_stress(stress)
    stressed.reset(seed=5, options={"command": COMMAND})
    plain.reset(seed=5, options={"command": COMMAND})
    steps = round(0.1 / stressed.control_dt)
    zero = np.zeros(12)
    for _ in range(steps):  # the first push comes with the step after 0.1 s have passed
        stressed.step(zero)
        plain.step(zero)
    np.testing.assert_array_equal(stressed.data.qvel, plain.data.qvel)
    yaw = stressed.trunk_yaw()
    stressed.step(zero)
    plain.step(zero)
    kick = (stressed.data.qvel - plain.data.qvel)[stressed._root_qvel:stressed._root_qvel + 2]
    assert np.linalg.norm(kick) > 0.5
    left = np.array([-math.sin(yaw), math.cos(yaw)])
    assert float(kick @ left) / np.linalg.norm(kick) > 0.95, (kick, left)


def test_rough_ground_is_a_heightfield_floor_with_a_flat_start() -> None:
    env = QuadrupedJoystickEnv(QuadrupedJoystickConfig(terrain=TerrainConfig(kind="rough", height=0.03)),
                               domain_randomization=False)
    floor = env._ids.floor_geom
    assert env.model.geom_type[floor] == mujoco.mjtGeom.mjGEOM_HFIELD
    assert env.model.hfield_size[0][2] == pytest.approx(0.03)
    data = env.model.hfield_data
    assert 0.9 < data.max() <= 1.0 and data.min() == 0.0
    env.reset(seed=0, options={"command": (0.0, 0.0, 0.0)})
    for _ in range(50):
        env.step(np.zeros(12))
    flat = QuadrupedJoystickEnv(domain_randomization=False)
    flat.reset(seed=0, options={"command": (0.0, 0.0, 0.0)})
    for _ in range(50):
        flat.step(np.zeros(12))
    assert env.trunk_height() == pytest.approx(flat.trunk_height(), abs=1e-3)


def test_the_step_is_placed_ahead_along_the_commanded_direction() -> None:
    terrain = TerrainConfig(kind="step", height=0.05, distance=0.7)
    env = QuadrupedJoystickEnv(QuadrupedJoystickConfig(terrain=terrain), domain_randomization=True)
    for command in ((0.5, 0.0, 0.0), (0.0, -0.4, 0.0)):
        env.reset(seed=2, options={"command": command})
        geom = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, STEP_GEOM)
        travel = env.trunk_yaw() + math.atan2(command[1], command[0])
        direction = np.array([math.cos(travel), math.sin(travel)])
        centre = env.data.geom_xpos[geom]
        # Near edge 0.7 m ahead: the box centre is half its depth further.
        half_depth = env.model.geom_size[geom][0]
        assert float((centre[:2] - env.trunk_position()[:2]) @ direction) == pytest.approx(0.7 + half_depth, abs=1e-6)
        assert centre[2] + env.model.geom_size[geom][2] == pytest.approx(0.05)
        # The step has the floor's (randomized) friction.
        np.testing.assert_array_equal(env.model.geom_friction[geom], env.model.geom_friction[env._ids.floor_geom])


def test_terrain_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="TerrainConfig.kind"):
        TerrainConfig(kind="lava")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TerrainConfig.height"):
        TerrainConfig(kind="rough", height=-0.1)
    with pytest.raises(ValueError, match="QuadrupedStress.motor_strength"):
        QuadrupedStress(motor_strength=0.0)
    with pytest.raises(ValueError, match="ValveStress.fingertip_friction"):
        ValveStress(fingertip_friction=-1.0)


def test_every_quadruped_scenario_is_outside_training_and_builds(quadruped: QuadrupedJoystickEnv) -> None:
    scenarios = quadruped_scenarios(quadruped.robot, quadruped.config.randomization)
    names = [s.name for s in scenarios]
    assert len(set(names)) == len(names)
    dr = quadruped.config.randomization
    by_name = {s.name: s for s in scenarios}
    assert not dr.floor_friction.contains(by_name["low friction"].stress.floor_friction)
    assert not dr.kp_scale.contains(by_name["weak motors"].stress.motor_strength)
    assert by_name["payload"].stress.payload_mass > dr.trunk_added_mass.high
    assert by_name["pushes"].stress.push_velocity > dr.push_velocity.high
    for s in scenarios:
        assert s.held_out and s.training


@pytest.fixture(scope="module")
def valve() -> HandValveTurnEnv:
    return HandValveTurnEnv()


@pytest.mark.parametrize(
    ("stress", "arrays"),
    [
        (ValveStress(valve_friction=0.04, valve_damping=0.02), {"dof_frictionloss", "dof_damping"}),
        (ValveStress(fingertip_friction=0.35), {"geom_friction"}),
        (ValveStress(motor_strength=0.6), {"actuator_gainprm", "actuator_biasprm", "actuator_forcerange"}),
        (ValveStress(extra_latency_steps=1), {"latency"}),
    ],
    ids=["stiff valve", "fingertip friction", "weak motors", "latency"],
)
def test_valve_scenarios_change_what_they_name_only(valve: HandValveTurnEnv, stress: ValveStress,
                                                     arrays: set[str]) -> None:
    diff = _differences(valve, stress)
    # A stiffer valve or a weaker hand moves what happens during the reset's settling, so
    # the state may differ; the model differs exactly in the named arrays.
    model_diff = {k for k in diff if k in MODEL_ARRAYS or k == "gravity" or k == "latency"}
    assert model_diff == arrays
    ids = valve._ids
    if "dof_frictionloss" in arrays:
        assert diff["dof_frictionloss"].tolist() == [ids.valve_dof]
        assert valve.model.dof_frictionloss[ids.valve_dof] == pytest.approx(0.04)
    if "geom_friction" in arrays:
        assert diff["geom_friction"].tolist() == sorted(ids.fingertip_geoms.tolist())
    if "actuator_forcerange" in arrays:
        np.testing.assert_allclose(valve.model.actuator_forcerange[ids.actuators],
                                   0.6 * valve._nominal.actuator_forcerange[ids.actuators])
    if arrays == {"latency"}:
        assert {"qpos", "qvel", "obs"}.isdisjoint(diff)


def test_valve_size_scenarios_scale_the_knob_outside_training(valve: HandValveTurnEnv) -> None:
    scenarios = {s.name: s for s in valve_scenarios(valve.config.randomization)}
    dr = valve.config.randomization
    for name in ("small valve", "large valve"):
        scale = scenarios[name].stress.valve_size_scale
        assert not dr.valve_size_scale.contains(scale)
        valve.set_stress(scenarios[name].stress)
        _, info = valve.reset(seed=1)
        assert info["dr"]["valve_size_scale"] == scale
    valve.set_stress(None)
    assert dataclasses.is_dataclass(scenarios["stiff valve"].stress)


# --- training knobs that widen what the policy sees (issue 26's "widen and measure again") ---

def test_torque_limit_follows_the_drawn_kp_only_when_asked() -> None:
    from sim2real.robots.quadruped.randomize import QuadrupedRandomization
    from sim2real.robots.randomization import Uniform

    wide = Uniform(0.7, 1.3)
    plain = QuadrupedJoystickEnv(config=QuadrupedJoystickConfig(
        randomization=QuadrupedRandomization(kp_scale=wide)))
    follows = QuadrupedJoystickEnv(config=QuadrupedJoystickConfig(
        randomization=QuadrupedRandomization(kp_scale=wide, torque_limit_follows_kp=True)))
    _, info_plain = plain.reset(seed=5)
    _, info = follows.reset(seed=5)
    acts = follows._ids.actuators
    nominal = follows._nominal.actuator_forcerange[acts]
    kp = info["dr"]["kp_scale"]
    np.testing.assert_allclose(info_plain["dr"]["kp_scale"], kp)  # the same draw either way
    assert not np.allclose(kp, 1.0)
    np.testing.assert_allclose(follows.model.actuator_forcerange[acts], nominal * kp[:, None])
    np.testing.assert_allclose(plain.model.actuator_forcerange[acts], nominal)
    # The weak-motor stress world replaces the draw for both Kp and the limit.
    follows.set_stress(QuadrupedStress(motor_strength=0.5))
    follows.reset(seed=5)
    np.testing.assert_allclose(follows.model.actuator_forcerange[acts], nominal * 0.5)


def test_a_random_incline_tilts_gravity_within_its_range_and_the_default_draws_nothing() -> None:
    from sim2real.robots.quadruped.randomize import QuadrupedRandomization
    from sim2real.robots.randomization import Uniform

    default = QuadrupedJoystickEnv()
    inclined = QuadrupedJoystickEnv(config=QuadrupedJoystickConfig(
        randomization=QuadrupedRandomization(incline_deg=Uniform(2.0, 8.0))))
    angles, directions = [], []
    for seed in range(12):
        obs_default, info_default = default.reset(seed=seed)
        np.testing.assert_allclose(default.model.opt.gravity, [0, 0, -9.81], atol=1e-9)
        obs, info = inclined.reset(seed=seed)
        # Everything drawn before the incline (dynamics, command) is the default task's draw.
        np.testing.assert_allclose(info["command"], info_default["command"])
        np.testing.assert_allclose(info["dr"]["kp_scale"], info_default["dr"]["kp_scale"])
        g = inclined.model.opt.gravity
        assert np.linalg.norm(g) == pytest.approx(9.81, rel=1e-6)
        angles.append(math.degrees(math.acos(-g[2] / np.linalg.norm(g))))
        directions.append(math.atan2(-g[1], -g[0]))
        # The IMU's gravity reading follows the tilted gravity.
        r = inclined.data.site_xmat[inclined._imu_site].reshape(3, 3)
        gravity_obs = obs[_obs_indices(inclined, ("gravity/",))]
        np.testing.assert_allclose(gravity_obs, r.T @ (g / np.linalg.norm(g)), atol=0.06)  # + DR noise
    assert min(angles) >= 2.0 - 1e-6 and max(angles) <= 8.0 + 1e-6
    assert max(angles) - min(angles) > 2.0
    assert np.ptp(np.unwrap(np.sort(directions))) > 2.0  # uphill in many directions
    # DR off: flat, whatever the range says.
    off = QuadrupedJoystickEnv(domain_randomization=False, config=QuadrupedJoystickConfig(
        randomization=QuadrupedRandomization(incline_deg=Uniform(2.0, 8.0))))
    off.reset(seed=0)
    np.testing.assert_allclose(off.model.opt.gravity, [0, 0, -9.81], atol=1e-9)


def test_incline_and_torque_knobs_refuse_bad_values_by_name() -> None:
    from sim2real.robots.quadruped.randomize import QuadrupedRandomization
    from sim2real.robots.randomization import InvalidRangeError, Uniform

    with pytest.raises(InvalidRangeError, match="incline_deg.*>= 0"):
        QuadrupedRandomization(incline_deg=Uniform(-3.0, 3.0))
    with pytest.raises(InvalidRangeError, match="incline_deg.*45"):
        QuadrupedRandomization(incline_deg=Uniform(0.0, 50.0))
    with pytest.raises(InvalidRangeError, match="torque_limit_follows_kp"):
        QuadrupedRandomization(torque_limit_follows_kp=1)  # type: ignore[arg-type]


def test_each_row_quotes_the_ground_and_motors_the_training_saw(quadruped: QuadrupedJoystickEnv) -> None:
    from sim2real.robots.quadruped.randomize import QuadrupedRandomization
    from sim2real.robots.randomization import Uniform

    flat = {s.name: s.training for s in quadruped_scenarios(quadruped.robot, quadruped.config.randomization)}
    assert flat["rough ground"] == "flat floor" and flat["slope up"] == "flat floor"
    assert flat["weak motors"].endswith("torque limit x 1")
    wide = QuadrupedRandomization(incline_deg=Uniform(0.0, 4.0), torque_limit_follows_kp=True)
    rough = TerrainConfig(kind="rough", height=0.02)
    quoted = {s.name: s.training for s in quadruped_scenarios(quadruped.robot, wide, rough)}
    assert quoted["rough ground"].startswith("rough ground, bumps U(0, 2 cm)")
    assert quoted["slope down"].endswith("inclined U(0, 4) deg in any direction")
    assert quoted["weak motors"].endswith("torque limit x the same draw")
