"""The spec of `sim2real sweep`: a TOML file of a base `sim2real train` config plus axes,
expanded into trials, each a complete, validated :class:`TrainConfig`.

    [base]                       # TrainConfig fields, as `sim2real train` names them
    env = "Pendulum-v1"
    total_steps = 8000
    [base.sac]                   # SACConfig fields
    actor_hidden = [64, 64]

    [axes]                       # one value list (grid) or distribution (random) each
    seed = [0, 1, 2]
    "sac.actor_lr" = [3e-4, 1e-3]
    "env_config.rewards.pose" = [0.0, 0.5]     # a task config key of --env-config

    [search]    type, num_samples, seed, metric, mode
    [resources] cpus_per_trial, gpus_per_trial
    [stopping]  scheduler, grace_steps, eta, min_trials

Everything is checked here, before Ray starts or a directory is made: an unknown table,
key or axis is an error naming it and listing the valid ones, and every trial's config
goes through :func:`config_from_dict` (field-named errors) and ``TrainConfig``'s own
validation. No Ray import here: the spec is usable (and tested) without it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sim2real.train.config import TrainConfig, config_from_dict
from sim2real.train.sac_config import SACConfig

TABLES = ("base", "axes", "search", "resources", "stopping")
"""The top-level tables a spec may have."""
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
"""Random-search distributions: {uniform = [lo, hi]}, {loguniform = [lo, hi]},
{randint = [lo, hi]} (integers lo..hi-1), {choice = [v1, v2, ...]}."""
SWEEP_MANAGED = ("out", "resume")
"""TrainConfig fields the sweep sets itself (each trial's run directory)."""
SEED_AXIS = "seed"
"""The axis results average over: a configuration is everything but the seed."""
RECORD_METRICS = ("return_mean", "return_std", "length_mean", "episodes", "terminated",
                  "step", "updates", "time")
"""Numeric top-level keys of a metrics.jsonl record (trainer.Trainer._evaluate)."""
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "sim2real/QuadrupedJoystick-v0": ("fall_rate", "walking_planar_error", "turn_yaw_error"),
    "sim2real/HandValveTurn-v0": ("turn_rate", "worst_direction_turn_rate"),
    "sim2real/HandCubeRotate-v0": ("turn_rate", "worst_direction_turn_rate", "drop_rate"),
}
"""The judge's headline numbers each judged env writes under ``task`` in metrics.jsonl
(``summary()`` of train/judge.py's JudgeResult and train/hand_judge.py's TurnJudgeResult;
tests/train/test_sweep_spec.py keeps this table equal to them)."""


class SpecError(ValueError):
    """A sweep spec (or --set axis) that cannot run: the message names the table, key or
    trial and what is allowed."""


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """How trials are drawn from the axes, and what "better" means."""

    type: Literal["grid", "random"] = "grid"
    """grid: every combination of the axes' value lists. random: num_samples draws of the
    distribution axes, each crossed with every combination of the list axes (so a seed list
    repeats every draw)."""
    num_samples: int = 1
    """Draws of the distribution axes (random search only)."""
    seed: int = 0
    """Seed of the random search's sampler (not the trials' seed, which is an axis or [base])."""
    metric: str = "return_mean"
    """What the sweep optimizes, a dotted path into a metrics.jsonl record: return_mean,
    task.walking_planar_error, task.fall_rate, task.turn_yaw_error (quadruped), task.turn_rate,
    task.worst_direction_turn_rate, task.drop_rate (hand), reward_terms.NAME. It ranks the
    configurations, picks the best, and is what early stopping compares."""
    mode: Literal["max", "min"] = "max"
    """max: higher metric is better (return, turn rate); min: lower is better (errors)."""

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise SpecError(f"[search] num_samples must be >= 1, got {self.num_samples}")
        if self.type == "grid" and self.num_samples != 1:
            raise SpecError("[search] num_samples is for type = \"random\"; a grid runs every "
                            "combination once (repeat it with a seed axis)")


@dataclasses.dataclass(frozen=True)
class ResourcesSpec:
    """What Ray reserves for each trial (its task's num_cpus / num_gpus)."""

    cpus_per_trial: float = 1.0
    """CPU cores per trial. Unless [base] sets them, a trial's torch_threads is this
    (rounded down, at least 1) and its num_workers (env worker processes) one fewer."""
    gpus_per_trial: float = 0.0
    """GPUs per trial (fractions share one GPU); > 0 needs [base] device = "cuda" or "auto"."""

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise SpecError(f"[resources] cpus_per_trial must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise SpecError(f"[resources] gpus_per_trial must be >= 0, got {self.gpus_per_trial}")


@dataclasses.dataclass(frozen=True)
class StoppingSpec:
    """Early stopping of hopeless trials, on [search] metric, from each evaluation a trial
    writes (every eval_interval steps)."""

    scheduler: Literal["none", "median", "asha"] = "none"
    """none: every trial runs to total_steps. median: the median stopping rule (Golovin et
    al. 2017, Google Vizier): stop a trial whose best metric so far is worse than the median
    of the other trials' running means at the same step. asha: asynchronous successive
    halving (Li et al. 2020): at rungs grace_steps * eta^k a trial continues only if its
    metric is in the top 1/eta of the trials that have reached that rung."""
    grace_steps: int = 0
    """No stopping before this step (median); the first rung (asha, must be > 0)."""
    eta: float = 3.0
    """ASHA's reduction factor: rungs grow by eta and the top 1/eta continue."""
    min_trials: int = 3
    """Median rule: other trials that must have reached a step before it compares there."""

    def __post_init__(self) -> None:
        if self.grace_steps < 0:
            raise SpecError(f"[stopping] grace_steps must be >= 0, got {self.grace_steps}")
        if self.scheduler == "asha" and self.grace_steps < 1:
            raise SpecError("[stopping] scheduler = \"asha\" needs grace_steps >= 1 (the first "
                            "rung, in env steps: at least one evaluation, eval_interval, in)")
        if not self.eta > 1:
            raise SpecError(f"[stopping] eta must be > 1, got {self.eta}")
        if self.min_trials < 1:
            raise SpecError(f"[stopping] min_trials must be >= 1, got {self.min_trials}")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A random-search axis: one of :data:`DISTRIBUTIONS` with its arguments."""

    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "uniform":
            return rng.uniform(*self.args)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.args[0]), math.log(self.args[1])))
        if self.kind == "randint":
            return rng.randrange(self.args[0], self.args[1])
        return self.args[rng.randrange(len(self.args))]

    def as_json(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}


Axis = list[Any] | Distribution


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked spec: base config fields, axes and the search/resources/stopping
    settings. :func:`expand_trials` turns it into trials."""

    base: dict[str, Any]
    axes: dict[str, Axis]
    search: SearchSpec = SearchSpec()
    resources: ResourcesSpec = ResourcesSpec()
    stopping: StoppingSpec = StoppingSpec()

    def as_json(self) -> dict[str, Any]:
        """Plain JSON (sweep.json); :func:`spec_from_json` reads it back."""
        return {
            "base": self.base,
            "axes": {k: v.as_json() if isinstance(v, Distribution) else v for k, v in self.axes.items()},
            "search": dataclasses.asdict(self.search),
            "resources": dataclasses.asdict(self.resources),
            "stopping": dataclasses.asdict(self.stopping),
        }


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of the sweep: its id, the axis values that make it, and its whole config."""

    trial_id: str
    params: dict[str, Any]
    config: TrainConfig

    @property
    def label(self) -> str:
        return params_label(self.params)

    @property
    def configuration(self) -> dict[str, Any]:
        """The axis values except the seed: what trials averaged together share."""
        return {k: v for k, v in self.params.items() if k != SEED_AXIS}


# --- reading a spec ----------------------------------------------------------------------

def load_spec(path: Path, sets: Sequence[str] = ()) -> SweepSpec:
    """Parse and check the TOML spec at ``path``, with ``--set KEY=V1,V2`` axes applied
    (each adds an axis or replaces the spec's of that name)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{path}: cannot read the sweep spec ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: a sweep spec is UTF-8 TOML; byte {err.start} is not UTF-8 "
                        f"({err.object[err.start:err.start + 1]!r})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML ({err})") from None
    return spec_from_data(data, str(path), sets)


def spec_from_data(data: dict[str, Any], source: str = "spec", sets: Sequence[str] = ()) -> SweepSpec:
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise SpecError(f"{source}: unknown table [{unknown[0]}]; a spec has the tables "
                        f"{', '.join(f'[{t}]' for t in TABLES)}")
    for name in TABLES:
        if name in data and not isinstance(data[name], dict):
            raise SpecError(f"{source}: {name} must be a table ([{name}]), got {data[name]!r}")
    base = _check_base(data.get("base", {}), source)
    axes = _flatten_axes(data.get("axes", {}), source)
    for item in sets:
        name, values = parse_set(item)
        axes[name] = values  # replaces in place, or appends: spec order stays the grid order
    for name in axes:
        _check_axis_name(name, f"{source}: [axes]")
    search = _table(SearchSpec, data.get("search", {}), source, "search")
    spec = SweepSpec(
        base=base,
        axes=axes,
        search=search,
        resources=_table(ResourcesSpec, data.get("resources", {}), source, "resources"),
        stopping=_table(StoppingSpec, data.get("stopping", {}), source, "stopping"),
    )
    distributions = [n for n, a in axes.items() if isinstance(a, Distribution)]
    if search.type == "grid" and distributions:
        raise SpecError(f"{source}: axis {distributions[0]} is a distribution; distributions need "
                        f"[search] type = \"random\" (a grid takes value lists)")
    if search.type == "random" and not distributions:
        raise SpecError(f"{source}: [search] type = \"random\" needs at least one distribution axis, "
                        f"e.g. \"sac.actor_lr\" = {{loguniform = [1e-4, 1e-2]}}; value lists are gridded")
    return spec


def spec_from_json(data: dict[str, Any]) -> SweepSpec:
    """The spec saved in sweep.json (``SweepSpec.as_json``)."""
    return spec_from_data({k: data[k] for k in TABLES if k in data}, "sweep.json")


def _table(cls: type, data: dict[str, Any], source: str, table: str) -> Any:
    """``data`` (the spec's [table]) as dataclass ``cls``: unknown keys and wrongly typed
    values are SpecError naming the key and the valid ones; the dataclass's checks run too."""
    where = f"{source}: [{table}]"
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if typing.get_origin(hint) is Literal:
            if value not in typing.get_args(hint):
                raise SpecError(f"{where}: {name} must be one of "
                                f"{', '.join(json.dumps(a) for a in typing.get_args(hint))}; got {value!r}")
        elif hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{where}: {name} must be a number, got {value!r}")
            value = float(value)
        elif hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{where}: {name} must be an integer, got {value!r}")
        elif hint is str and not isinstance(value, str):
            raise SpecError(f"{where}: {name} must be a string, got {value!r}")
        values[name] = value
    try:
        return cls(**values)
    except SpecError as err:  # its message starts with [table]
        raise SpecError(f"{source}: {err}") from None


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_base(base: dict[str, Any], source: str) -> dict[str, Any]:
    """[base] holds TrainConfig fields (sac as a table of SACConfig fields); the values'
    types are checked per trial by config_from_dict."""
    valid = [n for n in _field_names(TrainConfig) if n not in SWEEP_MANAGED]
    for key in base:
        if key in SWEEP_MANAGED:
            raise SpecError(f"{source}: [base] {key}: the sweep sets each trial's {key} itself "
                            f"(SWEEP_DIR/trials/TRIAL_ID)")
        if key not in valid:
            raise SpecError(f"{source}: [base] unknown key {key!r}; valid keys (`sim2real train` "
                            f"config fields): {', '.join(valid)}")
    if "sac" in base:
        if not isinstance(base["sac"], dict):
            raise SpecError(f"{source}: [base] sac must be a table ([base.sac]), got {base['sac']!r}")
        for key in base["sac"]:
            if key not in _field_names(SACConfig):
                raise SpecError(f"{source}: [base.sac] unknown key {key!r}; valid keys: "
                                f"{', '.join(_field_names(SACConfig))}")
    return base


def _flatten_axes(table: dict[str, Any], source: str, prefix: str = "") -> dict[str, Axis]:
    """[axes] as {dotted name: values}: ``"sac.actor_lr" = [...]`` and ``sac.actor_lr = [...]``
    (a nested TOML table) mean the same axis."""
    out: dict[str, Axis] = {}
    for key, value in table.items():
        name = prefix + key
        # A table is a group of axes under sac / env_config, else a distribution.
        grouping = name in ("sac", "env_config") or name.startswith("env_config.")
        if isinstance(value, dict) and grouping and not (set(value) & set(DISTRIBUTIONS)):
            out.update(_flatten_axes(value, source, name + "."))
        else:
            out[name] = _axis_values(name, value, f"{source}: [axes]")
    return out


def _axis_values(name: str, value: Any, where: str) -> Axis:
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{where} {name}: an empty list of values")
        return value
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
            raise SpecError(f"{where} {name}: a distribution is one of {', '.join(DISTRIBUTIONS)}, "
                            f"e.g. {{loguniform = [1e-4, 1e-2]}}; got {value!r}")
        kind, args = next(iter(value.items()))
        if not isinstance(args, list):
            raise SpecError(f"{where} {name}: {kind} takes a list, got {args!r}")
        if kind == "choice":
            if not args:
                raise SpecError(f"{where} {name}: choice needs at least one value")
        elif len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise SpecError(f"{where} {name}: {kind} takes [low, high] (two numbers), got {args!r}")
        elif not args[0] < args[1]:
            raise SpecError(f"{where} {name}: {kind} needs low < high, got {args!r}")
        elif kind == "loguniform" and args[0] <= 0:
            raise SpecError(f"{where} {name}: loguniform needs low > 0, got {args!r}")
        elif kind == "randint" and not all(isinstance(a, int) for a in args):
            raise SpecError(f"{where} {name}: randint takes integers [low, high), got {args!r}")
        return Distribution(kind, tuple(args))
    raise SpecError(f"{where} {name}: expected a list of values (grid) or a distribution table "
                    f"({', '.join(DISTRIBUTIONS)}), got {value!r}")


def _check_axis_name(name: str, where: str) -> None:
    head, _, rest = name.partition(".")
    top = [n for n in _field_names(TrainConfig) if n not in (*SWEEP_MANAGED, "sac", "env_config")]
    if head == "sac" and rest in _field_names(SACConfig):
        return
    if head == "env_config" and rest:
        return  # the task config key is checked per trial (TrainConfig -> registry.task_config)
    if not rest and name in top:
        return
    if name == "env_config":
        raise SpecError(f"{where} env_config: give one axis per task config key, "
                        f"\"env_config.KEY\" (e.g. \"env_config.rewards.pose\" = [0.0, 0.5])")
    if head == "sac":
        raise SpecError(f"{where} unknown axis {name!r}: sac.{rest} is not a SACConfig field; valid: "
                        f"{', '.join('sac.' + n for n in _field_names(SACConfig))}")
    if name in SWEEP_MANAGED:
        raise SpecError(f"{where} {name}: the sweep sets each trial's {name} itself")
    raise SpecError(f"{where} unknown axis {name!r}; valid axes: {', '.join(top)}, "
                    f"sac.FIELD ({', '.join(_field_names(SACConfig))}), env_config.KEY "
                    f"(a task config key, as `sim2real robots ENV_ID --config` lists them)")


def parse_set(item: str) -> tuple[str, list[Any]]:
    """``--set KEY=V1,V2,...`` -> (KEY, [V1, V2, ...]). Each value is read as a TOML value
    (3e-4, true, [64, 64], "text"); a bare word that is not one is a string (Pendulum-v1).
    Commas inside brackets or quotes do not split."""
    name, sep, text = item.partition("=")
    name = name.strip()
    if not sep or not name or not text.strip():
        raise SpecError(f"--set {item!r}: expected KEY=V1,V2,... e.g. seed=0,1,2 or sac.actor_lr=3e-4,1e-3")
    _check_axis_name(name, "--set")
    return name, [_toml_value(part) for part in _split_top_level(text)]


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# --- trials ------------------------------------------------------------------------------

def expand_trials(spec: SweepSpec, trials_dir: Path) -> list[Trial]:
    """Every trial of the spec, in order (grid: the axes' product in spec order; random:
    each draw crossed with the list axes), each config checked. Trial i runs in
    ``trials_dir / trial_id``."""
    list_axes = {k: v for k, v in spec.axes.items() if not isinstance(v, Distribution)}
    dist_axes = {k: v for k, v in spec.axes.items() if isinstance(v, Distribution)}
    rng = random.Random(spec.search.seed)
    combos: list[dict[str, Any]] = []
    for _ in range(spec.search.num_samples):
        drawn = {k: d.sample(rng) for k, d in dist_axes.items()}
        for values in itertools.product(*list_axes.values()):
            grid = dict(zip(list_axes, values, strict=True))
            combos.append({k: drawn[k] if k in drawn else grid[k] for k in spec.axes})
    width = max(3, len(str(len(combos) - 1)))
    trials = []
    for i, params in enumerate(combos):
        trial_id = f"t{i:0{width}d}"
        trials.append(Trial(trial_id, params, trial_config(spec, params, trials_dir / trial_id,
                                                           f"trial {trial_id} ({params_label(params)})")))
    return trials


def trial_config(spec: SweepSpec, params: dict[str, Any], out: Path, source: str) -> TrainConfig:
    """[base] with ``params`` applied and the sweep's defaults, as a checked TrainConfig."""
    data = json.loads(json.dumps(spec.base))  # a deep copy in plain JSON types
    data.setdefault("sac", {})
    overrides = list(data.get("env_config", []))
    if not isinstance(overrides, list):
        raise SpecError(f"{source}: env_config must be a list of KEY=VALUE strings, got {overrides!r}")
    for name, value in params.items():
        head, _, rest = name.partition(".")
        if head == "sac" and rest:
            data["sac"][rest] = value
        elif head == "env_config" and rest:
            overrides = [o for o in overrides if str(o).partition("=")[0] != rest]
            overrides.append(f"{rest}={_env_config_text(value)}")
        else:
            data[name] = value
    if overrides:
        data["env_config"] = overrides
    # One trial gets cpus_per_trial cores: size its torch threads and env workers to them
    # instead of to the whole machine (the trainer's defaults), or concurrent trials fight.
    cores = max(1, int(spec.resources.cpus_per_trial))
    data.setdefault("torch_threads", cores)
    data.setdefault("num_workers", cores - 1)
    data["out"] = str(out)
    try:
        config = config_from_dict(data, source)
    except ValueError as err:  # RunDirError names the field
        raise SpecError(str(err)) from None
    _check_device(config, spec.resources, source)
    return config


def _env_config_text(value: Any) -> str:
    """A value as registry.task_config parses it (bool as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _check_device(config: TrainConfig, resources: ResourcesSpec, source: str) -> None:
    if resources.gpus_per_trial > 0 and config.device == "cpu":
        raise SpecError(f"{source}: [resources] gpus_per_trial = {resources.gpus_per_trial:g} but "
                        f"device is \"cpu\"; set [base] device = \"cuda\" (or \"auto\")")
    if resources.gpus_per_trial == 0 and config.device == "cuda":
        raise SpecError(f"{source}: device = \"cuda\" needs [resources] gpus_per_trial > 0 (Ray "
                        f"hides the GPUs from a task that did not ask for one)")


def check_trials(spec: SweepSpec, trials: Sequence[Trial]) -> None:
    """What needs the trials' envs: each env can be made and SAC can train it (flat Box
    spaces), and [search] metric exists in that env's metrics records."""
    from sim2real.train.config import check_env
    from sim2real.train.evaluate import env_kwargs

    checked: set[tuple[Any, ...]] = set()
    for trial in trials:
        config = trial.config
        assert config.env is not None
        key = (config.env, config.domain_randomization, config.env_config)
        if key not in checked:
            checked.add(key)
            try:
                check_env(config.env, env_kwargs(*key))
            except Exception as err:  # UnknownEnvError, EnvNotTrainableError, a task config error
                raise SpecError(f"trial {trial.trial_id} ({trial.label}): {err}") from None
        check_metric(spec.search.metric, config.env)


def check_metric(metric: str, env_id: str) -> None:
    """SpecError unless ``metric`` is a number every evaluation of ``env_id`` writes."""
    from sim2real.robots import registry

    head, _, rest = metric.partition(".")
    task = TASK_METRICS.get(env_id, ())
    if not rest and head in RECORD_METRICS:
        return
    if head == "task" and rest in task:
        return
    if head == "reward_terms" and rest and env_id in registry.ENVS:
        return  # reward term names are the env's; a wrong one reads as never reported
    valid = [*RECORD_METRICS, *(f"task.{k}" for k in task)]
    if env_id in registry.ENVS:
        valid.append("reward_terms.NAME")
    raise SpecError(f"[search] metric {metric!r} is not in the metrics of {env_id}; valid: "
                    f"{', '.join(valid)}")


def params_label(params: dict[str, Any]) -> str:
    """``seed=0 sac.actor_lr=0.001``: axis values as text, in axis order."""
    return " ".join(f"{k}={value_text(v)}" for k, v in params.items()) or "(base)"


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


# --- `sim2real train` command lines -------------------------------------------------------

def train_flags(config: TrainConfig) -> list[str]:
    """`sim2real train` flags that reproduce ``config`` (fields left at their defaults are
    omitted; out and resume too: the caller adds --out). tests/train/test_sweep_spec.py
    parses them back with tyro, so the command a sweep prints is the one its trials ran."""
    flags: list[str] = []
    defaults = TrainConfig(env="x")
    for field in dataclasses.fields(TrainConfig):
        name = field.name
        if name in (*SWEEP_MANAGED, "sac"):
            continue
        value, default = getattr(config, name), getattr(defaults, name)
        if value != default:
            flags += _flag(name, "", value)
    for field in dataclasses.fields(SACConfig):
        value, default = getattr(config.sac, field.name), getattr(defaults.sac, field.name)
        if value != default:
            flags += _flag(field.name, "sac.", value)
    return flags


def _flag(name: str, prefix: str, value: Any) -> list[str]:
    dashed = name.replace("_", "-")
    if isinstance(value, bool):  # tyro: --x / --no-x, --sac.x / --sac.no-x
        return [f"--{prefix}{dashed}" if value else f"--{prefix}no-{dashed}"]
    flag = f"--{prefix}{dashed}"
    if value is None:
        return [flag, "None"]
    if isinstance(value, tuple):
        return [flag, *(_scalar_text(v) for v in value)]
    return [flag, _scalar_text(value)]


def _scalar_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)
