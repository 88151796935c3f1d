"""`sim2real serve --fast-path`: the C++ front end answers exactly as the Python listener.

A real server (BackgroundServer) with the real compiled front end (tests/serve/conftest.py
builds it) on 127.0.0.1 and a Unix socket; the same calls go to both listeners and the
answers are compared field by field: actions, info, errors with their field violations,
in-stream errors, the rate limit's per-stream state, the token. Then the lifecycle: stop
removes the front end and its socket; a killed front end leaves the main listener serving.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sim2real.serve.client import PolicyCallError, PolicyClient, field_violations
from sim2real.serve.config import ServeConfig
from sim2real.serve.synthetic import OBS_DIM, policy_weights, reference_action, write_policy
from sim2real.serve.testing import BackgroundServer, wait_until
from sim2real.v1 import policy_pb2

ACT_METHOD = "/sim2real.v1.PolicyService/Act"
STREAM_METHOD = "/sim2real.v1.PolicyService/StreamAct"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "policy.onnx"
    write_policy(path, seed=3)
    return path


@contextmanager
def fast_server(binary: Path, model: Path, **overrides: object) -> Iterator[tuple[BackgroundServer, str, str]]:
    """A server with the fast path on TCP and a Unix socket: (server, fast TCP, fast unix)."""
    with tempfile.TemporaryDirectory(prefix="s2r-fp-", dir="/tmp") as folder:  # short: sun_path
        config = ServeConfig(
            model=model, port=0, device="cpu", poll_interval=0, fast_path=binary, fast_port=0,
            fast_uds=Path(folder) / "fast.sock", **overrides,  # type: ignore[arg-type]
        )
        with BackgroundServer(config) as srv:
            fast = srv.server.addresses.fast_path
            assert fast is not None and fast.port and fast.uds is not None
            yield srv, f"127.0.0.1:{fast.port}", f"unix:{fast.uds}"


def _raw_act(target: str, payload: bytes) -> grpc.RpcError:
    channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary(ACT_METHOD, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as err:
            call(payload, timeout=5)
        return err.value
    finally:
        channel.close()


@pytest.mark.parametrize("inference", ["cpp", "python"])
def test_both_listeners_give_the_same_actions_and_info(fastpath_binary: Path, model: Path, inference: str) -> None:
    weights = policy_weights(3, OBS_DIM, 3)
    with fast_server(fastpath_binary, model, fast_inference=inference) as (srv, fast_tcp, fast_unix):
        assert "fast path (C++ front end, PolicyService only) on grpc://127.0.0.1:" in srv.server.describe()
        fast = srv.server.addresses.fast_path
        assert fast is not None and fast.inference == inference
        observations = np.random.default_rng(0).normal(size=(20, OBS_DIM)).astype(np.float32)
        with PolicyClient(srv.target) as main, PolicyClient(fast_tcp) as tcp, PolicyClient(fast_unix) as unix:
            assert tcp.info().SerializeToString() == main.info().SerializeToString()
            assert unix.info().SerializeToString() == main.info().SerializeToString()
            for obs in observations:
                expected = main.act(obs).action
                np.testing.assert_array_equal(tcp.act(obs).action, expected)
                np.testing.assert_array_equal(unix.act(obs).action, expected)
                np.testing.assert_allclose(expected, reference_action(weights, obs), atol=1e-5)
            with tcp.session(deadline_s=2.0) as loop:
                for obs in observations:
                    result = loop.step(obs)
                    assert not result.fallback, result.reason
                    np.testing.assert_array_equal(result.action, main.act(obs).action)


def test_concurrent_streams_each_get_their_own_answers(fastpath_binary: Path, model: Path) -> None:
    """Eight streams at once: messages that arrive together are answered as one model batch;
    every answer is still its own observation's, in its stream's order."""
    import threading

    weights = policy_weights(3, OBS_DIM, 3)
    failures: list[str] = []
    with fast_server(fastpath_binary, model) as (_, fast_tcp, fast_unix):

        def robot(index: int) -> None:
            rng = np.random.default_rng(index)
            target = fast_tcp if index % 2 else fast_unix
            with PolicyClient(target) as client, client.session(deadline_s=5.0) as loop:
                for _ in range(60):
                    obs = rng.normal(size=OBS_DIM).astype(np.float32)
                    result = loop.step(obs)
                    if result.fallback or not np.allclose(result.action, reference_action(weights, obs), atol=1e-5):
                        failures.append(f"robot {index}: {result}")

        threads = [threading.Thread(target=robot, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not failures, failures[:3]


@pytest.mark.parametrize("inference", ["cpp", "python"])
def test_errors_are_the_same_code_message_and_field_violations(fastpath_binary: Path, model: Path, inference: str) -> None:
    with fast_server(fastpath_binary, model, fast_inference=inference) as (srv, fast_tcp, _):
        with PolicyClient(srv.target) as main, PolicyClient(fast_tcp) as fast:
            for call in (lambda c: c.act(np.zeros(OBS_DIM - 2)), lambda c: c.act(np.zeros(OBS_DIM), model_name="nope"),
                         lambda c: c.info("nope")):
                errors = []
                for client in (main, fast):
                    with pytest.raises(PolicyCallError) as err:
                        call(client)
                    errors.append(err.value)
                assert errors[0].code == errors[1].code != grpc.StatusCode.OK
                assert str(errors[0]) == str(errors[1])
            with pytest.raises(PolicyCallError) as err:
                fast.act(np.full(OBS_DIM, np.nan))
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "observation" in str(err.value)
        # Bytes that are no ActRequest, and the BadRequest detail of a wrong length.
        garbage = bytes([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x07])
        main_err, fast_err = _raw_act(srv.target, garbage), _raw_act(fast_tcp, garbage)
        assert fast_err.code() == main_err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fast_err.details() == main_err.details()
        short = policy_pb2.ActRequest(observation=[0.0] * 3).SerializeToString()
        main_err, fast_err = _raw_act(srv.target, short), _raw_act(fast_tcp, short)
        assert field_violations(fast_err) == field_violations(main_err) != ()
        # The server is still up and answering on both.
        with PolicyClient(fast_tcp) as fast:
            fast.act(np.zeros(OBS_DIM))


@pytest.mark.parametrize("inference", ["cpp", "python"])
def test_a_bad_stream_message_is_answered_in_the_stream_which_goes_on(fastpath_binary: Path, model: Path, inference: str) -> None:
    with fast_server(fastpath_binary, model, fast_inference=inference) as (_, fast_tcp, _), PolicyClient(fast_tcp) as fast:
        with fast.session(deadline_s=2.0) as loop:
            assert not loop.step(np.zeros(OBS_DIM)).fallback
            bad = loop.step(np.zeros(OBS_DIM + 1))
            assert bad.fallback and "INVALID_ARGUMENT" in bad.reason and f"got {OBS_DIM + 1}" in bad.reason
            for _ in range(5):
                assert not loop.step(np.zeros(OBS_DIM)).fallback


@pytest.mark.parametrize("inference", ["cpp", "python"])
def test_the_rate_limit_keeps_its_state_per_stream_as_on_the_main_listener(fastpath_binary: Path, model: Path, inference: str) -> None:
    observations = np.random.default_rng(1).normal(0, 3, size=(30, OBS_DIM)).astype(np.float32)

    def run(client: PolicyClient) -> list[tuple[list[float], bool]]:
        with client.session(deadline_s=2.0) as loop:
            out = []
            for obs in observations:
                result = loop.step(obs)
                assert not result.fallback, result.reason
                out.append((result.action.tolist(), result.rate_limited))
            return out

    with fast_server(fastpath_binary, model, max_action_delta=0.05, fast_inference=inference) as (srv, fast_tcp, _):
        with PolicyClient(srv.target) as main, PolicyClient(fast_tcp) as fast:
            expected = run(main)
            assert any(limited for _, limited in expected)
            assert run(fast) == expected
            assert run(fast) == expected  # a new stream starts from no previous action


def test_metrics_count_fast_path_calls_and_streams(fastpath_binary: Path, model: Path) -> None:
    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):
        registry = srv.server.metrics.registry

        def sample(name: str, labels: dict[str, str] | None = None) -> float:
            return registry.get_sample_value(name, labels or {}) or 0.0

        with PolicyClient(fast_tcp) as fast:
            for _ in range(3):
                fast.act(np.zeros(OBS_DIM))
            with pytest.raises(PolicyCallError):
                fast.act(np.zeros(2))
            with fast.session(deadline_s=2.0) as loop:
                for _ in range(4):
                    loop.step(np.zeros(OBS_DIM))
                assert wait_until(lambda: sample("sim2real_open_streams") == 1)
        # Steps the front end served itself are reported in batches (every 10 ms).
        assert wait_until(lambda: sample("sim2real_requests_total", {"method": "Act"}) == 4)
        assert wait_until(lambda: sample("sim2real_requests_total", {"method": "StreamAct"}) == 4)
        assert sample("sim2real_request_latency_seconds_count", {"method": "StreamAct", "model": "policy"}) == 4
        assert sample("sim2real_request_errors_total", {"method": "Act", "code": "INVALID_ARGUMENT"}) == 1
        assert wait_until(lambda: sample("sim2real_open_streams") == 0)


def test_admin_calls_stay_on_the_main_address_and_health_is_served(fastpath_binary: Path, model: Path) -> None:
    with fast_server(fastpath_binary, model) as (_, fast_tcp, fast_unix):
        with PolicyClient(fast_tcp, token="t") as fast, pytest.raises(PolicyCallError) as err:
            fast.list_models()
        assert err.value.code == grpc.StatusCode.UNIMPLEMENTED and "main address" in str(err.value)
        for target in (fast_tcp, fast_unix):
            channel = grpc.insecure_channel(target)
            stub = health_pb2_grpc.HealthStub(channel)
            # The server as a whole and the service by name, as the main listener answers.
            for service in ("", "sim2real.v1.PolicyService"):
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING, service
            channel.close()


@pytest.mark.parametrize("source", ["file", "environment"])
def test_the_bearer_token_is_required_on_the_fast_path(
    fastpath_binary: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    overrides: dict[str, object] = {}
    if source == "file":
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        overrides["token_file"] = token_file
    else:
        monkeypatch.setenv("SIM2REAL_TOKEN", "s3cret-token")
    with fast_server(fastpath_binary, model, **overrides) as (_, fast_tcp, fast_unix):
        for target in (fast_tcp, fast_unix):
            with PolicyClient(target, token="s3cret-token") as client:
                client.act(np.zeros(OBS_DIM))
                with client.session(deadline_s=2.0) as loop:
                    assert not loop.step(np.zeros(OBS_DIM)).fallback
            for token in (None, "wrong", "s3cret-token-but-longer"):
                with PolicyClient(target, token=token) as client, pytest.raises(PolicyCallError) as err:
                    client.act(np.zeros(OBS_DIM))
                assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        # The token reached the front end in a private file that is gone once it started.
        assert not list(Path(tempfile.gettempdir()).glob("sim2real-fastpath-token-*"))


class _Stream:
    """A raw StreamAct call kept open until close(); ``error`` if it was refused."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        call = channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=None)
        self.answers = call(iter(self.outbox.get, None))
        self.outbox.put(policy_pb2.ActRequest(observation=[0.0] * OBS_DIM).SerializeToString())
        self.error: grpc.RpcError | None = None
        try:
            next(self.answers)
        except grpc.RpcError as err:
            self.error = err

    def close(self) -> None:
        self.outbox.put(None)


def test_call_limits_apply_per_connection_and_in_all(fastpath_binary: Path, model: Path) -> None:
    with fast_server(fastpath_binary, model, max_concurrent_rpcs=3, max_calls_per_connection=2) as (_, fast_tcp, _):
        # Own TCP connections (channels share one by default).
        hog, other = (grpc.insecure_channel(fast_tcp, options=[("grpc.use_local_subchannel_pool", 1)])
                      for _ in range(2))
        streams = [_Stream(hog) for _ in range(3)]
        try:
            assert [s.error is None for s in streams] == [True, True, False]
            refused = streams[2].error
            assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-calls-per-connection 2" in refused.details()
            streams.append(_Stream(other))  # the third call in all: admitted
            assert streams[-1].error is None
            streams.append(_Stream(other))  # the fourth: over --max-concurrent-rpcs
            refused = streams[-1].error
            assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-concurrent-rpcs 3" in refused.details()
            # A closed stream gives its slot back.
            streams[0].close()
            act = hog.unary_unary(ACT_METHOD, request_serializer=None, response_deserializer=None)
            request = policy_pb2.ActRequest(observation=[0.0] * OBS_DIM).SerializeToString()

            def admitted() -> bool:
                try:
                    act(request, timeout=5)
                    return True
                except grpc.RpcError:
                    return False

            assert wait_until(admitted, timeout=10)
        finally:
            for stream in streams:
                stream.close()
            hog.close()
            other.close()


def test_stop_ends_the_front_end_and_removes_its_socket(fastpath_binary: Path, model: Path) -> None:
    with fast_server(fastpath_binary, model) as (srv, _, fast_unix):
        frontend = srv.server.fast_path
        assert frontend is not None and frontend.process is not None
        process = frontend.process
        socket_path = Path(fast_unix.removeprefix("unix:"))
        assert socket_path.is_socket() and (socket_path.stat().st_mode & 0o777) == 0o660
    assert process.poll() is not None
    assert not socket_path.exists()


def test_a_killed_front_end_leaves_the_main_listener_serving(fastpath_binary: Path, model: Path) -> None:
    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):
        frontend = srv.server.fast_path
        assert frontend is not None and frontend.process is not None
        os.kill(frontend.process.pid, signal.SIGKILL)
        assert wait_until(lambda: frontend.process is None or frontend.process.poll() is not None)
        with PolicyClient(fast_tcp, timeout_s=1.0) as fast, pytest.raises(PolicyCallError) as err:
            fast.act(np.zeros(OBS_DIM))
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        with PolicyClient(srv.target) as main:
            main.act(np.zeros(OBS_DIM))


def test_fast_path_options_are_checked_naming_the_flag(fastpath_binary: Path, model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--fast-port/--fast-uds need --fast-path BINARY"):
        ServeConfig(model=model, fast_port=0)
    with pytest.raises(ValueError, match=r"--fast-path needs --fast-port PORT and/or --fast-uds PATH"):
        ServeConfig(model=model, fast_path=fastpath_binary)
    not_executable = tmp_path / "fastpath"
    not_executable.write_text("")
    with pytest.raises(ValueError, match=r"--fast-path: expected the executable sim2real_fastpath"):
        ServeConfig(model=model, fast_path=not_executable, fast_port=0)
    with pytest.raises(ValueError, match=r"fast_port: expected 0..65535, got 70000"):
        ServeConfig(model=model, fast_path=fastpath_binary, fast_port=70000)
    with pytest.raises(ValueError, match=r"--fast-uds and --uds must be different paths"):
        ServeConfig(model=model, uds=tmp_path / "a.sock", fast_path=fastpath_binary, fast_uds=tmp_path / "a.sock")


def test_a_failure_in_the_request_path_is_internal_and_the_listener_goes_on(
    fastpath_binary: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fast_server(fastpath_binary, model, fast_inference="python") as (srv, fast_tcp, _):
        core = srv.server.core
        real = core.act_many
        monkeypatch.setattr(core, "act_many", lambda items: 1 / 0)
        with PolicyClient(fast_tcp) as fast:
            with pytest.raises(PolicyCallError) as err:
                fast.act(np.zeros(OBS_DIM))
            assert err.value.code == grpc.StatusCode.INTERNAL and "logged" in str(err.value)
            monkeypatch.setattr(core, "act_many", real)
            fast.act(np.zeros(OBS_DIM))


# --- The policy run in the front end (--fast-inference cpp) -------------------------------


def test_the_front_end_runs_the_policy_without_the_python_request_path(
    fastpath_binary: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = policy_weights(3, OBS_DIM, 3)
    with fast_server(fastpath_binary, model, fast_inference="cpp") as (srv, fast_tcp, fast_unix):
        assert "the policy runs in the front end" in srv.server.describe()
        # Python's request path broken: the front end answers on its own (and only what
        # gets an error would reach the broken path).
        monkeypatch.setattr(srv.server.core, "act_many", lambda items: 1 / 0)
        rng = np.random.default_rng(5)
        with PolicyClient(fast_tcp) as tcp, PolicyClient(fast_unix) as unix:
            for client in (tcp, unix):
                obs = rng.normal(size=OBS_DIM).astype(np.float32)
                answer = client.act(obs)
                np.testing.assert_allclose(answer.action, reference_action(weights, obs), atol=1e-5)
                assert answer.model_name == "policy" and answer.model_version == 1 and answer.server_compute_s > 0
            with tcp.session(deadline_s=2.0) as loop:
                for _ in range(10):
                    assert not loop.step(rng.normal(size=OBS_DIM)).fallback
            with pytest.raises(PolicyCallError) as err:
                tcp.act(np.zeros(OBS_DIM + 1))  # an error: the policy process answers it (broken here)
            assert err.value.code == grpc.StatusCode.INTERNAL


def test_a_stream_keeps_its_order_when_some_answers_come_from_python(fastpath_binary: Path, model: Path) -> None:
    """Messages sent without waiting, every third one wrong (answered by the policy process,
    later than the front end answers the others): the answers still come in message order."""
    weights = policy_weights(3, OBS_DIM, 3)
    rng = np.random.default_rng(2)
    requests = []
    for sequence in range(60):
        size = OBS_DIM + 1 if sequence % 3 == 1 else OBS_DIM
        requests.append(policy_pb2.ActRequest(observation=rng.normal(size=size).tolist(), sequence=sequence))
    with fast_server(fastpath_binary, model) as (_, fast_tcp, _):
        channel = grpc.insecure_channel(fast_tcp)
        try:
            call = channel.stream_stream(
                STREAM_METHOD, request_serializer=policy_pb2.ActRequest.SerializeToString,
                response_deserializer=policy_pb2.ActResponse.FromString,
            )
            answers = list(call(iter(requests), timeout=20))
        finally:
            channel.close()
    assert [a.sequence for a in answers] == list(range(60))
    for request, answer in zip(requests, answers, strict=True):
        if request.sequence % 3 == 1:
            assert answer.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not answer.action
            assert f"got {OBS_DIM + 1}" in answer.error.message
        else:
            assert not answer.HasField("error")
            obs = np.asarray(request.observation, np.float32)
            np.testing.assert_allclose(answer.action, reference_action(weights, obs), atol=1e-5)


def test_a_hot_reload_reaches_the_front_end(fastpath_binary: Path, model: Path) -> None:
    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):
        obs = np.random.default_rng(4).normal(size=OBS_DIM).astype(np.float32)
        with PolicyClient(fast_tcp) as fast, PolicyClient(srv.target) as main:
            assert fast.act(obs).model_version == 1
            write_policy(model, seed=8)
            os.utime(model, ns=(1, 1))
            assert srv.server.repository.poll() == ["policy:2"]
            assert wait_until(lambda: fast.act(obs).model_version == 2)
            answer = fast.act(obs)
            np.testing.assert_allclose(answer.action, reference_action(policy_weights(8, OBS_DIM, 3), obs), atol=1e-5)
            np.testing.assert_array_equal(answer.action, main.act(obs).action)


def test_sanitized_observations_are_answered_as_on_the_main_listener(fastpath_binary: Path, model: Path) -> None:
    observations = np.random.default_rng(6).normal(size=(6, OBS_DIM)).astype(np.float32)
    observations[0, 1] = np.nan
    observations[1, 0] = np.inf
    observations[2, 3] = -np.inf
    with fast_server(fastpath_binary, model, nonfinite="sanitize") as (srv, fast_tcp, _):
        with PolicyClient(srv.target) as main, PolicyClient(fast_tcp) as fast:
            for obs in observations:
                np.testing.assert_array_equal(fast.act(obs).action, main.act(obs).action)


def test_steps_served_in_the_front_end_are_recorded(fastpath_binary: Path, model: Path, tmp_path: Path) -> None:
    from sim2real.logformat.mcap_log import read_log

    with fast_server(fastpath_binary, model, record=tmp_path / "logs") as (srv, fast_tcp, _):
        with PolicyClient(fast_tcp) as fast, fast.session(deadline_s=2.0) as loop:
            for _ in range(25):
                assert not loop.step(np.full(OBS_DIM, 0.5)).fallback
        recorder = srv.server.recorder
        assert recorder is not None
        assert wait_until(lambda: recorder.stats.submitted == 25)  # reported in batches
        srv.stop()
    steps = [s for f in recorder.paths() for s in read_log(f).steps]
    assert len(steps) == recorder.stats.written == 25
    assert all(s.model_name == "policy" and len(s.action) == 3 and list(s.observation) == [0.5] * OBS_DIM
               for s in steps)


def test_fast_inference_cpp_needs_the_library(
    fastpath_binary: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sim2real.serve import frontend

    monkeypatch.setattr(frontend, "onnxruntime_library", lambda: None)
    with pytest.raises(OSError, match=r"--fast-inference cpp: the installed onnxruntime wheel ships no libonnxruntime"):
        with fast_server(fastpath_binary, model, fast_inference="cpp"):
            pass
    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):  # auto: every message to Python
        fast = srv.server.addresses.fast_path
        assert fast is not None and fast.inference == "python"
        with PolicyClient(fast_tcp) as client:
            client.act(np.zeros(OBS_DIM))


def _run_front_end(binary: Path, library: str, first_frame: bytes) -> subprocess.CompletedProcess[bytes]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [os.fspath(binary), "--worker-fd", str(theirs.fileno()), "--address", "127.0.0.1:0",
             "--onnxruntime", library],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        try:
            ours.sendall(first_frame)
        except OSError:
            pass  # it may have exited already
        ours.shutdown(socket.SHUT_WR)
        out, err = process.communicate(timeout=30)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        ours.close()


def test_the_front_end_refuses_a_wrong_library_or_a_malformed_table(
    fastpath_binary: Path, model: Path, tmp_path: Path
) -> None:
    from sim2real.serve.frontend import MODEL_TABLE, onnxruntime_library

    library = onnxruntime_library()
    assert library is not None, "the onnxruntime wheel of this environment ships no libonnxruntime.so"
    not_a_library = tmp_path / "libnot.so"
    not_a_library.write_text("text")
    result = _run_front_end(fastpath_binary, os.fspath(not_a_library), b"")
    assert result.returncode == 2 and b"--onnxruntime: cannot open" in result.stderr and not result.stdout
    # A table cut short, and one of an unknown format: refused before listening.
    header = struct.Struct("<IQB")
    for payload, message in ((b"\x02\x00", b"malformed model table"), (b"\x07" + bytes(40), b"format 7")):
        frame = header.pack(9 + len(payload), 0, MODEL_TABLE) + payload
        result = _run_front_end(fastpath_binary, os.fspath(library), frame)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not result.stdout  # never said ready


FAKE_ONNXRUNTIME = r"""
// A library that answers OrtGetApiBase like onnxruntime but is not a release the fast path
// trusts with its table positions: the front end must refuse it before calling anything.
#include <cstdint>
struct ApiBase { const void* (*GetApi)(std::uint32_t); const char* (*GetVersionString)(); };
static const void* GetApi(std::uint32_t) { static int never_called; return &never_called; }
static const char* Version() { return VERSION; }
static const ApiBase base{GetApi, Version};
extern "C" const ApiBase* OrtGetApiBase() { return &base; }
"""


@pytest.mark.parametrize("version", ["1.12.0", "2.0.0", "nonsense"])
def test_the_front_end_refuses_an_onnxruntime_it_does_not_know_by_version(
    fastpath_binary: Path, tmp_path: Path, version: str
) -> None:
    import shutil as _shutil

    compiler = next((c for c in ("c++", "g++", "clang++") if _shutil.which(c)), None)
    assert compiler is not None  # the front end was built, so a compiler is there
    source = tmp_path / "fake.cpp"
    source.write_text(FAKE_ONNXRUNTIME)
    library = tmp_path / "libonnxruntime.so.99"
    subprocess.run([compiler, "-shared", "-fPIC", f'-DVERSION="{version}"', "-o", str(library), str(source)],
                   check=True, timeout=120)
    result = _run_front_end(fastpath_binary, os.fspath(library), b"")
    assert result.returncode == 2 and not result.stdout, result.stderr
    assert f"is onnxruntime {version}".encode() in result.stderr
    assert b"runs onnxruntime 1.20 or a later 1.x" in result.stderr


def test_the_ready_line_names_the_onnxruntime_the_front_end_runs(fastpath_binary: Path, model: Path) -> None:
    import onnxruntime

    with fast_server(fastpath_binary, model) as (srv, _fast_tcp, _):
        assert srv.server.fast_path is not None
        assert srv.server.fast_path.library_version == onnxruntime.__version__


@pytest.mark.parametrize("policy", ["quadruped_joystick", "a1_joystick", "hand_valve"])
def test_the_shipped_policies_answer_bit_for_bit_as_on_the_main_listener(fastpath_binary: Path, policy: str) -> None:
    """The real actors (normalizer, 256-wide layers, the quadruped's gait prior in the graph)
    through onnxruntime's C API in the front end and through the Python server: the same
    float32 actions, over observations around the training mean and far outside it."""
    import sim2real.serve.policies as shipped

    path = Path(shipped.__file__).parent / f"{policy}.onnx"
    with fast_server(fastpath_binary, path) as (srv, fast_tcp, _):
        with PolicyClient(srv.target) as main, PolicyClient(fast_tcp) as fast:
            info = main.info()
            rng = np.random.default_rng(11)
            mean = np.asarray(json.loads(info.metadata["observation_mean"]), np.float32)
            for scale in (0.1, 1.0, 30.0):
                for _ in range(10):
                    obs = (mean + rng.normal(0, scale, info.observation_dim)).astype(np.float32)
                    expected = main.act(obs)
                    got = fast.act(obs)
                    np.testing.assert_array_equal(got.action, expected.action)
                    assert (got.clamped, got.model_version) == (expected.clamped, expected.model_version)


def test_an_unloaded_model_leaves_the_front_end_too(fastpath_binary: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_policy(root / "walk" / "1" / "policy.onnx", seed=1)
    write_policy(root / "hand" / "1" / "policy.onnx", seed=2)
    with tempfile.TemporaryDirectory(prefix="s2r-fp-", dir="/tmp") as folder:
        config = ServeConfig(model_repo=root, port=0, device="cpu", poll_interval=0, fast_path=fastpath_binary,
                             fast_uds=Path(folder) / "fast.sock")
        with BackgroundServer(config) as srv:
            fast_address = srv.server.addresses.fast_path
            assert fast_address is not None and fast_address.uds is not None
            with PolicyClient(f"unix:{fast_address.uds}") as fast:
                assert fast.act(np.zeros(OBS_DIM), model_name="walk").model_name == "walk"
                shutil.rmtree(root / "walk")
                srv.server.repository.poll()

                def gone() -> bool:
                    try:
                        fast.act(np.zeros(OBS_DIM), model_name="walk")
                    except PolicyCallError as err:
                        return err.code == grpc.StatusCode.NOT_FOUND
                    return False

                assert wait_until(gone)
                assert fast.act(np.zeros(OBS_DIM), model_name="hand").model_name == "hand"
                assert fast.act(np.zeros(OBS_DIM)).model_name == "hand"  # the default follows


def test_a_failure_counting_reported_steps_fails_no_request(
    fastpath_binary: Path, model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):
        def broken(*args: object) -> None:
            raise RuntimeError("metrics backend down")

        monkeypatch.setattr(srv.server._servicer, "_observe", broken)
        with PolicyClient(fast_tcp) as fast:
            for _ in range(5):
                fast.act(np.zeros(OBS_DIM))
            assert wait_until(lambda: "could not be counted" in caplog.text)
            # A request the policy process answers, after the failed batch: its own error.
            with pytest.raises(PolicyCallError) as err:
                fast.act(np.zeros(OBS_DIM + 1))
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            fast.act(np.zeros(OBS_DIM))


def _pipelined(target: str, requests: list[policy_pb2.ActRequest]) -> list[policy_pb2.ActResponse]:
    """One StreamAct call, every message sent without waiting for answers."""
    channel = grpc.insecure_channel(target)
    try:
        call = channel.stream_stream(
            STREAM_METHOD, request_serializer=policy_pb2.ActRequest.SerializeToString,
            response_deserializer=policy_pb2.ActResponse.FromString,
        )
        return list(call(iter(requests), timeout=30))
    finally:
        channel.close()


def _one_by_one(target: str, requests: list[policy_pb2.ActRequest]) -> list[policy_pb2.ActResponse]:
    """One StreamAct call, each message sent once the previous one is answered."""
    channel = grpc.insecure_channel(target)
    outbox: queue.SimpleQueue[policy_pb2.ActRequest | None] = queue.SimpleQueue()
    try:
        call = channel.stream_stream(
            STREAM_METHOD, request_serializer=policy_pb2.ActRequest.SerializeToString,
            response_deserializer=policy_pb2.ActResponse.FromString,
        )
        answers = call(iter(outbox.get, None), timeout=60)
        out = []
        for request in requests:
            outbox.put(request)
            out.append(next(answers))
        outbox.put(None)
        return out
    finally:
        channel.close()


def _comparable(answers: list[policy_pb2.ActResponse]) -> list[tuple[object, ...]]:
    return [(a.sequence, list(a.action), a.rate_limited, a.clamped, a.model_name, a.error.code) for a in answers]


def test_the_rate_limit_holds_across_messages_the_python_process_answers(fastpath_binary: Path, model: Path) -> None:
    """--max-action-delta with some messages answered by the policy process (errors, here):
    the limit follows the stream's order across both sides, pipelined or step by step."""
    rng = np.random.default_rng(9)
    requests = []
    for sequence in range(80):
        size = OBS_DIM + 2 if sequence % 5 == 3 else OBS_DIM
        requests.append(policy_pb2.ActRequest(observation=rng.normal(0, 3, size).tolist(), sequence=sequence))
    with fast_server(fastpath_binary, model, max_action_delta=0.05) as (srv, fast_tcp, fast_unix):
        expected = _comparable(_pipelined(srv.target, requests))
        assert sum(1 for e in expected if e[2]) > 20  # the limit is at work
        assert _comparable(_pipelined(fast_tcp, requests)) == expected
        assert _comparable(_pipelined(fast_unix, requests)) == expected
        assert _comparable(_one_by_one(fast_tcp, requests)) == expected


def test_a_stream_across_a_model_the_front_end_lacks_keeps_one_rate_limit(
    fastpath_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model missing from the front end's table (as one served on CUDA is) is answered by
    the policy process; a stream that uses it and a model the front end serves gets the
    rate limit the main listener gives, across both."""
    import types

    from sim2real.serve import frontend

    real = frontend.model_table

    def without_hand(core: object, want_bytes: bool) -> bytes:
        repository = core.repository  # type: ignore[attr-defined]
        proxy_repository = types.SimpleNamespace(
            default_name=repository.default_name,
            serving=lambda: {k: v for k, v in repository.serving().items() if k != "hand"},
        )
        proxy = types.SimpleNamespace(repository=proxy_repository, safety=core.safety,  # type: ignore[attr-defined]
                                      sanitize_bounds=core.sanitize_bounds)  # type: ignore[attr-defined]
        return real(proxy, want_bytes)  # type: ignore[arg-type]

    monkeypatch.setattr(frontend, "model_table", without_hand)
    root = tmp_path / "repo"
    write_policy(root / "walk" / "1" / "policy.onnx", seed=1)
    write_policy(root / "hand" / "1" / "policy.onnx", seed=2)
    rng = np.random.default_rng(3)
    pattern = ["walk", "walk", "hand", "hand", "hand", "walk", "hand", "walk", "walk", "walk"] * 6
    requests = [policy_pb2.ActRequest(observation=rng.normal(0, 3, OBS_DIM).tolist(), model_name=name, sequence=i)
                for i, name in enumerate(pattern)]
    with tempfile.TemporaryDirectory(prefix="s2r-fp-", dir="/tmp") as folder:
        config = ServeConfig(model_repo=root, port=0, device="cpu", poll_interval=0, fast_path=fastpath_binary,
                             fast_uds=Path(folder) / "fast.sock", max_action_delta=0.05)
        with BackgroundServer(config) as srv:
            fast_address = srv.server.addresses.fast_path
            assert fast_address is not None and fast_address.inference == "cpp"
            fast_target = f"unix:{fast_address.uds}"
            expected = _comparable(_pipelined(srv.target, requests))
            assert sum(1 for e in expected if e[2]) > 10
            assert _comparable(_pipelined(fast_target, requests)) == expected
            # One at a time: each message the process answers carries the stream's memory.
            assert _comparable(_one_by_one(fast_target, requests)) == expected


def _sample(srv: BackgroundServer, name: str, labels: dict[str, str] | None = None) -> float:
    return srv.server.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_two_authorization_headers_are_refused_on_both_listeners(fastpath_binary: Path, model: Path,
                                                                 tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with fast_server(fastpath_binary, model, token_file=token_file) as (srv, fast_tcp, _):
        request = policy_pb2.ActRequest(observation=[0.0] * OBS_DIM).SerializeToString()
        right, wrong = ("authorization", "Bearer s3cret-token"), ("authorization", "Bearer wrong")
        for target in (srv.target, fast_tcp):
            channel = grpc.insecure_channel(target)
            act = channel.unary_unary(ACT_METHOD, request_serializer=None, response_deserializer=None)
            try:
                assert act(request, metadata=(right,), timeout=5)  # one right header: served
                for metadata in ((wrong, right), (right, wrong), (right, right)):
                    with pytest.raises(grpc.RpcError) as err:
                        act(request, metadata=metadata, timeout=5)
                    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (target, metadata)
            finally:
                channel.close()


def test_a_stream_that_never_reads_its_answers_is_not_read_without_bound(fastpath_binary: Path, model: Path) -> None:
    """A client that keeps sending and never reads: the front end stops reading the stream
    once a few answers wait, so HTTP/2 flow control stops the sender (before the fix it
    read on and queued every answer: hundreds of MB). The server answers others meanwhile
    and the stream, once read, gets every answer in order."""
    sent = 20_000
    request = policy_pb2.ActRequest(observation=[0.0] * OBS_DIM)
    pulled = [0]

    def messages() -> Iterator[bytes]:
        for sequence in range(sent):
            pulled[0] += 1
            request.sequence = sequence
            yield request.SerializeToString()

    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):
        # gRPC's client takes answers into its own buffer up to its receive window, which it
        # grows by probing; a fixed 64 KiB window is the client that "never reads".
        channel = grpc.insecure_channel(fast_tcp, options=[("grpc.http2.bdp_probe", 0),
                                                           ("grpc.http2.lookahead_bytes", 65536)])
        call = channel.stream_stream(STREAM_METHOD, request_serializer=None,
                                     response_deserializer=policy_pb2.ActResponse.FromString)
        answers = call(messages(), timeout=120)  # nothing reads `answers` until the end
        try:
            def served() -> float:
                return _sample(srv, "sim2real_requests_total", {"method": "StreamAct"})

            assert wait_until(lambda: served() > 0)
            # Bounded: what the client's receive window holds plus a few; never all it sent.
            # (A negative, so this waits its whole timeout when the bound holds.)
            assert not wait_until(lambda: served() >= sent // 2, timeout=8.0), served()
            with PolicyClient(fast_tcp) as other:  # another client is served meanwhile
                other.act(np.zeros(OBS_DIM))
            # Reading resumes the stream: every answer, in order.
            first = [next(answers).sequence for _ in range(100)]
            assert first == list(range(100))
        finally:
            answers.cancel()
            channel.close()


def test_non_utf8_model_names_do_not_flood_the_log(fastpath_binary: Path, model: Path, capfd) -> None:
    bad = policy_pb2.ActRequest(observation=[0.0] * OBS_DIM).SerializeToString()
    # model_name (field 2, length-delimited) with bytes that are not UTF-8.
    bad += bytes([2 << 3 | 2, 2, 0xC3, 0x28])
    with fast_server(fastpath_binary, model) as (srv, fast_tcp, _):
        capfd.readouterr()
        channel = grpc.insecure_channel(fast_tcp)
        act = channel.unary_unary(ACT_METHOD, request_serializer=None, response_deserializer=None)
        try:
            for _ in range(300):
                with pytest.raises(grpc.RpcError) as err:
                    act(bad, timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            channel.close()
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "protobuf" in line.lower() or "utf-8" in line.lower()]
    assert len(lines) <= 3, lines


def test_the_drop_count_of_step_reports_becomes_a_metric(fastpath_binary: Path, model: Path) -> None:
    from sim2real.serve.frontend import DROPPED_RECORD

    with fast_server(fastpath_binary, model) as (srv, _fast_tcp, _):
        frontend = srv.server.fast_path
        assert frontend is not None
        frontend._account(bytes([DROPPED_RECORD]) + struct.pack("<Q", 1234))
        frontend._account(bytes([DROPPED_RECORD]) + struct.pack("<Q", 6))
        assert _sample(srv, "sim2real_fastpath_reports_dropped_total") == 1240


def test_one_drain_for_both_listeners(fastpath_binary: Path, model: Path) -> None:
    """Stopping the server: from the moment health says NOT_SERVING, neither listener
    takes a new call, and a stream open on the fast path keeps being answered through the
    grace period (before: cut after 1 s, while the main port took new calls for ~1 s)."""
    import threading
    import time as _time

    with fast_server(fastpath_binary, model, grace_seconds=30.0) as (srv, fast_tcp, _):
        fast = PolicyClient(fast_tcp)
        main_channel = grpc.insecure_channel(srv.target)
        fast_channel = grpc.insecure_channel(fast_tcp)
        health = health_pb2_grpc.HealthStub(main_channel)
        main_act = main_channel.unary_unary(ACT_METHOD, request_serializer=None, response_deserializer=None)
        fast_act = fast_channel.unary_unary(ACT_METHOD, request_serializer=None, response_deserializer=None)
        request = policy_pb2.ActRequest(observation=[0.0] * OBS_DIM).SerializeToString()
        stopped = threading.Event()
        try:
            with fast.session(deadline_s=5.0) as loop:
                assert not loop.step(np.zeros(OBS_DIM)).fallback
                stopper = threading.Thread(target=lambda: (srv.run(srv.server.stop(), timeout=60), stopped.set()))
                stopper.start()

                def not_serving() -> bool:
                    try:
                        status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    except grpc.RpcError:
                        return True
                    return status != health_pb2.HealthCheckResponse.SERVING

                assert wait_until(not_serving)
                for act in (main_act, fast_act):
                    with pytest.raises(grpc.RpcError) as err:
                        act(request, timeout=5)
                    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                # The open stream outlives what the old front end allowed (1 s) by far.
                until = _time.monotonic() + 2.5
                steps = 0
                while _time.monotonic() < until:
                    assert not loop.step(np.zeros(OBS_DIM)).fallback
                    steps += 1
                assert steps > 10 and not stopped.is_set()
            # The stream closed: the drain ends without waiting out the 30 s.
            assert stopped.wait(timeout=25)
            stopper.join()
        finally:
            fast.close()
            main_channel.close()
            fast_channel.close()


def test_the_frame_numbers_agree_between_the_front_end_and_this_process() -> None:
    """The worker protocol's kinds and control statuses are written twice, in C++ and in
    Python: read both and compare, so neither can drift alone."""
    import re

    from sim2real.serve import frontend

    source = (Path(frontend.__file__).parent / "fastpath" / "fastpath.cpp").read_text()
    enum = re.search(r"enum Kind : std::uint8_t \{(.*?)\};", source, re.S).group(1)
    kinds = {name: int(value) for name, value in re.findall(r"k(\w+) = (\d+)", enum)}
    statuses = {name: int(value) for name, value in
                re.findall(r"constexpr std::uint8_t k(\w+) = (\d+);", source)}
    python = {
        "Act": frontend.ACT, "StreamMessage": frontend.STREAM_MESSAGE, "StreamOpen": frontend.STREAM_OPEN,
        "StreamClose": frontend.STREAM_CLOSE, "Info": frontend.INFO, "Report": frontend.REPORT,
        "StreamMessageWithState": frontend.STREAM_MESSAGE_WITH_STATE, "Draining": frontend.DRAINING,
    }
    assert kinds == python
    assert statuses == {"ModelTable": frontend.MODEL_TABLE, "StreamState": frontend.STREAM_STATE,
                        "Drain": frontend.DRAIN}
    policy_source = (Path(frontend.__file__).parent / "fastpath" / "policy.cpp").read_text()
    assert f"format != {frontend.TABLE_FORMAT}" in policy_source
