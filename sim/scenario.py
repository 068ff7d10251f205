"""Operando scenarios: the particle, the instrument and the particle's state at each scan of a charge.

A scenario is a TOML file under ``sim/scenarios/`` (format: docs/scenarios.md). Either it lists
one ``[[stage]]`` per scan, or it gives a ``[timeline]`` (scans, C-rate, the voltage curve) and
``[[event]]`` tables that change the particle at a voltage or a capacity. The file is validated by
the settings models of sim/scenario_models.py; every error names the file and the dotted key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from sim.defects import (
    DislocationLoop,
    DomainBoundary,
    Mosaic,
    StrainRegion,
    StrainWall,
)
from sim.detector import TimepixSpec
from sim.particle import Particle
from sim.scenario_models import Acquisition, ScenarioFile, StageTable, TimelineTable
from streamer.settings import ConfigError, config_error

SCENARIO_DIR = Path(__file__).with_name("scenarios")
__all__ = ["Acquisition", "Scenario", "ScenarioError", "Stage", "available_scenarios", "load_scenario",
           "parse_scenario", "with_stages"]


class ScenarioError(ConfigError):
    """A scenario file that is missing or malformed (a ConfigError: it names the file and the field)."""


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
    return parse_scenario(data, source=str(path))


def parse_scenario(data: dict, *, source: str = "<scenario>") -> Scenario:
    """Build a scenario from its parsed TOML; ``source`` names the file in errors."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source} must be a table, got {type(data).__name__}")
    try:
        table = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(str(config_error(exc, source))) from None
    try:  # the sim classes' own checks, should the models ever miss one
        if table.timeline is not None:
            stages = _timeline(table.timeline, table.event or ())
        else:
            stages = [_stage(st, i) for i, st in enumerate(table.stage)]
        particle, detector = table.particle.build(), table.detector.build()
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    name = Path(source).stem if table.name is None else table.name
    return Scenario(name, table.description, tuple(stages), particle, table.geometry, detector, table.acquisition)


def _stage(st: StageTable, index: int) -> Stage:
    return Stage(voltage_v=st.voltage_v, capacity_mah_g=st.capacity_mah_g, **{"label": f"stage {index}", **st.changes()})


def _timeline(tl: TimelineTable, events) -> list[Stage]:
    """One stage per scan: the events fire at the first scan that reaches them, and their changes hold."""
    capacity, voltage = tl.capacities(), tl.along(tl.voltage_curve)
    lattice = None if tl.lattice_c_curve is None else tl.along(tl.lattice_c_curve)
    fired = sorted((tl.first_scan(ev), i, ev.changes()) for i, ev in enumerate(events))
    drift = tl.tilt_drift_mrad_per_scan
    state = {"label": tl.label}
    stages = []
    for k in range(tl.num_scans):
        for scan, _, change in fired:
            if scan == k:
                state.update(change)
        tilt = state.get("tilt_mrad", (0.0, 0.0))
        extra = {"tilt_mrad": (tilt[0] + k * drift[0], tilt[1] + k * drift[1])}
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
