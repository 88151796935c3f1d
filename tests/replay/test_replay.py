"""`sim2real replay`: offline evaluation, sim-to-real gap, system identification, errors."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from sim2real.cli.replay import replay_main
from sim2real.logformat.mcap_log import LogWriter, read_log
from sim2real.replay.config import ReplayConfig
from sim2real.replay.policy_vs_log import LogArrays, ReplayError, worst_windows
from sim2real.replay.report import run_replay
from sim2real.replay.sim_controller import local_policy, run_controller
from sim2real.replay.sim_replay import (
    QUADRUPED,
    SimReplayer,
    choose_windows,
    fixed_dynamics_config,
    gap_report,
)
from sim2real.replay.sysid import identify
from sim2real.serve.config import ServeConfig
from sim2real.serve.synthetic import write_policy
from sim2real.serve.testing import BackgroundServer
from sim2real.v1 import log_pb2


@pytest.fixture(scope="module")
def quad_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("quad")
    write_policy(tmp / "p.onnx", obs_dim=50, act_dim=12, seed=7, gain=0.3)
    run_controller(QUAD_ENV, local_policy(tmp / "p.onnx"), episodes=2, max_steps=120, seed=1,
                   log_path=tmp / "sim.mcap", progress=False)
    return tmp / "sim.mcap", tmp / "p.onnx"


QUAD_ENV = QUADRUPED


def test_same_policy_replays_with_zero_error(quad_log, tmp_path: Path) -> None:
    log, model = quad_log
    report = run_replay(ReplayConfig(log=log, model=model, out=tmp_path / "r", windows=4, horizon=10))
    assert report["policy"]["rmse"] < 1e-6 and report["policy"]["max_abs_error"] < 1e-5
    assert len(report["policy"]["per_joint"]) == 12
    assert report["sim"]["nominal"]["windows"] == 4
    assert (tmp_path / "r" / "actions.png").stat().st_size > 0 and (tmp_path / "r" / "gap.png").is_file()
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["policy"]["steps"] == report["steps"]


def test_other_policy_shows_error_and_worst_window(quad_log, tmp_path: Path) -> None:
    log, _ = quad_log
    write_policy(tmp_path / "other.onnx", obs_dim=50, act_dim=12, seed=99)
    report = run_replay(ReplayConfig(log=log, model=tmp_path / "other.onnx", out=tmp_path / "r", sim=False))
    assert report["policy"]["rmse"] > 0.05
    assert "sim" not in report


@pytest.mark.parametrize("transport", ["tcp", "uds"])
def test_replay_against_a_server_matches_local(quad_log, tmp_path: Path, transport: str) -> None:
    log, model = quad_log
    # `--server unix:PATH` for a server on this computer's socket (sim2real serve --uds);
    # a short folder: pytest's tmp_path can exceed a socket path's 107 bytes.
    with tempfile.TemporaryDirectory(prefix="s2r-replay-", dir="/tmp") as folder:
        uds = Path(folder) / "p.sock" if transport == "uds" else None
        with BackgroundServer(ServeConfig(model=model, port=0, device="cpu", uds=uds, tcp=uds is None)) as srv:
            target = srv.uds_target if uds else srv.target
            report = run_replay(ReplayConfig(log=log, server=target, out=tmp_path / "r", sim=False))
    assert report["policy"]["source"] == f"server {target}"
    policy = report["policy"]
    assert policy["rmse"] < 1e-6 and policy["fallbacks"] == 0 and policy["deadline_misses"] == 0
    assert policy["latency_p50_us"] > 0


def test_bad_inputs_fail_clearly_and_write_nothing(quad_log, tmp_path: Path, capsys) -> None:
    log, _ = quad_log
    write_policy(tmp_path / "small.onnx", obs_dim=6, act_dim=3)
    with pytest.raises(ReplayError, match="observation size: .* has 50 values per step, model .* expects 6"):
        run_replay(ReplayConfig(log=log, model=tmp_path / "small.onnx", out=tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    with LogWriter(tmp_path / "empty.mcap", log_pb2.LogInfo(source="sim")):
        pass
    with pytest.raises(ReplayError, match="no steps"):
        run_replay(ReplayConfig(log=tmp_path / "empty.mcap", out=tmp_path / "r"))
    assert replay_main([str(tmp_path / "missing.mcap"), "--out", str(tmp_path / "r")]) == 2
    assert "no such log file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_worst_windows_finds_the_burst() -> None:
    error = np.zeros((300, 2))
    error[200:220] = 1.0
    (first, *_) = worst_windows(error, window=20)
    assert first["start_step"] == 200 and first["mean_abs_error"] == pytest.approx(1.0)


def test_nominal_log_replays_with_no_gap(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx", obs_dim=50, act_dim=12, seed=3, gain=0.3)
    run_controller(QUAD_ENV, local_policy(tmp_path / "p.onnx"), max_steps=80, seed=2,
                   domain_randomization=False, log_path=tmp_path / "nominal.mcap", progress=False)
    log = read_log(tmp_path / "nominal.mcap")
    replayer = SimReplayer(QUAD_ENV)
    try:
        windows = choose_windows(log.steps, 15, 5, np.random.default_rng(0))
        gap = gap_report(replayer, log.steps, LogArrays.from_log(log).action, windows)
    finally:
        replayer.close()
    # Same model, same state, same actions: only float32 rounding of the logged state.
    assert gap["mean_abs_error_rad"] < 1e-3


def test_sysid_recovers_known_perturbed_dynamics(tmp_path: Path) -> None:
    truth = {"floor_friction": 0.36, "kp_scale": 0.8, "latency_steps": 1}
    write_policy(tmp_path / "p.onnx", obs_dim=50, act_dim=12, seed=11, gain=0.3)
    run_controller(QUAD_ENV, local_policy(tmp_path / "p.onnx"), episodes=3, max_steps=150, seed=4,
                   env_kwargs={"config": fixed_dynamics_config(truth)}, log_path=tmp_path / "perturbed.mcap",
                   progress=False)
    log = read_log(tmp_path / "perturbed.mcap")
    replayer = SimReplayer(QUAD_ENV)
    try:
        windows = choose_windows(log.steps, 20, 12, np.random.default_rng(0))
        fit = identify(replayer, log.steps, LogArrays.from_log(log).action, windows,
                       parameters=["floor_friction", "kp_scale", "latency_steps"], rounds=10, population=24,
                       progress=False)
    finally:
        replayer.close()
    # Stated tolerances (docs/results.md): latency exact, Kp scale +-0.05, friction +-0.08.
    # The replay itself is not bit-exact (solver warm start and float32 logs leave ~4 mrad
    # RMS at the true values), so the fit is as good as the log allows, not perfect.
    assert fit.best["latency_steps"] == 1
    assert abs(fit.best["kp_scale"] - 0.8) < 0.05
    assert abs(fit.best["floor_friction"] - 0.36) < 0.08
    assert fit.best_error < 0.05 * fit.nominal_error
    assert not fit.inside_trained_ranges()["floor_friction"]  # 0.36 < the trained 0.4



def test_csv_and_npz_import_with_a_column_mapping(quad_log, tmp_path: Path) -> None:
    from sim2real.replay.importers import TableImportError, import_table

    log_path, model = quad_log
    log = read_log(log_path)
    arrays = LogArrays.from_log(log)
    q = np.array([s.joint_position for s in log.steps])
    header = ["time"] + [f"obs_{i}" for i in range(50)] + [f"act_{i}" for i in range(12)] + [f"q_{i}" for i in range(12)]
    rows = np.column_stack([arrays.timestamp_ns / 1e9, arrays.observation, arrays.action, q])
    csv_path = tmp_path / "robot.csv"
    csv_path.write_text(",".join(header) + "\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in rows) + "\n")
    mapping = ["observation=obs_*", "action=act_*", "joint_position=q_*", "timestamp_s=time"]
    n = import_table(csv_path, mapping, tmp_path / "from_csv.mcap")
    back = read_log(tmp_path / "from_csv.mcap")
    assert n == len(log.steps) and back.info.source == "import"
    np.testing.assert_allclose([s.observation for s in back.steps], arrays.observation, atol=1e-6)
    np.testing.assert_allclose([s.joint_position for s in back.steps], q, atol=1e-6)
    assert [s.timestamp_ns for s in back.steps][:3] == list(arrays.timestamp_ns[:3])

    np.savez(tmp_path / "robot.npz", o=arrays.observation, a=arrays.action)
    report = run_replay(ReplayConfig(log=tmp_path / "robot.npz", model=model, out=tmp_path / "r",
                                     mapping=["observation=o", "action=a"], rate_hz=50.0))
    assert report["policy"]["rmse"] < 1e-6 and (tmp_path / "r" / "imported.mcap").is_file()
    # The report names the file given, and where its import is kept (not a deleted temp file);
    # without --env-id sim replay says what to give.
    assert report["log"] == f"{tmp_path / 'robot.npz'} (NPZ, imported to {tmp_path / 'r' / 'imported.mcap'})"
    assert json.loads((tmp_path / "r" / "report.json").read_text())["log"] == report["log"]
    assert "give --env-id" in report["sim"]["skipped"] and "unknown" not in report["sim"]["skipped"]

    # The valve rig's encoder columns land in the object-joint fields, named for the valve.
    theta = np.linspace(0.0, 1.0, len(q))[:, None]
    np.savez(tmp_path / "valve.npz", o=arrays.observation, a=arrays.action, th=theta, w=np.ones_like(theta))
    import_table(tmp_path / "valve.npz", ["observation=o", "action=a", "object_joint_position=th",
                                          "object_joint_velocity=w"], tmp_path / "valve.mcap",
                 env_id="sim2real/HandValveTurn-v0", rate_hz=20.0)
    valve = read_log(tmp_path / "valve.mcap")
    assert list(valve.info.object_joint_names) == ["valve_hinge"]
    np.testing.assert_allclose([s.object_joint_position[0] for s in valve.steps], theta[:, 0], atol=1e-6)
    np.testing.assert_allclose([s.object_joint_velocity[0] for s in valve.steps], 1.0)

    for bad, text in (
        (["observation=nope_*", "action=act_*"], "matches no column"),
        (["action=act_*"], "lacks ['observation']"),
        (["observation=obs_*", "action=act_*", "torque=tau_*"], "unknown"),
    ):
        with pytest.raises(TableImportError, match=re.escape(text)):
            import_table(csv_path, bad, tmp_path / "x.mcap")
    assert not (tmp_path / "x.mcap").exists()


def test_sysid_on_a_subset_without_latency(quad_log) -> None:
    log = read_log(quad_log[0])
    replayer = SimReplayer(QUAD_ENV)
    try:
        windows = choose_windows(log.steps, 5, 3, np.random.default_rng(0))
        fit = identify(replayer, log.steps, LogArrays.from_log(log).action, windows,
                       parameters=["kp_scale"], rounds=2, population=4, progress=False)
    finally:
        replayer.close()
    assert set(fit.best) == {"kp_scale"} and fit.best_error <= fit.nominal_error


def test_sim_replay_drives_the_joints_with_the_logged_control_law() -> None:
    from sim2real.replay.sim_replay import SimReplayError

    default = SimReplayer(QUAD_ENV)
    narrow = SimReplayer(QUAD_ENV, action_scale=[0.2, 0.4, 0.4] * 4,
                         action_offset=list(default.spec.default_pose))
    np.testing.assert_allclose(default.action_scale, default.spec.action_scales)
    np.testing.assert_allclose(narrow.action_scale, [0.2, 0.4, 0.4] * 4)
    default.close()
    narrow.close()
    with pytest.raises(SimReplayError, match="action_scale must have 12 entries"):
        SimReplayer(QUAD_ENV, action_scale=[0.5] * 3)


def test_the_logs_fallback_steps_are_left_out_of_policy_vs_log_and_said(quad_log, tmp_path: Path) -> None:
    """A controller that missed deadlines held its last action on those steps (logged as
    fallbacks): the policy cannot match them, so the comparison leaves them out, keeps the
    error over every step beside it, and the summary says why the two differ."""
    from sim2real.replay.report import summary_lines
    from sim2real.replay.sim_controller import PolicyAnswer

    _, model = quad_log
    policy = local_policy(model)
    held: list[np.ndarray] = []

    def late_every_seventh(obs: np.ndarray) -> PolicyAnswer:
        answer = policy(obs)
        if held and len(held) % 7 == 3:
            answer = PolicyAnswer(held[-1], answer.latency_ns, True)
        held.append(answer.action)
        return answer

    log = tmp_path / "late.mcap"
    run_controller(QUAD_ENV, late_every_seventh, episodes=1, max_steps=100, seed=2, log_path=log, progress=False)
    report = run_replay(ReplayConfig(log=log, model=model, out=tmp_path / "r", windows=2, horizon=5, sim=False))
    section = report["policy"]
    assert section["log_fallbacks"] == sum(1 for s in read_log(log).steps if s.fallback) > 0
    assert section["compared_steps"] == 100 - section["log_fallbacks"]
    assert section["rmse"] < 1e-6 and section["rmse_all_steps"] > 1e-3  # all of the error is theirs
    text = "\n".join(summary_lines(report))
    assert f"the log's {section['log_fallbacks']} fallback steps" in text and "Over every step" in text
