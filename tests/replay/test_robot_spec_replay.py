"""A robot built from its spec is replayed and identified like our own: the log records the
task config (robot=a1), sim replay rebuilds that robot, and nothing in replay/ names it."""

from __future__ import annotations

from pathlib import Path

from sim2real.logformat.mcap_log import read_log
from sim2real.replay.config import ReplayConfig
from sim2real.replay.report import run_replay
from sim2real.replay.sim_controller import local_policy, run_controller
from sim2real.replay.sim_replay import QUADRUPED, fixed_dynamics_config
from sim2real.serve.synthetic import write_policy


def test_an_a1_log_replays_and_identifies_on_the_a1(tmp_path: Path) -> None:
    truth = {"floor_friction": 0.36, "kp_scale": 0.8, "latency_steps": 1}
    model = tmp_path / "p.onnx"
    write_policy(model, obs_dim=50, act_dim=12, seed=11, gain=0.3)
    run_controller(QUADRUPED, local_policy(model), episodes=3, max_steps=150, seed=4,
                   env_kwargs={"config": fixed_dynamics_config(truth, env_config=["robot=a1"])},
                   log_path=tmp_path / "a1.mcap", progress=False)
    log = read_log(tmp_path / "a1.mcap")
    assert log.info.robot == "a1" and "robot=a1" in log.info.env_config
    assert log.info.joint_names[1] == "FR_upper_joint"
    report = run_replay(ReplayConfig(
        log=tmp_path / "a1.mcap", model=model, out=tmp_path / "r", windows=12, horizon=20, sysid=True,
        sysid_parameters=("floor_friction", "kp_scale", "latency_steps"), sysid_rounds=10, sysid_population=24,
    ))
    sim = report["sim"]
    fit = sim["sysid"]["best"]
    # The tolerances of the Go1's own sysid test (docs/results.md): the A1 fits as well.
    assert fit["latency_steps"] == 1
    assert abs(fit["kp_scale"] - 0.8) < 0.05
    assert abs(fit["floor_friction"] - 0.36) < 0.08
    assert sim["fitted"]["mean_abs_error_rad"] < 0.2 * sim["nominal"]["mean_abs_error_rad"]


def test_a_log_replayed_on_another_robot_is_refused(tmp_path: Path) -> None:
    """A log whose env_config was lost (an A1 log read as the default robot) is not
    replayed on the Go1's model: the joints differ, and the report says why."""
    from sim2real.logformat.mcap_log import LogWriter

    model = tmp_path / "p.onnx"
    write_policy(model, obs_dim=50, act_dim=12, seed=3, gain=0.3)
    run_controller(QUADRUPED, local_policy(model), max_steps=60, seed=1,
                   env_kwargs={"config": fixed_dynamics_config({}, env_config=["robot=a1"])},
                   log_path=tmp_path / "a1.mcap", progress=False)
    log = read_log(tmp_path / "a1.mcap")
    info = log.info
    del info.env_config[:]
    with LogWriter(tmp_path / "stripped.mcap", info) as writer:
        for step in log.steps:
            writer.write(step)
    report = run_replay(ReplayConfig(log=tmp_path / "stripped.mcap", model=model, out=tmp_path / "r"))
    assert "the log's LogInfo.env_config must name its robot" in report["sim"]["skipped"]


def test_a_nominal_a1_log_replays_with_no_gap(tmp_path: Path) -> None:
    robot = "a1"
    model = tmp_path / "p.onnx"
    write_policy(model, obs_dim=50, act_dim=12, seed=5, gain=0.3)
    run_controller(QUADRUPED, local_policy(model), max_steps=60, seed=2, domain_randomization=False,
                   env_kwargs={"config": fixed_dynamics_config({}, env_config=[f"robot={robot}"])},
                   log_path=tmp_path / "log.mcap", progress=False)
    report = run_replay(ReplayConfig(log=tmp_path / "log.mcap", model=model, out=tmp_path / "r", windows=4, horizon=10))
    # Same model, same state, same actions: the gap is float32 rounding of the logged state.
    assert report["sim"]["nominal"]["mean_abs_error_rad"] < 1e-3


def test_replayable_tasks_are_the_ones_whose_env_says_how() -> None:
    from sim2real.replay.sim_replay import (
        HAND_VALVE,
        default_sysid_parameters,
        replay_state_fields,
        supported_envs,
    )

    assert set(supported_envs()) == {QUADRUPED, HAND_VALVE}  # the free cube's logs lack the cube's state
    assert "base_orientation" in replay_state_fields(QUADRUPED)
    assert "object_joint_position" in replay_state_fields(HAND_VALVE)
    assert default_sysid_parameters(HAND_VALVE)[0] == "valve_friction"
