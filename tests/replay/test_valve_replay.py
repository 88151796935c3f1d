"""Sim replay and system identification on the hand at the valve rig (HandValveTurn-v0).

The logs are recorded in simulation under known, perturbed dynamics (valve bearing
friction x2, finger Kp x0.8, one step of latency) with a scripted finger gait that turns
the valve, so the truth is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim2real.logformat.mcap_log import read_log
from sim2real.replay.config import ReplayConfig
from sim2real.replay.policy_vs_log import LogArrays
from sim2real.replay.report import run_replay
from sim2real.replay.sim_controller import PolicyAnswer, PolicyFn, run_controller
from sim2real.replay.sim_replay import (
    HAND_VALVE,
    SimReplayer,
    SimReplayError,
    choose_windows,
    fixed_dynamics_config,
    gap_report,
)
from sim2real.replay.sysid import identify

# Nominal valve bearing: frictionloss 0.01 N m (xmls/valve_scene.xml); x2 here.
TRUTH = {"valve_friction": 0.02, "kp_scale": 0.8, "latency_steps": 1}
NOMINAL_VALVE_DAMPING = 0.005


def finger_gait() -> PolicyFn:
    """Open-loop 0.5 Hz sinusoid per joint, each with its own phase, biased to curl: the
    fingertips push the spokes back and forth (the valve moves at ~0.5 rad/s on average)."""
    phase = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    tick = [0]

    def act(obs: np.ndarray) -> PolicyAnswer:
        t = tick[0] * 0.05
        tick[0] += 1
        return PolicyAnswer(np.clip(0.4 + 0.6 * np.sin(np.pi * t + phase), -1.0, 1.0))

    return act


@pytest.fixture(scope="module")
def valve_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("valve") / "perturbed.mcap"
    run_controller(HAND_VALVE, finger_gait(), episodes=3, max_steps=150, seed=4, log_path=path,
                   env_kwargs={"config": fixed_dynamics_config(TRUTH, HAND_VALVE)}, progress=False)
    return path


def test_valve_log_carries_the_valve_state(valve_log: Path) -> None:
    log = read_log(valve_log)
    assert list(log.info.object_joint_names) == ["valve_hinge"]
    angle = np.array([s.object_joint_position[0] for s in log.steps])
    rate = np.array([s.object_joint_velocity[0] for s in log.steps])
    assert np.abs(rate).mean() > 0.1  # the gait really turns the valve
    # The angle is the integral of the logged rate (20 Hz), within one episode: the
    # trapezoid of the two logged rates matches each step's angle change, except across a
    # contact impulse (a fingertip slipping off a spoke), which 20 Hz samples cannot
    # integrate; a swapped field, a unit or a one-step lag would miss on most steps.
    first = [s.episode for s in log.steps].count(0)
    residual = np.abs(np.diff(angle[:first]) - 0.025 * (rate[1:first] + rate[:first - 1]))
    assert np.mean(residual <= 0.03) >= 0.98 and residual.max() < 0.1, np.sort(residual)[-5:]


def test_sim_replay_reproduces_the_valve_angle_on_the_logged_dynamics_only(valve_log: Path) -> None:
    log = read_log(valve_log)
    actions = LogArrays.from_log(log).action
    replayer = SimReplayer(HAND_VALVE)
    try:
        windows = choose_windows(log.steps, 20, 10, np.random.default_rng(0))
        replayer.set_parameters(TRUTH)
        right = gap_report(replayer, log.steps, actions, windows)
        replayer.set_parameters({})  # the nominal rig: wrong friction, gains and latency
        wrong = gap_report(replayer, log.steps, actions, windows)
    finally:
        replayer.close()
    (valve_right,), (valve_wrong,) = right["object"], wrong["object"]
    assert valve_right["name"] == "valve_hinge"
    # Same model and dynamics: only the solver's warm start and float32 logs differ
    # (measured: ~3 mrad on the valve, <1 mrad on the joints over 20 steps = 1 s).
    assert valve_right["mean_abs_error_rad"] < 0.01 and right["mean_abs_error_rad"] < 0.003
    assert valve_wrong["mean_abs_error_rad"] > 3 * valve_right["mean_abs_error_rad"]
    assert wrong["mean_abs_error_rad"] > 3 * right["mean_abs_error_rad"]


def test_sysid_recovers_valve_friction_and_finger_gain(valve_log: Path) -> None:
    log = read_log(valve_log)
    actions = LogArrays.from_log(log).action
    replayer = SimReplayer(HAND_VALVE)
    try:
        windows = choose_windows(log.steps, 30, 8, np.random.default_rng(0))
        fit = identify(replayer, log.steps, actions, windows,
                       parameters=["valve_friction", "valve_damping", "kp_scale", "latency_steps"],
                       rounds=10, population=24, progress=False)
    finally:
        replayer.close()
    best = fit.best
    # Stated tolerances: latency exact, Kp scale +-0.05. The bearing's dry friction and
    # viscous damping trade off at the speeds a finger gait reaches (~0.5 rad/s), so the log
    # pins down the torque they resist with at those speeds (within 20%) firmly, and their
    # split loosely: friction within +-40% of the truth (nominal is -50%), damping within
    # the search bounds.
    assert best["latency_steps"] == 1
    assert abs(best["kp_scale"] - 0.8) < 0.05
    speed = float(np.mean([abs(s.object_joint_velocity[0]) for s in log.steps]))
    true_torque = TRUTH["valve_friction"] + NOMINAL_VALVE_DAMPING * speed
    fit_torque = best["valve_friction"] + best["valve_damping"] * speed
    assert abs(fit_torque - true_torque) < 0.2 * true_torque
    assert abs(best["valve_friction"] - 0.02) < 0.4 * 0.02
    assert fit.best_error < 0.05 * fit.nominal_error
    assert fit.inside_trained_ranges()["valve_friction"]  # 0.02: the top of U(0.005, 0.02)


def test_replay_report_on_a_valve_log(valve_log: Path, tmp_path: Path) -> None:
    """`sim2real replay --sysid` on a valve log: the quadruped's default sysid parameters
    are swapped for the valve's, the valve angle's gap is reported."""
    from sim2real.replay.report import summary_lines

    report = run_replay(ReplayConfig(log=valve_log, out=tmp_path / "r", windows=4, horizon=10, sysid=True,
                                     sysid_rounds=2, sysid_population=4))
    sim = report["sim"]
    assert sim["nominal"]["object"][0]["name"] == "valve_hinge"
    assert {p["name"] for p in sim["sysid"]["parameters"]} == {
        "valve_friction", "valve_damping", "kp_scale", "latency_steps"}
    assert sim["logged_dynamics"]["first"]["valve_friction"] == pytest.approx(0.02)
    text = "\n".join(summary_lines(report))
    assert "valve_hinge angle" in text and "valve_friction" in text
    with pytest.raises(SimReplayError, match="floor_friction"):
        run_replay(ReplayConfig(log=valve_log, out=tmp_path / "r2", windows=2, horizon=5, sysid=True,
                                sysid_parameters=("floor_friction",), sysid_rounds=1, sysid_population=2))
