"""Parse a command's typed config with tyro and turn expected failures into one line.

A config that fails validation, and an expected failure at run time (bad model, bad log,
port in use), is one ``error:`` line on stderr and exit 2 (serve, replay and demo).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import TypeVar

import tyro

ConfigT = TypeVar("ConfigT")


def run_command(
    config_cls: type[ConfigT], argv: list[str], prog: str, body: Callable[[ConfigT], int],
    expected: Callable[[], tuple[type[BaseException], ...]],
) -> int:
    """Parse ``argv`` into ``config_cls`` and run ``body`` on it; ``expected()`` names the
    exceptions that are a user's mistake or the environment's (imported only when needed,
    so `--help` stays light)."""
    parsed = tyro.cli(_unvalidated(config_cls), args=argv, prog=prog)
    try:
        config = config_cls(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed) if f.init})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return body(config)
    except expected() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _unvalidated(config_cls: type[ConfigT]) -> type[ConfigT]:
    """``config_cls`` with its ``__post_init__`` skipped, for tyro to fill in.

    tyro answers a ValueError from a config's own validation with a multi-line box; the
    config is built again from the parsed fields outside tyro, so a misuse (e.g.
    ``--model X --version-policy specific:2``) is one ``error:`` line, exit 2. Same
    fields, docstrings and help text (tyro reads them from the parent class).
    """
    return type(config_cls.__name__, (config_cls,), {  # type: ignore[return-value]
        "__post_init__": lambda self: None,
        "__doc__": config_cls.__doc__,
        "__module__": config_cls.__module__,
        "__qualname__": config_cls.__qualname__,
    })
