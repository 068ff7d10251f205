"""A simulated plate-like cathode particle and the defects that change its Bragg phase.

The plate's layers are perpendicular to q (z), so it is thin along z. Its complex image is
rho(r) = A(r) exp(i q.u(r)); for the (002) reflection b.q = 2 pi, so a screw dislocation along z
adds +-atan2 around its line, and an out-of-phase domain boundary adds a constant phase step on
one side of a plane that contains z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streamer.geometry import OrthogonalGeometry


@dataclass(frozen=True)
class ScrewDislocation:
    """A screw dislocation line along z through (y_nm, x_nm) from the particle centre."""

    y_nm: float
    x_nm: float
    winding: int = 1  # +1 or -1: phase winds by +-2 pi counter-clockwise in the (y, x) plane


@dataclass(frozen=True)
class DomainBoundary:
    """A plane containing z, at signed distance ``offset_nm`` along its in-plane normal.

    Voxels on the positive side carry an extra phase ``step_rad`` (pi for an antiphase boundary).
    """

    normal_angle_deg: float = 0.0  # angle of the normal from +x towards +y
    offset_nm: float = 0.0
    step_rad: float = 2 * math.pi / 3


@dataclass(frozen=True)
class Particle:
    """Elliptical plate: semi-axes along x and y, thickness along z (all nm)."""

    radius_x_nm: float = 144.0
    radius_y_nm: float = 132.0
    thickness_nm: float = 96.0
    dislocations: tuple[ScrewDislocation, ...] = field(default_factory=tuple)
    boundaries: tuple[DomainBoundary, ...] = field(default_factory=tuple)

    def with_defects(self, dislocations=(), boundaries=()) -> "Particle":
        return Particle(
            self.radius_x_nm, self.radius_y_nm, self.thickness_nm, tuple(dislocations), tuple(boundaries)
        )


def voxel_coordinates_nm(geometry: OrthogonalGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open (z, y, x) coordinate grids in nm with the origin at index n // 2."""
    axes = [(np.arange(n) - n // 2) * geometry.voxel_nm for n in geometry.shape_zyx]
    return np.ix_(*axes)


def shape_mask(particle: Particle, geometry: OrthogonalGeometry) -> np.ndarray:
    """Boolean support of the plate on the geometry's grid."""
    z, y, x = voxel_coordinates_nm(geometry)
    inside = (x / particle.radius_x_nm) ** 2 + (y / particle.radius_y_nm) ** 2 <= 1.0
    return np.broadcast_to(inside & (np.abs(z) < particle.thickness_nm / 2), geometry.shape_zyx).copy()


def phase_field(particle: Particle, geometry: OrthogonalGeometry) -> np.ndarray:
    """The phase q.u(r) (rad) of the particle's defects on the grid."""
    z, y, x = voxel_coordinates_nm(geometry)
    phase = np.zeros(geometry.shape_zyx)
    for d in particle.dislocations:
        phase += d.winding * np.arctan2(y - d.y_nm, x - d.x_nm)
    for b in particle.boundaries:
        a = math.radians(b.normal_angle_deg)
        side = (x * math.cos(a) + y * math.sin(a)) > b.offset_nm
        phase += b.step_rad * side
    return phase


def complex_image(particle: Particle, geometry: OrthogonalGeometry) -> np.ndarray:
    """rho(r) = A(r) exp(i phi(r)) as complex128, amplitude 1 inside the plate."""
    return shape_mask(particle, geometry) * np.exp(1j * phase_field(particle, geometry))
