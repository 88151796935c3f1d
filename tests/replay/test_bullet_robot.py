"""The quadruped in PyBullet (replay/bullet_robot.py): the same robot as MuJoCo's on a
standing robot, its log replays, `sim2real eval --world bullet` over a real server, and
the robots and models it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np
import pytest

from sim2real.cli.main import main
from sim2real.logformat.mcap_log import read_log
from sim2real.replay.bullet_robot import BulletQuadruped, ResetDistribution, SensorNoise
from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig, QuadrupedJoystickEnv
from sim2real.serve.model import load_model

pytest.importorskip("pybullet")

SHIPPED = Path(__file__).resolve().parents[2] / "serve" / "policies"
A1_POLICY = SHIPPED / "a1_joystick.onnx"
STILL = ResetDistribution(random_initial_yaw=False, init_joint_noise=0.0, init_base_velocity=0.0, episode_steps=200)
STAND = (0.0, 0.0, 0.0)

STANDING_A1 = 0.27
"""The A1's trunk height in its home pose with the feet on the floor, m."""


@pytest.fixture(scope="module")
def metadata() -> dict[str, str]:
    return load_model(A1_POLICY, "a1", 1, "cpu").metadata


def _mujoco_a1() -> QuadrupedJoystickEnv:
    return QuadrupedJoystickEnv(QuadrupedJoystickConfig(
        robot="a1", random_initial_yaw=False, init_joint_noise=0.0, init_base_velocity=0.0), domain_randomization=False)


def test_the_same_state_reads_the_same_in_both_engines(metadata: dict[str, str]) -> None:
    """Bullet's robot put in MuJoCo's state (a walking robot, mid-stride) gives the policy
    the same observation: the two engines' frames, the simulated sensors and the builder
    agree. Tolerance 1e-4 (float32 observations, two quaternion conventions)."""
    from sim2real.train.export import OnnxPolicy

    bullet = BulletQuadruped("a1", metadata, noise=SensorNoise.off(), reset_distribution=STILL)
    mujoco_env = _mujoco_a1()
    policy = OnnxPolicy(A1_POLICY)
    command = (0.5, 0.2, 0.3)
    try:
        bullet.reset(seed=0, options={"command": command})
        obs, _ = mujoco_env.reset(seed=0, options={"command": command})
        root, root_v = mujoco_env._root_qpos, mujoco_env._root_qvel
        for step in range(1, 81):
            obs, *_ = mujoco_env.step(policy(obs[None])[0])
            if step % 20:
                continue
            # MuJoCo's sensors and frames are computed before the step's last integration
            # (2 ms stale); bring them to the state itself first.
            mujoco.mj_forward(mujoco_env.model, mujoco_env.data)
            obs = mujoco_env._observe()[0]
            qpos, qvel = mujoco_env.data.qpos, mujoco_env.data.qvel
            bullet.set_state(mujoco_env.joint_pos(), mujoco_env.joint_vel(), qpos[root:root + 3],
                             qpos[root + 3:root + 7], qvel[root_v:root_v + 3], qvel[root_v + 3:root_v + 6])
            bullet.builder.reset(clock_phase=mujoco_env._gait_phase)
            bullet.builder.record_action(mujoco_env._last_action)
            bullet._steps = 0
            np.testing.assert_allclose(bullet._observe(), obs, atol=1e-4, err_msg=f"step {step}")
            np.testing.assert_allclose(bullet.trunk_position(), qpos[root:root + 3], atol=1e-9)
            np.testing.assert_allclose(bullet.heading_frame_velocity(), mujoco_env.heading_frame_velocity(), atol=1e-6)
            assert bullet.world_yaw_rate() == pytest.approx(mujoco_env.world_yaw_rate(), abs=1e-6)
    finally:
        bullet.close()
        mujoco_env.close()


def test_a_standing_robot_stays_close_in_both_engines(metadata: dict[str, str]) -> None:
    """The dynamics differ (contacts, solver, no armature in Bullet): after 0.5 s standing
    on the PD loop at Kp 35 both have sagged about 3 cm, to within 1.5 cm and 3 degrees of
    each other."""
    bullet = BulletQuadruped("a1", metadata, noise=SensorNoise.off(), reset_distribution=STILL)
    mujoco_env = _mujoco_a1()
    try:
        b_obs, _ = bullet.reset(seed=0, options={"command": STAND})
        m_obs, _ = mujoco_env.reset(seed=0, options={"command": STAND})
        assert bullet.trunk_height() == pytest.approx(mujoco_env.trunk_height(), abs=0.005)
        for _ in range(25):
            b_obs, _, fell, *_ = bullet.step(np.zeros(12))
            m_obs, *_ = mujoco_env.step(np.zeros(12))
            assert not fell
        assert bullet.trunk_height() == pytest.approx(mujoco_env.trunk_height(), abs=0.015)
        assert bullet.trunk_height() < STANDING_A1 - 0.01  # it sags: the PD loop is real
        assert np.degrees(np.arccos(np.clip(b_obs[3:6] @ m_obs[3:6], -1, 1))) < 3.0
        np.testing.assert_allclose(b_obs[9:21], m_obs[9:21], atol=0.1)
    finally:
        bullet.close()
        mujoco_env.close()


def test_the_bullet_log_records_every_step_and_replays(metadata: dict[str, str], tmp_path: Path) -> None:
    from sim2real.replay.config import ReplayConfig
    from sim2real.replay.report import run_replay
    from sim2real.train.export import OnnxPolicy

    log = tmp_path / "bullet.mcap"
    policy = OnnxPolicy(A1_POLICY)
    env = BulletQuadruped("a1", metadata, reset_distribution=STILL, log_path=log)
    try:
        obs, _ = env.reset(seed=3, options={"command": (0.5, 0.0, 0.0)})
        for _ in range(120):
            env.last_answer = {"model_name": "a1", "model_version": 1, "latency_ns": 1000}
            obs, _, terminated, truncated, _ = env.step(policy(obs[None])[0])
            assert not terminated
    finally:
        env.close()
    data = read_log(log)
    assert data.info.source == "bullet" and data.info.robot == "a1"
    assert len(data.steps) == 120
    assert list(data.info.observation_names) == json.loads(metadata["observation_names"])
    step = data.steps[60]
    assert len(step.joint_position) == 12 and len(step.base_orientation) == 4 and step.model_name == "a1"
    # Walking forward: the trunk has moved along its heading.
    assert np.linalg.norm(np.asarray(data.steps[-1].base_position[:2]) - data.steps[0].base_position[:2]) > 0.2
    report = run_replay(ReplayConfig(log=log, model=A1_POLICY, out=tmp_path / "report", windows=4, horizon=10))
    # The log's actions are the model's answers: policy vs log agrees to float precision.
    assert report["source"] == "bullet"
    assert report["policy"]["rmse"] < 1e-4
    gap = report["sim"]["nominal"]["mean_abs_error_rad"]
    assert 0 < gap < 0.2  # MuJoCo replaying Bullet's robot: close, never identical


def test_eval_world_bullet_serves_judges_and_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "run.mcap"
    code = main(["eval", str(A1_POLICY), "--world", "bullet", "--episodes", "1", "--commands", "f=0.5,0,0",
                 "--env-config", "defaults_revision=2", "robot=a1", "episode_steps=150",
                 "--bullet-log", str(log), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert data["world"] == "bullet" and data["robot"] == "a1"
    assert data["steps"] == 150 and data["fallbacks"] == 0
    row = data["task"]["commands"][0]
    assert row["falls"] == 0 and row["measured_vx"] > 0.2
    assert len(read_log(log).steps) == 150


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([str(SHIPPED / "quadruped_joystick.onnx")], "the Bullet world reads URDF robots"),
        ([str(SHIPPED / "hand_valve.onnx")], "runs the quadruped only"),
        (["zero", "--env", "sim2real/QuadrupedJoystick-v0"], "serves an exported .onnx policy"),
        ([str(A1_POLICY), "--stress"], "does not combine with --stress"),
        ([str(A1_POLICY), "--ros2-bag", str(SHIPPED)], "exists; a ROS 2 bag is written to a new folder"),
    ],
)
def test_eval_world_bullet_refusals(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", *args, "--world", "bullet", "--episodes", "1"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_model_for_another_robot_is_refused(metadata: dict[str, str]) -> None:
    other = dict(metadata)
    names = json.loads(metadata["joint_names"])
    other["joint_names"] = json.dumps([n.replace("upper", "thigh") for n in names])
    other["observation_names"] = json.dumps([n.replace("upper", "thigh") for n in json.loads(metadata["observation_names"])])
    with pytest.raises(ValueError, match="not the a1 spec's .* a policy for another robot"):
        BulletQuadruped("a1", other)


def test_step_before_reset_and_a_bad_action_are_refused(metadata: dict[str, str]) -> None:
    env = BulletQuadruped("a1", metadata, reset_distribution=STILL)
    try:
        with pytest.raises(RuntimeError, match="step before reset"):
            env.step(np.zeros(12))
        env.reset(seed=0, options={"command": STAND})
        with pytest.raises(ValueError, match="action: expected 12 values, got 11"):
            env.step(np.zeros(11))
        with pytest.raises(ValueError, match="action: expected finite values"):
            env.step(np.full(12, np.nan))
        with pytest.raises(ValueError, match=r"options\['command'\]: expected 3 finite numbers"):
            env.reset(seed=0, options={"command": (0.5, 0.0)})
        env.step(np.zeros(12))  # still usable after the refusals
    finally:
        env.close()
