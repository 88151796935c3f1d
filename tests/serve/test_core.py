"""PolicyCore and ModelRepository without gRPC: input checks, safety, loading, reload."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import numpy as np
import pytest

from sim2real.serve.core import PolicyCore, RequestError, SafetyConfig, StreamState
from sim2real.serve.model import DeviceUnavailableError, ModelError, load_model
from sim2real.serve.repository import ModelRepository
from sim2real.serve.synthetic import ACT_DIM, OBS_DIM, reference_action, write_policy
from sim2real.v1 import policy_pb2


def _request(obs, **kw) -> policy_pb2.ActRequest:
    return policy_pb2.ActRequest(observation=list(map(float, obs)), **kw)


def _core(path: Path, **safety) -> PolicyCore:
    repo = ModelRepository(model_file=path, device="cpu")
    repo.load_initial()
    return PolicyCore(repo, SafetyConfig(**safety))


def test_action_equals_onnxruntime_and_numpy(tmp_path: Path) -> None:
    w = write_policy(tmp_path / "p.onnx")
    core = _core(tmp_path / "p.onnx")
    obs = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)
    out = core.act(_request(obs, sequence=7, client_time_ns=99)).response
    np.testing.assert_allclose(out.action, reference_action(w, obs), atol=1e-6)
    assert (out.sequence, out.client_time_ns, out.model_name, out.model_version) == (7, 99, "p", 1)
    assert out.server_compute_ns > 0 and not out.clamped


@pytest.mark.parametrize("n", [0, OBS_DIM - 1, OBS_DIM + 1])
def test_wrong_length_names_expected_and_received(tmp_path: Path, n: int) -> None:
    write_policy(tmp_path / "p.onnx")
    with pytest.raises(RequestError) as err:
        _core(tmp_path / "p.onnx").act(_request(np.zeros(n)))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"expects {OBS_DIM} values, got {n}" in err.value.message


def test_nonfinite_rejected_or_sanitized(tmp_path: Path) -> None:
    w = write_policy(tmp_path / "p.onnx")
    obs = np.zeros(OBS_DIM)
    obs[2] = np.nan
    obs[4] = np.inf
    with pytest.raises(RequestError) as err:
        _core(tmp_path / "p.onnx").act(_request(obs))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "observation[2] is nan" in err.value.message and "1 more" in err.value.message
    sanitized = _core(tmp_path / "p.onnx", nonfinite="sanitize").act(_request(obs)).response
    assert np.isfinite(sanitized.action).all()
    clean = np.zeros(OBS_DIM, np.float32)
    clean[4] = 5.0  # mean + clip * std of the model's normalizer
    np.testing.assert_allclose(sanitized.action, reference_action(w, clean), atol=1e-5)


def test_out_of_range_actions_are_clamped(tmp_path: Path) -> None:
    w = write_policy(tmp_path / "p.onnx", gain=5.0)
    obs = np.linspace(-1, 1, OBS_DIM)
    out = _core(tmp_path / "p.onnx").act(_request(obs)).response
    raw = reference_action(w, obs.astype(np.float32), gain=5.0)
    assert np.abs(raw).max() > 1
    np.testing.assert_allclose(out.action, np.clip(raw, -1, 1), atol=1e-6)
    assert out.clamped and max(abs(a) for a in out.action) <= 1.0


def test_nan_output_is_withheld(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx", nan_above=100.0)
    core = _core(tmp_path / "p.onnx")
    assert np.isfinite(core.act(_request(np.zeros(OBS_DIM))).response.action).all()
    obs = np.zeros(OBS_DIM)
    obs[0] = 500.0
    with pytest.raises(RequestError) as err:
        core.act(_request(obs))
    assert err.value.code == grpc.StatusCode.INTERNAL and "non-finite" in err.value.message


def test_rate_limit_per_stream(tmp_path: Path) -> None:
    w = write_policy(tmp_path / "p.onnx")
    core = _core(tmp_path / "p.onnx", max_action_delta=0.05)
    a, b = np.full(OBS_DIM, -1.0), np.full(OBS_DIM, 1.0)
    state = StreamState()
    first = np.array(core.act(_request(a), state).response.action)
    target = reference_action(w, b.astype(np.float32))
    out = core.act(_request(b), state).response
    assert out.rate_limited
    assert np.abs(np.array(out.action) - first).max() <= 0.05 + 1e-6
    np.testing.assert_allclose(
        out.action, np.clip(target, first - 0.05, first + 0.05), atol=1e-6
    )
    reset = core.act(_request(b, reset_rate_limit=True), state).response
    np.testing.assert_allclose(reset.action, target, atol=1e-6)
    # Unary calls (no stream state) are not rate limited.
    assert not core.act(_request(a)).response.rate_limited


def test_unknown_model_is_not_found(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx")
    with pytest.raises(RequestError) as err:
        _core(tmp_path / "p.onnx").act(_request(np.zeros(OBS_DIM), model_name="nope"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND and "'nope'" in err.value.message
    assert "serving: ['p']" in err.value.message


def test_policy_info_carries_the_metadata(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx")
    info = _core(tmp_path / "p.onnx", max_action_delta=0.1).policy_info("")
    assert (info.observation_dim, info.action_dim, info.model_version) == (OBS_DIM, ACT_DIM, 1)
    assert list(info.joint_names) == [f"joint{i}" for i in range(ACT_DIM)]
    assert info.control_rate_hz == 50.0 and list(info.kp) == [35.0] * ACT_DIM
    assert info.training_steps == 1234 and info.env_id == "test/Policy-v0"
    assert info.execution_provider == "CPUExecutionProvider"
    assert len(info.model_sha256) == 64 and "observation_mean" in info.metadata
    assert info.max_action_delta == pytest.approx(0.1) and info.nonfinite_policy == "reject"


def test_broken_models_are_rejected_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        load_model(tmp_path / "garbage.onnx", "g", 1, "cpu")
    write_policy(tmp_path / "nan.onnx", nan_above=-1.0)  # NaN already on the probe
    with pytest.raises(ModelError, match="non-finite"):
        load_model(tmp_path / "nan.onnx", "n", 1, "cpu")
    write_policy(tmp_path / "lie.onnx", metadata={"observation_dim": 99})
    with pytest.raises(ModelError, match="observation_dim=99"):
        load_model(tmp_path / "lie.onnx", "l", 1, "cpu")
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "missing.onnx", "m", 1, "cpu")


def test_device_cuda_is_real_or_fails_loudly(tmp_path: Path) -> None:
    write_policy(tmp_path / "p.onnx")
    try:
        model = load_model(tmp_path / "p.onnx", "p", 1, "cuda")
    except DeviceUnavailableError as err:
        assert "--device cuda" in str(err)
    else:  # a host with a working GPU: then it must really be on CUDA
        assert model.provider == "CUDAExecutionProvider"
    assert load_model(tmp_path / "p.onnx", "p", 1, "auto").provider in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_repository_versions_and_hot_reload(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_policy(root / "walk" / "1" / "policy.onnx", seed=1)
    write_policy(root / "walk" / "3" / "policy.onnx", seed=3)
    write_policy(root / "hand" / "2" / "policy.onnx", seed=5, obs_dim=4, act_dim=2)
    (root / "walk" / "notes").mkdir()
    repo = ModelRepository(root=root, device="cpu")
    repo.load_initial()
    assert repo.get("walk").version == 3 and repo.get("hand").version == 2
    assert repo.default_name == "hand"  # first name when no default is given
    old = repo.get("walk")

    # A broken newer version is rejected and the old one keeps serving.
    (root / "walk" / "4").mkdir()
    (root / "walk" / "4" / "policy.onnx").write_bytes(b"\x00partial copy")
    assert repo.poll() == []
    assert repo.get("walk") is old
    assert 4 in repo.states()["walk"].rejected
    assert repo.poll() == []  # not retried while the file is unchanged

    # The copy completes: retried, validated, swapped.
    write_policy(root / "walk" / "4" / "policy.onnx", seed=4)
    assert repo.poll() == ["walk:4"]
    assert repo.get("walk").version == 4 and 4 not in repo.states()["walk"].rejected

    # A new version with another observation size would break the controller: rejected.
    write_policy(root / "walk" / "5" / "policy.onnx", obs_dim=OBS_DIM + 2)
    assert repo.poll() == []
    assert "differ from the serving version" in repo.states()["walk"].rejected[5][1]


def test_single_file_changes_become_new_versions(tmp_path: Path) -> None:
    path = tmp_path / "policy.onnx"
    write_policy(path, seed=0)
    repo = ModelRepository(model_file=path, name="quad", device="cpu")
    repo.load_initial()
    assert repo.get("").name == "quad" and repo.get("quad").version == 1
    assert repo.poll() == []
    write_policy(path, seed=1)
    os.utime(path, ns=(1, 1))  # a distinct mtime even on coarse-clock filesystems
    assert repo.poll() == ["quad:2"]


def test_empty_repository_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "repo" / "walk" / "1").mkdir(parents=True)
    with pytest.raises(ModelError, match="no servable model"):
        ModelRepository(root=tmp_path / "repo", device="cpu").load_initial()
    (tmp_path / "repo" / "walk" / "1" / "policy.onnx").write_text("junk")
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        ModelRepository(root=tmp_path / "repo", device="cpu").load_initial()


def test_bound_single_call_equals_batched_run_across_threads(tmp_path: Path) -> None:
    import threading

    write_policy(tmp_path / "p.onnx")
    model = load_model(tmp_path / "p.onnx", "p", 1, "cpu")
    obs = np.random.default_rng(3).normal(size=(64, OBS_DIM)).astype(np.float32)
    expected = model.run(obs)
    outs: dict[int, np.ndarray] = {}

    def worker(k: int) -> None:
        outs[k] = np.stack([model.run_one(o) for o in obs])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        np.testing.assert_array_equal(outs[k], expected)
    first = model.run_one(obs[0])
    model.run_one(obs[1])
    np.testing.assert_array_equal(first, expected[0])  # results are copies, not the buffer


def test_bad_metadata_rejects_that_version_only(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_policy(root / "a" / "1" / "policy.onnx")
    write_policy(root / "a" / "2" / "policy.onnx", metadata={"observation_dim": "six"})
    write_policy(root / "b" / "1" / "policy.onnx")
    repo = ModelRepository(root=root, device="cpu")
    repo.load_initial()
    assert repo.get("a").version == 1 and repo.get("b").version == 1  # the scan went on
    assert "positive integer" in repo.states()["a"].rejected[2][1]


def test_rate_limit_is_per_model_within_a_stream(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_policy(root / "a" / "1" / "policy.onnx", seed=1)
    write_policy(root / "b" / "1" / "policy.onnx", seed=2)
    repo = ModelRepository(root=root, device="cpu")
    repo.load_initial()
    core = PolicyCore(repo, SafetyConfig(max_action_delta=0.01))
    state = StreamState()
    obs = np.linspace(-1, 1, OBS_DIM)
    core.act(_request(obs, model_name="a"), state)
    b = core.act(_request(obs, model_name="b"), state).response
    assert not b.rate_limited  # not limited against model a's action


def test_act_many_answers_each_request_as_act_does_in_order(tmp_path: Path) -> None:
    """The fast path's batch: good, wrong-length, NaN and unknown-model requests mixed, two
    streams with a rate limit interleaved; every answer equals what act() gives in order."""
    write_policy(tmp_path / "p.onnx", gain=3.0)  # out-of-range actions: clamped, then limited
    repo = ModelRepository(model_file=tmp_path / "p.onnx", name="p")
    repo.load_initial()
    rng = np.random.default_rng(0)

    def requests() -> list[policy_pb2.ActRequest]:
        out = []
        for i in range(24):
            obs = rng.normal(0, 2, OBS_DIM).astype(np.float32)
            if i % 7 == 3:
                obs = obs[:-1]
            if i % 11 == 5:
                obs[2] = np.nan
            out.append(policy_pb2.ActRequest(observation=obs, sequence=i, model_name="nope" if i == 13 else ""))
        return out

    batch = requests()
    safety = SafetyConfig(max_action_delta=0.1)
    sequential, batched = PolicyCore(repo, safety), PolicyCore(repo, safety)
    seq_states, batch_states = [StreamState(), StreamState()], [StreamState(), StreamState()]
    expected = []
    for i, request in enumerate(batch):
        try:
            expected.append(sequential.act(request, seq_states[i % 2]))
        except RequestError as err:
            expected.append(err)
    got = batched.act_many([(request, batch_states[i % 2]) for i, request in enumerate(batch)])
    assert len(got) == len(expected)
    kinds = set()
    for want, have in zip(expected, got, strict=True):
        assert type(want) is type(have)
        if isinstance(want, RequestError):
            assert (want.code, want.message) == (have.code, have.message)
            kinds.add(want.code)
            continue
        np.testing.assert_allclose(have.response.action, want.response.action, atol=1e-6)
        assert (have.clamped, have.rate_limited, have.response.sequence) == (
            want.clamped, want.rate_limited, want.response.sequence)
    assert kinds == {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert any(o.rate_limited for o in got if not isinstance(o, RequestError))
