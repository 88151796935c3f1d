"""The `sim2real` console script, run for real (subprocess) and in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim2real.train.cli import main

SIM2REAL = shutil.which("sim2real")


def read_video(path: Path) -> np.ndarray:
    """Decode a clip in a fresh interpreter: imageio forks ffmpeg, and a fork from this
    process, where earlier tests ran gRPC threads, can leave the child without its pipes.
    (A comprehension, not list(): the reader's len() is inf, which list() preallocates.)"""
    code = ("import sys, numpy as np, imageio.v2 as iio; "
            "np.save(sys.argv[2], np.stack([f for f in iio.get_reader(sys.argv[1])]))")
    npy = path.with_suffix(".frames.npy")
    subprocess.run([sys.executable, "-c", code, str(path), str(npy)], check=True, timeout=120)
    return np.load(npy)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert SIM2REAL, "the sim2real console script is not installed"
    return subprocess.run([SIM2REAL, *args], capture_output=True, text=True, timeout=300)


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "robots" in result.stdout


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert main([]) == 2


def test_robots_lists_both_tasks_with_sizes_and_dr() -> None:
    result = run("robots")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sim2real/QuadrupedJoystick-v0" in out and "sim2real/HandCubeRotate-v0" in out
    assert "floor_friction" in out and "U(0.4, 1)" in out


def test_robots_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "list", "--json", "sim2real/QuadrupedJoystick-v0"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["observation_dim"] == 45 and entry["action_dim"] == 12
    assert entry["control_rate_hz"] == 50 and entry["physics_rate_hz"] >= 500
    assert entry["domain_randomization"]["latency_steps"]["distribution"] == "U{0..1}"


def test_robots_unknown_env_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "sim2real/Nope-v0"]) == 2
    err = capsys.readouterr().err
    assert "unknown env id 'sim2real/Nope-v0'" in err and "sim2real/HandCubeRotate-v0" in err


@pytest.mark.parametrize("env_id", ["sim2real/QuadrupedJoystick-v0", "sim2real/HandCubeRotate-v0"])
def test_view_renders_a_real_clip(tmp_path: Path, env_id: str) -> None:
    out = tmp_path / "clip.mp4"
    result = run("robots", "view", env_id, "--out", str(out), "--seconds", "0.5",
                 "--width", "160", "--height", "120")
    assert result.returncode == 0, result.stderr
    frames = read_video(out)
    assert len(frames) >= 10
    assert frames[0].shape == (120, 160, 3)
    assert np.std(frames[-1]) > 5, "blank frame"
    assert not list(tmp_path.glob(".*partial*")), "temporary file left behind"


def test_view_rejects_bad_options(tmp_path: Path) -> None:
    result = run("robots", "view", "sim2real/QuadrupedJoystick-v0", "--seconds", "-1")
    assert result.returncode != 0
    assert "seconds must be > 0" in result.stderr
    result = run("robots", "view", "sim2real/QuadrupedJoystick-v0", "--out", str(tmp_path / "x.avi"))
    assert result.returncode != 0 and "must end in .mp4 or .gif" in result.stderr


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "sim2real.train.cli", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "robots" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "zero", "--env", "Pendulum-v1", "--commands", "f=1,0,0"],
         "--commands applies to sim2real/QuadrupedJoystick-v0 only"),
        (["eval", "zero", "--env", "sim2real/QuadrupedJoystick-v0", "--commands", "f=1,0"],
         "expected [NAME=]VX,VY,YAW"),
        (["robots", "view", "sim2real/HandCubeRotate-v0", "--command", "f=1,0,0"],
         "--command applies to sim2real/QuadrupedJoystick-v0 only"),
        (["robots", "view", "sim2real/QuadrupedJoystick-v0", "--policy", "no/such/run"],
         "is neither zero, random, an .onnx file nor a run directory"),
    ],
)
def test_judge_and_view_misuse_is_refused_with_the_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "zero", "--env", "sim2real/QuadrupedJoystick-v0", "--video", "x.avi"],
         "video must end in .mp4 or .gif"),
        (["eval", "zero", "--env", "sim2real/QuadrupedJoystick-v0", "--video-seconds", "0"],
         "video_seconds must be > 0"),
        (["robots", "view", "sim2real/QuadrupedJoystick-v0", "--frames", "0"], "frames must be in 1..64"),
    ],
)
def test_bad_render_options_are_refused_before_any_work(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0 and message in result.stderr
