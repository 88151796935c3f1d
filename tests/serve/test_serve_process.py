"""`sim2real serve` as a real subprocess on 127.0.0.1: round trip, SIGTERM drain (with
streams open across it), and the client's fallback when the server process dies mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from sim2real.serve.client import PolicyClient
from sim2real.serve.model import load_model
from sim2real.serve.process import spawn_server
from sim2real.serve.synthetic import OBS_DIM, write_policy
from sim2real.serve.testing import wait_until
from sim2real.v1 import policy_pb2


def start_server(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc, port, _ = spawn_server(["--port", "0", "--device", "cpu", *args], timeout=60)
    return proc, port


@pytest.fixture
def model(tmp_path: Path) -> Path:
    write_policy(tmp_path / "policy.onnx")
    return tmp_path / "policy.onnx"


def test_subprocess_round_trip_and_sigterm_drain(model: Path) -> None:
    proc, port = start_server("--model", str(model), "--grace-seconds", "5")
    try:
        obs = np.random.default_rng(1).normal(size=(10, OBS_DIM)).astype(np.float32)
        expected = np.clip(load_model(model, "m", 1, "cpu").run(obs), -1, 1)
        with PolicyClient(f"127.0.0.1:{port}") as client:
            np.testing.assert_array_equal(np.stack([client.act(o).action for o in obs]), expected)
            # Unary calls in flight while SIGTERM arrives all complete.
            results, errors = [], []

            def hammer() -> None:
                for o in obs.repeat(20, axis=0):
                    try:
                        results.append(client.act(o, timeout_s=5))
                    except Exception as err:  # noqa: BLE001 - counted below
                        errors.append(err)
                        return

            worker = threading.Thread(target=hammer)
            worker.start()
            assert wait_until(lambda: len(results) > 0 or errors, timeout=30)  # calls under way
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            worker.join(timeout=30)
        # Calls either completed or were refused as the server stopped accepting; none
        # that the server accepted failed half-way.
        assert results, "no call completed before shutdown"
        assert all(getattr(e, "code", None) is not None for e in errors)
        assert all(np.isfinite(r.action).all() for r in results)
    finally:
        if proc.poll() is None:
            proc.kill()


def _flood(request: bytes, stop: threading.Event) -> Iterator[bytes]:
    while not stop.is_set():
        yield request
        time.sleep(0.001)


def _idle(stop: threading.Event) -> Iterator[bytes]:
    stop.wait()
    yield from ()


def test_sigterm_with_open_streams_exits_cleanly_without_a_traceback(model: Path) -> None:
    """Streams open across SIGTERM: a control loop stepping, streams sending faster than
    they read, idle ones. The grace period ends with them open, so gRPC cancels them: exit
    0 and nothing in the log that looks like a crash (it used to print a CancelledError
    traceback per stream)."""
    proc, port, lines = spawn_server(
        ["--port", "0", "--device", "cpu", "--model", str(model), "--grace-seconds", "0.5"], timeout=60
    )
    obs = np.zeros(OBS_DIM, np.float32)
    request = policy_pb2.ActRequest(observation=obs.tolist()).SerializeToString()
    stop = threading.Event()
    channels, calls = [], []
    try:
        with PolicyClient(f"127.0.0.1:{port}") as client, client.session(deadline_s=0.2) as loop:
            for i in range(6):
                channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                channels.append(channel)
                stream = channel.stream_stream(
                    "/sim2real.v1.PolicyService/StreamAct", request_serializer=None, response_deserializer=None
                )
                # Even ones send without reading their answers, so the server's writes back
                # up; odd ones send nothing.
                calls.append(stream(_flood(request, stop) if i % 2 == 0 else _idle(stop)))
            steps = []

            def control_loop() -> None:
                while not stop.is_set():
                    steps.append(loop.step(obs))
                    time.sleep(0.002)

            driver = threading.Thread(target=control_loop)
            driver.start()
            assert wait_until(lambda: len(steps) > 50, timeout=30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            served = len(steps)
            assert wait_until(lambda: len(steps) > served + 20, timeout=30)
            stop.set()
            driver.join(timeout=10)
        assert not any(s.fallback for s in steps[:50])
        assert steps[-1].fallback and steps[-1].reason  # the loop noticed, and held on
        # The process has exited; its last line ("stopped") reaches the list once the drain
        # thread has read everything before it.
        assert wait_until(lambda: any("stopped" in line for line in lines), timeout=30)
        output = "\n".join(lines)
        for text in ("Traceback", "CancelledError", "Exception not handled", "ERROR"):
            assert text not in output, output
    finally:
        stop.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
        if proc.poll() is None:
            proc.kill()


def test_client_falls_back_when_the_server_is_killed_mid_stream(model: Path) -> None:
    proc, port = start_server("--model", str(model))
    obs = np.zeros(OBS_DIM, np.float32)
    try:
        with PolicyClient(f"127.0.0.1:{port}") as client, client.session(deadline_s=0.02) as loop:
            first = [loop.step(obs) for _ in range(20)]
            assert not any(r.fallback for r in first)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            # Each step ends with the fallback (the deadline, or the dead connection noticed)
            # rather than waiting on the dead server: the loop goes on.
            steps = [loop.step(obs) for _ in range(50)]
            assert all(r.reason.startswith(("deadline", "disconnected")) for r in steps if r.fallback)
            assert all(r.fallback for r in steps[5:])  # after the break is noticed
            np.testing.assert_array_equal(steps[-1].action, first[-1].action)  # held
    finally:
        if proc.poll() is None:
            proc.kill()


def test_start_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_text("not onnx")
    for args, text in (
        (["--model", str(tmp_path / "bad.onnx")], "onnxruntime cannot load it"),
        (["--model", str(tmp_path / "missing.onnx")], "no such file"),
        (["--model-repo", str(tmp_path)], "no servable model"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "sim2real.cli", "serve", "--port", "0", *args],
            capture_output=True, text=True, timeout=60, env={**os.environ},
        )
        assert result.returncode == 2, result.stderr
        assert text.lower() in result.stderr.lower(), result.stderr
