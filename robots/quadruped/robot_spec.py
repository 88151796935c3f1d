"""A quadruped as a small declarative spec file (TOML): which description file, which
joints are the legs, the standing pose, gains, limits, rates and the task numbers that
depend on the body.

The joystick task reads everything robot-specific from a spec, so a robot with a URDF or
MJCF arrives as one file (robots/quadruped/specs/*.toml ship with the package; a user's
may live anywhere). :func:`load_spec` validates it: an error names the spec file and the
field, what was expected and what came. The model itself is built from the spec by
robots/quadruped/build.py, which checks the spec against the description file (a joint
the file lacks, a foot that is not a body, a pose outside a joint's range).

Format (every number may come with its source in ``[sources]``)::

    name = "a1"
    summary = "Unitree A1 ..."

    [description]
    file = "pybullet_data:a1/a1.urdf"   # PACKAGE:PATH inside an installed package's
                                         # folder, or a path (relative to this file)
    base_body = "trunk"
    # assembled = true: the file already holds floor, free joint, actuators, sensors and
    #   the home keyframe under this project's names (our own Go1-class MJCF); else the
    #   builder adds them.
    # [description.compiler]: MuJoCo compiler options a file needs (balanceinertia, ...)

    [legs.FR]                            # FR, FL, RR, RL: all four, this order
    joints = ["FR_hip_joint", "FR_upper_joint", "FR_lower_joint"]  # abduction, hip, knee
    foot = "FR_toe"                      # the body at the foot
    home = [-0.1, 0.8, -1.5]             # standing pose, rad

    [actuation]
    kp = 20.0          # or [abduction, hip, knee]
    kd = 0.5
    # torque_limits / velocity_limits: [abduction, hip, knee]; absent: the file's
    # armature, damping, frictionloss: [abduction, hip, knee]

    [rates]
    control_hz = 50
    physics_hz = 500

    [task]
    fall_height = 0.12                   # m, trunk origin below this: a fall
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

LEG_NAMES = ("FR", "FL", "RR", "RL")
"""The leg order of every quadruped here: front right, front left, rear right, rear left."""
JOINT_KINDS = ("abduction", "hip", "knee")
"""The three joints of a leg, in spec order: hip abduction (x axis), hip flexion, knee."""

SPEC_DIR = Path(str(resources.files("sim2real.robots.quadruped") / "specs"))
"""The specs shipped with the package: ``<name>.toml``."""

COMPILER_OPTIONS: dict[str, type] = {
    "balanceinertia": bool,
    "boundmass": float,
    "boundinertia": float,
    "fusestatic": bool,
}
"""MuJoCo compiler options a spec may set for its file (MuJoCo's XML reference, compiler).
``fusestatic`` defaults to false so the foot links of a URDF stay bodies."""


class RobotSpecError(ValueError):
    """A spec that cannot describe a robot: names the spec file and the field."""


@dataclasses.dataclass(frozen=True)
class LegSpec:
    """One leg: its three joints (abduction, hip, knee), the foot body, the home pose."""

    name: str
    joints: tuple[str, str, str]
    foot: str
    home: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class QuadrupedSpec:
    """A validated robot spec. Per-kind triples are (abduction, hip, knee)."""

    name: str
    summary: str
    path: Path
    """The spec file itself."""
    description: Path
    """The robot's description file (URDF or MJCF), resolved."""
    description_ref: str
    """The description file as the spec wrote it (``pybullet_data:a1/a1.urdf``)."""
    assembled: bool
    base_body: str
    compiler: dict[str, bool | float]
    legs: tuple[LegSpec, LegSpec, LegSpec, LegSpec]
    kp: tuple[float, float, float]
    kd: tuple[float, float, float]
    torque_limits: tuple[float, float, float] | None
    """N m per joint kind; None: the description file's (URDF effort, MJCF forcerange)."""
    velocity_limits: tuple[float, float, float] | None
    """rad/s per joint kind; None: the description file's (URDF velocity), if it has them."""
    joint_ranges: tuple[tuple[float, float], ...] | None
    """(low, high) rad per joint kind, for files whose joints have none (continuous)."""
    armature: tuple[float, float, float]
    damping: tuple[float, float, float]
    frictionloss: tuple[float, float, float]
    foot_radius: float | None
    """Radius of the foot sphere the builder adds where the foot body has no sphere."""
    foot_friction: float
    control_hz: float
    physics_hz: float
    fall_height: float
    sources: dict[str, str]
    """Where each number came from, by field name."""

    @property
    def is_urdf(self) -> bool:
        return self.description.suffix.lower() == ".urdf"

    @property
    def joint_names(self) -> tuple[str, ...]:
        """The 12 leg joints in leg order (FR, FL, RR, RL), each (abduction, hip, knee)."""
        return tuple(j for leg in self.legs for j in leg.joints)

    @property
    def home_pose(self) -> tuple[float, ...]:
        return tuple(x for leg in self.legs for x in leg.home)

    def per_joint(self, triple: tuple[float, float, float]) -> tuple[float, ...]:
        """A per-kind triple repeated for the four legs (12 values, joint order)."""
        return tuple(triple) * len(LEG_NAMES)


# --- loading ----------------------------------------------------------------------------
def shipped_specs() -> dict[str, Path]:
    """The robots that ship with the package, by name."""
    return {p.stem: p for p in sorted(SPEC_DIR.glob("*.toml"))}


def spec_path(robot: str) -> Path:
    """A shipped robot's name (``a1``) or a path to a spec file, as a path."""
    shipped = shipped_specs()
    if robot in shipped:
        return shipped[robot]
    path = Path(robot).expanduser()
    if path.suffix.lower() == ".toml" or path.exists():
        return path
    raise RobotSpecError(
        f"robot {robot!r} is neither a shipped robot ({', '.join(shipped)}) nor a spec file path"
    )


def load_spec(robot: str | Path) -> QuadrupedSpec:
    """Read and validate a spec: a shipped robot's name or a path to a TOML file."""
    path = spec_path(str(robot)) if not isinstance(robot, Path) else robot
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RobotSpecError(f"{path}: cannot read the robot spec: {err.strerror or err}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RobotSpecError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise RobotSpecError(f"{path}: not valid TOML: {err}") from None
    return _SpecReader(path, data).read()


class _SpecReader:
    """Reads one parsed TOML document into a QuadrupedSpec, naming the field on errors."""

    TOP = ("name", "summary", "description", "legs", "actuation", "rates", "task", "sources")

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, field: str, expected: str, got: Any) -> RobotSpecError:
        return RobotSpecError(f"{self.path}: {field}: expected {expected}, got {got!r}")

    def table(self, parent: dict[str, Any], key: str, field: str, allowed: tuple[str, ...],
              required: bool = True) -> dict[str, Any]:
        if key not in parent:
            if required:
                raise RobotSpecError(f"{self.path}: {field}: missing (a table)")
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            raise self.fail(field, "a table", value)
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise RobotSpecError(
                f"{self.path}: {field}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(allowed)}"
            )
        return value

    def string(self, parent: dict[str, Any], key: str, field: str, default: str | None = None) -> str:
        if key not in parent:
            if default is None:
                raise RobotSpecError(f"{self.path}: {field}: missing (a string)")
            return default
        value = parent[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "a non-empty string", value)
        return value

    def number(self, value: Any, field: str, *, positive: bool = False, nonneg: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(field, "a finite number", value)
        if positive and value <= 0:
            raise self.fail(field, "a number > 0", value)
        if nonneg and value < 0:
            raise self.fail(field, "a number >= 0", value)
        return float(value)

    def triple(self, parent: dict[str, Any], key: str, field: str, default: tuple[float, float, float] | None,
               *, positive: bool = False, nonneg: bool = False, scalar_ok: bool = True) -> tuple[float, float, float] | None:
        """One number for all three joint kinds, or [abduction, hip, knee]."""
        if key not in parent:
            return default
        value = parent[key]
        if scalar_ok and not isinstance(value, list):
            x = self.number(value, field, positive=positive, nonneg=nonneg)
            return (x, x, x)
        if not isinstance(value, list) or len(value) != 3:
            raise self.fail(field, "[abduction, hip, knee]: 3 numbers" + (" (or one number)" if scalar_ok else ""), value)
        a, b, c = (self.number(v, f"{field}[{i}]", positive=positive, nonneg=nonneg) for i, v in enumerate(value))
        return (a, b, c)

    def read(self) -> QuadrupedSpec:
        data = self.data
        unknown = sorted(set(data) - set(self.TOP))
        if unknown:
            raise RobotSpecError(
                f"{self.path}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(self.TOP)}"
            )
        name = self.string(data, "name", "name")
        summary = self.string(data, "summary", "summary", default=name)

        desc = self.table(data, "description", "description", ("file", "base_body", "assembled", "compiler"))
        ref = self.string(desc, "file", "description.file")
        description = resolve_description(ref, self.path)
        if description.suffix.lower() not in (".urdf", ".xml"):
            raise self.fail("description.file", "a .urdf or an MJCF .xml file", ref)
        base_body = self.string(desc, "base_body", "description.base_body")
        assembled = desc.get("assembled", False)
        if not isinstance(assembled, bool):
            raise self.fail("description.assembled", "true or false", assembled)
        compiler_raw = self.table(desc, "compiler", "description.compiler", tuple(COMPILER_OPTIONS), required=False)
        compiler: dict[str, bool | float] = {}
        for key, value in compiler_raw.items():
            kind = COMPILER_OPTIONS[key]
            if kind is bool:
                if not isinstance(value, bool):
                    raise self.fail(f"description.compiler.{key}", "true or false", value)
                compiler[key] = value
            else:
                compiler[key] = self.number(value, f"description.compiler.{key}", nonneg=True)

        legs_raw = self.table(data, "legs", "legs", LEG_NAMES)
        missing = [leg for leg in LEG_NAMES if leg not in legs_raw]
        if missing:
            raise RobotSpecError(
                f"{self.path}: legs: missing leg(s) {', '.join(missing)}; a quadruped needs "
                f"all of {', '.join(LEG_NAMES)}"
            )
        legs = tuple(self.leg(leg, legs_raw) for leg in LEG_NAMES)
        all_joints = [j for leg in legs for j in leg.joints]
        duplicates = sorted({j for j in all_joints if all_joints.count(j) > 1})
        if duplicates:
            raise self.fail("legs", "12 different joints", f"{', '.join(duplicates)} named twice")

        act = self.table(data, "actuation", "actuation", (
            "kp", "kd", "torque_limits", "velocity_limits", "joint_ranges", "armature", "damping",
            "frictionloss"))
        if "kp" not in act or "kd" not in act:
            raise RobotSpecError(f"{self.path}: actuation: kp and kd are required (PD gains)")
        kp = self.triple(act, "kp", "actuation.kp", None, positive=True)
        kd = self.triple(act, "kd", "actuation.kd", None, nonneg=True)
        torque_limits = self.triple(act, "torque_limits", "actuation.torque_limits", None, positive=True, scalar_ok=False)
        velocity_limits = self.triple(act, "velocity_limits", "actuation.velocity_limits", None, positive=True, scalar_ok=False)
        joint_ranges = None
        if "joint_ranges" in act:
            value = act["joint_ranges"]
            if not (isinstance(value, list) and len(value) == 3 and all(isinstance(r, list) and len(r) == 2 for r in value)):
                raise self.fail("actuation.joint_ranges", "[[low, high] x 3] (abduction, hip, knee), rad", value)
            ranges = []
            for i, (low, high) in enumerate(value):
                lo = self.number(low, f"actuation.joint_ranges[{i}][0]")
                hi = self.number(high, f"actuation.joint_ranges[{i}][1]")
                if lo >= hi:
                    raise self.fail(f"actuation.joint_ranges[{i}]", "low < high", value[i])
                ranges.append((lo, hi))
            joint_ranges = tuple(ranges)
        # Defaults: Playground go1's sim-to-real setting (docs/robot_facts.md).
        armature = self.triple(act, "armature", "actuation.armature", (0.005, 0.005, 0.005), nonneg=True)
        damping = self.triple(act, "damping", "actuation.damping", (0.1, 0.1, 0.1), nonneg=True)
        frictionloss = self.triple(act, "frictionloss", "actuation.frictionloss", (0.3, 0.3, 1.0), nonneg=True)

        rates = self.table(data, "rates", "rates", ("control_hz", "physics_hz"))
        control_hz = self.number(rates.get("control_hz"), "rates.control_hz", positive=True)
        physics_hz = self.number(rates.get("physics_hz"), "rates.physics_hz", positive=True)
        ratio = physics_hz / control_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise self.fail("rates.physics_hz", f"a whole multiple of control_hz ({control_hz:g})", physics_hz)

        task = self.table(data, "task", "task", ("fall_height", "foot_radius", "foot_friction"))
        fall_height = self.number(task.get("fall_height"), "task.fall_height", nonneg=True)
        foot_radius = (self.number(task["foot_radius"], "task.foot_radius", positive=True)
                       if "foot_radius" in task else None)
        foot_friction = self.number(task.get("foot_friction", 0.8), "task.foot_friction", positive=True)

        sources_raw = data.get("sources", {})
        if not isinstance(sources_raw, dict) or not all(isinstance(v, str) for v in sources_raw.values()):
            raise self.fail("sources", "a table of strings (field = where the number came from)", sources_raw)

        return QuadrupedSpec(
            name=name, summary=summary, path=self.path, description=description,
            description_ref=ref, assembled=assembled, base_body=base_body, compiler=compiler,
            legs=legs,  # type: ignore[arg-type]
            kp=kp, kd=kd, torque_limits=torque_limits, velocity_limits=velocity_limits,  # type: ignore[arg-type]
            joint_ranges=joint_ranges, armature=armature, damping=damping,  # type: ignore[arg-type]
            frictionloss=frictionloss, foot_radius=foot_radius, foot_friction=foot_friction,  # type: ignore[arg-type]
            control_hz=control_hz, physics_hz=physics_hz, fall_height=fall_height,
            sources=dict(sources_raw),
        )

    def leg(self, leg: str, legs_raw: dict[str, Any]) -> LegSpec:
        field = f"legs.{leg}"
        raw = self.table(legs_raw, leg, field, ("joints", "foot", "home"))
        joints = raw.get("joints")
        if not (isinstance(joints, list) and len(joints) == 3 and all(isinstance(j, str) and j for j in joints)):
            raise self.fail(f"{field}.joints", "3 joint names [abduction, hip, knee]", joints)
        foot = self.string(raw, "foot", f"{field}.foot")
        home = self.triple(raw, "home", f"{field}.home", None, scalar_ok=False)
        if home is None:
            raise RobotSpecError(f"{self.path}: {field}.home: missing (the standing pose [abduction, hip, knee], rad)")
        return LegSpec(name=leg, joints=(joints[0], joints[1], joints[2]), foot=foot, home=home)


def resolve_description(ref: str, spec_file: Path) -> Path:
    """``PACKAGE:PATH`` (a file inside an installed package's folder, found without
    importing the package) or a path, relative to the spec file unless absolute."""
    package, sep, inner = ref.partition(":")
    if sep and package.isidentifier() and not Path(ref).is_absolute():
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            hint = " (pip install pybullet, or sim2real's dev extra)" if package == "pybullet_data" else ""
            raise RobotSpecError(
                f"{spec_file}: description.file: package {package!r} is not installed{hint}; "
                f"it holds {inner!r}"
            )
        path = Path(next(iter(found.submodule_search_locations))) / inner
    else:
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = spec_file.parent / path
    if not path.is_file():
        raise RobotSpecError(f"{spec_file}: description.file: no such file {str(path)!r} (from {ref!r})")
    return path
