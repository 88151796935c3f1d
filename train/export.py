"""Export the deterministic actor of a run to ONNX, and load policies back for evaluation.

The ONNX graph is ``observation [batch, obs_dim] float32 -> action [batch, act_dim]
float32 in [-1, 1]``: the trace of :class:`~sim2real.train.policy.DeterministicPolicy`
(frozen observation normalization, the actor's tanh(mean), a clamp), the module the
trainer evaluates with.
Everything a robot controller needs besides the weights travels in ``metadata_props``
(all values are strings; lists and dicts are JSON).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.robots import registry
from sim2real.train.checkpoint import load_checkpoint
from sim2real.train.policy import DeterministicPolicy, policy_from_checkpoint
from sim2real.train.trainer import CHECKPOINT

INPUT_NAME = "observation"
OUTPUT_NAME = "action"
OPSET = 17
METADATA_FORMAT = "sim2real.policy/1"


class RunPolicy:
    """The deterministic policy of a training run, read from its checkpoint: ``source`` is
    the run directory (its latest checkpoint.safetensors) or one checkpoint file of it
    (e.g. the run's best.safetensors)."""

    def __init__(self, source: Path) -> None:
        source = Path(source)
        self.checkpoint = source if source.is_file() else source / CHECKPOINT
        self.run_dir = self.checkpoint.parent
        tensors, meta = load_checkpoint(self.checkpoint)
        self.meta = meta
        # The trainer's own policy module, loaded: export traces it, `sim2real eval` runs it.
        self.module: DeterministicPolicy = policy_from_checkpoint(tensors, meta)
        low, high = np.asarray(meta["action_low"]), np.asarray(meta["action_high"])
        self.action_offset = (high + low) / 2.0
        self.action_scale = (high - low) / 2.0

    @property
    def env_id(self) -> str:
        return str(self.meta["env_id"])

    @property
    def obs_dim(self) -> int:
        """Observation entries the policy takes."""
        return int(self.meta["obs_dim"])

    @property
    def env_config(self) -> tuple[str, ...]:
        """The task config overrides the run trained with (``--env-config``; a run from
        before its env's defaults changed reads as the revision it trained on)."""
        return registry.recorded_overrides(self.env_id, self.meta["config"].get("env_config", ()))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations -> policy actions in [-1, 1] (evaluate() maps them to the env)."""
        return self.module.act(obs)


class OnnxPolicy:
    """An exported policy run by onnxruntime (CPU), mapped to the env's action Box."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime-gpu warns about absent CUDA otherwise
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path} is not a loadable ONNX model: {err}") from err
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ValueError(
                f"{self.path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, "
                f"got inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        self.metadata = read_metadata(self.path)
        shape = self.session.get_inputs()[0].shape
        self.obs_dim: int | None = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        """Observation entries the graph takes (None where its input is not fixed)."""
        missing = {"env_id", "action_scale", "action_offset"} - set(self.metadata)
        if missing:
            raise ValueError(f"{self.path}: metadata_props lack {sorted(missing)} (not a sim2real export)")

    @property
    def env_id(self) -> str:
        return self.metadata["env_id"]

    @property
    def env_config(self) -> tuple[str, ...]:
        """The task config overrides the policy trained with (metadata ``env_config``)."""
        text = self.metadata.get("env_config")
        if not text:
            return registry.recorded_overrides(self.env_id, ())
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{self.path}: metadata env_config must be a JSON list of KEY=VALUE strings, got {text!r}")
        return registry.recorded_overrides(self.env_id, items)

    def raw(self, obs: np.ndarray) -> np.ndarray:
        """The model's own output in [-1, 1]."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(obs, np.float32)})[0]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Policy actions in [-1, 1]. (metadata's action_scale/offset say what a robot
        controller does with them: joint targets for our robots, the Box for gym envs.)"""
        return self.raw(obs)


def robot_change(metadata: dict[str, str], env_id: str, env_config: Sequence[str]) -> str | None:
    """A warning when the robot a policy was exported for (its ``robot_sha256``) is not the
    robot ``env_config`` builds today (a spec edited since, another description file);
    None when they agree or the policy recorded no hash."""
    recorded = metadata.get("robot_sha256")
    if not recorded or env_id not in registry.ENVS:
        return None
    env = registry.get_record(env_id).load_class()(config=registry.task_config(env_id, env_config),
                                                     domain_randomization=False)
    try:
        spec = env.deployment_spec
        now = getattr(spec, "robot_sha256", None)
        if not now or now == recorded:
            return None
        return (f"the robot {spec.robot!r} is not the one this policy was exported for: its spec or "
                f"description file changed since (sha256 {recorded[:12]}... then, {now[:12]}... now); "
                "the policy runs on today's robot")
    finally:
        env.close()


class NotAnOnnxModelError(ValueError):
    """A file given as a model that onnx cannot read."""


def read_metadata(path: Path) -> dict[str, str]:
    """The model's metadata_props; NotAnOnnxModelError naming the file when it is no ONNX
    model (a text file, a cut download)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and onnx's own
        raise NotAnOnnxModelError(f"{path} is not an ONNX model ({type(err).__name__}: {err})") from None
    return {prop.key: prop.value for prop in model.metadata_props}


def deployment_metadata(policy: RunPolicy) -> dict[str, Any]:
    """metadata_props of the exported model: the keys of the model-file contract (docs/design.md,
    Model file, which also says who reads each)."""
    from sim2real.robots import registry

    meta, config = policy.meta, policy.meta["config"]
    env_id = policy.env_id
    obs_dim, act_dim = meta["obs_dim"], meta["act_dim"]
    out: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "sim2real_version": importlib_metadata.version("sim2real"),
        "env_id": env_id,
        "observation_dim": obs_dim,
        "action_dim": act_dim,
        "training_steps": meta["step"],
        "training_seed": config["seed"],
        "observation_mean": policy.module.obs_mean.tolist(),
        "observation_std": policy.module.obs_std.tolist(),
        "observation_clip": policy.module.clip,
        "domain_randomization_enabled": config["domain_randomization"],
        "env_config": list(policy.env_config),
    }
    if env_id in registry.ENVS:
        env = registry.get_record(env_id).load_class()(config=registry.task_config(env_id, policy.env_config))
        try:
            spec = env.deployment_spec
            import dataclasses

            out.update(
                observation_names=list(spec.observation_names),
                action_names=list(spec.action_names),
                joint_names=list(spec.joint_names),
                # joint target = action_offset + action_scale * action (the env's own law).
                action_scale=list(spec.action_scales),
                action_offset=list(spec.default_pose),
                control_rate_hz=spec.control_rate_hz,
                kp=list(spec.kp),
                kd=list(spec.kd),
                torque_limits=list(spec.torque_limits),
                robot=spec.robot,
                domain_randomization=dataclasses.asdict(env.config.randomization),
            )
            if getattr(spec, "velocity_limits", None) is not None:
                out["velocity_limits"] = list(spec.velocity_limits)
            if getattr(spec, "robot_sha256", None):
                out["robot_sha256"] = spec.robot_sha256
            clock_hz = gait_clock_hz(env.config)
            if clock_hz:
                # The controller feeds gait_clock/sin, cos of a phase advancing at this rate.
                out["gait_clock_hz"] = clock_hz
            if policy.meta.get("action_prior"):
                out["action_prior"] = policy.meta["action_prior"]
        finally:
            env.close()
    else:
        # A plain gymnasium env: the output maps onto its action Box.
        out.update(
            observation_names=[f"obs/{i}" for i in range(obs_dim)],
            action_names=[f"action/{i}" for i in range(act_dim)],
            joint_names=[],
            action_scale=policy.action_scale.tolist(),
            action_offset=policy.action_offset.tolist(),
            control_rate_hz=None,
            kp=[],
            kd=[],
            domain_randomization=None,
        )
    return out


def export_onnx(run_dir: Path, out: Path, atol: float = 1e-5) -> dict[str, Any]:
    """Write ``out`` from the run's checkpoint; checks onnxruntime against torch."""
    import onnx

    out = Path(out)
    # Checked before any work, and no folder is created: a typo in -o would otherwise
    # leave a tree of new folders wherever it pointed.
    if not out.parent.is_dir():
        raise FileNotFoundError(f"-o {out}: the folder {out.parent} does not exist (export creates no folders)")
    if out.is_dir():
        raise IsADirectoryError(f"-o {out}: is a folder; give the path of the .onnx file to write")
    policy = RunPolicy(run_dir)
    obs_dim = policy.meta["obs_dim"]
    tmp = out.with_name(f".{out.name}.partial")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one, which
        # needs onnxscript; this small MLP exports identically through either.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            policy.module,
            (torch.zeros(1, obs_dim),),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    try:
        model = onnx.load(str(tmp))
        metadata = deployment_metadata(policy)
        del model.metadata_props[:]
        for key, value in metadata.items():
            prop = model.metadata_props.add()
            prop.key = key
            prop.value = value if isinstance(value, str) else json.dumps(value)
        model.producer_name = "sim2real"
        model.doc_string = f"SAC deterministic actor for {policy.env_id}, {policy.meta['step']} steps"
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
        max_error = verify_against_torch(policy, tmp, atol)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "max_abs_error": max_error, **metadata}


def verify_against_torch(policy: RunPolicy, onnx_path: Path, atol: float) -> float:
    """Max |onnxruntime - torch| over random observations; raises beyond ``atol``."""
    onnx_policy = OnnxPolicy(onnx_path)
    rng = np.random.default_rng(0)
    mean = policy.module.obs_mean.numpy()
    std = policy.module.obs_std.numpy()
    obs = (mean + std * rng.normal(0, 2, (256, len(mean)))).astype(np.float32)
    with torch.no_grad():
        expected = policy.module(torch.as_tensor(obs)).numpy()
    error = float(np.abs(onnx_policy.raw(obs) - expected).max())
    if error > atol:
        raise RuntimeError(f"onnxruntime and torch disagree by {error:.3g} (> {atol:g}) on {onnx_path}")
    return error


def gait_clock_hz(task_config: Any) -> float:
    """The rate of the gait clock in a task's observation, Hz; 0 without one (the
    quadruped's ``gait.frequency_hz``, the cube's ``gait_frequency_hz``)."""
    gait = getattr(task_config, "gait", None)
    if gait is not None:
        return float(gait.frequency_hz)
    return float(getattr(task_config, "gait_frequency_hz", 0.0))
