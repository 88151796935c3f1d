"""The gRPC server in-process (a real server on a real 127.0.0.1 port, on its own event
loop thread): round trips, bad input over the wire, hot reload under load, health,
reflection, metrics, and the client's fallback."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sim2real.serve.client import PolicyCallError, PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.core import MAX_MESSAGE_UTF8_BYTES
from sim2real.serve.model import load_model
from sim2real.serve.security import LogThrottle
from sim2real.serve.server import TRANSPORT_MESSAGE_FACTOR
from sim2real.serve.synthetic import ACT_DIM, OBS_DIM, reference_action, write_policy
from sim2real.serve.testing import BackgroundServer, wait_until
from sim2real.v1 import policy_pb2, policy_pb2_grpc


@pytest.fixture
def policy(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "policy.onnx"
    return path, write_policy(path)


def _server(**kw) -> BackgroundServer:
    kw.setdefault("port", 0)
    kw.setdefault("device", "cpu")
    return BackgroundServer(ServeConfig(**kw))


def test_round_trip_equals_local_onnxruntime(policy) -> None:
    path, _ = policy
    local = load_model(path, "local", 1, "cpu")
    obs = np.random.default_rng(0).normal(size=(20, OBS_DIM)).astype(np.float32)
    expected = np.clip(local.run(obs), -1, 1)
    with _server(model=path) as srv, PolicyClient(srv.target) as client:
        unary = np.stack([client.act(o).action for o in obs])
        np.testing.assert_array_equal(unary, expected)
        with client.session(deadline_s=1.0) as loop:
            streamed = [loop.step(o) for o in obs]
        assert not any(r.fallback for r in streamed)
        assert [r.sequence for r in streamed] == list(range(1, 21))
        np.testing.assert_array_equal(np.stack([r.action for r in streamed]), expected)
        info = client.info()
        assert (info.observation_dim, info.action_dim, info.model_name) == (OBS_DIM, ACT_DIM, "policy")
        assert info.execution_provider == "CPUExecutionProvider"


def test_bad_input_gets_clear_codes_and_the_server_keeps_serving(policy) -> None:
    path, w = policy
    good = np.zeros(OBS_DIM, np.float32)
    with _server(model=path, max_message_bytes=1024) as srv, PolicyClient(srv.target) as client:
        cases = [
            (np.zeros(OBS_DIM + 3), "", grpc.StatusCode.INVALID_ARGUMENT, f"expects {OBS_DIM} values, got {OBS_DIM + 3}"),
            (np.full(OBS_DIM, np.nan), "", grpc.StatusCode.INVALID_ARGUMENT, "observation[0] is nan"),
            (good, "nope", grpc.StatusCode.NOT_FOUND, "'nope'"),
            (np.zeros(1000), "", grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ]
        for obs, name, code, text in cases:
            with pytest.raises(PolicyCallError) as err:
                client.act(obs, model_name=name)
            assert err.value.code == code, err.value
            assert text in err.value.message
            np.testing.assert_allclose(client.act(good).action, reference_action(w, good), atol=1e-6)

        # A 1 us deadline: each call either beats it (rarely) or ends DEADLINE_EXCEEDED;
        # nothing else, and the server keeps serving.
        codes = []
        for _ in range(20):
            try:
                client.act(good, timeout_s=1e-6)
                codes.append(grpc.StatusCode.OK)
            except PolicyCallError as err:
                codes.append(err.code)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}
        assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
        client.act(good)

        # In a stream, one bad message gets its own error and the stream goes on.
        stub = policy_pb2_grpc.PolicyServiceStub(client.channel)
        requests = [
            policy_pb2.ActRequest(observation=good.tolist(), sequence=1),
            policy_pb2.ActRequest(observation=[1.0, 2.0], sequence=2),
            policy_pb2.ActRequest(observation=[float("inf")] * OBS_DIM, sequence=3),
            policy_pb2.ActRequest(observation=good.tolist(), sequence=4, model_name="nope"),
            policy_pb2.ActRequest(observation=good.tolist(), sequence=5),
        ]
        responses = list(stub.StreamAct(iter(requests), timeout=10))
        assert [r.sequence for r in responses] == [1, 2, 3, 4, 5]
        assert [r.error.code for r in responses] == [
            0, grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0],
            grpc.StatusCode.NOT_FOUND.value[0], 0,
        ]
        assert "got 2" in responses[1].error.message
        assert list(responses[1].action) == [] and len(responses[4].action) == ACT_DIM


def test_hot_reload_under_a_running_stream_fails_no_request(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    weights = {1: write_policy(root / "walk" / "1" / "policy.onnx", seed=1)}
    obs = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)
    results = []
    stop = threading.Event()
    with _server(model_repo=root, poll_interval=0.05) as srv, PolicyClient(srv.target) as client:
        with client.session(deadline_s=2.0) as loop:
            def drive() -> None:
                while not stop.is_set():
                    results.append(loop.step(obs))

            driver = threading.Thread(target=drive)
            driver.start()
            try:
                assert wait_until(lambda: len(results) > 50, timeout=30)
                # A broken upload first: rejected, v1 keeps serving.
                (root / "walk" / "3").mkdir()
                (root / "walk" / "3" / "policy.onnx").write_bytes(b"half a file")
                weights[2] = write_policy(root / "walk" / "2" / "policy.onnx", seed=2)
                assert wait_until(lambda: results[-1].model_version == 2, timeout=30)
                seen = len(results)
                assert wait_until(lambda: len(results) > seen + 50, timeout=30)
            finally:
                stop.set()
                driver.join(timeout=10)
    assert all(not r.fallback for r in results), next(r.reason for r in results if r.fallback)
    versions = [r.model_version for r in results]
    assert versions[0] == 1 and versions[-1] == 2 and sorted(versions) == versions
    for r in results:
        np.testing.assert_allclose(r.action, reference_action(weights[r.model_version], obs), atol=1e-6)


def test_health_and_reflection(policy) -> None:
    path, _ = policy
    with _server(model=path) as srv:
        channel = grpc.insecure_channel(srv.target)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "sim2real.v1.PolicyService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for s in answer.list_services_response.service}
        assert {"sim2real.v1.PolicyService", "sim2real.v1.PolicyAdminService", "grpc.health.v1.Health"} <= names
        (answer,) = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="sim2real.v1.PolicyService")]), timeout=5
        )
        assert answer.file_descriptor_response.file_descriptor_proto
        srv.run(srv.server.health.enter_graceful_shutdown())
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        channel.close()


def test_metrics_endpoint(policy) -> None:
    path, _ = policy
    with _server(model=path, metrics_port=0) as srv, PolicyClient(srv.target) as client:
        for _ in range(5):
            client.act(np.zeros(OBS_DIM))
        with pytest.raises(PolicyCallError):
            client.act(np.zeros(2))
        port = srv.server.addresses.metrics_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'sim2real_request_latency_seconds_count{method="Act",model="policy"} 5.0' in text
    assert 'sim2real_request_errors_total{code="INVALID_ARGUMENT",method="Act"} 1.0' in text
    assert 'sim2real_model_version{model="policy"} 1.0' in text
    assert 'sim2real_execution_provider{model="policy",provider="CPUExecutionProvider"} 1.0' in text


def test_client_falls_back_within_the_deadline_and_reconnects(policy, tmp_path: Path) -> None:
    path, w = policy
    obs = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)
    srv = _server(model=path).start()
    port = srv.port
    client = PolicyClient(srv.target)
    hold = client.session(deadline_s=0.05, fallback="hold")
    default = client.session(deadline_s=0.05, fallback="default", default_action=np.full(ACT_DIM, 0.25))
    try:
        good = hold.step(obs)
        assert not good.fallback
        default.step(obs)
        srv.stop()  # the server goes away mid-session
        for session, expected in ((hold, good.action), (default, np.full(ACT_DIM, 0.25))):
            for _ in range(5):
                result = session.step(obs)  # the fallback at the deadline, not a wait on the server
                assert result.fallback and result.reason.startswith(("deadline", "disconnected")), result.reason
                np.testing.assert_array_equal(result.action, expected)
        # The server comes back on the same port: the session reconnects by itself.
        srv = _server(model=path, port=port).start()
        assert wait_until(lambda: not hold.step(obs).fallback, timeout=20)
        np.testing.assert_allclose(hold.step(obs).action, reference_action(w, obs), atol=1e-6)
        assert hold.reconnects >= 1
    finally:
        hold.close()
        default.close()
        client.close()
        srv.stop()


def test_port_in_use_fails_at_start(policy) -> None:
    path, _ = policy
    with _server(model=path) as first:
        with pytest.raises(OSError, match="cannot bind .*is the port in use"):
            _server(model=path, port=first.port).start()
        with PolicyClient(first.target) as client:  # the first one is unaffected
            client.act(np.zeros(OBS_DIM))


def test_a_taken_metrics_port_is_named(policy) -> None:
    path, _ = policy
    with _server(model=path, metrics_port=0) as first:
        taken = first.server.addresses.metrics_port
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{taken} \\(--metrics-port {taken}\\)"):
            _server(model=path, metrics_port=taken).start()


def test_defaults_are_loopback_and_the_documented_limits(policy) -> None:
    """docs/security.md states these defaults; changing one means changing the doc."""
    path, _ = policy
    config = ServeConfig(model=path)
    assert (config.host, config.port) == ("127.0.0.1", 50051)
    assert config.tls() is None and config.token_file is None and config.metrics_port is None
    assert (config.tcp, config.uds, config.uds_mode) == (True, None, "0660")
    assert (config.max_message_bytes, config.max_concurrent_rpcs, config.max_calls_per_connection) == (
        1 << 20, 256, 32,
    )
    assert (config.version_policy, config.nonfinite, config.max_action_delta) == ("latest", "reject", None)
    assert TRANSPORT_MESSAGE_FACTOR == 4 and MAX_MESSAGE_UTF8_BYTES == 1000 and LogThrottle().interval == 10.0
    with _server(model=path) as srv:  # host left at its default
        assert srv.target.startswith("127.0.0.1:")
        assert f"on grpc://127.0.0.1:{srv.port}" in srv.server.describe()


def test_calls_beyond_max_concurrent_rpcs_are_resource_exhausted(policy) -> None:
    path, _ = policy
    obs = np.zeros(OBS_DIM, np.float32)
    with _server(model=path, max_concurrent_rpcs=2) as srv, PolicyClient(srv.target) as client:
        sessions = [client.session(deadline_s=5.0, default_action=np.zeros(ACT_DIM)) for _ in range(2)]
        try:
            assert not any(loop.step(obs).fallback for loop in sessions)  # two streams hold both slots
            with pytest.raises(PolicyCallError) as err:
                client.act(obs, timeout_s=5)
            assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
        finally:
            for loop in sessions:
                loop.close()
        assert wait_until(lambda: _acts(client, obs), timeout=10)  # the slots come back


def _acts(client: PolicyClient, obs: np.ndarray) -> bool:
    try:
        client.act(obs, timeout_s=5)
        return True
    except PolicyCallError:
        return False


def test_a_session_opened_before_the_server_is_up(policy) -> None:
    """Without default_action, opening a session needs the server (for the action size):
    the error says how to do without; with it, the session starts and connects once the
    server comes up on its port."""
    from sim2real.serve.client import PolicyCallError
    from sim2real.serve.testing import wait_until

    path, w = policy
    srv = _server(model=path).start()
    port = srv.port
    srv.stop()
    client = PolicyClient(f"127.0.0.1:{port}")
    try:
        with pytest.raises(PolicyCallError) as err:
            client.session(deadline_s=0.05)
        assert err.value.code == grpc.StatusCode.UNAVAILABLE and "default_action=" in str(err.value)
        early = client.session(deadline_s=0.05, default_action=np.zeros(ACT_DIM))
        try:
            assert early.step(np.zeros(OBS_DIM, np.float32)).fallback
            srv = _server(model=path, port=port).start()
            try:
                assert wait_until(lambda: not early.step(np.zeros(OBS_DIM, np.float32)).fallback, timeout=30)
            finally:
                srv.stop()
        finally:
            early.close()
    finally:
        client.close()
