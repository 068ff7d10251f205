"""Operando scenarios: what the particle looks like at each scan of a charge.

A scenario is a TOML file under ``sim/scenarios/`` (format in docs/scenarios.md)::

    name = "reference"
    description = "..."
    [[stage]]                     # one rocking scan each, in order
    label = "pristine"
    voltage_v = 3.40
    capacity_mah_g = 10.0
    dislocations = [ {y_nm = 6.0, x_nm = 54.0, winding = 1}, ... ]   # screw lines along z
    boundaries = [ {normal_angle_deg = 0.0, offset_nm = 6.0, step_rad = 2.094} ]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sim.particle import DomainBoundary, Particle, ScrewDislocation

SCENARIO_DIR = Path(__file__).with_name("scenarios")


class ScenarioError(ValueError):
    """A scenario file that is missing or malformed."""


@dataclass(frozen=True)
class Stage:
    label: str
    voltage_v: float
    capacity_mah_g: float
    dislocations: tuple[ScrewDislocation, ...] = ()
    boundaries: tuple[DomainBoundary, ...] = ()

    def particle(self, base: Particle) -> Particle:
        return base.with_defects(self.dislocations, self.boundaries)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    stages: tuple[Stage, ...]


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _build(cls, item: dict, where: str):
    try:
        return cls(**item)
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


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
    stages = []
    for i, st in enumerate(data.get("stage", [])):
        where = f"{path.name} stage {i}"
        missing = [k for k in ("voltage_v", "capacity_mah_g") if k not in st]
        if missing:
            raise ScenarioError(f"{where}: missing {', '.join(missing)}")
        stages.append(Stage(
            label=str(st.get("label", f"stage {i}")),
            voltage_v=float(st["voltage_v"]),
            capacity_mah_g=float(st["capacity_mah_g"]),
            dislocations=tuple(_build(ScrewDislocation, d, where) for d in st.get("dislocations", [])),
            boundaries=tuple(_build(DomainBoundary, b, where) for b in st.get("boundaries", [])),
        ))
    if not stages:
        raise ScenarioError(f"{path}: a scenario needs at least one [[stage]]")
    return Scenario(str(data.get("name", path.stem)), str(data.get("description", "")), tuple(stages))
