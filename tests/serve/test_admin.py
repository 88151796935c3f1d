"""PolicyAdminService over a real server on 127.0.0.1 with a --model-repo (issue 12, items
1, 2 and 10): ignored version folders listed with their reasons while the valid version
serves, rollback by deleting the serving version, version pinning at run time and its
refusals as status codes, and `--version-policy` misuse on the command line."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from sim2real.cli.main import main
from sim2real.serve.client import PolicyCallError, PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.server import ignored_entries
from sim2real.serve.synthetic import OBS_DIM, reference_action, write_policy
from sim2real.serve.testing import BackgroundServer, wait_until
from sim2real.v1 import policy_pb2

TOKEN = "admin-token"
OBS = np.linspace(-1, 1, OBS_DIM, dtype=np.float32)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def _version(root: Path, name: str, version: int | str, seed: int) -> dict[str, np.ndarray]:
    return write_policy(root / name / str(version) / "policy.onnx", seed=seed)


def _server(token_file: Path, **kw) -> BackgroundServer:
    return BackgroundServer(ServeConfig(port=0, device="cpu", token_file=token_file, **kw))


def _act(client: PolicyClient, name: str = "walk") -> tuple[int, np.ndarray]:
    result = client.act(OBS, model_name=name, timeout_s=10)
    return result.model_version, result.action


def _status(client: PolicyClient, name: str = "walk") -> policy_pb2.ModelStatus:
    return {m.model_name: m for m in client.list_models(timeout_s=10).models}[name]


def _refused(call: Callable[[], object], code: grpc.StatusCode) -> PolicyCallError:
    with pytest.raises(PolicyCallError) as err:
        call()
    assert err.value.code == code, err.value
    return err.value


def test_list_models_shows_ignored_folders_while_the_valid_version_serves(tmp_path: Path, token_file: Path) -> None:
    # Today the first folder became the serving version and failed every call with UNKNOWN
    # "Value out of range"; the second made every scan (and Reload) raise.
    root = tmp_path / "repo"
    w1 = _version(root, "walk", 1, seed=1)
    _version(root, "walk", "99999999999999999999", seed=2)
    _version(root, "walk", "²", seed=3)
    with _server(token_file, model_repo=root, poll_interval=0) as srv, PolicyClient(srv.target, token=TOKEN) as client:
        version, action = _act(client)
        assert version == 1
        np.testing.assert_allclose(action, reference_action(w1, OBS), atol=1e-6)
        assert client.info("walk").model_version == 1

        listed = client.list_models(timeout_s=10)
        assert listed.scan_error == "" and listed.default_model == "walk"
        [walk] = listed.models
        assert (walk.serving_version, walk.version_policy, walk.problem) == (1, "latest", "")
        reasons = {(e.model_name, e.folder): e.reason for e in listed.ignored}
        assert set(reasons) == {("walk", "99999999999999999999"), ("walk", "²")}
        assert "beyond 9223372036854775807" in reasons["walk", "99999999999999999999"]
        assert "digits other than ASCII 0-9" in reasons["walk", "²"]
        # A folder full of junk cannot push the answer past the send limit: listed up to a
        # cap, then counted.
        capped = ignored_entries(srv.server.repository, limit=1)
        assert len(capped) == 2 and capped[-1].reason == "1 more ignored entries not listed"

        # Reload answers with the same findings and loads a valid new version beside them.
        w2 = _version(root, "walk", 2, seed=4)
        reloaded = client.reload(timeout_s=30)
        assert list(reloaded.loaded) == ["walk:2"] and reloaded.scan_error == ""
        assert {(e.model_name, e.folder) for e in reloaded.ignored} == set(reasons)
        version, action = _act(client)
        assert version == 2
        np.testing.assert_allclose(action, reference_action(w2, OBS), atol=1e-6)

        # A named Reload of a model the repository does not have is NOT_FOUND, not a silent no-op.
        err = _refused(lambda: client.reload("nope"), grpc.StatusCode.NOT_FOUND)
        assert "'nope'" in err.message


def test_deleting_the_serving_version_and_reload_rolls_back(tmp_path: Path, token_file: Path) -> None:
    # Today a deleted version kept serving from memory.
    root = tmp_path / "repo"
    w1 = _version(root, "walk", 1, seed=1)
    w2 = _version(root, "walk", 2, seed=2)
    _version(root, "hand", 1, seed=3)
    with _server(token_file, model_repo=root, poll_interval=0) as srv, PolicyClient(srv.target, token=TOKEN) as client:
        registry = srv.server.metrics.registry
        assert registry.get_sample_value("sim2real_model_version", {"model": "walk"}) == 2
        with client.session(deadline_s=5.0, model_name="walk") as loop:
            before = loop.step(OBS)
            assert (before.fallback, before.model_version) == (False, 2)
            np.testing.assert_allclose(before.action, reference_action(w2, OBS), atol=1e-6)

            shutil.rmtree(root / "walk" / "2")
            assert list(client.reload(timeout_s=30).loaded) == ["walk:1"]
            after = loop.step(OBS)  # the open stream goes on, on the rolled-back version
            assert (after.fallback, after.model_version) == (False, 1)
            np.testing.assert_allclose(after.action, reference_action(w1, OBS), atol=1e-6)
        version, action = _act(client)
        assert version == 1
        np.testing.assert_allclose(action, reference_action(w1, OBS), atol=1e-6)
        assert _status(client).serving_version == 1
        assert registry.get_sample_value("sim2real_model_version", {"model": "walk"}) == 1

        # No version left: the model is unloaded (NOT_FOUND) and its metrics go with it.
        shutil.rmtree(root / "walk" / "1")
        assert list(client.reload(timeout_s=30).loaded) == []
        err = _refused(lambda: client.act(OBS, model_name="walk"), grpc.StatusCode.NOT_FOUND)
        assert "'walk' is not served here" in err.message
        assert registry.get_sample_value("sim2real_model_version", {"model": "walk"}) is None
        assert registry.get_sample_value(
            "sim2real_execution_provider", {"model": "walk", "provider": "CPUExecutionProvider"}
        ) is None
        assert _act(client, "hand")[0] == 1  # other models untouched
        assert registry.get_sample_value("sim2real_model_version", {"model": "hand"}) == 1


def test_set_version_policy_pins_and_refuses_what_cannot_take_effect(tmp_path: Path, token_file: Path) -> None:
    root = tmp_path / "repo"
    w1 = _version(root, "walk", 1, seed=1)
    _version(root, "walk", 2, seed=2)
    with _server(token_file, model_repo=root, poll_interval=0.05) as srv, PolicyClient(srv.target, token=TOKEN) as client:
        assert _act(client)[0] == 2
        answer = client.set_version_policy("walk", "specific:1")
        assert list(answer.loaded) == ["walk:1"]
        [walk] = answer.models
        assert (walk.serving_version, walk.version_policy, walk.problem) == (1, "specific:1", "")
        version, action = _act(client)
        assert version == 1
        np.testing.assert_allclose(action, reference_action(w1, OBS), atol=1e-6)

        # A newer version appears: the pin holds, through the poller and an explicit Reload.
        w3 = _version(root, "walk", 3, seed=3)
        repository = srv.server.repository
        seen = repository.polls_done
        assert wait_until(lambda: repository.polls_done >= seen + 2, timeout=30)  # a whole scan since
        assert list(client.reload(timeout_s=30).loaded) == []
        assert _act(client)[0] == 1
        assert _status(client).version_policy == "specific:1"

        # Refusals, each with its own code and nothing changed.
        err = _refused(lambda: client.set_version_policy("nope", "specific:1"), grpc.StatusCode.NOT_FOUND)
        assert "'nope'" in err.message and "Traceback" not in err.message
        for bad in ("specific:x", "newest", "", "specific:99999999999999999999", "specific:01"):
            err = _refused(lambda bad=bad: client.set_version_policy("walk", bad), grpc.StatusCode.INVALID_ARGUMENT)
            assert err.message.startswith("version_policy: expected 'latest' or 'specific:N'"), err.message
            assert [field for field, _ in err.field_violations] == ["version_policy"]
        err = _refused(lambda: client.set_version_policy("walk", "specific:9"), grpc.StatusCode.FAILED_PRECONDITION)
        assert "version 9 is not in the repository" in err.message
        assert "policy unchanged (specific:1), version 1 keeps serving" in err.message
        assert _act(client)[0] == 1
        status = _status(client)
        assert (status.serving_version, status.version_policy, status.problem) == (1, "specific:1", "")

        # Back to latest ('' = the default model): the newest valid version serves.
        assert list(client.set_version_policy("", "latest").loaded) == ["walk:3"]
        version, action = _act(client)
        assert version == 3
        np.testing.assert_allclose(action, reference_action(w3, OBS), atol=1e-6)

    # The admin call needs the token like every admin call.
    with _server(token_file, model_repo=root, poll_interval=0) as srv, PolicyClient(srv.target) as client:
        _refused(lambda: client.set_version_policy("walk", "specific:1"), grpc.StatusCode.UNAUTHENTICATED)


def test_a_single_model_file_cannot_be_pinned(tmp_path: Path, token_file: Path) -> None:
    path = tmp_path / "policy.onnx"
    write_policy(path)
    with _server(token_file, model=path, poll_interval=0) as srv, PolicyClient(srv.target, token=TOKEN) as client:
        err = _refused(lambda: client.set_version_policy("", "specific:1"), grpc.StatusCode.FAILED_PRECONDITION)
        assert "applies to --model-repo only" in err.message
        assert _status(client, "policy").version_policy == "latest"
        assert list(client.set_version_policy("policy", "latest").loaded) == []


def test_start_with_a_pin_serves_that_version(tmp_path: Path, token_file: Path) -> None:
    root = tmp_path / "repo"
    _version(root, "walk", 1, seed=1)
    _version(root, "walk", 2, seed=2)
    config = ServeConfig(port=0, device="cpu", token_file=token_file, model_repo=root, version_policy="specific:1")
    with BackgroundServer(config) as srv, PolicyClient(srv.target, token=TOKEN) as client:
        assert _act(client)[0] == 1
        assert _status(client).version_policy == "specific:1"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_version_policy_misuse_on_the_command_line_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "policy.onnx"
    write_policy(model)
    root = tmp_path / "repo"
    _version(root, "walk", 1, seed=1)

    assert main(["serve", "--model", str(model), "--version-policy", "specific:2"]) == 2
    err = _one_line_error(capsys)
    assert "--version-policy specific:2 applies to --model-repo only" in err and "--model" in err

    assert main(["serve", "--model-repo", str(root), "--version-policy", "newest"]) == 2
    assert "--version-policy: expected 'latest' or 'specific:N'" in _one_line_error(capsys)

    # A pin the repository cannot honour fails the start, naming the pin (nothing binds).
    assert main(["serve", "--model-repo", str(root), "--version-policy", "specific:7", "--port", "0"]) == 2
    assert "version policy specific:7: version 7 is not in the repository" in _one_line_error(capsys)
