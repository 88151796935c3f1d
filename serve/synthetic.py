"""Synthetic ONNX policies that honour the model contract (docs/design.md, Model file),
built with onnx.helper.

For testing a controller integration or a deployment without training anything: a small
MLP with tanh output, annotated with metadata like `sim2real export` writes it. Variants
produce out-of-range actions or NaN on demand, which is how the server's safety paths are
tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OBS_DIM = 6
ACT_DIM = 3


def policy_weights(seed: int, obs_dim: int, act_dim: int, hidden: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.5, (obs_dim, hidden)).astype(np.float32),
        "b1": rng.normal(0, 0.1, hidden).astype(np.float32),
        "w2": rng.normal(0, 0.5, (hidden, act_dim)).astype(np.float32),
        "b2": rng.normal(0, 0.1, act_dim).astype(np.float32),
    }


def reference_action(weights: dict[str, np.ndarray], obs: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """What the ONNX graph computes, in numpy: gain * tanh(relu(x W1 + b1) W2 + b2)."""
    h = np.maximum(obs @ weights["w1"] + weights["b1"], 0)
    return gain * np.tanh(h @ weights["w2"] + weights["b2"])


def write_policy(
    path: Path,
    *,
    seed: int = 0,
    obs_dim: int = OBS_DIM,
    act_dim: int = ACT_DIM,
    gain: float = 1.0,
    nan_above: float | None = None,
    metadata: dict[str, object] | None = None,
) -> dict[str, np.ndarray]:
    """Write a policy.onnx; ``gain`` > 1 pushes actions out of [-1, 1]; ``nan_above``
    makes the action NaN when observation[0] exceeds it (the probe stays finite)."""
    w = policy_weights(seed, obs_dim, act_dim)
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array(gain, np.float32), "gain"))
    nodes = [
        helper.make_node("MatMul", ["observation", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["o1"]),
        helper.make_node("Tanh", ["o1"], ["o2"]),
    ]
    if nan_above is None:
        nodes.append(helper.make_node("Mul", ["o2", "gain"], ["action"]))
    else:
        # action = gain * tanh(...) + 0 * sqrt(limit - obs[0]): NaN once obs[0] > limit.
        inits += [
            numpy_helper.from_array(np.array(nan_above, np.float32), "limit"),
            numpy_helper.from_array(np.array([0], np.int64), "first"),
            numpy_helper.from_array(np.array([1], np.int64), "second"),
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("Mul", ["o2", "gain"], ["scaled"]),
            helper.make_node("Slice", ["observation", "first", "second", "axis"], ["x0"]),
            helper.make_node("Sub", ["limit", "x0"], ["room"]),
            helper.make_node("Sqrt", ["room"], ["root"]),
            helper.make_node("Mul", ["root", "zero"], ["poison"]),
            helper.make_node("Add", ["scaled", "poison"], ["action"]),
        ]
    graph = helper.make_graph(
        nodes, "policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", act_dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "env_id": "test/Policy-v0", "observation_dim": obs_dim, "action_dim": act_dim,
        "observation_names": [f"obs/{i}" for i in range(obs_dim)],
        "action_names": [f"joint{i}" for i in range(act_dim)],
        "joint_names": [f"joint{i}" for i in range(act_dim)],
        "action_scale": [0.5] * act_dim, "action_offset": [0.1 * i for i in range(act_dim)],
        "control_rate_hz": 50.0, "kp": [35.0] * act_dim, "kd": [0.5] * act_dim,
        "training_steps": 1234, "sim2real_version": "test",
        "observation_mean": [0.0] * obs_dim, "observation_std": [1.0] * obs_dim, "observation_clip": 5.0,
        **(metadata or {}),
    }
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return w
