"""Operando scenarios: the particle, the instrument and the particle's state at each scan of a charge.

A scenario is a TOML file under ``sim/scenarios/`` (format: docs/scenarios.md). Either it lists
one ``[[stage]]`` per scan, or it gives a ``[timeline]`` (scans, C-rate, the voltage curve) and
``[[event]]`` tables that change the particle at a voltage or a capacity. Every error names the
file and the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from pydantic import Field

from sim.defects import (
    DislocationLine,
    DislocationLoop,
    DomainBoundary,
    Mosaic,
    ScrewDislocation,
    StrainRegion,
    StrainWall,
    screw_pair,
)
from sim.detector import TimepixSpec
from sim.particle import Particle
from streamer.settings import ConfigError, Settings

SCENARIO_DIR = Path(__file__).with_name("scenarios")
VOLTAGE_WINDOW_V = (2.0, 4.5)
STATE_KEYS = {"label", "dislocations", "screw_pairs", "loops", "boundaries", "walls", "regions", "mosaic", "lattice_c_nm",
              "tilt_mrad"}
PARTICLE_KEYS = {"shape", "radius_x_nm", "radius_y_nm", "thickness_nm", "rounding_nm", "rotation_deg", "lattice_c_nm"}


class ScenarioError(ConfigError):
    """A scenario file that is missing or malformed (a ConfigError: it names the file and the field)."""


class Acquisition(Settings):
    """How each scan is measured: flux (counts per second in the brightest voxel of the perfect
    particle), exposure per frame and the dead time between frames."""

    peak_counts_per_s: float = Field(2e4, gt=0)
    exposure_s: float = Field(0.5, gt=0)
    readout_s: float = Field(0.05, ge=0)


@dataclass(frozen=True)
class Stage:
    """The particle's state during one scan, and the cell's voltage and capacity."""

    label: str
    voltage_v: float
    capacity_mah_g: float
    dislocations: tuple = ()  # DislocationLine (ScrewDislocation accepted)
    loops: tuple[DislocationLoop, ...] = ()
    boundaries: tuple[DomainBoundary, ...] = ()
    walls: tuple[StrainWall, ...] = ()
    regions: tuple[StrainRegion, ...] = ()
    mosaic: Mosaic | None = None
    lattice_c_nm: float | None = None  # None: the particle's
    tilt_mrad: tuple[float, float] = (0.0, 0.0)

    def particle(self, base: Particle) -> Particle:
        more = {"walls": self.walls, "regions": self.regions, "mosaic": self.mosaic, "tilt_mrad": self.tilt_mrad,
                "loops": self.loops}
        if self.lattice_c_nm is not None:
            more["lattice_c_nm"] = self.lattice_c_nm
        return base.with_defects(self.dislocations, self.boundaries, **more)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    stages: tuple[Stage, ...]
    particle: Particle = field(default_factory=Particle)
    geometry: dict | None = None  # a streamer.geometry from_dict table; None: the orthogonal default
    detector: TimepixSpec = field(default_factory=TimepixSpec)
    acquisition: Acquisition = field(default_factory=Acquisition)


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """Load a scenario by name (from sim/scenarios) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ScenarioError(f"no scenario {name_or_path!r}; available: {', '.join(available_scenarios())}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(data, source=path.name)


def parse_scenario(data: dict, *, source: str = "<scenario>") -> Scenario:
    """Build a scenario from its parsed TOML; ``source`` names the file in errors."""
    _known(data, {"name", "description", "particle", "geometry", "detector", "acquisition", "stage", "timeline",
                  "event"}, source)
    particle = _table(Particle, data.get("particle", {}), PARTICLE_KEYS, f"{source} [particle]")
    detector = _table(TimepixSpec, data.get("detector", {}), {f.name for f in fields(TimepixSpec)},
                      f"{source} [detector]")
    acquisition = _table(Acquisition, data.get("acquisition", {}), set(Acquisition.model_fields),
                         f"{source} [acquisition]")
    geometry = data.get("geometry")
    if geometry is not None:
        geometry = _geometry(geometry, f"{source} [geometry]")
    if "stage" in data and ("timeline" in data or "event" in data):
        raise ScenarioError(f"{source}: give either [[stage]] tables or a [timeline] with [[event]]s, not both")
    if "timeline" in data:
        stages = _timeline(data["timeline"], data.get("event", []), source)
    else:
        if "event" in data:
            raise ScenarioError(f"{source}: [[event]] needs a [timeline]")
        stages = [_stage(st, f"{source} stage {i}", i) for i, st in enumerate(data.get("stage", []))]
    if not stages:
        raise ScenarioError(f"{source}: a scenario needs at least one [[stage]] or a [timeline]")
    name = str(data.get("name", Path(source).stem))
    return Scenario(name, str(data.get("description", "")), tuple(stages), particle, geometry, detector, acquisition)


# -- parts -------------------------------------------------------------------------------------
def _known(table, allowed: set, where: str) -> None:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")


def _table(cls, table: dict, allowed: set, where: str):
    _known(table, allowed, where)
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _geometry(table: dict, where: str) -> dict:
    from streamer.geometry import from_dict

    try:
        from_dict(table)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    return dict(table)


def _number(table: dict, key: str, where: str) -> float:
    if key not in table:
        raise ScenarioError(f"{where}: missing {key}")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _dislocation(item: dict, where: str) -> DislocationLine:
    if isinstance(item, dict) and "y_nm" in item:
        return _table(ScrewDislocation, item, {"y_nm", "x_nm", "winding"}, where).line()
    return _table(DislocationLine, item, {"point_nm", "direction", "burgers_c"}, where)


def _state(st: dict, where: str) -> dict:
    """The particle-state fields of a stage or an event, validated."""
    out = {}
    if "label" in st:
        out["label"] = str(st["label"])
    lines = []
    if "dislocations" in st:
        lines += [_dislocation(d, f"{where} dislocations[{i}]") for i, d in enumerate(st["dislocations"])]
    if "screw_pairs" in st:
        for i, p in enumerate(st["screw_pairs"]):
            _known(p, {"center_nm", "separation_nm", "angle_deg"}, f"{where} screw_pairs[{i}]")
            lines += list(screw_pair(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}))
    if "dislocations" in st or "screw_pairs" in st:
        out["dislocations"] = tuple(lines)
    kinds = {"boundaries": (DomainBoundary, {"normal_angle_deg", "offset_nm", "step_rad"}),
             "walls": (StrainWall, {"point_nm", "normal", "width_nm", "step_rad"}),
             "regions": (StrainRegion, {"center_nm", "strain", "sigma_nm", "sigma_z_nm"}),
             "loops": (DislocationLoop, {"vertices_nm", "burgers_c"})}
    for key, (cls, allowed) in kinds.items():
        if key in st:
            if not isinstance(st[key], list):
                raise ScenarioError(f"{where}: {key} must be a list of tables")
            out[key] = tuple(_table(cls, item, allowed, f"{where} {key}[{i}]") for i, item in enumerate(st[key]))
    if "mosaic" in st:
        out["mosaic"] = _table(Mosaic, st["mosaic"], {"blocks", "tilt_deg", "phase_rad", "seed"}, f"{where} mosaic")
    if "lattice_c_nm" in st:
        out["lattice_c_nm"] = _number(st, "lattice_c_nm", where)
        if not out["lattice_c_nm"] > 0:
            raise ScenarioError(f"{where}: lattice_c_nm must be > 0")
    if "tilt_mrad" in st:
        tilt = st["tilt_mrad"]
        if not (isinstance(tilt, list) and len(tilt) == 2):
            raise ScenarioError(f"{where}: tilt_mrad must be [towards_y, towards_x], got {tilt!r}")
        out["tilt_mrad"] = (float(tilt[0]), float(tilt[1]))
    return out


def _stage(st: dict, where: str, index: int) -> Stage:
    _known(st, STATE_KEYS | {"voltage_v", "capacity_mah_g"}, where)
    volts, capacity = (_number(st, k, where) for k in ("voltage_v", "capacity_mah_g"))
    state = {"label": f"stage {index}", **_state(st, where)}
    return Stage(voltage_v=volts, capacity_mah_g=capacity, **state)


def _curve(table: dict, key: str, where: str) -> np.ndarray:
    pts = np.asarray(table[key], float) if key in table else None
    if pts is None or pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or np.any(np.diff(pts[:, 0]) <= 0):
        raise ScenarioError(f"{where}: {key} must be >= 2 [capacity_mah_g, value] pairs in increasing capacity")
    return pts


def _timeline(tl: dict, events: list, source: str) -> list[Stage]:
    where = f"{source} [timeline]"
    _known(tl, {"num_scans", "scan_period_s", "c_rate", "capacity_1c_mah_g", "start_capacity_mah_g",
                "voltage_curve", "lattice_c_curve", "label", "tilt_drift_mrad_per_scan"}, where)
    n = int(_number(tl, "num_scans", where))
    if n < 1:
        raise ScenarioError(f"{where}: num_scans must be >= 1")
    period_h = _number(tl, "scan_period_s", where) / 3600
    c_rate = _number(tl, "c_rate", where)
    cap_1c = _number({"capacity_1c_mah_g": 120.0, **tl}, "capacity_1c_mah_g", where)
    start = _number({"start_capacity_mah_g": 0.0, **tl}, "start_capacity_mah_g", where)
    if not (c_rate > 0 and cap_1c > 0 and period_h > 0):
        raise ScenarioError(f"{where}: c_rate, capacity_1c_mah_g and scan_period_s must be > 0")
    capacity = start + c_rate * cap_1c * period_h * np.arange(n)
    vcurve = _curve(tl, "voltage_curve", where)
    voltage = np.interp(capacity, vcurve[:, 0], vcurve[:, 1])
    lo, hi = VOLTAGE_WINDOW_V
    if vcurve[:, 1].min() < lo or vcurve[:, 1].max() > hi:
        raise ScenarioError(f"{where}: voltage_curve leaves the {lo}-{hi} V window")
    lattice = None
    if "lattice_c_curve" in tl:
        lcurve = _curve(tl, "lattice_c_curve", where)
        lattice = np.interp(capacity, lcurve[:, 0], lcurve[:, 1])
    drift = tl.get("tilt_drift_mrad_per_scan", [0.0, 0.0])
    if not (isinstance(drift, list) and len(drift) == 2 and all(isinstance(v, (int, float)) for v in drift)):
        raise ScenarioError(f"{where}: tilt_drift_mrad_per_scan must be [towards_y, towards_x]")

    parsed = []
    for i, ev in enumerate(events):
        ew = f"{source} event {i}"
        _known(ev, STATE_KEYS | {"at_voltage_v", "at_capacity_mah_g"}, ew)
        keys = [k for k in ("at_voltage_v", "at_capacity_mah_g") if k in ev]
        if len(keys) != 1:
            raise ScenarioError(f"{ew}: give exactly one of at_voltage_v, at_capacity_mah_g")
        at = _number(ev, keys[0], ew)
        hits = np.flatnonzero((voltage if keys[0] == "at_voltage_v" else capacity) >= at - 1e-9)
        if not hits.size:
            raise ScenarioError(f"{ew}: {keys[0]} = {at} is never reached in {n} scans")
        parsed.append((int(hits[0]), i, _state(ev, ew)))
    parsed.sort()

    state = {"label": str(tl.get("label", "pristine"))}
    stages = []
    for k in range(n):
        for scan, _, change in parsed:
            if scan == k:
                state.update(change)
        tilt = state.get("tilt_mrad", (0.0, 0.0))
        extra = {"tilt_mrad": (tilt[0] + k * float(drift[0]), tilt[1] + k * float(drift[1]))}
        if lattice is not None and "lattice_c_nm" not in state:
            extra["lattice_c_nm"] = float(lattice[k])
        stages.append(Stage(voltage_v=round(float(voltage[k]), 4), capacity_mah_g=round(float(capacity[k]), 3),
                            **{**state, **extra}))
    return stages


def with_stages(scenario: Scenario, num_scans: int) -> Scenario:
    """The first ``num_scans`` scans of a scenario."""
    if not 1 <= num_scans <= len(scenario.stages):
        raise ScenarioError(f"scenario {scenario.name!r} has {len(scenario.stages)} scans; "
                            f"--scans must be 1..{len(scenario.stages)}, got {num_scans}")
    return replace(scenario, stages=scenario.stages[:num_scans])
