"""The simulated robot controller: closed loop over a local policy or a server, logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim2real.logformat.mcap_log import read_log
from sim2real.replay.sim_controller import local_policy, remote_policy, run_controller
from sim2real.serve.client import PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.synthetic import write_policy
from sim2real.serve.testing import BackgroundServer

QUAD = "sim2real/QuadrupedJoystick-v0"


def test_local_controller_logs_what_it_did(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx", obs_dim=50, act_dim=12)
    run = run_controller(QUAD, local_policy(tmp_path / "p.onnx"), episodes=2, max_steps=40, seed=3,
                         log_path=tmp_path / "sim.mcap", progress=False)
    log = read_log(tmp_path / "sim.mcap")
    assert len(log.steps) == run.steps == sum(run.lengths)
    assert log.info.source == "sim" and log.info.env_id == QUAD and len(log.info.joint_names) == 12
    assert sorted(log.episodes) == [0, 1]
    assert json.loads(log.episodes[1].dynamics_json) == run.dynamics[1]
    first = log.steps[0]
    assert len(first.observation) == 50 and len(first.action) == 12 and len(first.joint_position) == 12
    assert len(first.base_orientation) == 4 and len(first.base_linear_velocity) == 3
    np.testing.assert_allclose(sum(s.reward for s in log.steps if s.episode == 0), run.returns[0], rtol=1e-5)
    # Joint targets follow the deployment law: offset + scale * action.
    scale, offset = np.array(log.info.action_scale), np.array(log.info.action_offset)
    np.testing.assert_allclose(first.joint_target, offset + scale * np.array(first.action), atol=1e-5)


def test_remote_controller_matches_local(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx", obs_dim=50, act_dim=12)
    local = run_controller(QUAD, local_policy(tmp_path / "p.onnx"), max_steps=30, seed=1,
                           log_path=tmp_path / "local.mcap", progress=False)
    with BackgroundServer(ServeConfig(model=tmp_path / "p.onnx", port=0, device="cpu")) as srv:
        with PolicyClient(srv.target) as client, client.session(deadline_s=1.0) as session:
            remote = run_controller(QUAD, remote_policy(session), max_steps=30, seed=1,
                                    log_path=tmp_path / "remote.mcap", progress=False)
    assert remote.fallbacks == 0 and remote.returns == local.returns
    a = [s.action for s in read_log(tmp_path / "local.mcap").steps]
    b = [s.action for s in read_log(tmp_path / "remote.mcap").steps]
    np.testing.assert_array_equal(a, b)
