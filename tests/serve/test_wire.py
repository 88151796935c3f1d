"""The server's wire handling against hostile or clumsy clients (issue 12, items 3, 8, 9):
malformed and oversized protobuf, one connection hoarding call slots, echoed input, clients
vanishing mid-write, structured errors; and the client's per-message error branch, its
late-answer filter and the per-stream rate limit, all over a real server on 127.0.0.1.

Raw clients use gRPC's generic calls with identity serializers, so they can send bytes no
generated stub would.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc._cython import cygrpc

from sim2real.serve.client import PolicyCallError, PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.core import MAX_MESSAGE_UTF8_BYTES, PolicyCore
from sim2real.serve.metrics import ServerMetrics
from sim2real.serve.repository import ModelRepository
from sim2real.serve.security import LogThrottle
from sim2real.serve.server import PolicyServer, PolicyServicer
from sim2real.serve.synthetic import ACT_DIM, OBS_DIM, reference_action, write_policy
from sim2real.serve.testing import BackgroundServer, wait_until
from sim2real.v1 import policy_pb2

MALFORMED = bytes.fromhex("0affffffff07")  # field 1, length 2^31-ish: runs past the end
ACT = "/sim2real.v1.PolicyService/Act"
STREAM_ACT = "/sim2real.v1.PolicyService/StreamAct"
INFO = "/sim2real.v1.PolicyService/GetPolicyInfo"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


@pytest.fixture
def policy(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "policy.onnx"
    return path, write_policy(path)


def _server(**kw) -> BackgroundServer:
    kw.setdefault("port", 0)
    kw.setdefault("device", "cpu")
    return BackgroundServer(ServeConfig(**kw))


def _connection(target: str) -> grpc.Channel:
    """A channel on its own TCP connection (channels share one by default)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def _good(seq: int = 0, n: int = OBS_DIM, **kw) -> bytes:
    return policy_pb2.ActRequest(observation=[0.1] * n, sequence=seq, **kw).SerializeToString()


def _unary(channel: grpc.Channel, method: str, raw: bytes, **kw) -> bytes:
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)(raw, timeout=10, **kw)


class RawStream:
    """One StreamAct call fed raw bytes on demand."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        call = channel.stream_stream(STREAM_ACT, request_serializer=None, response_deserializer=None)
        self.call = call(iter(self._outbox.get, None), timeout=60)

    def send(self, raw: bytes) -> None:
        self._outbox.put(raw)

    def recv(self) -> policy_pb2.ActResponse:
        return policy_pb2.ActResponse.FromString(next(self.call))

    def ask(self, raw: bytes) -> policy_pb2.ActResponse:
        self.send(raw)
        return self.recv()

    def close(self) -> None:
        self._outbox.put(None)
        self.call.cancel()


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- malformed and oversized input -------------------------------------------------------------


def test_malformed_unary_requests_are_invalid_argument_without_tracebacks(policy, caplog) -> None:
    caplog.set_level(logging.WARNING)
    path, w = policy
    with _server(model=path) as srv, _connection(srv.target) as channel:
        for method in (ACT, INFO, HEALTH_CHECK):
            for _ in range(20):
                with pytest.raises(grpc.RpcError) as err:
                    _unary(channel, method, MALFORMED)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value.details())
                assert "not a valid" in err.value.details() and "6 bytes" in err.value.details()
        # ...and the server goes on answering.
        answer = policy_pb2.ActResponse.FromString(_unary(channel, ACT, _good()))
        np.testing.assert_allclose(answer.action, reference_action(w, np.full(OBS_DIM, 0.1, np.float32)), atol=1e-6)
    assert _tracebacks(caplog) == []
    # 60 bad requests, about one warning (one per 10 s): the log is rate-limited.
    warnings = [r for r in caplog.records if "not a valid" in r.getMessage()]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]


def test_malformed_and_oversized_messages_in_a_stream_get_their_own_error(policy, caplog) -> None:
    caplog.set_level(logging.WARNING)
    path, _ = policy
    limit = 1024
    with _server(model=path, max_message_bytes=limit) as srv, _connection(srv.target) as channel:
        stream = RawStream(channel)
        try:
            assert not stream.ask(_good(1)).HasField("error")
            bad = stream.ask(MALFORMED)
            assert bad.error.code == INVALID_ARGUMENT and "not a valid sim2real.v1.ActRequest" in bad.error.message
            oversized = _good(3, n=400)  # 2 KB: over the limit, within the transport's slack
            assert limit < len(oversized) < 4 * limit
            big = stream.ask(oversized)
            assert big.error.code == RESOURCE_EXHAUSTED and big.sequence == 3
            assert f"at most {limit} (--max-message-bytes)" in big.error.message
            later = stream.ask(_good(4))
            assert later.sequence == 4 and len(later.action) == ACT_DIM and not later.HasField("error")
            # Past the transport's slack gRPC itself ends the stream (documented), and the
            # server keeps serving everyone else.
            stream.send(_good(5, n=5 * limit))
            with pytest.raises(grpc.RpcError) as err:
                stream.recv()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            stream.close()
        assert not RawStream(channel).ask(_good(6)).HasField("error")
    assert _tracebacks(caplog) == []


def test_unauthenticated_bytes_are_neither_parsed_nor_logged(policy, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="sim2real")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    path, _ = policy
    with _server(model=path, token_file=token) as srv, _connection(srv.target) as channel:
        for _ in range(10):
            with pytest.raises(grpc.RpcError) as err:
                _unary(channel, ACT, MALFORMED)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream = RawStream(channel)
        stream.send(MALFORMED)
        with pytest.raises(grpc.RpcError) as err:
            stream.recv()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream.close()
        # With the token the same bytes are parsed, and refused as malformed.
        with pytest.raises(grpc.RpcError) as err:
            _unary(channel, ACT, MALFORMED, metadata=(("authorization", "Bearer s3cret"),))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    logged = [r.getMessage() for r in caplog.records if "not a valid" in r.getMessage()]
    assert len(logged) == 1 and "Act from" in logged[0]


def test_log_throttle_counts_what_it_did_not_log(caplog) -> None:
    now = [0.0]
    throttle = LogThrottle(logging.getLogger("sim2real.test"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="sim2real.test"):
        assert throttle.warning("bad", "first %d", 1)
        for _ in range(5):
            now[0] += 1.0
            assert not throttle.warning("bad", "again")
        assert throttle.warning("other", "another kind")  # kinds are throttled separately
        now[0] = 11.0
        assert throttle.warning("bad", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "first 1", "another kind", "later (5 more like it in the last 11 s not logged)",
    ]


# --- echoed input and structured errors ------------------------------------------------------


def test_a_huge_model_name_stays_not_found(policy) -> None:
    path, _ = policy
    name = "x" * 100_000
    with _server(model=path) as srv, PolicyClient(srv.target) as client:
        for call in (lambda: client.act(np.zeros(OBS_DIM), model_name=name), lambda: client.info(name)):
            with pytest.raises(PolicyCallError) as err:
                call()
            assert err.value.code == grpc.StatusCode.NOT_FOUND, err.value
            assert len(err.value.message.encode()) <= MAX_MESSAGE_UTF8_BYTES
            assert "is not served here" in err.value.message
        with _connection(srv.target) as channel:
            answer = RawStream(channel).ask(_good(1, model_name=name))
        assert answer.error.code == grpc.StatusCode.NOT_FOUND.value[0] and answer.sequence == 1
        assert len(answer.error.message.encode()) <= MAX_MESSAGE_UTF8_BYTES


def test_invalid_observations_carry_a_bad_request_field_violation(policy) -> None:
    path, _ = policy
    with _server(model=path) as srv, PolicyClient(srv.target) as client:
        with pytest.raises(PolicyCallError) as err:
            client.act(np.zeros(OBS_DIM + 2))
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.field_violations == (("observation", err.value.message),)
        obs = np.zeros(OBS_DIM)
        obs[2] = np.inf
        with pytest.raises(PolicyCallError) as err:
            client.act(obs)
        assert [field for field, _ in err.value.field_violations] == ["observation[2]"]

        # What any gRPC client (C++'s included) reads: google.rpc.Status in the
        # grpc-status-details-bin trailer, with the call's own code and message.
        with _connection(srv.target) as channel, pytest.raises(grpc.RpcError) as raw:
            _unary(channel, ACT, _good(n=2))
        trailer = dict(raw.value.trailing_metadata())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(trailer)
        assert status.code == INVALID_ARGUMENT and status.message == raw.value.details()
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert bad.field_violations[0].field == "observation"
        assert f"expects {OBS_DIM} values, got 2" in bad.field_violations[0].description


# --- fairness -------------------------------------------------------------------------------


def test_one_connection_cannot_take_every_call_slot(policy) -> None:
    path, _ = policy
    with _server(model=path, max_concurrent_rpcs=8, max_calls_per_connection=4) as srv:
        hog, other = _connection(srv.target), _connection(srv.target)
        streams: list[RawStream] = []
        refused: list[grpc.RpcError] = []
        try:
            for i in range(8):
                stream = RawStream(hog)
                streams.append(stream)
                try:
                    assert not stream.ask(_good(i)).HasField("error")
                except grpc.RpcError as err:
                    refused.append(err)
            assert len(refused) == 4
            for err in refused:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "--max-calls-per-connection 4" in err.details()
            with pytest.raises(grpc.RpcError) as err:
                _unary(hog, ACT, _good())
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Everyone else is still served, unary and streaming.
            _unary(other, ACT, _good())
            other_stream = RawStream(other)
            streams.append(other_stream)
            assert not other_stream.ask(_good(1)).HasField("error")
            # A closed stream gives its slot back.
            streams[0].close()
            assert wait_until(lambda: _try_act(hog), timeout=10)
        finally:
            for stream in streams:
                stream.close()
            hog.close()
            other.close()


def _try_act(channel: grpc.Channel) -> bool:
    try:
        _unary(channel, ACT, _good())
        return True
    except grpc.RpcError:
        return False


# --- quiet disconnects and shutdown ------------------------------------------------------------


class _GoneClientContext:
    """A StreamAct context whose client vanished after sending: writes fail the way gRPC's
    do when the connection is gone before gRPC has noticed the cancellation (a race that
    gRPC logs with a traceback unless the handler ends quietly)."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = list(messages)

    async def send_initial_metadata(self, metadata: object) -> None:
        return None

    async def read(self) -> object:
        return self.messages.pop(0) if self.messages else grpc.aio.EOF

    async def write(self, message: object) -> None:
        raise cygrpc.ExecuteBatchError("Failed \"execute_batch\": (<grpc._cython.cygrpc.SendMessageOperation>,)")

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def test_a_client_gone_mid_write_ends_the_stream_quietly(policy, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="sim2real")
    path, _ = policy
    repository = ModelRepository(model_file=path, device="cpu")
    repository.load_initial()
    metrics = ServerMetrics()
    servicer = PolicyServicer(PolicyCore(repository), metrics)
    # CancelledError is what gRPC's handler wrapper logs at debug level and nothing more.
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(servicer.StreamAct(None, _GoneClientContext([_good(1), _good(2)])))  # type: ignore[arg-type]
    assert _tracebacks(caplog) == []
    assert metrics.streams._value.get() == 0  # the open-stream gauge is released


def test_clients_cancelling_mid_stream_leave_no_traceback(policy, caplog) -> None:
    caplog.set_level(logging.WARNING)
    path, _ = policy
    with _server(model=path) as srv:
        for _ in range(10):
            with _connection(srv.target) as channel:
                call = channel.stream_stream(STREAM_ACT, request_serializer=None, response_deserializer=None)(
                    iter([_good(i) for i in range(2000)]), timeout=30
                )
                for i, _answer in enumerate(call):
                    if i == 100:
                        call.cancel()
                        break
        with PolicyClient(srv.target) as client:
            client.act(np.zeros(OBS_DIM))
    assert _tracebacks(caplog) == []


async def _stop_then_list_unfinished_tasks(server: PolicyServer, grace: float) -> list[str]:
    """What asyncio.run would find to cancel right after `sim2real serve` stops."""
    await server.stop(grace)
    current = asyncio.current_task()
    return [t.get_name() for t in asyncio.all_tasks() if t is not current and not t.done()]


def test_stop_with_open_streams_leaves_no_call_task_to_be_cancelled(policy) -> None:
    """asyncio.run cancels whatever is left when `sim2real serve` returns, and gRPC logs
    each cancelled call task with a CancelledError traceback: stop() must leave none."""
    path, _ = policy
    srv = _server(model=path).start()
    channels = [_connection(srv.target) for _ in range(4)]
    streams = [RawStream(c) for c in channels]
    try:
        for i, stream in enumerate(streams):
            assert not stream.ask(_good(i)).HasField("error")
        assert srv.run(_stop_then_list_unfinished_tasks(srv.server, 0.2)) == []
    finally:
        for stream, channel in zip(streams, channels, strict=True):
            stream.close()
            channel.close()
        srv.stop()


# --- the client over a real server --------------------------------------------------------------


def test_session_falls_back_on_a_per_message_error_and_keeps_the_stream(policy) -> None:
    path, w = policy
    obs = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)
    with _server(model=path) as srv, PolicyClient(srv.target) as client:
        for mode, expected in (("hold", None), ("default", np.full(ACT_DIM, 0.5, np.float32))):
            with client.session(deadline_s=2.0, fallback=mode, default_action=np.full(ACT_DIM, 0.5)) as loop:
                good = loop.step(obs)
                assert not good.fallback
                bad = loop.step(np.zeros(OBS_DIM + 2))
                assert bad.fallback and bad.sequence == 2
                assert bad.reason.startswith("server error INVALID_ARGUMENT:"), bad.reason
                assert f"expects {OBS_DIM} values, got {OBS_DIM + 2}" in bad.reason
                np.testing.assert_array_equal(bad.action, good.action if expected is None else expected)
                again = loop.step(obs)  # same stream: no reconnect needed
                assert not again.fallback and loop.reconnects == 0
                np.testing.assert_allclose(again.action, reference_action(w, obs), atol=1e-6)


def test_session_never_takes_a_late_answer_for_the_current_step(policy) -> None:
    path, w = policy
    first_obs = np.full(OBS_DIM, 1.0, np.float32)
    second_obs = np.full(OBS_DIM, -1.0, np.float32)
    assert np.abs(reference_action(w, first_obs) - reference_action(w, second_obs)).max() > 0.1
    with _server(model=path) as srv, PolicyClient(srv.target) as client:
        with client.session(deadline_s=2.0) as loop:
            core = srv.server.core
            real_act = core.act

            def late_first_answer(request, state=None):
                if request.sequence == 1:
                    # Answer step 1 only once the loop has given up on it and is waiting
                    # for step 2: that answer then arrives while step 2 waits.
                    assert wait_until(lambda: loop.sequence >= 2, timeout=30)
                    time.sleep(0.3)
                return real_act(request, state)

            core.act = late_first_answer
            first = loop.step(first_obs)
            second = loop.step(second_obs)
    assert first.fallback and "deadline" in first.reason and loop.deadline_misses == 1
    assert not second.fallback and second.sequence == 2
    np.testing.assert_allclose(second.action, reference_action(w, second_obs), atol=1e-6)


def test_rate_limit_holds_per_stream_over_the_wire(policy) -> None:
    path, w = policy
    delta = 0.1
    a, b = np.full(OBS_DIM, 1.0, np.float32), np.full(OBS_DIM, -1.0, np.float32)
    target_a, target_b = reference_action(w, a), reference_action(w, b)
    assert np.abs(target_a - target_b).max() > 2 * delta
    with _server(model=path, max_action_delta=delta) as srv, PolicyClient(srv.target) as client:
        with client.session(deadline_s=2.0) as loop:
            first = loop.step(a)
            assert not first.rate_limited  # nothing to limit against yet
            np.testing.assert_allclose(first.action, target_a, atol=1e-6)
            second = loop.step(b)
            assert second.rate_limited
            limited = np.clip(target_b, first.action - delta, first.action + delta)
            np.testing.assert_allclose(second.action, limited, atol=1e-6)
            reset = loop.step(b, reset_rate_limit=True)
            assert not reset.rate_limited
            np.testing.assert_allclose(reset.action, target_b, atol=1e-6)
        # The limit is per stream: a new stream, and a unary call, start free.
        with client.session(deadline_s=2.0) as loop:
            np.testing.assert_allclose(loop.step(a).action, target_a, atol=1e-6)
        np.testing.assert_allclose(client.act(b).action, target_b, atol=1e-6)


def test_rate_limit_holds_across_a_hot_reload(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    delta = 0.05
    obs = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)
    write_policy(root / "walk" / "1" / "policy.onnx", seed=1)
    srv = _server(model_repo=root, poll_interval=0.05, max_action_delta=delta)
    with srv, PolicyClient(srv.target) as client, client.session(deadline_s=2.0) as loop:
        results = [loop.step(obs)]
        assert results[0].model_version == 1
        w2 = write_policy(root / "walk" / "2" / "policy.onnx", seed=2)
        target = reference_action(w2, obs)
        assert np.abs(target - results[0].action).max() > 2 * delta

        def stepped_onto_v2() -> bool:
            results.append(loop.step(obs))
            return results[-1].model_version == 2

        assert wait_until(stepped_onto_v2, timeout=30)
        results += [loop.step(obs) for _ in range(2 * int(2 / delta))]
    assert not any(r.fallback for r in results)
    first_v2 = next(r for r in results if r.model_version == 2)
    assert first_v2.rate_limited  # the new version's first action is limited against v1's last
    steps = np.abs(np.diff(np.stack([r.action for r in results]), axis=0))
    assert steps.max() <= delta + 1e-6
    np.testing.assert_allclose(results[-1].action, target, atol=1e-6)
