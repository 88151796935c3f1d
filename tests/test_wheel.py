"""A built wheel installs and imports exactly like the editable checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("robots", "train", "serve", "replay", "logformat", "cli", "protos")


def test_wheel_installs_and_imports_like_the_checkout(tmp_path: Path) -> None:
    # Build from a copy so the checkout gets no build/ or egg-info droppings.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)],
        check=True, timeout=300,
    )
    (wheel,) = dist.glob("sim2real-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    assert "sim2real/robots/quadruped/xmls/scene_flat.xml" in names
    assert "sim2real/robots/hand/xmls/scene.xml" in names
    assert "sim2real/robots/hand/cube_gait.json" in names  # the cube task's gait prior reads it
    assert {"sim2real/v1/policy_pb2.py", "sim2real/v1/policy_pb2_grpc.py", "sim2real/v1/policy.proto"} <= set(names)
    assert "sim2real/serve/server.py" in names
    assert {"sim2real/replay/report.py", "sim2real/logformat/mcap_log.py", "sim2real/cli/main.py"} <= set(names)
    assert {f"sim2real/serve/policies/{name}.{ext}" for name in ("quadruped_joystick", "a1_joystick", "hand_valve")
            for ext in ("onnx", "json")} <= set(names)
    assert not any(n.startswith(tuple(f"{d}/" for d in (*SOURCE_DIRS, "tests"))) for n in names), names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sim2real = sim2real.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, timeout=300,
    )
    # -S skips site.py, so the editable install's import hook (a .pth file) is not loaded:
    # the import can only come from the wheel's files; dependencies come from site-packages
    # added as a plain path.
    site_packages = sysconfig.get_paths()["purelib"]
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "import gymnasium as gym, sim2real.robots, sim2real.cli.main as cli;"
        "from sim2real.robots.quadruped import constants;"
        "import sim2real.serve.server, sim2real.serve.client, sim2real.replay.report, sim2real.logformat.mcap_log;"
        "from sim2real.v1 import policy_pb2_grpc;"
        "assert sim2real.serve.server.__file__.startswith(sys.argv[1]);"
        "assert sim2real.robots.__file__.startswith(sys.argv[1]), sim2real.robots.__file__;"
        "from sim2real.robots.quadruped.robot_spec import shipped_specs, SPEC_DIR;"
        "assert SPEC_DIR.is_relative_to(sys.argv[1]) and {'go1', 'a1'} <= set(shipped_specs());"
        "from sim2real.robots.quadruped.build import load_robot;"
        "assert load_robot('a1').total_mass > 12 and load_robot('go1').spec.description.is_file();"
        "[gym.make(e).reset(seed=0) for e in sim2real.robots.ENVS];"
        "print('ok', cli.main(['--help']))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(target), site_packages],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "ok 0" in result.stdout
