"""`sim2real serve --uds PATH`: the same-host fast path on a Unix domain socket.

Real subprocess servers (the command a user runs) for serving and acting over the socket
alone and beside TCP, the file mode, a stale socket replaced, SIGTERM removing the file;
in-process servers and `serve_main` for the refusals, each one `error:` line naming the
flag. The C++ client over `unix:` is in tests/clients/test_cpp_client.py, TLS beside a
socket in tests/serve/test_security.py.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from sim2real.cli.serve import serve_main
from sim2real.serve.client import PolicyCallError, PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.model import load_model
from sim2real.serve.process import spawn_server, stop_server
from sim2real.serve.synthetic import ACT_DIM, OBS_DIM, write_policy
from sim2real.serve.testing import BackgroundServer, wait_until
from sim2real.serve.uds import MAX_SOCKET_PATH_BYTES, SocketFile


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short folder under /tmp: pytest's tmp_path can push a socket path past sun_path's
    107 bytes."""
    with tempfile.TemporaryDirectory(prefix="s2r-uds-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("uds") / "policy.onnx"
    write_policy(path)
    return path


def _expected(model: Path, obs: np.ndarray) -> np.ndarray:
    return np.clip(load_model(model, "m", 1, "cpu").run(obs), -1, 1)


def _spawn(model: Path, *args: str) -> tuple[subprocess.Popen[str], int, list[str]]:
    return spawn_server(["--model", str(model), "--device", "cpu", "--poll-interval", "0", *args], timeout=60)


def _stale_socket(path: Path) -> None:
    """A socket file nothing listens on: what a server killed with SIGKILL leaves."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
        dead.listen(1)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_serve_and_act_over_the_socket_alone_then_sigterm_removes_it(model: Path, sock_dir: Path) -> None:
    path = sock_dir / "policy.sock"
    proc, port, lines = _spawn(model, "--uds", str(path), "--no-tcp")
    try:
        assert port == 0  # no TCP listener
        assert any(line.endswith(f"on unix:{path}") for line in lines), lines
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
        obs = np.random.default_rng(3).normal(size=(8, OBS_DIM)).astype(np.float32)
        with PolicyClient(f"unix:{path}") as client:
            assert client.info().action_dim == ACT_DIM
            np.testing.assert_array_equal(np.stack([client.act(o).action for o in obs]), _expected(model, obs))
            with client.session(deadline_s=1.0) as loop:
                steps = [loop.step(o) for o in obs]
            assert not any(s.fallback for s in steps)
            np.testing.assert_array_equal(np.stack([s.action for s in steps]), _expected(model, obs))
        assert stop_server(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.lexists(path), "the socket file outlived a clean shutdown"


def test_socket_beside_tcp_both_answer_with_the_mode_asked_for(model: Path, sock_dir: Path) -> None:
    path = sock_dir / "policy.sock"
    proc, port, lines = _spawn(model, "--port", "0", "--uds", str(path), "--uds-mode", "0600")
    try:
        assert port > 0
        assert any(f"on grpc://127.0.0.1:{port} and unix:{path}" in line for line in lines), lines
        assert any(f"unix socket {path}: mode 0600" in line for line in lines), lines
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        obs = np.random.default_rng(4).normal(size=(5, OBS_DIM)).astype(np.float32)
        expected = _expected(model, obs)
        for target in (f"127.0.0.1:{port}", f"unix:{path}"):
            with PolicyClient(target) as client, client.session(deadline_s=1.0) as loop:
                np.testing.assert_array_equal(np.stack([client.act(o).action for o in obs]), expected)
                assert not any(loop.step(o).fallback for o in obs)
        assert stop_server(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.lexists(path)


def test_a_stale_socket_left_by_a_killed_server_is_replaced(model: Path, sock_dir: Path) -> None:
    path = sock_dir / "policy.sock"
    _stale_socket(path)
    proc, _, lines = _spawn(model, "--uds", str(path), "--no-tcp")
    try:
        with PolicyClient(f"unix:{path}") as client:
            client.act(np.zeros(OBS_DIM), timeout_s=5)
        assert any("removed a stale socket" in line for line in lines), lines
        # Killed, the server leaves its socket behind; the next one replaces it too.
        proc.kill()
        proc.wait(timeout=30)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        proc, _, _ = _spawn(model, "--uds", str(path), "--no-tcp")
        with PolicyClient(f"unix:{path}") as client:
            client.act(np.zeros(OBS_DIM), timeout_s=5)
        assert stop_server(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.lexists(path)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `sim2real serve ARGV` in this process; it must exit 2 with one `error:` line."""
    assert serve_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_unusable_socket_paths_are_refused_naming_the_flag(
    model: Path, sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--model", str(model), "--device", "cpu", "--poll-interval", "0", "--port", "0"]
    # A regular file at PATH: refused, and left as it was.
    regular = sock_dir / "notes.txt"
    regular.write_text("keep me")
    line = _refused([*base, "--uds", str(regular)], capsys)
    assert f"--uds {regular}: expected no file or a stale socket there, found a regular file" in line
    assert regular.read_text() == "keep me"
    # A symbolic link (even to a socket) is not followed.
    link = sock_dir / "link.sock"
    link.symlink_to(regular)
    assert "found a symbolic link" in _refused([*base, "--uds", str(link)], capsys)
    # A folder that does not exist.
    missing = sock_dir / "no-such-folder" / "policy.sock"
    line = _refused([*base, "--uds", str(missing)], capsys)
    assert f"--uds {missing}: the folder {missing.parent} does not exist" in line
    # Longer than sun_path takes.
    long_path = sock_dir / ("x" * (MAX_SOCKET_PATH_BYTES - len(str(sock_dir))))
    line = _refused([*base, "--uds", str(long_path)], capsys)
    assert f"the path is {MAX_SOCKET_PATH_BYTES + 1} bytes" in line and f"at most {MAX_SOCKET_PATH_BYTES}" in line
    # A socket something is listening on (a running server): never stolen.
    live_path = sock_dir / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(live_path))
        live.listen(1)
        line = _refused([*base, "--uds", str(live_path)], capsys)
        assert f"--uds {live_path}: another process is listening on this socket" in line
        assert stat.S_ISSOCK(os.lstat(live_path).st_mode)
    # Flag misuse.
    for argv, text in (
        (["--no-tcp"], "--no-tcp needs --uds PATH"),
        (["--uds", f"unix:{sock_dir}/p.sock"], f"--uds: expected a file path, got the gRPC address 'unix:{sock_dir}/p.sock'"),
        (["--uds", str(sock_dir / "p.sock"), "--uds-mode", "rw-rw----"], "--uds-mode: expected an octal file mode"),
        (["--host", f"unix:{sock_dir}/p.sock"], "for a Unix domain socket use --uds PATH"),
    ):
        assert text in _refused([*base, *argv], capsys)
    assert sorted(p.name for p in sock_dir.iterdir()) == ["link.sock", "live.sock", "notes.txt"]


def test_the_token_applies_on_the_socket(model: Path, sock_dir: Path) -> None:
    token_file = sock_dir / "token"
    token_file.write_text("s3cret\n")
    config = ServeConfig(model=model, port=0, device="cpu", uds=sock_dir / "p.sock", token_file=token_file)
    with BackgroundServer(config) as srv:
        with PolicyClient(srv.uds_target, token="s3cret") as client:
            client.act(np.zeros(OBS_DIM), timeout_s=5)
        for token in (None, "wrong"):
            with PolicyClient(srv.uds_target, token=token) as client, pytest.raises(PolicyCallError) as err:
                client.act(np.zeros(OBS_DIM), timeout_s=5)
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert not os.path.lexists(sock_dir / "p.sock")  # removed by the in-process stop too


def test_controllers_on_the_socket_do_not_share_one_connection_limit(model: Path, sock_dir: Path) -> None:
    """gRPC names every Unix-socket peer "unix:", so a per-connection limit there would be
    one limit for all local controllers; it is not applied on the socket (TCP keeps it)."""
    config = ServeConfig(model=model, port=0, device="cpu", uds=sock_dir / "p.sock", max_calls_per_connection=1)
    obs = np.zeros(OBS_DIM, np.float32)
    with BackgroundServer(config) as srv:
        clients = [PolicyClient(srv.uds_target) for _ in range(3)]
        sessions = [c.session(deadline_s=2.0, default_action=np.zeros(ACT_DIM)) for c in clients]
        try:
            assert wait_until(lambda: all(s.connected for s in sessions), timeout=10)
            results = [s.step(obs) for s in sessions]
            assert not any(r.fallback for r in results), [r.reason for r in results]
            clients[0].act(obs, timeout_s=5)  # a unary call beside three open streams
        finally:
            for s in sessions:
                s.close()
            for c in clients:
                c.close()
        # On TCP one connection still gets one call: a stream holds it, a unary call is refused.
        with PolicyClient(srv.target) as client, client.session(deadline_s=2.0, default_action=np.zeros(ACT_DIM)) as loop:
            assert not loop.step(obs).fallback
            with pytest.raises(PolicyCallError) as err:
                client.act(obs, timeout_s=5)
            assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_socket_file_is_removed_only_if_it_is_still_ours(sock_dir: Path) -> None:
    path = sock_dir / "p.sock"
    _stale_socket(path)
    ours = SocketFile.created(path, 0o640)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    # Another server's socket now at the same path (made elsewhere and moved over ours, so
    # it cannot get our freed inode number).
    _stale_socket(sock_dir / "other.sock")
    os.replace(sock_dir / "other.sock", path)
    assert not ours.remove() and os.path.lexists(path)
    theirs = SocketFile.created(path, 0o660)
    assert theirs.remove() and not os.path.lexists(path)
    assert not theirs.remove()  # nothing left to remove
