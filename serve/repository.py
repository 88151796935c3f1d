"""Named, versioned policies on disk, loaded and hot-swapped while the server runs.

Layout (Triton's convention): ``ROOT/NAME/VERSION/policy.onnx`` with VERSION a positive
integer; the highest version that validates serves. A single ``--model FILE`` is a
repository of one name whose version goes up each time the file changes.

Swapping is one dict assignment: a request picks up the model object once and finishes on
it, so a reload never fails a request, and a version that fails validation never replaces
the one serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sim2real.serve.model import Device, LoadedModel, ModelError, SessionTuning, load_model

log = logging.getLogger(__name__)

MODEL_FILENAME = "policy.onnx"


class ModelNotFoundError(KeyError):
    """No model by that name is serving."""

    def __init__(self, name: str, serving: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.message = f"model {name!r} is not served here; serving: {serving or 'nothing'}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Candidate:
    """A model file on disk, identified by what a copy-in-progress would change."""

    name: str
    version: int
    path: Path
    mtime_ns: int
    size: int

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.mtime_ns, self.size)


@dataclass
class ModelState:
    """What the repository knows about one name."""

    serving: LoadedModel | None = None
    serving_fingerprint: tuple[int, int] | None = None
    rejected: dict[int, tuple[tuple[int, int], str]] = field(default_factory=dict)
    """version -> (fingerprint that failed, reason); retried only when the file changes."""


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ModelRepository:
    """Loads every name's best version; ``poll`` picks up new ones."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        model_file: Path | None = None,
        name: str | None = None,
        default_model: str | None = None,
        device: Device = "auto",
        tuning: SessionTuning | None = None,
    ) -> None:
        if (root is None) == (model_file is None):
            raise ValueError("give exactly one of root (--model-repo) or model_file (--model)")
        self.root = Path(root) if root is not None else None
        self.model_file = Path(model_file) if model_file is not None else None
        self.single_name = name or (self.model_file.stem if self.model_file else None)
        self.device: Device = device
        self.tuning = tuning or SessionTuning()
        self._default = default_model
        self._states: dict[str, ModelState] = {}
        self._models: dict[str, LoadedModel] = {}  # replaced, never mutated: lock-free reads
        self._write_lock = threading.Lock()
        self._listeners: list[Callable[[LoadedModel], None]] = []

    # --- reading (hot path) -------------------------------------------------------------
    @property
    def default_name(self) -> str | None:
        if self._default is not None:
            return self._default
        if self.single_name is not None:
            return self.single_name
        return min(self._models) if self._models else None

    def get(self, name: str = "") -> LoadedModel:
        """The serving model for ``name`` ('' = the default model)."""
        key = name or self.default_name or ""
        model = self._models.get(key)
        if model is None:
            raise ModelNotFoundError(key, sorted(self._models))
        return model

    def serving(self) -> dict[str, LoadedModel]:
        return self._models

    def states(self) -> dict[str, ModelState]:
        return dict(self._states)

    def add_listener(self, listener: Callable[[LoadedModel], None]) -> None:
        """Called (from the loading thread) after each swap."""
        self._listeners.append(listener)

    # --- scanning and loading -----------------------------------------------------------
    def _candidates(self) -> dict[str, list[Candidate]]:
        found: dict[str, list[Candidate]] = {}
        if self.model_file is not None:
            stat = _stat(self.model_file)
            if stat is not None:
                assert self.single_name is not None
                state = self._states.get(self.single_name)
                serving = state.serving if state else None
                # One file: each change of its contents is the next version.
                if serving is None:
                    version = 1
                elif state is not None and state.serving_fingerprint == stat:
                    version = serving.version
                else:
                    version = serving.version + 1
                found[self.single_name] = [Candidate(self.single_name, version, self.model_file, *stat)]
            return found
        assert self.root is not None
        if not self.root.is_dir():
            raise FileNotFoundError(f"--model-repo {self.root}: not a directory")
        for name_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for version_dir in name_dir.iterdir():
                if not (version_dir.is_dir() and version_dir.name.isdigit() and int(version_dir.name) > 0):
                    continue
                path = version_dir / MODEL_FILENAME
                stat = _stat(path)
                if stat is not None:
                    found.setdefault(name_dir.name, []).append(
                        Candidate(name_dir.name, int(version_dir.name), path, *stat)
                    )
        return found

    def poll(self, only: str | None = None) -> list[str]:
        """Load what is new on disk; return the swaps made as 'name:version'.

        For each name, versions newer than the serving one are tried from the highest
        down; the first that validates is swapped in. A failure is logged and remembered
        with the file's (mtime, size), so it is retried only once the file changes (a
        copy that was still in progress).
        """
        with self._write_lock:
            loaded: list[str] = []
            for name, candidates in self._candidates().items():
                if only and name != only:
                    continue
                state = self._states.setdefault(name, ModelState())
                for cand in sorted(candidates, key=lambda c: c.version, reverse=True):
                    serving = state.serving
                    if serving is not None and (
                        cand.version < serving.version
                        or (cand.version == serving.version and cand.fingerprint == state.serving_fingerprint)
                    ):
                        break
                    rejected = state.rejected.get(cand.version)
                    if rejected is not None and rejected[0] == cand.fingerprint:
                        continue
                    try:
                        model = load_model(cand.path, name, cand.version, self.device, self.tuning)
                    except Exception as err:  # noqa: BLE001 - any failure rejects this version only
                        reason = str(err) if isinstance(err, ModelError) else f"{cand.path}: {type(err).__name__}: {err}"
                        state.rejected[cand.version] = (cand.fingerprint, reason)
                        log.error("rejected %s version %d: %s", name, cand.version, reason)
                        continue
                    if serving is not None and (model.obs_dim, model.act_dim) != (serving.obs_dim, serving.act_dim):
                        # A robot's controller is built for one observation/action layout;
                        # a silent change of either would feed it garbage.
                        reason = (
                            f"{cand.path}: observation/action sizes {model.obs_dim}/{model.act_dim} differ "
                            f"from the serving version's {serving.obs_dim}/{serving.act_dim}; "
                            "serve it under a new name"
                        )
                        state.rejected[cand.version] = (cand.fingerprint, reason)
                        log.error("rejected %s version %d: %s", name, cand.version, reason)
                        continue
                    state.rejected.pop(cand.version, None)
                    state.serving, state.serving_fingerprint = model, cand.fingerprint
                    self._models = {**self._models, name: model}
                    loaded.append(f"{name}:{cand.version}")
                    log.info(
                        "serving %s version %d from %s on %s", name, cand.version, cand.path, model.provider
                    )
                    for listener in self._listeners:
                        listener(model)
                    break
            return loaded

    def load_initial(self) -> None:
        """First load; fails with every rejection reason when nothing can serve."""
        self.poll()
        if not self._models:
            reasons = [
                reason for state in self._states.values() for _, reason in state.rejected.values()
            ]
            where = self.model_file or self.root
            detail = "; ".join(reasons) if reasons else (
                f"no {MODEL_FILENAME} under {where}/NAME/VERSION/" if self.root else f"{where}: no such file"
            )
            raise ModelError(f"no servable model in {where}: {detail}")
        if self._default is not None and self._default not in self._models:
            raise ModelError(
                f"--default-model {self._default!r} is not in the repository "
                f"(found: {sorted(self._models)})"
            )

