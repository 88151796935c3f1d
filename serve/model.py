"""One ONNX policy loaded into onnxruntime, validated before it may serve.

A model must honour the model-file contract (docs/design.md, Model file): input ``observation`` [batch, obs_dim] float32,
output ``action`` [batch, act_dim] float32, metadata_props as JSON strings. Loading runs a
probe observation through it, so a file that loads but cannot run (wrong shapes, broken
graph, NaN output) is rejected before any robot sees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

INPUT_NAME = "observation"
OUTPUT_NAME = "action"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]


class ModelError(ValueError):
    """A model file that cannot serve; the message says which file and why."""


class DeviceUnavailableError(RuntimeError):
    """``--device cuda`` was asked for and CUDA cannot run the model."""


@dataclass(frozen=True)
class SessionTuning:
    """onnxruntime settings for tiny control policies (a few 256-wide layers).

    One intra-op thread: a 256x256 matmul is far below the size where splitting it across
    threads pays for the hand-off, and a second thread would compete with gRPC for the
    second core. No spinning: a spinning pool burns a core between 500 Hz requests.
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _session_options(tuning: SessionTuning) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = tuning.intra_op_threads
    options.inter_op_num_threads = tuning.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if tuning.allow_spinning else "0"
    )
    options.add_session_config_entry(
        "session.inter_op.allow_spinning", "1" if tuning.allow_spinning else "0"
    )
    # onnxruntime-gpu logs an error per session when CUDA libraries are absent; we report
    # the provider ourselves (GetPolicyInfo, metrics, startup line).
    options.log_severity_level = 3
    return options


def cuda_available() -> bool:
    import onnxruntime as ort

    return CUDA in ort.get_available_providers()


def create_session(path: Path, device: Device, tuning: SessionTuning) -> tuple[Any, str]:
    """An InferenceSession on the requested device, and the provider it really uses.

    onnxruntime-gpu lists the CUDA provider even where CUDA libraries are missing and then
    silently falls back to CPU, so "works" means the created session reports CUDA first.
    """
    import onnxruntime as ort

    options = _session_options(tuning)
    if device in ("auto", "cuda") and cuda_available():
        # CUDA graphs (onnxruntime's enable_cuda_graph) need IOBinding onto fixed device
        # buffers; not enabled until it is measured on a GPU host.
        cuda_options: dict[str, Any] = {}
        if device == "auto":
            # Probing is expected to fail on CPU-only hosts; keep onnxruntime's loud
            # library-load error out of the log (the outcome is reported below).
            ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=[(CUDA, cuda_options), CPU]
            )
            if session.get_providers()[0] == CUDA:
                return session, CUDA
            reason = f"onnxruntime fell back to {session.get_providers()}"
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        finally:
            ort.set_default_logger_severity(2)
        if device == "cuda":
            raise DeviceUnavailableError(
                f"--device cuda: the CUDA execution provider cannot run {path.name} ({reason}); "
                "use --device auto or --device cpu"
            )
        # On the CPU next: if the file does not load there either, the file is at fault (a
        # text file, a cut download) and that error is the one to report, not the GPU's.
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
        log.info("CUDA provider unusable (%s); using CPU", reason)
        return session, CPU
    elif device == "cuda":
        raise DeviceUnavailableError(
            "--device cuda: this onnxruntime build has no CUDAExecutionProvider "
            f"(available: {ort.get_available_providers()})"
        )
    session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
    return session, CPU


def _metadata_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@dataclass
class LoadedModel:
    """A validated, ready-to-run policy: ``run`` maps observations to raw model actions."""

    name: str
    version: int
    path: Path
    session: Any
    provider: str
    obs_dim: int
    act_dim: int
    metadata: dict[str, str]
    sha256: str
    loaded_at: float = field(default_factory=time.time)
    _per_thread: threading.local = field(default_factory=threading.local, repr=False)

    def metadata_value(self, key: str, default: Any = None) -> Any:
        """A metadata_props entry decoded from JSON (the exporter writes JSON strings)."""
        return _metadata_value(self.metadata[key]) if key in self.metadata else default

    def run(self, observation: np.ndarray) -> np.ndarray:
        """[batch, obs_dim] float32 -> [batch, act_dim] float32 (unclamped model output)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: observation})[0]

    def run_one(self, observation: np.ndarray) -> np.ndarray:
        """[obs_dim] float32 -> [act_dim] float32: the control-loop call.

        On CPU through IOBinding onto preallocated numpy buffers, one set per thread:
        onnxruntime then skips allocating and converting inputs and outputs per call. On the
        2-core dev machine a 45-256-256-12 policy took 13-21 us p50 this way against
        24-25 us through session.run (a short, loaded measurement).
        """
        if self.provider != CPU:
            return self.run(observation[None])[0]
        slot = getattr(self._per_thread, "slot", None)
        if slot is None:
            slot = self._per_thread.slot = self._bind()
        inputs, outputs, binding = slot
        inputs[0] = observation
        self.session.run_with_iobinding(binding)
        return outputs[0].copy()

    def _bind(self) -> tuple[np.ndarray, np.ndarray, Any]:
        import onnxruntime as ort

        inputs = np.zeros((1, self.obs_dim), np.float32)
        outputs = np.zeros((1, self.act_dim), np.float32)
        binding = self.session.io_binding()
        # The OrtValues wrap the numpy buffers (no copy): writing `inputs` feeds the model.
        binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(inputs))
        binding.bind_ortvalue_output(OUTPUT_NAME, ort.OrtValue.ortvalue_from_numpy(outputs))
        return inputs, outputs, binding


def _static_dim(shape: list[Any], axis: int, what: str, path: Path) -> int | None:
    if len(shape) != 2:
        raise ModelError(f"{path}: {what} must be rank 2 [batch, dim], got shape {shape}")
    dim = shape[axis]
    return dim if isinstance(dim, int) and dim > 0 else None


def load_model(
    path: Path, name: str, version: int, device: Device = "auto", tuning: SessionTuning | None = None
) -> LoadedModel:
    """Load, check against the contract, and probe ``path``; raise ModelError if unfit."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    tuning = tuning or SessionTuning()
    try:
        session, provider = create_session(path, device, tuning)
    except DeviceUnavailableError:
        raise
    except Exception as err:  # noqa: BLE001 - anything onnxruntime rejects
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: onnxruntime cannot load it: {first}") from err

    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise ModelError(
            f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, "
            f"got inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    for tensor, what in ((inputs[INPUT_NAME], "input"), (outputs[OUTPUT_NAME], "output")):
        if tensor.type != "tensor(float)":
            raise ModelError(f"{path}: {what} {tensor.name!r} must be float32, got {tensor.type}")
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    obs_dim = _static_dim(inputs[INPUT_NAME].shape, 1, "input 'observation'", path)
    act_dim = _static_dim(outputs[OUTPUT_NAME].shape, 1, "output 'action'", path)
    obs_dim = obs_dim or _int_metadata(metadata, "observation_dim", path)
    declared = metadata.get("observation_dim")
    if declared is not None and _int_metadata(metadata, "observation_dim", path) != obs_dim:
        raise ModelError(
            f"{path}: metadata observation_dim={declared} but the graph input takes {obs_dim}"
        )

    # Probe: the observation the policy saw most (the normalizer mean) and zeros.
    probe = np.zeros((2, obs_dim), np.float32)
    mean = _metadata_value(metadata.get("observation_mean", "null"))
    if isinstance(mean, list) and len(mean) == obs_dim:
        probe[0] = np.asarray(mean, np.float32)
    try:
        out = session.run([OUTPUT_NAME], {INPUT_NAME: probe[:1]})[0]
        out_batch = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0] if provider == CPU else out
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: the probe observation (shape [1, {obs_dim}]) fails: {first}") from err
    if out.ndim != 2 or out.shape[0] != 1:
        raise ModelError(f"{path}: probe output has shape {list(out.shape)}, expected [1, act_dim]")
    if provider == CPU and out_batch.shape[0] != 2:
        raise ModelError(f"{path}: batch of 2 gave output shape {list(out_batch.shape)}")
    act_dim = act_dim or out.shape[1]
    if out.shape[1] != act_dim:
        raise ModelError(f"{path}: output declares {act_dim} actions, probe produced {out.shape[1]}")
    if not np.all(np.isfinite(out)):
        raise ModelError(f"{path}: the probe observation produced non-finite actions {out[0].tolist()}")
    declared_act = metadata.get("action_dim")
    if declared_act is not None and _int_metadata(metadata, "action_dim", path) != act_dim:
        raise ModelError(f"{path}: metadata action_dim={declared_act} but the graph outputs {act_dim}")
    return LoadedModel(
        name=name, version=version, path=path, session=session, provider=provider,
        obs_dim=int(obs_dim), act_dim=int(act_dim), metadata=metadata, sha256=file_sha256(path),
    )


def _int_metadata(metadata: dict[str, str], key: str, path: Path) -> int:
    if key not in metadata:
        raise ModelError(
            f"{path}: the input's observation size is dynamic and metadata has no {key!r}"
        )
    value = _metadata_value(metadata[key])
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
        raise ModelError(f"{path}: metadata {key} must be a positive integer, got {metadata[key]!r}")
    return int(value)
