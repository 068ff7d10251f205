"""An analytic plate-like cathode particle: its shape, the defects it holds (sim/defects.py), and
its amplitude, displacement phase and complex image at points or on a geometry's grid.

Points ``r`` are in nm, shape (3, ...), lab order z, y, x, with the origin at the particle centre;
the plate is normal to z, along the Bragg vector of the (002) reflection. The complex image follows
docs/conventions.md: rho = A exp(-i G.u) exp(i (G_p - q0).r), so that numpy's forward FFT puts the
scattering where the displaced lattice scatters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from sim.defects import (
    DislocationLine,
    DislocationLoop,
    DomainBoundary,
    Mosaic,
    ScrewDislocation,
    StrainRegion,
    StrainWall,
    cross_zyx,
    dot_zyx,
    screw_pair,
)
from streamer.geometry import OrthogonalGeometry

# the defects are importable from here too, as they were before sim/defects.py
__all__ = [
    "DislocationLine", "DislocationLoop", "DomainBoundary", "Mosaic", "Particle", "ScrewDislocation",
    "StrainRegion", "StrainWall", "amplitude_at", "bragg_offset_inv_nm", "complex_image", "complex_image_at",
    "cross_zyx", "detector_edge_nm", "phase_at", "phase_field", "screw_pair", "shape_mask",
    "signed_distance_nm", "voxel_coordinates_nm",
]


@dataclass(frozen=True)
class Particle:
    """A plate: ``shape`` "ellipse" (semi-axes radius_x/y) or "hexagon" (corners at +-radius_x on x,
    flat facets at +-radius_y), ``thickness_nm`` along z, optional ``rounding_nm`` of every edge,
    turned by ``rotation_deg`` about z; the defects it holds; its lattice constant ``lattice_c_nm``.
    """

    radius_x_nm: float = 144.0
    radius_y_nm: float = 132.0
    thickness_nm: float = 96.0
    dislocations: tuple = field(default_factory=tuple)  # DislocationLine or ScrewDislocation
    boundaries: tuple[DomainBoundary, ...] = field(default_factory=tuple)
    shape: str = "ellipse"
    rounding_nm: float = 0.0
    rotation_deg: float = 0.0
    walls: tuple[StrainWall, ...] = field(default_factory=tuple)
    regions: tuple[StrainRegion, ...] = field(default_factory=tuple)
    mosaic: Mosaic | None = None
    lattice_c_nm: float = 1.10
    tilt_mrad: tuple[float, float] = (0.0, 0.0)  # Bragg-vector tilt towards +y and +x (sample drift)
    loops: tuple[DislocationLoop, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.shape not in ("ellipse", "hexagon"):
            raise ValueError(f"shape must be 'ellipse' or 'hexagon', got {self.shape!r}")
        for name in ("radius_x_nm", "radius_y_nm", "thickness_nm", "lattice_c_nm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.rounding_nm < min(self.thickness_nm / 2, self.radius_x_nm, self.radius_y_nm):
            raise ValueError(f"rounding_nm must be >= 0 and below half the thickness, got {self.rounding_nm}")
        lines = tuple(d.line() if isinstance(d, ScrewDislocation) else d for d in self.dislocations)
        object.__setattr__(self, "dislocations", lines)
        for name in ("boundaries", "walls", "regions", "loops"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def with_defects(self, dislocations=(), boundaries=(), **more) -> Particle:
        """The same particle holding other defects (``more``: walls, regions, mosaic, lattice_c_nm, ...)."""
        return replace(self, dislocations=tuple(dislocations), boundaries=tuple(boundaries), **more)

    @property
    def q_bragg_inv_nm(self) -> float:
        return 4 * math.pi / self.lattice_c_nm

    def bragg_vector_inv_nm(self) -> np.ndarray:
        """The (002) Bragg vector in the lab (z, y, x), tilted by ``tilt_mrad``."""
        ty, tx = (v * 1e-3 for v in self.tilt_mrad)
        v = np.array([1.0, ty, tx])
        return self.q_bragg_inv_nm * v / np.linalg.norm(v)


# -- evaluation at points ----------------------------------------------------------------------
def _in_plane(particle: Particle, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = math.radians(particle.rotation_deg)
    x = r[2] * math.cos(a) + r[1] * math.sin(a)
    y = -r[2] * math.sin(a) + r[1] * math.cos(a)
    return y, x


def _outline_distance(particle: Particle, y: np.ndarray, x: np.ndarray, shrink: float) -> np.ndarray:
    """Signed in-plane distance (nm; < 0 inside) to the outline shrunk by ``shrink``."""
    rx, ry = particle.radius_x_nm - shrink, particle.radius_y_nm - shrink
    if particle.shape == "ellipse":
        return (np.sqrt((x / rx) ** 2 + (y / ry) ** 2) - 1) * min(rx, ry)
    apothem = rx * math.sqrt(3) / 2  # regular hexagon of corner radius rx, then y stretched to ry
    px, py = np.abs(x), np.abs(y) * apothem / ry
    k = (-math.sqrt(3) / 2, 0.5)
    fold = 2 * np.minimum(k[0] * px + k[1] * py, 0.0)
    px, py = px - fold * k[0], py - fold * k[1]
    lim = apothem / math.sqrt(3)
    px, py = px - np.clip(px, -lim, lim), py - apothem
    return np.hypot(px, py) * np.sign(py)


def signed_distance_nm(particle: Particle, r: np.ndarray) -> np.ndarray:
    """Signed distance (nm; < 0 inside) to the plate's surface (in-plane part exact for a hexagon)."""
    y, x = _in_plane(particle, r)
    rho = particle.rounding_nm
    d2 = _outline_distance(particle, y, x, rho)
    dz = np.abs(r[0]) - (particle.thickness_nm / 2 - rho)
    return np.hypot(np.maximum(d2, 0), np.maximum(dz, 0)) + np.minimum(np.maximum(d2, dz), 0) - rho


def amplitude_at(particle: Particle, r: np.ndarray, *, edge_nm: float = 0.0) -> np.ndarray:
    """Amplitude at points ``r`` (3, ...): 1 inside the plate, 0 outside.

    ``edge_nm`` > 0 gives each point the part of a voxel of that size inside the surface (a linear
    ramp across it), which keeps the Fourier transform of a coarsely sampled plate close to the
    continuous one; 0 gives the binary support (a sharp-cornered plate keeps |z| < t/2 strictly).
    """
    if edge_nm > 0:
        return np.clip(0.5 - signed_distance_nm(particle, r) / edge_nm, 0.0, 1.0)
    if particle.rounding_nm == 0:
        y, x = _in_plane(particle, r)
        inside = (_outline_distance(particle, y, x, 0.0) <= 0) & (np.abs(r[0]) < particle.thickness_nm / 2)
    else:
        inside = signed_distance_nm(particle, r) < 0
    return inside.astype(float)


def phase_at(particle: Particle, r: np.ndarray) -> np.ndarray:
    """The displacement phase G . u(r) (rad) of the particle's defects (the homogeneous lattice constant
    excluded); the complex image carries its negative (docs/conventions.md)."""
    phase = np.zeros(r.shape[1:])
    for d in particle.dislocations:
        phase += d.phase(r)
    for loop in particle.loops:
        phase += loop.phase(r)
    for b in particle.boundaries:
        phase += b.phase(r)
    for w in particle.walls:
        phase += w.phase(r)
    for g in particle.regions:
        phase += g.phase(r, particle.lattice_c_nm)
    if particle.mosaic is not None:
        phase += particle.mosaic.phase(r, particle.lattice_c_nm, particle.radius_y_nm, particle.radius_x_nm)
    return phase


def complex_image_at(particle: Particle, r: np.ndarray, *, q_offset_inv_nm=(0.0, 0.0, 0.0),
                     edge_nm: float = 0.0) -> np.ndarray:
    """rho(r) = A(r) exp(i (q_offset . r - G.u(r))) as complex128 (``edge_nm``: see ``amplitude_at``).

    With the forward transform sum rho exp(-i q.r) (numpy's), a lattice displaced by u scatters as
    exp(-i G.u) (docs/conventions.md), so the defects' displacement phase ``phase_at`` enters with a
    minus sign. ``q_offset_inv_nm`` is the particle's Bragg vector minus the q at the grid origin: the
    ramp that puts the peak where the lattice constant and tilt put it. Phases are evaluated inside only.
    """
    amp = amplitude_at(particle, r, edge_nm=edge_nm)
    inside = amp > 0
    pts = r[:, inside]
    phi = dot_zyx(np.asarray(q_offset_inv_nm, float), pts) - phase_at(particle, pts)
    out = np.zeros(amp.shape, complex)
    out[inside] = amp[inside] * np.exp(1j * phi)
    return out


# -- on a geometry's grid ----------------------------------------------------------------------
def voxel_coordinates_nm(geometry: OrthogonalGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open (z, y, x) coordinate grids in nm with the origin at index n // 2."""
    axes = [(np.arange(n) - n // 2) * geometry.voxel_nm for n in geometry.shape_zyx]
    return np.ix_(*axes)


def _lab_points(geometry: OrthogonalGeometry) -> np.ndarray:
    z, y, x = voxel_coordinates_nm(geometry)
    return np.stack(np.broadcast_arrays(z, y, x)).astype(float)


def shape_mask(particle: Particle, geometry: OrthogonalGeometry) -> np.ndarray:
    """Boolean support of the plate on an orthogonal geometry's (z, y, x) grid."""
    return amplitude_at(particle, _lab_points(geometry)) > 0


def phase_field(particle: Particle, geometry: OrthogonalGeometry) -> np.ndarray:
    """The displacement phase G.u(r) (rad) of the particle's defects on an orthogonal geometry's grid
    (-arg of ``complex_image`` without the ramp)."""
    return phase_at(particle, _lab_points(geometry))


def bragg_offset_inv_nm(particle: Particle, geometry) -> np.ndarray:
    """The particle's Bragg vector minus the q of the geometry's grid origin (lab z, y, x)."""
    if isinstance(geometry, OrthogonalGeometry):
        return particle.bragg_vector_inv_nm() - np.array([geometry.q_bragg_inv_nm, 0.0, 0.0])
    return particle.bragg_vector_inv_nm() - geometry.q_center_inv_nm


def complex_image(particle: Particle, geometry) -> np.ndarray:
    """rho on a geometry's real-space grid: lab order (z, y, x) for an ``OrthogonalGeometry`` (binary
    support, as the demo has always had), stack order (step, row, col) of the sheared conjugate grid
    for a ``DetectorGeometry`` (surface ramp one voxel wide)."""
    offset = bragg_offset_inv_nm(particle, geometry)
    if isinstance(geometry, OrthogonalGeometry):
        return complex_image_at(particle, _lab_points(geometry), q_offset_inv_nm=offset)
    return complex_image_at(particle, geometry.real_space_points_nm(), q_offset_inv_nm=offset,
                            edge_nm=detector_edge_nm(geometry))


def detector_edge_nm(geometry) -> float:
    """Width of the surface ramp on a detector geometry's grid: the geometric mean of its voxel sizes."""
    return float(np.prod(geometry.voxel_sizes_nm) ** (1 / 3))
