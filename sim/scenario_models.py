"""The tables of a scenario file (docs/scenarios.md) as settings models: keys, types, bounds, cross-field rules.

Each item table builds its sim object (``build``); sim/scenario.py assembles the stages.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

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
from streamer.settings import Settings

VOLTAGE_WINDOW_V = (2.0, 4.5)
Vec2 = Annotated[tuple[float, float], Strict(False)]  # a TOML list stands for a tuple (its items stay strict)
Vec3 = Annotated[tuple[float, float, float], Strict(False)]
Points = Annotated[tuple[Vec3, ...], Strict(False)]


def _nonzero(v: tuple) -> tuple:
    if not np.linalg.norm(v) > 0:
        raise ValueError("must be a non-zero (z, y, x) vector")
    return v


def _curve(points: tuple) -> tuple:
    if len(points) < 2 or any(b[0] <= a[0] for a, b in pairwise(points)):
        raise ValueError("must be >= 2 [capacity_mah_g, value] pairs in increasing capacity")
    return points


Direction = Annotated[Vec3, AfterValidator(_nonzero)]
Curve = Annotated[tuple[Vec2, ...], Strict(False), AfterValidator(_curve)]


class Table(Settings):
    """A table of a scenario file: a Settings model that also refuses nan and inf."""

    model_config = ConfigDict(allow_inf_nan=False)


class Acquisition(Table):
    """How each scan is measured: flux (counts per second in the brightest voxel of the perfect
    particle), exposure per frame and the dead time between frames."""

    peak_counts_per_s: float = Field(2e4, gt=0)
    exposure_s: float = Field(0.5, gt=0)
    readout_s: float = Field(0.05, ge=0)


class ItemTable(Table):
    """A table that stands for one sim object: the keys it gives, the rest the sim class' defaults."""

    builds: ClassVar[type]

    def build(self):
        return self.builds(**self.model_dump(exclude_unset=True))


# -- the particle and the instrument ---------------------------------------------------------
class ParticleTable(ItemTable):
    """[particle]: the plate's shape, size and lattice constant."""

    builds: ClassVar[type] = Particle
    shape: Literal["ellipse", "hexagon"] = Particle.shape
    radius_x_nm: float = Field(Particle.radius_x_nm, gt=0)
    radius_y_nm: float = Field(Particle.radius_y_nm, gt=0)
    thickness_nm: float = Field(Particle.thickness_nm, gt=0)
    rounding_nm: float = Field(Particle.rounding_nm, ge=0)
    rotation_deg: float = Particle.rotation_deg
    lattice_c_nm: float = Field(Particle.lattice_c_nm, gt=0)

    @model_validator(mode="after")
    def _rounding_fits(self):
        if not self.rounding_nm < min(self.thickness_nm / 2, self.radius_x_nm, self.radius_y_nm):
            raise ValueError(f"rounding_nm must stay below half the thickness and the radii, got {self.rounding_nm}")
        return self


class DetectorTable(ItemTable):
    """[detector]: a sim.detector.TimepixSpec."""

    builds: ClassVar[type] = TimepixSpec
    chips: Literal[1, 4] = TimepixSpec.chips
    pixel_um: float = Field(TimepixSpec.pixel_um, gt=0)
    gap_px: int = Field(TimepixSpec.gap_px, ge=0)
    dark_counts_per_s: float = Field(TimepixSpec.dark_counts_per_s, ge=0)
    hot_pixel_fraction: float = Field(TimepixSpec.hot_pixel_fraction, ge=0, le=0.5)
    hot_counts_per_s: float = Field(TimepixSpec.hot_counts_per_s, ge=0)
    dead_pixel_fraction: float = Field(TimepixSpec.dead_pixel_fraction, ge=0, le=0.5)
    count_ceiling: int = Field(TimepixSpec.count_ceiling, ge=1, le=2**32 - 1)
    defect_seed: int = Field(TimepixSpec.defect_seed, ge=0)

    @model_validator(mode="after")
    def _few_bad_pixels(self):
        if self.hot_pixel_fraction + self.dead_pixel_fraction > 0.5:
            raise ValueError("hot_pixel_fraction + dead_pixel_fraction must stay below 0.5")
        return self


# -- defects (items of the particle-state keys) ---------------------------------------------
class DislocationTable(Table):
    """A line (point_nm, direction, burgers_c) or the shorthand y_nm, x_nm, winding (a screw line along z)."""

    point_nm: Vec3 = DislocationLine.point_nm
    direction: Direction = DislocationLine.direction
    burgers_c: Vec3 = DislocationLine.burgers_c
    y_nm: float = 0.0
    x_nm: float = 0.0
    winding: int = ScrewDislocation.winding

    @model_validator(mode="after")
    def _one_form(self):
        screw = self.model_fields_set & {"y_nm", "x_nm", "winding"}
        if screw and screw != self.model_fields_set:
            raise ValueError("give either y_nm, x_nm, winding (a screw line along z) or point_nm, direction, "
                             "burgers_c, not both")
        if screw and not {"y_nm", "x_nm"} <= screw:
            raise ValueError("a screw line along z needs both y_nm and x_nm")
        return self

    def build(self) -> DislocationLine:
        if "y_nm" in self.model_fields_set:
            return ScrewDislocation(self.y_nm, self.x_nm, self.winding).line()
        return DislocationLine(**self.model_dump(exclude_unset=True))


class ScrewPairTable(Table):
    """An antiparallel screw pair along z (sim.defects.screw_pair)."""

    center_nm: Vec2 = (0.0, 0.0)
    separation_nm: float = Field(100.0, gt=0)
    angle_deg: float = 0.0

    def build(self) -> tuple[DislocationLine, DislocationLine]:
        return screw_pair(**self.model_dump(exclude_unset=True))


class LoopTable(ItemTable):
    """A closed polygonal dislocation loop."""

    builds: ClassVar[type] = DislocationLoop
    vertices_nm: Points = Field(min_length=3)
    burgers_c: Vec3 = DislocationLoop.burgers_c


class BoundaryTable(ItemTable):
    """An out-of-phase or antiphase domain boundary."""

    builds: ClassVar[type] = DomainBoundary
    normal_angle_deg: float = DomainBoundary.normal_angle_deg
    offset_nm: float = DomainBoundary.offset_nm
    step_rad: float = DomainBoundary.step_rad


class WallTable(ItemTable):
    """A stacking-fault-like strain wall."""

    builds: ClassVar[type] = StrainWall
    point_nm: Vec3 = StrainWall.point_nm
    normal: Direction = StrainWall.normal
    width_nm: float = Field(StrainWall.width_nm, gt=0)
    step_rad: float = StrainWall.step_rad


class RegionTable(ItemTable):
    """A Gaussian region of strain along q."""

    builds: ClassVar[type] = StrainRegion
    center_nm: Vec3 = StrainRegion.center_nm
    strain: float = StrainRegion.strain
    sigma_nm: float = Field(StrainRegion.sigma_nm, gt=0)
    sigma_z_nm: float = Field(StrainRegion.sigma_z_nm, gt=0)


class MosaicTable(ItemTable):
    """Lateral mosaic blocks."""

    builds: ClassVar[type] = Mosaic
    blocks: int = Field(Mosaic.blocks, ge=1)
    tilt_deg: float = Field(Mosaic.tilt_deg, ge=0)
    phase_rad: float = Field(Mosaic.phase_rad, ge=0)
    seed: int = Field(Mosaic.seed, ge=0)


# -- stages, the timeline and its events ----------------------------------------------------
class StateTable(Table):
    """The particle-state keys of a [[stage]] or an [[event]]."""

    label: str = ""
    dislocations: list[DislocationTable] = Field(default_factory=list)
    screw_pairs: list[ScrewPairTable] = Field(default_factory=list)
    loops: list[LoopTable] = Field(default_factory=list)
    boundaries: list[BoundaryTable] = Field(default_factory=list)
    walls: list[WallTable] = Field(default_factory=list)
    regions: list[RegionTable] = Field(default_factory=list)
    mosaic: MosaicTable | None = None
    lattice_c_nm: float | None = Field(None, gt=0)  # None: the particle's (or the timeline's curve)
    tilt_mrad: Vec2 = (0.0, 0.0)

    def changes(self) -> dict:
        """The Stage fields this table gives, as sim objects."""
        given, out = self.model_fields_set, {}
        if given & {"dislocations", "screw_pairs"}:
            out["dislocations"] = (*(d.build() for d in self.dislocations),
                                   *(line for pair in self.screw_pairs for line in pair.build()))
        for key in ("loops", "boundaries", "walls", "regions"):
            if key in given:
                out[key] = tuple(item.build() for item in getattr(self, key))
        for key in ("label", "lattice_c_nm", "tilt_mrad"):
            if key in given:
                out[key] = getattr(self, key)
        if "mosaic" in given:
            out["mosaic"] = None if self.mosaic is None else self.mosaic.build()
        return out


class StageTable(StateTable):
    """[[stage]]: the particle's state during one scan, at a voltage and a capacity."""

    voltage_v: float = Field(ge=VOLTAGE_WINDOW_V[0], le=VOLTAGE_WINDOW_V[1])
    capacity_mah_g: float = Field(ge=0)


class EventTable(StateTable):
    """[[event]]: state keys that change at the first scan reaching a voltage or a capacity."""

    at_voltage_v: float | None = None
    at_capacity_mah_g: float | None = None

    @model_validator(mode="after")
    def _one_trigger(self):
        if (self.at_voltage_v is None) == (self.at_capacity_mah_g is None):
            raise ValueError("give exactly one of at_voltage_v, at_capacity_mah_g")
        return self

    @property
    def trigger(self) -> tuple[str, float]:
        """The key that fires the event and its value."""
        if self.at_voltage_v is not None:
            return "at_voltage_v", self.at_voltage_v
        return "at_capacity_mah_g", self.at_capacity_mah_g


class TimelineTable(Table):
    """[timeline]: the scans of a constant-current charge and its voltage (and lattice) curve."""

    num_scans: int = Field(ge=1)
    scan_period_s: float = Field(gt=0)
    c_rate: float = Field(gt=0)
    capacity_1c_mah_g: float = Field(120.0, gt=0)
    start_capacity_mah_g: float = Field(0.0, ge=0)
    voltage_curve: Curve
    lattice_c_curve: Curve | None = None
    label: str = "pristine"
    tilt_drift_mrad_per_scan: Vec2 = (0.0, 0.0)

    @field_validator("voltage_curve")
    @classmethod
    def _in_window(cls, curve: tuple) -> tuple:
        lo, hi = VOLTAGE_WINDOW_V
        if any(not lo <= v <= hi for _, v in curve):
            raise ValueError(f"leaves the {lo}-{hi} V window")
        return curve

    @field_validator("lattice_c_curve")
    @classmethod
    def _positive(cls, curve: tuple | None) -> tuple | None:
        if curve is not None and any(not c > 0 for _, c in curve):
            raise ValueError("lattice constants must be > 0")
        return curve

    def capacities(self) -> np.ndarray:
        """The capacity (mAh/g) at each scan."""
        period_h = self.scan_period_s / 3600
        return self.start_capacity_mah_g + self.c_rate * self.capacity_1c_mah_g * period_h * np.arange(self.num_scans)

    def along(self, curve: tuple) -> np.ndarray:
        """A [capacity, value] curve at each scan."""
        pts = np.asarray(curve, float)
        return np.interp(self.capacities(), pts[:, 0], pts[:, 1])

    def first_scan(self, event: EventTable) -> int | None:
        """The first scan that reaches the event's voltage or capacity; None if none does."""
        key, at = event.trigger
        values = self.along(self.voltage_curve) if key == "at_voltage_v" else self.capacities()
        hits = np.flatnonzero(values >= at - 1e-9)
        return int(hits[0]) if hits.size else None


class ScenarioFile(Table):
    """A scenario file: the particle, the instrument, and [[stage]] tables or a [timeline] with [[event]]s."""

    name: str | None = None
    description: str = ""
    particle: ParticleTable = ParticleTable()
    geometry: dict | None = None  # a streamer.geometry from_dict table
    detector: DetectorTable = DetectorTable()
    acquisition: Acquisition = Acquisition()
    stage: list[StageTable] | None = None
    timeline: TimelineTable | None = None
    event: list[EventTable] | None = None

    @field_validator("geometry")
    @classmethod
    def _geometry(cls, table: dict | None) -> dict | None:
        from streamer.geometry import from_dict

        if table is not None:
            from_dict(table)
        return table

    @model_validator(mode="after")
    def _scans(self):
        if self.stage is not None and (self.timeline is not None or self.event is not None):
            raise ValueError("give either [[stage]] tables or a [timeline] with [[event]]s, not both")
        if self.event is not None and self.timeline is None:
            raise ValueError("[[event]] needs a [timeline]")
        if not self.stage and self.timeline is None:
            raise ValueError("a scenario needs at least one [[stage]] or a [timeline]")
        for i, event in enumerate(self.event or ()):
            if self.timeline.first_scan(event) is None:
                key, at = event.trigger
                raise ValueError(f"event[{i}].{key} = {at} is never reached in {self.timeline.num_scans} scans")
        return self
