"""The layout stays true: each top-level room imports only the rooms it may.

The rule (README, Layout; docs/design.md, Architecture), lowest room first:

    v1 (protos)     nothing of ours
    robots          nothing of ours
    logformat       v1
    train           robots
    serve           logformat, v1
    replay          robots, logformat, serve, v1
    cli             every room

Read from the source files (ast), every import counts, also one inside a function: a
lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED: dict[str, frozenset[str]] = {
    "v1": frozenset(),
    "robots": frozenset(),
    "logformat": frozenset({"v1"}),
    "train": frozenset({"robots"}),
    "serve": frozenset({"logformat", "v1"}),
    "replay": frozenset({"robots", "logformat", "serve", "v1"}),
    "cli": frozenset({"robots", "train", "logformat", "serve", "replay", "v1"}),
}


def rooms() -> dict[str, Path]:
    """Room name (the X of sim2real.X) -> its folder, as pyproject.toml installs them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {name.removeprefix("sim2real."): ROOT / folder for name, folder in package_dir.items()}


def _module_name(path: Path, room: str, folder: Path) -> list[str]:
    parts = ["sim2real", room, *path.relative_to(folder).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_rooms(path: Path, room: str, folder: Path) -> list[tuple[int, str]]:
    """(line, room) for every import of a sim2real room in one source file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path, room, folder)
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this file's package
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            # `from sim2real import replay` names the room in the imported names.
            modules = [f"{base}.{alias.name}" for alias in node.names] if base == "sim2real" else [base]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "sim2real":
                found.append((node.lineno, parts[1]))
    return sorted(found)


def violations(room: str, folder: Path) -> list[str]:
    """Every import in ``folder``'s source that reaches a room ``room`` may not import."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        for line, other in imported_rooms(path, room, folder):
            if other != room and other not in ALLOWED[room]:
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                out.append(f"{shown}:{line} imports sim2real.{other}")
    return out


def test_every_installed_room_has_a_rule() -> None:
    assert set(rooms()) == set(ALLOWED), "a new top-level package needs its line in ALLOWED (and the README)"


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_the_rooms_it_may(room: str) -> None:
    found = violations(room, rooms()[room])
    assert not found, (
        f"sim2real.{room} may import only {sorted(ALLOWED[room]) or 'nothing of ours'}:\n" + "\n".join(found)
    )


def test_the_allowed_imports_have_no_cycle() -> None:
    done: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, f"cycle: {' -> '.join((*path, room))}"
        if room not in done:
            for other in ALLOWED[room]:
                visit(other, (*path, room))
            done.add(room)

    for room in ALLOWED:
        visit(room, ())


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    # The check itself must be able to fail: a server module reaching into replay, a
    # lazy one inside a function, a relative one and `from sim2real import ...`.
    folder = tmp_path / "serve"
    folder.mkdir()
    (folder / "bad.py").write_text(
        "from sim2real.serve import model\n"
        "def f():\n"
        "    from sim2real.replay.report import run_replay\n"
        "from ..train import trainer\n"
        "from sim2real import robots\n"
    )
    found = violations("serve", folder)
    assert [line.rsplit(" ", 1)[1] for line in found] == ["sim2real.replay", "sim2real.train", "sim2real.robots"]
