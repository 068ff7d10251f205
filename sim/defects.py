"""The defects of the analytic particle: dislocation lines and loops, domain boundaries, strain walls,
strain regions (a Na-rich core) and mosaic blocks, each giving its displacement phase at points.

Everything is evaluated at arbitrary points ``r`` (nm, shape (3, ...), lab order z, y, x; the
origin is the particle centre). The layers are normal to z, which is along the Bragg vector
G = (4 pi / c) z of the (002) reflection, so each ``phase`` is the displacement phase
G . u(r) = 4 pi u_z / c; the complex image carries exp(-i G.u) (docs/conventions.md).
Burgers vectors are given in units of the lattice constant c (default c/2 along z: b . G = 2 pi),
b being the displacement gained once around the line, counter-clockwise about its direction.
Dislocation fields are those of straight lines in an isotropic medium (Hirth and Lothe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

POISSON_RATIO = 0.3
CORE_RADIUS_NM = 0.5  # regularises the edge field's log(r) at the core


def _unit(v, name: str) -> tuple[float, float, float]:
    a = np.asarray(v, float)
    if a.shape != (3,) or not np.linalg.norm(a) > 0:
        raise ValueError(f"{name} must be a non-zero (z, y, x) vector, got {v!r}")
    return tuple(float(c) for c in a / np.linalg.norm(a))


def cross_zyx(a, b) -> np.ndarray:
    """Cross product of vectors whose components (axis 0) are in (z, y, x) order (right-handed x, y, z)."""
    return -np.cross(a, b, axis=0)


def dot_zyx(vec, r) -> np.ndarray:
    """vec . r for a 3-vector ``vec`` and points ``r`` of shape (3, ...)."""
    return vec[0] * r[0] + vec[1] * r[1] + vec[2] * r[2]


@dataclass(frozen=True)
class DislocationLine:
    """A straight dislocation line through ``point_nm`` along ``direction`` (any orientation).

    ``burgers_c``: Burgers vector in units of c (z, y, x): the displacement gained once around the line,
    counter-clockwise about ``direction`` (right-hand rule). Its part along G sets the winding of the
    displacement phase G.u, ``winding = 2 b_z`` turns of 2 pi in that sense (docs/conventions.md).
    Screw when the line is along b, edge when normal to it, mixed otherwise.
    """

    point_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, float, float] = (1.0, 0.0, 0.0)
    burgers_c: tuple[float, float, float] = (0.5, 0.0, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", _unit(self.direction, "direction"))
        object.__setattr__(self, "point_nm", tuple(float(v) for v in self.point_nm))
        object.__setattr__(self, "burgers_c", tuple(float(v) for v in self.burgers_c))
        if len(self.point_nm) != 3 or len(self.burgers_c) != 3:
            raise ValueError("point_nm and burgers_c must be (z, y, x) triples")

    @property
    def winding(self) -> int:
        """Turns of the displacement phase G.u around the line for the (002) reflection: G . b / 2 pi."""
        return round(2 * self.burgers_c[0])

    @property
    def kind(self) -> str:
        b = np.asarray(self.burgers_c)
        cos = abs(np.dot(b, self.direction)) / np.linalg.norm(b)
        return "screw" if cos > 0.99 else "edge" if cos < 0.01 else "mixed"

    def phase(self, r: np.ndarray) -> np.ndarray:
        t = np.asarray(self.direction)
        b = np.asarray(self.burgers_c)
        b_screw = float(np.dot(b, t))
        b_edge_vec = b - b_screw * t
        b_edge = float(np.linalg.norm(b_edge_vec))
        if b_edge > 1e-12:
            e = b_edge_vec / b_edge
        else:  # any normal to t; x when possible, so a line along z has theta = atan2(y, x)
            e = np.array([0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
            e = e - np.dot(e, t) * t
            e /= np.linalg.norm(e)
        f = cross_zyx(t, e)
        d = r - np.asarray(self.point_nm).reshape(3, *[1] * (r.ndim - 1))
        x, y = dot_zyx(e, d), dot_zyx(f, d)
        theta = np.arctan2(y, x)
        r2 = x * x + y * y + CORE_RADIUS_NM**2
        nu = POISSON_RATIO
        u_e = b_edge / (2 * math.pi) * (theta + x * y / (2 * (1 - nu) * r2))
        u_f = -b_edge / (2 * math.pi) * ((1 - 2 * nu) / (4 * (1 - nu)) * np.log(r2) + (x * x - y * y) / (4 * (1 - nu) * r2))
        u_z = b_screw / (2 * math.pi) * theta * t[0] + u_e * e[0] + u_f * f[0]
        return 4 * math.pi * u_z  # G . u with G = 4 pi / c along z and u in units of c


@dataclass(frozen=True)
class ScrewDislocation:
    """A screw line along z through (y_nm, x_nm) from the particle centre; ``winding`` +-1."""

    y_nm: float
    x_nm: float
    winding: int = 1

    def line(self) -> DislocationLine:
        return DislocationLine((0.0, self.y_nm, self.x_nm), (1.0, 0.0, 0.0), (0.5 * self.winding, 0.0, 0.0))


@dataclass(frozen=True)
class DislocationLoop:
    """A closed polygonal dislocation loop (glissile when b lies in its plane), vertices in order.

    Its field is Burgers' solid-angle term, u = -b Omega / 4 pi, the part that carries the winding:
    the displacement phase turns by G . b around each segment, counter-clockwise about the segment's direction
    (vertex i to i + 1), as for a ``DislocationLine``. A loop that threads the plate and closes
    outside it shows as two antiparallel lines (a screw pair when b is along them).
    """

    vertices_nm: tuple[tuple[float, float, float], ...]
    burgers_c: tuple[float, float, float] = (0.5, 0.0, 0.0)

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices_nm, float)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
            raise ValueError(f"vertices_nm must be >= 3 (z, y, x) points, got {self.vertices_nm!r}")
        object.__setattr__(self, "vertices_nm", tuple(tuple(float(c) for c in p) for p in v))
        object.__setattr__(self, "burgers_c", tuple(float(c) for c in self.burgers_c))

    def segments(self) -> list[DislocationLine]:
        """Each side as a line (point = its start) with the loop's Burgers vector."""
        v = self.vertices_nm
        return [DislocationLine(v[i], np.subtract(v[(i + 1) % len(v)], v[i]), self.burgers_c) for i in range(len(v))]

    def phase(self, r: np.ndarray) -> np.ndarray:
        v = [np.asarray(p).reshape(3, *[1] * (r.ndim - 1)) - r for p in self.vertices_nm]
        omega = np.zeros(r.shape[1:])
        for i in range(1, len(v) - 1):  # fan of triangles (v0, vi, vi+1)
            a, b, c = v[0], v[i], v[i + 1]
            la, lb, lc = (np.sqrt(dot_zyx(x, x)) for x in (a, b, c))
            num = dot_zyx(a, cross_zyx(b, c))
            den = la * lb * lc + dot_zyx(a, b) * lc + dot_zyx(a, c) * lb + dot_zyx(b, c) * la
            omega += 2 * np.arctan2(num, den)
        # G . u = 4 pi u_z / c with |u| = b Omega / 4 pi; the sign makes the winding about each side's
        # direction 2 b_z, the DislocationLine convention
        return self.burgers_c[0] * omega


def screw_pair(*, center_nm: tuple[float, float] = (0.0, 0.0), separation_nm: float = 100.0,
               angle_deg: float = 0.0) -> tuple[DislocationLine, DislocationLine]:
    """An antiparallel screw pair (the cross-section of a glissile loop threading the plate).

    The lines run along z, ``separation_nm`` apart along the in-plane direction ``angle_deg``
    (from +x towards +y); the one on the positive side winds +1.
    """
    a = math.radians(angle_deg)
    dy, dx = separation_nm / 2 * math.sin(a), separation_nm / 2 * math.cos(a)
    y0, x0 = center_nm
    return (DislocationLine((0.0, y0 + dy, x0 + dx), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0)),
            DislocationLine((0.0, y0 - dy, x0 - dx), (1.0, 0.0, 0.0), (-0.5, 0.0, 0.0)))


@dataclass(frozen=True)
class DomainBoundary:
    """A plane at signed distance ``offset_nm`` along its normal, through the particle centre's side.

    The normal points at azimuth ``normal_angle_deg`` (from +x towards +y) and elevation ``normal_tilt_deg``
    towards +z: 0 (the default) puts z in the plane, a boundary perpendicular to the layers; any other tilt
    gives a plane oblique to them. Points on the positive side carry an extra displacement phase
    ``step_rad`` (pi: antiphase boundary; other values: out-of-phase), i.e. a displacement step of
    step_rad / |G| along G.
    """

    normal_angle_deg: float = 0.0  # azimuth of the normal from +x towards +y
    offset_nm: float = 0.0
    step_rad: float = 2 * math.pi / 3
    normal_tilt_deg: float = 0.0  # elevation of the normal towards +z (0: plane perpendicular to the layers)

    def __post_init__(self) -> None:
        if not -90.0 <= self.normal_tilt_deg <= 90.0:
            raise ValueError(f"normal_tilt_deg must be within [-90, 90], got {self.normal_tilt_deg}")

    @property
    def normal(self) -> tuple[float, float, float]:
        a, t = math.radians(self.normal_angle_deg), math.radians(self.normal_tilt_deg)
        return (math.sin(t), math.cos(t) * math.sin(a), math.cos(t) * math.cos(a))

    def phase(self, r: np.ndarray) -> np.ndarray:
        return self.step_rad * (dot_zyx(np.asarray(self.normal), r) > self.offset_nm)


@dataclass(frozen=True)
class StrainWall:
    """A stacking-fault-like planar strain: a displacement step along q smeared over ``width_nm``.

    Across the plane (``point_nm``, ``normal``) the displacement phase rises by ``step_rad`` as an error function
    of width ``width_nm``; where the normal has a z part this is a slab of strain along q.
    """

    point_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)
    width_nm: float = 10.0
    step_rad: float = math.pi / 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", _unit(self.normal, "normal"))
        if not self.width_nm > 0:
            raise ValueError(f"width_nm must be > 0, got {self.width_nm}")

    def phase(self, r: np.ndarray) -> np.ndarray:
        s = dot_zyx(np.asarray(self.normal), r) - float(np.dot(self.normal, self.point_nm))
        return self.step_rad / 2 * (1 + erf(s / self.width_nm))


@dataclass(frozen=True)
class StrainRegion:
    """A Gaussian region of strain along q (a Na-rich core: about -1e-4) centred at ``center_nm``.

    eps_zz = strain * exp(-rho^2 / 2 sigma^2 - (z - z0)^2 / 2 sigma_z^2), rho the in-plane distance;
    positive ``strain`` is an expanded lattice (larger c locally), which scatters to lower |q|.
    """

    center_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    strain: float = -1e-4
    sigma_nm: float = 60.0
    sigma_z_nm: float = 30.0

    def phase(self, r: np.ndarray, c_nm: float) -> np.ndarray:
        z0, y0, x0 = self.center_nm
        lateral = np.exp(-((r[1] - y0) ** 2 + (r[2] - x0) ** 2) / (2 * self.sigma_nm**2))
        u_z_nm = self.strain * self.sigma_z_nm * math.sqrt(math.pi / 2) * erf((r[0] - z0) / (math.sqrt(2) * self.sigma_z_nm))
        return 4 * math.pi / c_nm * u_z_nm * lateral


@dataclass(frozen=True)
class Mosaic:
    """Lateral mosaic blocks: Voronoi cells in the plate's plane, each with its own lattice tilt.

    ``blocks`` seeds are drawn (``seed``) inside the plate; each block's planes tilt by normal
    random angles of rms ``tilt_deg`` about x and y, and shift by a random phase of rms ``phase_rad``.
    """

    blocks: int = 8
    tilt_deg: float = 0.1
    phase_rad: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.blocks) < 1 or self.tilt_deg < 0 or self.phase_rad < 0:
            raise ValueError("mosaic needs blocks >= 1, tilt_deg >= 0 and phase_rad >= 0")

    def block_parameters(self, radius_y_nm: float, radius_x_nm: float) -> np.ndarray:
        """(blocks, 5): seed y, seed x (nm), tilt about x, tilt about y (rad), phase (rad)."""
        rng = np.random.default_rng(self.seed)
        rad, ang = np.sqrt(rng.random(self.blocks)), rng.random(self.blocks) * 2 * math.pi
        ys, xs = rad * np.sin(ang) * radius_y_nm, rad * np.cos(ang) * radius_x_nm
        tilts = rng.normal(0.0, math.radians(self.tilt_deg), (2, self.blocks))
        phases = rng.normal(0.0, self.phase_rad, self.blocks)
        return np.stack([ys, xs, tilts[0], tilts[1], phases], axis=1)

    def phase(self, r: np.ndarray, c_nm: float, radius_y_nm: float, radius_x_nm: float) -> np.ndarray:
        p = self.block_parameters(radius_y_nm, radius_x_nm)
        d2 = [(r[1] - y) ** 2 + (r[2] - x) ** 2 for y, x in p[:, :2]]
        block = np.argmin(np.stack(d2), axis=0)
        ys, xs, about_x, about_y, phases = (p[:, k][block] for k in range(5))
        # a tilt about x moves the planes' height with y, one about y with x: u_z = a_x (y - y_i) - a_y (x - x_i)
        u_z_nm = about_x * (r[1] - ys) - about_y * (r[2] - xs)
        return 4 * math.pi / c_nm * u_z_nm + phases
