"""The model repository against hostile folders (issue 12, items 1, 2, 8 and 10): version
folder names, scans that never raise, rollback by deletion, version pinning, and a single
--model file that is touched but not changed. Ends with a bounded property-based fuzz of
the scanner."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim2real.serve.model import ModelError
from sim2real.serve.repository import (
    LATEST,
    MAX_VERSION,
    IgnoredEntry,
    ModelNotFoundError,
    ModelRepository,
    VersionPolicy,
    VersionPolicyError,
    parse_version,
    parse_version_policy,
)
from sim2real.serve.synthetic import OBS_DIM, write_policy
from sim2real.v1 import policy_pb2


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Valid policies (same layout, different weights) and one with another layout."""
    folder = tmp_path_factory.mktemp("policies")
    out = {}
    variants = {"a": {"seed": 1}, "b": {"seed": 2}, "c": {"seed": 3}, "wide": {"obs_dim": OBS_DIM + 2}}
    for key, kw in variants.items():
        write_policy(folder / f"{key}.onnx", **kw)
        out[key] = (folder / f"{key}.onnx").read_bytes()
    return out


def _put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _repo(root: Path, **kw) -> ModelRepository:
    repo = ModelRepository(root=root, device="cpu", **kw)
    repo.load_initial()
    return repo


def _wire(repo: ModelRepository) -> None:
    """Everything the admin calls would put on the wire, encoded as protobuf (int64 range,
    valid UTF-8): the way ListModels failed with 'Value out of range'."""
    for name, state in repo.states().items():
        serving = state.serving
        policy_pb2.ModelStatus(
            model_name=name,
            serving_version=serving.version if serving else 0,
            path=str(serving.path) if serving else "",
            rejected=[policy_pb2.RejectedVersion(version=v, reason=r) for v, (_, r) in state.rejected.items()],
        ).SerializeToString()
    for model in repo.serving().values():
        policy_pb2.ActResponse(model_name=model.name, model_version=model.version).SerializeToString()
    for entry in repo.ignored():
        assert entry.reason
        policy_pb2.ModelStatus(model_name=entry.name, path=entry.folder, rejected=[
            policy_pb2.RejectedVersion(reason=entry.reason)
        ]).SerializeToString()


def _reasons(repo: ModelRepository, name: str) -> dict[str, str]:
    return {e.folder: e.reason for e in repo.ignored() if e.name == name}


# --- item 1: version folder names ---------------------------------------------------------
def test_version_beyond_int64_never_serves_and_breaks_nothing(tmp_path: Path, onnx_bytes) -> None:
    # Today: '99999999999999999999' became the serving version, every call then failed
    # with "Value out of range", and deleting the folder did not recover.
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    repo = _repo(root)
    _put(root / "walk" / "99999999999999999999" / "policy.onnx", onnx_bytes["b"])
    _put(root / "walk" / str(MAX_VERSION + 1) / "policy.onnx", onnx_bytes["b"])
    assert repo.poll() == []
    assert repo.get("walk").version == 1
    _wire(repo)
    reasons = _reasons(repo, "walk")
    assert "beyond 9223372036854775807" in reasons["99999999999999999999"]
    assert "int64" in reasons[str(MAX_VERSION + 1)]
    # The largest int64 itself is a version.
    _put(root / "walk" / str(MAX_VERSION) / "policy.onnx", onnx_bytes["c"])
    assert repo.poll() == [f"walk:{MAX_VERSION}"]
    _wire(repo)


def test_unicode_digit_folders_neither_stop_reload_nor_serve(tmp_path: Path, onnx_bytes) -> None:
    # Today: '²' made every scan raise (no new version ever loaded), and '٣' (Arabic-Indic
    # three, which int() reads as 3) was served as version 3.
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    repo = _repo(root)
    for name in ("²", "٣", "𝟗", "١٠"):
        _put(root / "walk" / name / "policy.onnx", onnx_bytes["b"])
    assert repo.poll() == []
    assert repo.get("walk").version == 1
    _put(root / "walk" / "2" / "policy.onnx", onnx_bytes["c"])
    assert repo.poll() == ["walk:2"]
    reasons = _reasons(repo, "walk")
    assert set(reasons) == {"²", "٣", "𝟗", "١٠"}
    assert all("other than ASCII 0-9" in r for r in reasons.values())


def test_ignored_entries_are_listed_with_reasons_and_logged_once(
    tmp_path: Path, onnx_bytes, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    (root / "walk" / "notes").mkdir()
    _put(root / "walk" / "007" / "policy.onnx", onnx_bytes["b"])
    _put(root / "walk" / "0" / "policy.onnx", onnx_bytes["b"])
    _put(root / "walk" / "3", b"a file where a version folder belongs")
    (root / "walk" / "4").mkdir()
    _put(root / "README.md", b"notes")
    with caplog.at_level(logging.WARNING, logger="sim2real.serve.repository"):
        repo = _repo(root)
        repo.poll()
        repo.poll()
    assert repo.get("walk").version == 1
    reasons = _reasons(repo, "walk")
    assert "is not a plain decimal number" in reasons["notes"]
    assert "leading zero; name it '7'" in reasons["007"]
    assert "start at 1" in reasons["0"]
    assert "not a version folder" in reasons["3"]
    assert "no policy.onnx" in reasons["4"]
    readme = IgnoredEntry("", "README.md", "a file, not a model folder (expected NAME/VERSION/policy.onnx)")
    assert readme in repo.ignored()
    # One warning per ignored entry, not one per scan (three scans ran), and no traceback.
    warnings = [r for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warnings) == len(repo.ignored()) == 6
    assert not any(r.exc_info for r in caplog.records)


def test_hostile_entries_never_make_a_scan_raise(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    repo = _repo(root)
    walk = root / "walk"
    os.symlink("5", walk / "5")  # a symlink loop as a version folder
    os.symlink("loop", root / "loop")  # ... and as a model folder
    os.symlink("nowhere", walk / "6")  # dangling
    _put(walk / "7" / "policy.onnx", b"")  # empty policy file
    _put(walk / "8" / "policy.onnx", bytes(range(256)) * 3)  # garbage bytes
    (walk / "9" / "policy.onnx").mkdir(parents=True)  # a folder where the file belongs
    (walk / "10").mkdir()
    os.mkfifo(walk / "10" / "policy.onnx")  # reading a FIFO would block the loader forever
    os.mkdir(os.path.join(os.fsencode(walk), b"\xff\xfe"))  # a non-UTF-8 version folder
    _put(walk / ("x" * 250), b"")  # a name longer than any reply should echo
    _put(walk / "2" / "policy.onnx", onnx_bytes["b"])
    assert repo.poll() == ["walk:2"]
    assert repo.get("walk").version == 2
    state = repo.states()["walk"]
    assert set(state.rejected) == {7, 8}
    reasons = _reasons(repo, "walk")
    assert "cannot read it" in reasons["5"]
    assert "not a regular file" in reasons["9"] and "not a regular file" in reasons["10"]
    assert "\\xff\\xfe" in reasons and all(len(folder) <= 80 for folder in reasons)
    assert any("cannot read the model folder" in e.reason for e in repo.ignored() if e.name == "loop")
    _wire(repo)


def test_non_utf8_model_folder_is_never_served(tmp_path: Path, onnx_bytes) -> None:
    # Today such a folder became a model whose name protobuf cannot encode: ListModels and
    # Reload failed for every model.
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    bad = os.path.join(os.fsencode(root), b"caf\xe9")
    os.makedirs(os.path.join(bad, b"1"))
    Path(os.fsdecode(os.path.join(bad, b"1", b"policy.onnx"))).write_bytes(onnx_bytes["b"])
    repo = _repo(root)
    assert sorted(repo.serving()) == ["walk"] and sorted(repo.states()) == ["walk"]
    assert any(e.folder == "caf\\xe9" and "UTF-8" in e.reason for e in repo.ignored())
    _wire(repo)


def test_unreadable_repository_keeps_serving(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    repo = _repo(root)
    moved = tmp_path / "elsewhere"
    root.rename(moved)  # an unmounted share: not the same as deleting every version
    assert repo.poll() == []
    assert repo.get("walk").version == 1
    assert repo.scan_error is not None and "cannot list it" in repo.scan_error
    moved.rename(root)
    assert repo.poll() == [] and repo.scan_error is None


@pytest.mark.parametrize("text", ["1", "42", str(MAX_VERSION)])
def test_parse_version_accepts_plain_decimals(text: str) -> None:
    assert parse_version(text) == int(text)


@pytest.mark.parametrize("text, why", [
    ("", "not a plain decimal"), ("0", "start at 1"), ("00", "start at 1"), ("007", "leading zero"),
    ("-1", "not a plain decimal"), ("+1", "not a plain decimal"), (" 1", "not a plain decimal"),
    ("1\n", "not a plain decimal"), ("1.0", "not a plain decimal"), ("1e3", "not a plain decimal"),
    ("²", "other than ASCII"), ("٣", "other than ASCII"),
    (str(MAX_VERSION + 1), "beyond"), ("9" * 5000, "beyond"),
])
def test_parse_version_refuses_everything_else(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        parse_version(text)
    assert len(str(info.value)) < 300  # a 5000-digit name is not echoed whole


# --- item 10: rollback ----------------------------------------------------------------------
def test_removing_the_serving_version_rolls_back(tmp_path: Path, onnx_bytes) -> None:
    # Today the repository only moved up: a deleted version kept serving from memory.
    root = tmp_path / "repo"
    for v, key in ((1, "a"), (3, "c")):
        _put(root / "walk" / str(v) / "policy.onnx", onnx_bytes[key])
    _put(root / "walk" / "2" / "policy.onnx", b"\x00broken")
    _put(root / "hand" / "1" / "policy.onnx", onnx_bytes["a"])
    repo = _repo(root)
    assert repo.get("walk").version == 3

    shutil.rmtree(root / "walk" / "3")
    assert repo.poll() == ["walk:1"]  # 2 does not validate: the next valid one serves
    assert repo.get("walk").version == 1 and 3 not in repo.states()["walk"].rejected

    unloaded: list[tuple[str, int]] = []
    repo.add_unload_listener(lambda name, version: unloaded.append((name, version)))

    (root / "walk" / "1" / "policy.onnx").unlink()  # the folder stays, the file goes
    assert repo.poll() == []
    with pytest.raises(ModelNotFoundError):
        repo.get("walk")  # nothing valid left: unloaded rather than served from memory
    assert unloaded == [("walk", 1)]
    assert "no version validates; serving nothing" in (repo.states()["walk"].problem or "")
    assert repo.get("hand").version == 1  # other names are untouched
    _wire(repo)

    _put(root / "walk" / "4" / "policy.onnx", onnx_bytes["b"])
    assert repo.poll() == ["walk:4"]
    shutil.rmtree(root / "walk")
    assert repo.poll() == []
    assert "walk" not in repo.serving() and "walk" not in repo.states()


def test_rollback_keeps_the_observation_layout(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["wide"])
    _put(root / "walk" / "2" / "policy.onnx", onnx_bytes["a"])
    _put(root / "walk" / "3" / "policy.onnx", onnx_bytes["b"])
    repo = _repo(root)
    shutil.rmtree(root / "walk" / "3")
    assert repo.poll() == ["walk:2"]
    shutil.rmtree(root / "walk" / "2")
    # Version 1 has another observation size: the controllers were built for 6.
    assert repo.poll() == [] and "walk" not in repo.serving()
    assert "differ from the serving version" in repo.states()["walk"].rejected[1][1]


def test_unreadable_serving_version_is_not_a_removal(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    _put(root / "walk" / "2" / "policy.onnx", onnx_bytes["b"])
    repo = _repo(root)
    (root / "walk" / "2").rename(root / "walk" / "kept")
    os.symlink("2", root / "walk" / "2")  # unreadable (a loop), not gone
    assert repo.poll() == [] and repo.get("walk").version == 2
    assert "cannot read it" in _reasons(repo, "walk")["2"]


def test_serving_file_overwritten_with_garbage_keeps_serving(tmp_path: Path, onnx_bytes) -> None:
    # Not a defect of today's code: pins that rollback did not turn a copy in progress
    # over the serving version into an unload.
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    _put(root / "walk" / "2" / "policy.onnx", onnx_bytes["b"])
    repo = _repo(root)
    before = repo.get("walk")
    _put(root / "walk" / "2" / "policy.onnx", b"\x00half a copy")
    assert repo.poll() == [] and repo.get("walk") is before  # a copy in progress, not a removal
    assert 2 in repo.states()["walk"].rejected


def test_touching_a_version_file_does_not_reload_it(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    path = _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    repo = _repo(root)
    before = repo.get("walk")
    os.utime(path, ns=(10**9, 10**9))
    assert repo.poll() == [] and repo.get("walk") is before


# --- version policy -------------------------------------------------------------------------
def test_parse_version_policy() -> None:
    assert parse_version_policy("latest") == LATEST and str(LATEST) == "latest"
    assert parse_version_policy("specific:3") == VersionPolicy(3)
    assert str(VersionPolicy(3)) == "specific:3"
    assert parse_version_policy(f"specific:{MAX_VERSION}").pinned == MAX_VERSION


@pytest.mark.parametrize("text", [
    "", "Latest", "latest ", "specific", "specific:", "specific:0", "specific:-1", "specific:07",
    "specific:²", "specific:1.5", f"specific:{MAX_VERSION + 1}", "pinned:3", "specific:3:4",
])
def test_parse_version_policy_names_field_form_and_value(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_version_policy(text)
    message = str(info.value)
    assert message.startswith("--version-policy: expected 'latest' or 'specific:N'")
    assert f"got '{text}'" in message
    with pytest.raises(ValueError, match=r"^version_policy: "):
        parse_version_policy(text, field="version_policy")


def test_version_policy_dataclass_checks_its_field() -> None:
    for bad in (0, -1, MAX_VERSION + 1, True, 1.0):
        with pytest.raises(ValueError, match="VersionPolicy.pinned"):
            VersionPolicy(bad)  # type: ignore[arg-type]


def test_pinned_version_serves_and_can_change_at_runtime(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    for v, key in ((1, "a"), (2, "b"), (3, "c")):
        _put(root / "walk" / str(v) / "policy.onnx", onnx_bytes[key])
    repo = _repo(root, version_policy=VersionPolicy(2))
    assert repo.get("walk").version == 2 and repo.states()["walk"].problem is None
    _put(root / "walk" / "4" / "policy.onnx", onnx_bytes["a"])
    assert repo.poll() == [] and repo.get("walk").version == 2  # pinned: 4 is not taken

    assert repo.set_version_policy("walk", VersionPolicy(3)) == ["walk:3"]
    assert repo.version_policy("walk") == VersionPolicy(3)

    # A pin that cannot take effect changes nothing (a robot keeps its policy).
    with pytest.raises(VersionPolicyError, match=r"version 9 is not in the repository.*\[1, 2, 3, 4\]") as info:
        repo.set_version_policy("walk", VersionPolicy(9))
    assert "policy unchanged (specific:3), version 3 keeps serving" in str(info.value)
    _put(root / "walk" / "5" / "policy.onnx", b"garbage")
    with pytest.raises(VersionPolicyError, match="version 5 failed validation"):
        repo.set_version_policy("walk", VersionPolicy(5))
    _put(root / "walk" / "6" / "policy.onnx", onnx_bytes["wide"])
    with pytest.raises(VersionPolicyError, match="differ from the serving version"):
        repo.set_version_policy("walk", VersionPolicy(6))
    assert repo.get("walk").version == 3 and repo.version_policy("walk") == VersionPolicy(3)
    with pytest.raises(ModelNotFoundError):
        repo.set_version_policy("nope", VersionPolicy(1))

    assert repo.set_version_policy("", LATEST) == ["walk:4"]  # '' is the default model
    assert repo.get("walk").version == 4


def test_removing_the_pinned_version_serves_nothing_and_says_why(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    for v, key in ((1, "a"), (2, "b")):
        _put(root / "walk" / str(v) / "policy.onnx", onnx_bytes[key])
    repo = _repo(root, version_policy=VersionPolicy(1))
    shutil.rmtree(root / "walk" / "1")
    assert repo.poll() == []
    assert "walk" not in repo.serving()  # not version 2: the pin says exactly 1
    assert repo.states()["walk"].problem == (
        "model 'walk', version policy specific:1: version 1 is not in the repository; serving nothing"
    )
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    assert repo.poll() == ["walk:1"] and repo.states()["walk"].problem is None


def test_pin_that_cannot_serve_fails_the_start(tmp_path: Path, onnx_bytes) -> None:
    root = tmp_path / "repo"
    _put(root / "walk" / "1" / "policy.onnx", onnx_bytes["a"])
    with pytest.raises(ModelError, match=r"version policy specific:7: version 7 is not in the repository"):
        _repo(root, version_policy=VersionPolicy(7))
    _put(root / "walk" / "7" / "policy.onnx", b"junk")
    with pytest.raises(ModelError, match=r"specific:7: version 7 failed validation"):
        _repo(root, version_policy=VersionPolicy(7))
    with pytest.raises(ValueError, match="applies to --model-repo only"):
        ModelRepository(model_file=root / "walk" / "1" / "policy.onnx", version_policy=VersionPolicy(1))


# --- item 8 (part): --model touched but not changed ------------------------------------------
def test_single_file_touched_or_rewritten_identically_keeps_its_version(tmp_path: Path, onnx_bytes) -> None:
    # Today every mtime change was a new version (and a reload).
    path = _put(tmp_path / "policy.onnx", onnx_bytes["a"])
    repo = ModelRepository(model_file=path, name="quad", device="cpu")
    repo.load_initial()
    before = repo.get("quad")
    os.utime(path, ns=(10**9, 10**9))
    assert repo.poll() == [] and repo.get("quad") is before
    path.write_bytes(onnx_bytes["a"])  # same bytes copied over it
    os.utime(path, ns=(2 * 10**9, 2 * 10**9))
    assert repo.poll() == [] and repo.get("quad").version == 1
    path.write_bytes(onnx_bytes["b"])
    os.utime(path, ns=(3 * 10**9, 3 * 10**9))
    assert repo.poll() == ["quad:2"]
    path.write_bytes(b"\x00half")  # a broken write: rejected as version 3, 2 keeps serving
    assert repo.poll() == [] and repo.get("quad").version == 2
    assert 3 in repo.states()["quad"].rejected
    path.write_bytes(onnx_bytes["b"])  # restored: the same bytes as version 2, no bump
    os.utime(path, ns=(4 * 10**9, 4 * 10**9))
    assert repo.poll() == [] and repo.get("quad").version == 2
    path.unlink()  # missing: nothing to roll back to, keeps serving and says so
    assert repo.poll() == [] and repo.get("quad").version == 2
    assert repo.scan_error is not None and "cannot read it" in repo.scan_error


# --- fuzz: the scanner against random folder names and file contents --------------------------
_NAME_SAMPLES = [
    b"1", b"2", b"3", b"10", b"007", b"0", b"00", str(MAX_VERSION).encode(), str(MAX_VERSION + 1).encode(),
    b"99999999999999999999", "²".encode(), "٣".encode(), "𝟗".encode(), "१".encode(), b"1.0", b" 1", b"1 ",
    b"+1", b"-1", b"\xff", b"1\xff", b".hidden", b"notes", b"1\n",
]
_names = st.one_of(
    st.sampled_from(_NAME_SAMPLES),
    st.integers(0, 2**70).map(lambda n: str(n).encode()),
    st.text(st.sampled_from("0123456789²³٣۴߃१𝟗 .-+_a\n"), min_size=1, max_size=8).map(str.encode),
    st.binary(min_size=1, max_size=12),
).filter(lambda b: b not in (b".", b"..") and b"/" not in b and b"\x00" not in b)
_kinds = st.one_of(
    st.sampled_from(["a", "b", "empty", "no file", "file", "loop"]),
    st.binary(max_size=64).map(lambda data: ("garbage", data)),
)
_layouts = st.dictionaries(_names, _kinds, max_size=6)
_LOADABLE = {"a", "b"}
_PRESENT = _LOADABLE | {"empty", "garbage", "loop"}  # a policy.onnx that exists (or cannot be read)


def _oracle_version(name: bytes) -> int | None:
    """Independent of the code under test: canonical ASCII decimal within int64."""
    if re.fullmatch(rb"[1-9][0-9]*", name) and int(name) <= MAX_VERSION:
        return int(name)
    return None


def _kind_name(kind: object) -> str:
    return kind[0] if isinstance(kind, tuple) else str(kind)


def _build(model: bytes, layout: dict[bytes, object], onnx: dict[str, bytes]) -> None:
    if os.path.lexists(model):
        shutil.rmtree(model)
    os.mkdir(model)
    for name, kind in layout.items():
        entry = os.path.join(model, name)
        policy = os.path.join(entry, b"policy.onnx")
        what = _kind_name(kind)
        if what == "loop":
            os.symlink(name, entry)
        elif what == "file":
            Path(os.fsdecode(entry)).write_bytes(b"x")
        else:
            os.mkdir(entry)
            if what != "no file":
                data = kind[1] if isinstance(kind, tuple) else b"" if what == "empty" else onnx[what]
                Path(os.fsdecode(policy)).write_bytes(data)


# 40 fixed examples in the default run (seconds); a hunt (FUZZ_EXAMPLES set, e.g.
# benchmarks/fuzz_hunt.py) draws that many fresh ones.
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None,
          derandomize="FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_layouts, min_size=1, max_size=3), pin=st.sampled_from([None, 1, 2, 10]))
def test_fuzz_scanner_never_raises_and_serves_the_right_version(onnx_bytes, steps, pin) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(os.fsencode(tmp), b"repo")
        model = os.path.join(root, b"m")
        # Junk beside the model: a non-UTF-8 model folder with a valid version, a file.
        os.makedirs(os.path.join(root, b"\xffbad", b"1"))
        Path(os.fsdecode(os.path.join(root, b"\xffbad", b"1", b"policy.onnx"))).write_bytes(onnx_bytes["a"])
        Path(os.fsdecode(os.path.join(root, b"README"))).write_bytes(b"")
        repo = ModelRepository(root=Path(os.fsdecode(root)), device="cpu", version_policy=VersionPolicy(pin))
        serving: int | None = None
        for layout in steps:
            _build(model, layout, onnx_bytes)
            repo.poll()  # must never raise
            versions = {_oracle_version(n): _kind_name(k) for n, k in layout.items()}
            present = {v for v, k in versions.items() if v is not None and k in _PRESENT}
            loadable = {v for v, k in versions.items() if v is not None and k in _LOADABLE}
            kept = {serving} if serving in present else set()  # a broken overwrite keeps serving
            if pin is None:
                expected = max(loadable | kept, default=None)
            else:
                expected = pin if pin in loadable | kept else None
            got = repo.serving().get("m")
            assert (got.version if got else None) == expected, (layout, serving)
            assert set(repo.serving()) <= {"m"}
            serving = expected
            # Every entry that is not a version with a policy file is listed, with a reason.
            listed = [e for e in repo.ignored() if e.name == "m"]
            candidates = sum(
                1 for n, k in layout.items()
                if _oracle_version(n) is not None and _kind_name(k) in _PRESENT - {"loop"}
            )
            assert len(listed) == len(layout) - candidates
            assert any(e.folder == "\\xffbad" for e in repo.ignored())
            _wire(repo)
