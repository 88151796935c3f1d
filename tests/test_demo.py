"""`sim2real demo` end to end: real server subprocess, closed loop over gRPC, log, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sim2real.serve.demo import shipped_policy
from sim2real.serve.logs import read_log
from sim2real.serve.model import load_model


def test_shipped_policy_and_card() -> None:
    path, card = shipped_policy()
    model = load_model(path, "quadruped", 1, "cpu")
    assert (model.obs_dim, model.act_dim) == (45, 12)
    assert card["env_id"] == model.metadata_value("env_id") == "sim2real/QuadrupedJoystick-v0"
    assert card["training_steps"] == model.metadata_value("training_steps")
    assert "sim2real train" in card["command"] and card["evaluation"]


def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "sim2real.train.cli", "demo", "--out", str(out), "--steps", "150",
         "--no-realtime", "--deadline-ms", "500"],  # CI machines stall; the default 10 ms is for real runs
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["server_exit_code"] == 0  # SIGTERM -> graceful drain -> 0
    try:
        os.kill(summary["server_pid"], 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the demo left its server running"
    steps = summary["steps"]
    assert 0 < steps <= 150 and summary["fallbacks"] == 0
    assert summary["server_recorded_steps"] == steps  # the server logged every request it answered
    assert len(read_log(out / "controller.mcap").steps) == steps
    report = json.loads((out / "replay" / "report.json").read_text())
    assert report["policy"]["rmse"] < 1e-5  # the log was produced by this very policy
    assert "sysid" in report["sim"] and (out / "replay" / "sysid.png").is_file()
    assert "episode return" in result.stdout and "p99" in result.stdout
    # What the robot did, not only the return: its command and tracking error.
    assert len(summary["commands"]) >= 1 and len(summary["commands"][0]) == 3
    assert summary["planar_error_mps"] is not None and summary["planar_error_mps"] >= 0
    assert "planar velocity error" in result.stdout
