"""Shared fixtures: the fast path's C++ front end (serve/fastpath), built once per session with CMake.

Skipped, with the reason, only where gRPC C++ or the build tools are missing; .ci/run
installs them and sets SIM2REAL_REQUIRE_CPP=1, so that there a skip is a failure. Set
SIM2REAL_CPP_BUILD_DIR to reuse a build folder between runs (the front end goes to its
fastpath/ subfolder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "serve" / "fastpath"
APT_HINT = (
    "apt-get install -y cmake make g++ pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev "
    "(.ci/run installs them)"
)


def _missing() -> list[str]:
    missing = [tool for tool in ("cmake", "pkg-config", "protoc") if shutil.which(tool) is None]
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler")
    if shutil.which("pkg-config") and subprocess.run(["pkg-config", "--exists", "grpc++"], check=False).returncode:
        missing.append("grpc++ development files")
    return missing


@pytest.fixture(scope="session")
def fastpath_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing()
    if missing:
        reason = f"sim2real_fastpath not built: missing {', '.join(missing)}; {APT_HINT}"
        if os.environ.get("SIM2REAL_REQUIRE_CPP") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    configured = os.environ.get("SIM2REAL_CPP_BUILD_DIR")
    directory = (Path(configured) if configured else tmp_path_factory.mktemp("fastpath-build")) / "fastpath"
    for command in (
        ["cmake", "-S", str(SOURCE), "-B", str(directory), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(directory), "--parallel", "2"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return directory / "sim2real_fastpath"
