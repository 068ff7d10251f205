"""What the analysis of one object finds, as typed values: lines, boundaries, domains, pairs, strain.

They stay typed through tracking and flagging; ``streamer.analysis.events`` is the one serialiser that
writes them into an event. Positions are voxel indices (z, y, x) of the analysed object, ``*_nm`` in nm
from the grid centre (lab frame), each kept at the precision the event reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.analysis.mechanics import PairMechanics

Point = tuple[float, float, float]


@dataclass(frozen=True)
class Vortex:
    """A phase-vortex line: a dislocation with a Burgers vector component along q."""

    position: Point
    position_nm: Point
    winding: int  # +1 / -1: sense of the 2 pi circulation about ``direction``
    direction: Point
    type: str  # screw | edge | mixed
    length_voxels: int
    confidence: float
    length_nm: float
    closed: bool
    ends_on_surface: bool
    points: tuple[Point, ...]
    reproduced_fraction: float | None  # members of the population that show it (None: no population)
    surface_distance_nm: float = float("nan")  # to the surface, in the plane normal to the line


@dataclass(frozen=True)
class Boundary:
    """A domain boundary: a plane across which the phase (displacement) steps by a constant."""

    position: Point
    position_nm: Point
    normal: Point
    phase_step_rad: float
    angle_to_layers_deg: float
    area_voxels: int
    coherence: float
    displacement_step_nm: float
    domains: tuple[int | None, int | None] = (None, None)  # the domains on its two sides (indices)


@dataclass(frozen=True)
class Domain:
    """A region of nearly constant displacement offset, between boundaries."""

    centroid: Point
    centroid_nm: Point
    volume_fraction: float
    phase_offset_rad: float
    displacement_offset_nm: float


@dataclass(frozen=True)
class DislocationPair:
    """Two lines of opposite winding, with the mechanics estimates of SCIENCE.md beside them."""

    vortices: tuple[int, int]  # indices into the scan's vortices
    surface_distance_nm: float
    mechanics: PairMechanics


@dataclass(frozen=True)
class StrainSummary:
    """Strain along q and the partial strain energy along [002] of its even part over the particle (``error`` when
    impossible)."""

    energy_j: float = float("nan")
    energy_j_range: tuple[float, float] = (float("nan"), float("nan"))
    energy_density_j_per_m3: float = float("nan")
    rms_strain: float = float("nan")
    support_thresholds: tuple[float, ...] = ()
    surface_erosion_voxels: int = 0
    error: str | None = None
    gradient_energy_j: float = float("nan")  # of the strain's linear variation along q (part of the odd strain)
    odd_energy_j: float = float("nan")  # of the strain's odd part about the particle's centre, left out of energy_j
    noise_energy_j: float = float("nan")  # of energy_j, what the counting noise alone gives (part of the error)


@dataclass(frozen=True)
class ObjectAnalysis:
    """Everything found in one reconstructed object."""

    vortices: tuple[Vortex, ...] = ()
    domain_boundaries: tuple[Boundary, ...] = ()
    dislocation_pairs: tuple[DislocationPair, ...] = ()
    strain: StrainSummary = field(default_factory=StrainSummary)
    domains: tuple[Domain, ...] = ()
    support_voxels: int = 0
