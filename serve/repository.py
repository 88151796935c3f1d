"""Named, versioned policies on disk, loaded and hot-swapped while the server runs.

Layout (Triton's convention): ``ROOT/NAME/VERSION/policy.onnx``. VERSION is a plain ASCII
decimal number 1..2**63-1 (the wire's int64); any other entry is ignored, with its reason
listed (``ignored()``), and never stops a scan. Which version serves is the name's version
policy: ``latest`` (default) serves the highest version that validates, ``specific:N``
exactly version N. Removing the serving version's folder unloads it and the next highest
valid version serves (rollback by deletion, as Triton's polling repository does).

A single ``--model FILE`` is a repository of one name whose version goes up each time the
file's content changes (sha256 of the bytes; touching the file changes nothing).

Swapping is one dict assignment: a request picks up the model object once and finishes on
it, so a reload never fails a request, and a version that fails validation never replaces
the one serving.
"""

from __future__ import annotations

import logging
import os
import re
import stat as stat_mode
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sim2real.serve.model import (
    Device,
    LoadedModel,
    ModelError,
    SessionTuning,
    file_sha256,
    load_model,
)

log = logging.getLogger(__name__)

MODEL_FILENAME = "policy.onnx"
MAX_VERSION = 2**63 - 1
"""Largest version: model_version and serving_version are int64 in
protos/sim2real/v1/policy.proto and log.proto; a bigger one could never be sent."""
_DECIMAL = re.compile(r"[0-9]+")
_SHOWN_CHARS = 80
"""Folder names are echoed into log lines and replies: cut, so a 100,000-character name
cannot turn an answer into RESOURCE_EXHAUSTED (issue 12, item 8)."""


class ModelNotFoundError(KeyError):
    """No model by that name is serving."""

    def __init__(self, name: str, serving: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.message = f"model '{_shown(name)}' is not served here; serving: {serving or 'nothing'}"

    def __str__(self) -> str:
        return self.message


class VersionPolicyError(ValueError):
    """A version policy that cannot take effect; the message says which model and why."""


def _shown(text: str, limit: int = _SHOWN_CHARS) -> str:
    """``text`` made safe for a log line or a proto string field.

    Non-UTF-8 file names reach Python as lone surrogates, which protobuf refuses to encode:
    they become ``\\xNN``. Control characters are escaped so a folder name cannot forge log
    lines, and long names are cut.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that did not come from a file name
        raw = text.encode("utf-8", "backslashreplace")
    decoded = raw.decode("utf-8", "backslashreplace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in decoded)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_version(text: str, what: str = "version folder") -> int:
    """The version a folder named ``text`` stands for; ValueError saying why it is none.

    Only canonical ASCII decimals 1..MAX_VERSION count. ``str.isdigit`` also accepts '²'
    (which ``int`` rejects: one such folder used to stop every scan) and Arabic-Indic
    digits (which ``int`` reads, so '٣' and '3' would claim one version); leading zeros
    are refused for the same reason ('07' and '7'); a number beyond int64 cannot cross the
    wire (it used to become the serving version and fail every call).
    """
    shown = _shown(text)
    if not _DECIMAL.fullmatch(text):
        kind = (
            "has digits other than ASCII 0-9" if any(c.isdigit() and not c.isascii() for c in text)
            else "is not a plain decimal number (no sign, point, space or letter)"
        )
        raise ValueError(f"{what} '{shown}' {kind}; versions are named 1, 2, 3, ...")
    if text.startswith("0"):
        if not text.strip("0"):
            raise ValueError(f"{what} '{shown}': versions start at 1")
        raise ValueError(
            f"{what} '{shown}' has a leading zero; name it '{_shown(text.lstrip('0'))}' "
            "(two spellings of one number would name one version twice)"
        )
    # Length first: int() refuses numbers of over 4300 digits with its own ValueError.
    if len(text) > len(str(MAX_VERSION)) or int(text) > MAX_VERSION:
        raise ValueError(
            f"{what} '{shown}' is beyond {MAX_VERSION}, the largest version the wire's int64 carries"
        )
    return int(text)


@dataclass(frozen=True)
class VersionPolicy:
    """Which version of a model serves (Triton's version_policy, minus `all`).

    ``latest`` (pinned None): the highest version that validates. ``specific:N``: exactly
    version N and no other, even while N cannot serve.

    When N cannot serve, the choice is made for a robot on the other end:

    - at start (``load_initial``) the server refuses to start, naming the pin: a deploy
      whose explicit pin cannot be honoured is a configuration error, and serving some
      other version would be a silent one;
    - at run time (``set_version_policy``, the admin call) the pin is refused and nothing
      changes: a mistyped version must not take a running robot's policy away;
    - once pinned, a new copy of N that fails validation leaves the loaded N serving (as
      any version under ``latest``: a copy in progress is not a decision);
    - once pinned, deleting N's folder unloads it and nothing serves that name: deletion
      is the operator's decision that N must stop, the pin forbids every other version,
      and a controller treats NOT_FOUND like a lost server (its own safe fallback). The
      model's ``problem`` says so until N returns or the pin changes.
    """

    pinned: int | None = None
    """The one version to serve; None serves the latest."""

    def __post_init__(self) -> None:
        pinned = self.pinned
        if pinned is not None and (
            isinstance(pinned, bool) or not isinstance(pinned, int) or not 1 <= pinned <= MAX_VERSION
        ):
            raise ValueError(
                f"VersionPolicy.pinned: expected None (latest) or a version 1..{MAX_VERSION}, "
                f"got {pinned!r}"
            )

    def __str__(self) -> str:
        return "latest" if self.pinned is None else f"specific:{self.pinned}"


LATEST = VersionPolicy()


def parse_version_policy(text: str, field: str = "--version-policy") -> VersionPolicy:
    """``latest`` or ``specific:N`` -> VersionPolicy; ValueError naming ``field`` otherwise."""
    expected = f"expected 'latest' or 'specific:N' with N a version 1..{MAX_VERSION}"
    if text == "latest":
        return LATEST
    kind, sep, number = text.partition(":")
    if kind != "specific" or not sep:
        raise ValueError(f"{field}: {expected}, got '{_shown(text)}'")
    try:
        return VersionPolicy(parse_version(number, what="N"))
    except ValueError as err:
        raise ValueError(f"{field}: {expected}, got '{_shown(text)}': {err}") from None


@dataclass(frozen=True)
class IgnoredEntry:
    """Something in the repository that is not a servable version, and why (for ListModels)."""

    name: str
    """Model name ('' for an entry directly under the repository root), escaped for display."""
    folder: str
    """The entry's own name, escaped for display ('' when the model folder itself is meant)."""
    reason: str


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
    problem: str | None = None
    """Why this name serves nothing, or not what its version policy asks; None when fine."""


@dataclass
class _Scan:
    """One look at the disk."""

    candidates: dict[str, dict[int, Candidate]] = field(default_factory=dict)
    """name -> version -> its file, for every model folder that could be listed."""
    held: dict[str, set[int]] = field(default_factory=dict)
    """Versions that exist but cannot be read now: not loadable, and not removed either."""
    unreadable: set[str] = field(default_factory=set)
    """Model folders that could not be listed: everything about them stays as it is."""
    ignored: list[IgnoredEntry] = field(default_factory=list)
    error: str | None = None
    """The scan as a whole failed (root or --model file unreadable): nothing changes."""


def _os_reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _pin_trouble(pinned: int, state: ModelState | None) -> str:
    """Why pinned version ``pinned`` does not serve."""
    if state is not None and pinned in state.rejected:
        return f"version {pinned} failed validation: {state.rejected[pinned][1]}"
    return f"version {pinned} is not in the repository"


def _kind(path: Path) -> str:
    """'dir', 'file', 'special file' or 'missing' (after symlinks); OSError when unreadable."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    if stat_mode.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat_mode.S_ISREG(st.st_mode) else "special file"


class ModelRepository:
    """Serves every name's version chosen by its policy; ``poll`` follows the disk."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        model_file: Path | None = None,
        name: str | None = None,
        default_model: str | None = None,
        device: Device = "auto",
        tuning: SessionTuning | None = None,
        version_policy: VersionPolicy = LATEST,
    ) -> None:
        if (root is None) == (model_file is None):
            raise ValueError("give exactly one of root (--model-repo) or model_file (--model)")
        if model_file is not None and version_policy.pinned is not None:
            raise ValueError(
                f"--version-policy {version_policy}: applies to --model-repo only "
                "(a --model file has one version at a time)"
            )
        self.root = Path(root) if root is not None else None
        self.model_file = Path(model_file) if model_file is not None else None
        self.single_name = name or (self.model_file.stem if self.model_file else None)
        self.device: Device = device
        self.tuning = tuning or SessionTuning()
        self._default = default_model
        self._default_policy = version_policy
        self._policies: dict[str, VersionPolicy] = {}  # per-name overrides (admin call)
        self._states: dict[str, ModelState] = {}
        self._models: dict[str, LoadedModel] = {}  # replaced, never mutated: lock-free reads
        self._ignored: tuple[IgnoredEntry, ...] = ()
        self._logged_ignored: set[IgnoredEntry] = set()
        self._scan_error: str | None = None
        self._hashes: dict[tuple[Path, tuple[int, int]], str] = {}
        self._write_lock = threading.Lock()
        self.polls_done = 0
        """Scans finished (poll()), counted for whoever must know that one has run since a change."""
        self._listeners: list[Callable[[LoadedModel], None]] = []
        self._unload_listeners: list[Callable[[str, int], None]] = []

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

    def serving_text(self) -> str:
        """What is served, for a log line after something went wrong: "still serving a v2,
        b v1", or that nothing is loaded yet."""
        serving = ", ".join(f"{m.name} v{m.version}" for m in self._models.values())
        return f"still serving {serving}" if serving else "nothing loaded yet to serve"

    def states(self) -> dict[str, ModelState]:
        return dict(self._states)

    def ignored(self) -> list[IgnoredEntry]:
        """Entries of the last scan that are not servable versions, each with its reason."""
        return list(self._ignored)

    @property
    def scan_error(self) -> str | None:
        """Why the last scan could not read the repository at all (None when it could)."""
        return self._scan_error

    def version_policy(self, name: str) -> VersionPolicy:
        return self._policies.get(name, self._default_policy)

    def add_listener(self, listener: Callable[[LoadedModel], None]) -> None:
        """Called (from the loading thread) after each swap."""
        self._listeners.append(listener)

    def add_unload_listener(self, listener: Callable[[str, int], None]) -> None:
        """Called with (name, version) after a removed version is unloaded and none replaces it."""
        self._unload_listeners.append(listener)

    # --- changing the policy (admin) ----------------------------------------------------
    def set_version_policy(self, name: str, policy: VersionPolicy) -> list[str]:
        """Give ``name`` ('' = the default model) a version policy now; return the swaps.

        A pin takes effect only if its version serves: when version N is absent or fails
        validation, VersionPolicyError says why and the previous policy and model stay, so
        a mistyped admin call cannot take a robot's policy away.
        """
        if self.model_file is not None and policy.pinned is not None:
            raise VersionPolicyError(
                f"version policy {policy}: applies to --model-repo only "
                "(a --model file has one version at a time)"
            )
        with self._write_lock:
            key = name or self.default_name or ""
            scan = self._scan()
            self._record(scan)
            if scan.error is not None:
                raise VersionPolicyError(f"version policy {policy} for model '{_shown(key)}': {scan.error}")
            if key in scan.unreadable:
                raise VersionPolicyError(
                    f"version policy {policy} for model '{_shown(key)}': its folder cannot be read now"
                )
            if key not in scan.candidates:
                raise ModelNotFoundError(key, sorted(scan.candidates))
            previous = self._policies.get(key)
            self._policies[key] = policy
            swapped = self._settle(key, scan)
            state = self._states.get(key)
            serving = state.serving if state else None
            if policy.pinned is None or (serving is not None and serving.version == policy.pinned):
                return [swapped] if swapped else []
            why = f"model '{_shown(key)}', version policy {policy}: {_pin_trouble(policy.pinned, state)}"
            # Undo: settle again under the old policy so state.problem describes what holds.
            if previous is not None:
                self._policies[key] = previous
            else:
                self._policies.pop(key, None)
            self._settle(key, scan)
            serving = self._states[key].serving if key in self._states else None
            now = f"version {serving.version} keeps serving" if serving else "nothing serves"
            versions = sorted(scan.candidates[key])
            raise VersionPolicyError(
                f"{why}; versions on disk: {versions[:20]}{' ...' if len(versions) > 20 else ''}; "
                f"policy unchanged ({self.version_policy(key)}), {now}"
            )

    # --- scanning -----------------------------------------------------------------------
    def _same_content(self, path: Path, fingerprint: tuple[int, int], model: LoadedModel) -> bool:
        """Whether ``path`` still holds the bytes ``model`` was loaded from (a touch, or a
        copy of identical bytes, is no new version). Hashes once per (path, mtime, size):
        a file that changed to something that does not validate is polled again and again."""
        key = (path, fingerprint)
        digest = self._hashes.get(key)
        if digest is None:
            try:
                digest = file_sha256(path)
            except OSError:
                return False
            if len(self._hashes) >= 64:
                self._hashes.clear()
            self._hashes[key] = digest
        return digest == model.sha256

    def _scan(self) -> _Scan:
        return self._scan_file() if self.model_file is not None else self._scan_root()

    def _scan_file(self) -> _Scan:
        assert self.model_file is not None and self.single_name is not None
        path, name, scan = self.model_file, self.single_name, _Scan()
        try:
            st = os.stat(path)
        except OSError as err:
            # Kept serving: there is no older version to fall back to, and tools that
            # replace a file by deleting and rewriting it must not cut a robot off.
            scan.error = f"--model {path}: cannot read it ({_os_reason(err)})"
            return scan
        if not stat_mode.S_ISREG(st.st_mode):
            scan.error = f"--model {path}: not a regular file"
            return scan
        state = self._states.get(name)
        serving = state.serving if state else None
        fingerprint = (st.st_mtime_ns, st.st_size)
        # One file: each change of its content is the next version.
        if serving is None:
            version = 1
        elif (state is not None and state.serving_fingerprint == fingerprint) or self._same_content(
            path, fingerprint, serving
        ):
            version = serving.version
        else:
            version = serving.version + 1
            scan.held[name] = {serving.version}  # still "on disk" until the new one validates
        scan.candidates[name] = {version: Candidate(name, version, path, *fingerprint)}
        return scan

    def _scan_root(self) -> _Scan:
        assert self.root is not None
        root, scan = self.root, _Scan()

        def ignore(name: str, folder: str, reason: str) -> None:
            scan.ignored.append(IgnoredEntry(_shown(name), _shown(folder), reason))

        try:
            names = sorted(os.listdir(root))
        except OSError as err:
            scan.error = f"--model-repo {root}: cannot list it ({_os_reason(err)})"
            return scan
        for name in names:
            name_dir = root / name
            if not _is_utf8(name):
                ignore("", name, "not valid UTF-8; a model name crosses the wire as a proto string")
                continue
            try:
                kind = _kind(name_dir)
                entries = sorted(os.listdir(name_dir)) if kind == "dir" else []
            except FileNotFoundError:  # vanished since the listing: removed
                continue
            except OSError as err:
                reason = f"cannot read the model folder ({_os_reason(err)}); its versions stay as they are"
                ignore(name, "", reason)
                scan.unreadable.add(name)
                continue
            if kind == "missing":
                continue
            if kind != "dir":
                ignore("", name, f"a {kind}, not a model folder (expected NAME/VERSION/{MODEL_FILENAME})")
                continue
            versions = scan.candidates.setdefault(name, {})
            for entry in entries:
                try:
                    version = parse_version(entry)
                except ValueError as err:
                    ignore(name, entry, str(err))
                    continue
                version_dir = name_dir / entry
                try:
                    kind = _kind(version_dir)
                    st = os.stat(version_dir / MODEL_FILENAME) if kind == "dir" else None
                except FileNotFoundError:
                    ignore(name, entry, f"no {MODEL_FILENAME} in it (yet)")
                    continue
                except OSError as err:
                    # Unreadable (permissions, a symlink loop) is not removed: a serving
                    # version stays rather than be unloaded by a transient error.
                    ignore(name, entry, f"cannot read it ({_os_reason(err)})")
                    scan.held.setdefault(name, set()).add(version)
                    continue
                if kind == "missing":
                    continue
                if st is None:
                    ignore(name, entry, f"a {kind}, not a version folder (expected {entry}/{MODEL_FILENAME})")
                    continue
                if not stat_mode.S_ISREG(st.st_mode):
                    ignore(name, entry, f"{MODEL_FILENAME} in it is not a regular file")
                    continue
                versions[version] = Candidate(
                    name, version, version_dir / MODEL_FILENAME, st.st_mtime_ns, st.st_size
                )
        return scan

    def _record(self, scan: _Scan) -> None:
        """Keep the scan's findings for ListModels; log each new one once, not per scan."""
        if scan.error is not None:
            if scan.error != self._scan_error:
                log.error("%s; %s", scan.error, self.serving_text())
            self._scan_error = scan.error
            return
        if self._scan_error is not None:
            log.info("model repository readable again")
        self._scan_error = None
        self._ignored = tuple(scan.ignored)
        current = set(scan.ignored)
        for entry in scan.ignored:
            if entry not in self._logged_ignored:
                where = "/".join(p for p in (entry.name, entry.folder) if p)
                log.warning("ignoring %s in the model repository: %s", where, entry.reason)
        self._logged_ignored = current

    # --- loading ------------------------------------------------------------------------
    def poll(self, only: str | None = None) -> list[str]:
        """Bring the serving models in line with the disk; return swaps as 'name:version'.

        Never raises for what is on disk: unusable entries are ignored with a reason, a
        version that fails validation is rejected (and retried only once its file's
        (mtime, size) changes: a copy that was still in progress), and an unreadable
        repository leaves everything serving as it is.
        """
        with self._write_lock:
            try:
                scan = self._scan()
                self._record(scan)
                if scan.error is not None:
                    return []
                loaded: list[str] = []
                for name in sorted(set(scan.candidates) | set(self._states)):
                    if (only and name != only) or name in scan.unreadable:
                        continue
                    swapped = self._settle(name, scan)
                    if swapped is not None:
                        loaded.append(swapped)
                return loaded
            finally:
                self.polls_done += 1  # what a caller waits on to know a scan has run since

    def _settle(self, name: str, scan: _Scan) -> str | None:
        """Apply ``name``'s version policy to what ``scan`` found; the swap made, if any.

        latest: versions above the serving one are tried from the highest down, the first
        that validates serves. When the serving version was removed, every remaining
        version is a candidate (rollback), and if none validates the name is unloaded:
        a version an operator deleted must stop serving. specific:N: only N is tried.
        """
        candidates = scan.candidates.get(name, {})
        held = scan.held.get(name, set())
        policy = self.version_policy(name)
        state = self._states.setdefault(name, ModelState())
        serving = state.serving
        removed = serving is not None and serving.version not in candidates and serving.version not in held
        if serving is not None and serving.version in candidates:
            cand = candidates[serving.version]
            if cand.fingerprint != state.serving_fingerprint and self._same_content(
                cand.path, cand.fingerprint, serving
            ):
                state.serving_fingerprint = cand.fingerprint  # touched, same bytes: nothing to load
        if policy.pinned is None:
            order = sorted(candidates, reverse=True)
        else:
            order = [policy.pinned] if policy.pinned in candidates else []
        swapped: str | None = None
        for version in order:
            cand = candidates[version]
            if serving is not None and not removed:
                if version == serving.version and cand.fingerprint == state.serving_fingerprint:
                    break
                if policy.pinned is None and version < serving.version:
                    break
            rejected = state.rejected.get(version)
            if rejected is not None and rejected[0] == cand.fingerprint:
                continue
            model = self._load(cand, state, reference=serving)
            if model is None:
                continue
            if removed:
                assert serving is not None
                log.warning(
                    "%s version %d was removed; rolled back to version %d", name, serving.version, version
                )
            self._swap(name, state, model, cand.fingerprint)
            swapped = f"{name}:{version}"
            break
        if swapped is None and removed:
            assert serving is not None
            self._unload(name, state, serving.version)
        # Rejections of versions no longer on disk are history: ListModels shows what is there.
        for version in [v for v in state.rejected if v not in candidates and v not in held]:
            del state.rejected[version]
        state.problem = self._problem(name, policy, state, candidates)
        if state.serving is None and not candidates and not held:
            del self._states[name]  # the model folder is gone (or empty): nothing to report
        return swapped

    def _load(self, cand: Candidate, state: ModelState, reference: LoadedModel | None) -> LoadedModel | None:
        """``cand`` loaded and validated, or None with the reason kept in ``state.rejected``."""
        try:
            model = load_model(cand.path, cand.name, cand.version, self.device, self.tuning)
        except Exception as err:  # noqa: BLE001 - any failure rejects this version only
            reason = str(err) if isinstance(err, ModelError) else f"{cand.path}: {type(err).__name__}: {err}"
            return self._reject(cand, state, reason)
        if reference is not None and (model.obs_dim, model.act_dim) != (reference.obs_dim, reference.act_dim):
            # A robot's controller is built for one observation/action layout; a silent
            # change of either (by an update or by a rollback) would feed it garbage.
            return self._reject(cand, state, (
                f"{cand.path}: observation/action sizes {model.obs_dim}/{model.act_dim} differ "
                f"from the serving version's {reference.obs_dim}/{reference.act_dim}; serve it under a new name"
            ))
        state.rejected.pop(cand.version, None)
        return model

    def _reject(self, cand: Candidate, state: ModelState, reason: str) -> None:
        state.rejected[cand.version] = (cand.fingerprint, reason)
        log.error("rejected %s version %d: %s", cand.name, cand.version, reason)
        return None

    def _swap(self, name: str, state: ModelState, model: LoadedModel, fingerprint: tuple[int, int]) -> None:
        state.serving, state.serving_fingerprint = model, fingerprint
        self._models = {**self._models, name: model}
        log.info("serving %s version %d from %s on %s", name, model.version, model.path, model.provider)
        for listener in self._listeners:
            try:
                listener(model)
            except Exception:  # noqa: BLE001 - a metrics hook must not undo a swap
                log.exception("model-loaded listener failed for %s version %d", name, model.version)

    def _unload(self, name: str, state: ModelState, version: int) -> None:
        # In-flight requests hold their own reference and finish on the old model.
        state.serving, state.serving_fingerprint = None, None
        self._models = {k: v for k, v in self._models.items() if k != name}
        log.warning("%s version %d was removed and no other version can serve; %s unloaded", name, version, name)
        for listener in self._unload_listeners:
            try:
                listener(name, version)
            except Exception:  # noqa: BLE001
                log.exception("unload listener failed for %s version %d", name, version)

    def _problem(
        self, name: str, policy: VersionPolicy, state: ModelState, candidates: dict[int, Candidate]
    ) -> str | None:
        serving = state.serving
        now = f"still serving version {serving.version}" if serving else "serving nothing"
        if policy.pinned is not None:
            pinned = policy.pinned
            if serving is not None and serving.version == pinned:
                return None
            return f"model '{_shown(name)}', version policy {policy}: {_pin_trouble(pinned, state)}; {now}"
        if serving is None:
            return f"model '{_shown(name)}': no version validates; {now}" if candidates else (
                f"model '{_shown(name)}': no version on disk; {now}"
            )
        return None

    def load_initial(self) -> None:
        """First load; fails with every reason when nothing can serve or a pin cannot."""
        self.poll()
        where = self.model_file or self.root
        pinned = [
            state.problem for name, state in sorted(self._states.items())
            if self.version_policy(name).pinned is not None and state.problem
        ]
        if pinned:
            raise ModelError("; ".join(p for p in pinned if p))
        if not self._models:
            reasons = [reason for state in self._states.values() for _, reason in state.rejected.values()]
            reasons += [
                f"ignored {'/'.join(p for p in (e.name, e.folder) if p)}: {e.reason}" for e in self._ignored[:10]
            ]
            if self._scan_error is not None:
                reasons.insert(0, self._scan_error)
            detail = "; ".join(reasons) if reasons else (
                f"no {MODEL_FILENAME} under {where}/NAME/VERSION/" if self.root else f"{where}: no such file"
            )
            raise ModelError(f"no servable model in {where}: {detail}")
        if self._default is not None and self._default not in self._models:
            raise ModelError(
                f"--default-model {self._default!r} is not in the repository "
                f"(found: {sorted(self._models)})"
            )
