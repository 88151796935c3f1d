"""The committed stubs are exactly what protos/generate.py produces from the .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("protos_generate", ROOT / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path)
    assert written, "protoc wrote nothing"
    for fresh in written:
        rel = fresh.relative_to(tmp_path)
        committed = ROOT / "protos" / rel
        assert committed.is_file(), f"{rel} is generated but not committed: run python protos/generate.py"
        assert committed.read_text() == fresh.read_text(), (
            f"{rel} is out of date with the .proto: run python protos/generate.py"
        )
    committed = {
        p.relative_to(ROOT / "protos")
        for pattern in ("*_pb2*.py", "*_pb2*.pyi")  # not the __pycache__/*.pyc an import leaves
        for p in (ROOT / "protos").rglob(pattern)
    }
    assert committed == {p.relative_to(tmp_path) for p in written}, "stale stub files are committed"


def test_wire_contract_names() -> None:
    from sim2real.v1 import policy_pb2

    service = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"]
    assert service.full_name == "sim2real.v1.PolicyService"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {"Act": (False, False), "StreamAct": (True, True), "GetPolicyInfo": (False, False)}
    obs = policy_pb2.ActRequest.DESCRIPTOR.fields_by_name["observation"]
    assert obs.type == obs.TYPE_FLOAT and obs.is_packed
    act = policy_pb2.ActResponse.DESCRIPTOR.fields_by_name["action"]
    assert act.type == act.TYPE_FLOAT and act.is_packed
