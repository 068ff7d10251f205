"""A ``DetectorGeometry`` from what a beamline knows: energy, distance, pixels, the detector arm, the
rocking motor and the reflection.

Typed settings models (errors are ``ConfigError`` naming the dotted field); ``BeamlineGeometry.geometry()``
builds the geometry and refuses one whose frames cannot hold the reflection. Conventions: docs/geometry.md.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from streamer.geometry.detector import HC_KEV_NM, DetectorGeometry
from streamer.settings import ConfigError, Settings

Positive = Annotated[float, Field(gt=0)]
CellAngle = Annotated[float, Field(gt=0, lt=180)]
ArmAngle = Annotated[float, Field(ge=-180, le=180)]


def _tuple(value):
    """A TOML list may stand for a tuple (its items keep their strict types)."""
    return tuple(value) if isinstance(value, list) else value


def _sequence(hint):
    return Annotated[hint, BeforeValidator(_tuple)]


#: named rocking axes, beam frame (x downstream, y up, z = x cross y); "normal" is the scattering plane's normal
NAMED_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
              "-x": (-1.0, 0.0, 0.0), "-y": (0.0, -1.0, 0.0), "-z": (0.0, 0.0, -1.0)}


def _axis(value):
    """A rocking axis: one of the names, or three finite numbers (not all zero) as a tuple."""
    if isinstance(value, str):
        if value not in ("normal", *NAMED_AXES):
            raise ValueError(f"must be 'normal', one of {', '.join(NAMED_AXES)} or a 3-vector, got {value!r}")
        return value
    if (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            and any(value)):
        return tuple(float(v) for v in value)
    raise ValueError(f"must be 'normal', one of {', '.join(NAMED_AXES)} or three numbers not all zero, got {value!r}")


class Lattice(Settings):
    """A unit cell (nm, degrees); b and c default to a, the angles to 90 (P2 hexagonal: gamma_deg = 120)."""

    a_nm: Positive
    b_nm: Positive | None = None
    c_nm: Positive | None = None
    alpha_deg: CellAngle = 90.0
    beta_deg: CellAngle = 90.0
    gamma_deg: CellAngle = 90.0

    @model_validator(mode="after")
    def _a_real_cell(self):
        if not np.linalg.det(self.metric_nm2()) > 0:
            raise ValueError(f"angles alpha_deg {self.alpha_deg}, beta_deg {self.beta_deg}, gamma_deg "
                             f"{self.gamma_deg} make no unit cell")
        return self

    def metric_nm2(self) -> np.ndarray:
        """The metric tensor G (nm^2): G_ij = a_i . a_j."""
        a, b, c = self.a_nm, self.b_nm or self.a_nm, self.c_nm or self.a_nm
        ca, cb, cg = (math.cos(math.radians(v)) for v in (self.alpha_deg, self.beta_deg, self.gamma_deg))
        return np.array([[a * a, a * b * cg, a * c * cb],
                         [a * b * cg, b * b, b * c * ca],
                         [a * c * cb, b * c * ca, c * c]])

    def d_spacing_nm(self, hkl: tuple[int, int, int]) -> float:
        """d of the (hkl) planes: 1 / d^2 = h^T G^-1 h (G the metric tensor)."""
        h = np.asarray(hkl, float)
        return float(1 / math.sqrt(h @ np.linalg.inv(self.metric_nm2()) @ h))


class Reflection(Settings):
    """The reflection measured: its d spacing, or hkl with the lattice (hkl alone is only a label)."""

    hkl: _sequence(tuple[int, int, int]) | None = None
    d_spacing_nm: Positive | None = None
    lattice: Lattice | None = None

    @model_validator(mode="after")
    def _one_way(self):
        if self.hkl is not None and not any(self.hkl):
            raise ValueError("hkl (0, 0, 0) is not a reflection")
        if self.lattice is not None and self.d_spacing_nm is not None:
            raise ValueError("give d_spacing_nm or lattice (with hkl), not both")
        if self.lattice is not None and self.hkl is None:
            raise ValueError("lattice needs hkl to give a d spacing")
        return self

    @property
    def d_nm(self) -> float | None:
        """The d spacing (nm), or None when neither d_spacing_nm nor lattice is given."""
        if self.d_spacing_nm is not None:
            return self.d_spacing_nm
        return None if self.lattice is None else self.lattice.d_spacing_nm(self.hkl)


class DetectorPlacement(Settings):
    """Where the detector sits and which part of it the frames are (raw pixels: rows, cols).

    The arm: ``delta_deg`` / ``gamma_deg`` (in-plane towards +z, elevation) or ``two_theta_deg`` in a
    ``scattering_plane``; neither: the arm sits at 2 theta of the reflection. The exit ray at those
    angles hits ``direct_beam_px`` (where the direct beam lands with the arm at zero; default the middle).
    """

    shape_px: _sequence(tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]]) | None = None
    direct_beam_px: _sequence(tuple[float, float]) | None = None
    delta_deg: ArmAngle | None = None
    gamma_deg: ArmAngle | None = None
    two_theta_deg: Annotated[float, Field(gt=0, lt=180)] | None = None
    scattering_plane: Literal["vertical", "horizontal"] = "vertical"
    roi_px: _sequence(tuple[int, int, int, int]) | None = None  # row0, row1, col0, col1 (end exclusive)
    binning: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _consistent(self):
        if self.two_theta_deg is not None and (self.delta_deg is not None or self.gamma_deg is not None):
            raise ValueError("give two_theta_deg (with scattering_plane) or delta_deg / gamma_deg, not both")
        if self.roi_px is not None:
            r0, r1, c0, c1 = self.roi_px
            rows, cols = self.shape_px or (r1, c1)
            if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
                raise ValueError(f"roi_px {self.roi_px} must be (row0, row1, col0, col1) with row0 < row1, "
                                 f"col0 < col1 inside shape_px {self.shape_px}")
            if (r1 - r0) % self.binning or (c1 - c0) % self.binning:
                raise ValueError(f"roi_px {self.roi_px} is not a whole number of binning {self.binning} x "
                                 f"{self.binning} bins")
        elif self.shape_px is not None and (self.shape_px[0] % self.binning or self.shape_px[1] % self.binning):
            raise ValueError(f"shape_px {self.shape_px} is not a whole number of binning {self.binning} x "
                             f"{self.binning} bins: give roi_px")
        return self

    def arm_deg(self, two_theta_bragg_deg: float) -> tuple[float, float]:
        """(delta, gamma) of the central exit ray; 2 theta of the reflection when no angle is given."""
        if self.delta_deg is not None or self.gamma_deg is not None:
            return (self.delta_deg or 0.0, self.gamma_deg or 0.0)
        tt = two_theta_bragg_deg if self.two_theta_deg is None else self.two_theta_deg
        return (0.0, tt) if self.scattering_plane == "vertical" else (tt, 0.0)


class Rocking(Settings):
    """The rocking motor and the axis it turns the sample about (beam frame).

    ``axis``: "normal" (default; the scattering plane's normal ki x kf: a positive step raises the
    angle of incidence), a signed beam-frame axis ("x", "-y", "z", ...) or a 3-vector.
    """

    motor: Annotated[str, Field(min_length=1)] = "theta"
    axis: Annotated[str | tuple[float, float, float], BeforeValidator(_axis)] = "normal"

    def vector(self, kf: np.ndarray) -> np.ndarray:
        """The axis as a beam-frame unit vector, given the central exit ray ``kf``."""
        if self.axis == "normal":
            n = np.cross([1.0, 0.0, 0.0], kf)
            if not np.linalg.norm(n) > 1e-9:
                raise ConfigError("rocking.axis 'normal' needs a detector arm off the beam (2 theta > 0)")
        else:
            n = np.asarray(NAMED_AXES.get(self.axis, self.axis), float)
        return n / np.linalg.norm(n)


class BeamlineGeometry(Settings):
    """Everything that fixes a rocking scan's geometry: beam, detector, reflection, rocking motor and scan.

    ``rocking_step_deg`` / ``num_frames`` / ``rocking_center_deg`` are the scan's (the motor's position at
    frame num_frames // 2; default the Bragg angle).
    """

    energy_kev: Positive
    distance_m: Positive
    pixel_um: Positive
    detector: DetectorPlacement = Field(default_factory=DetectorPlacement)
    reflection: Reflection = Field(default_factory=Reflection)
    rocking: Rocking = Field(default_factory=Rocking)
    rocking_step_deg: float | None = None
    num_frames: Annotated[int, Field(ge=2)] | None = None
    rocking_center_deg: float | None = None

    @property
    def wavelength_nm(self) -> float:
        return HC_KEV_NM / self.energy_kev

    def two_theta_bragg_deg(self) -> float:
        """2 theta of the reflection at this energy; ConfigError naming the reflection when it has none."""
        d = self.reflection.d_nm
        if d is None:
            raise ConfigError("reflection: give d_spacing_nm, or lattice with hkl")
        ratio = self.wavelength_nm / (2 * d)
        if ratio >= 1:
            raise ConfigError(f"reflection: d spacing {d:.5g} nm is below half the wavelength "
                              f"{self.wavelength_nm:.5g} nm at energy_kev {self.energy_kev}: no Bragg reflection")
        return 2 * math.degrees(math.asin(ratio))

    def geometry(self) -> DetectorGeometry:
        """The DetectorGeometry; ConfigError naming the field when something is missing or inconsistent."""
        missing = [k for k in ("rocking_step_deg", "num_frames") if getattr(self, k) is None]
        if self.detector.shape_px is None:
            missing.append("detector.shape_px")
        if missing:
            raise ConfigError(f"beamline geometry: missing {', '.join(missing)}")
        if self.rocking_step_deg == 0:
            raise ConfigError("rocking_step_deg must be non-zero")
        two_theta = self.two_theta_bragg_deg()
        det = self.detector
        delta, gamma = det.arm_deg(two_theta)
        kf = np.array([math.cos(math.radians(gamma)) * math.cos(math.radians(delta)), math.sin(math.radians(gamma)),
                       math.cos(math.radians(gamma)) * math.sin(math.radians(delta))])
        try:
            geometry = DetectorGeometry(
                energy_kev=self.energy_kev, distance_m=self.distance_m, pixel_um=self.pixel_um,
                detector_shape_px=det.shape_px, binning=det.binning, roi_px=det.roi_px, center_px=det.direct_beam_px,
                d_spacing_nm=self.reflection.d_nm, delta_deg=delta, gamma_deg=gamma,
                rocking_axis=tuple(self.rocking.vector(kf)), rocking_step_deg=self.rocking_step_deg,
                num_rocking_steps=self.num_frames, theta_bragg_deg=self.rocking_center_deg)
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"beamline geometry: {exc}") from None
        low, high = two_theta_range_deg(geometry)
        if not low <= two_theta <= high:
            raise ConfigError(
                f"the reflection (2 theta {two_theta:.3f} deg) is off the frames, which see 2 theta "
                f"{low:.3f}..{high:.3f} deg: check detector.delta_deg / gamma_deg / two_theta_deg, "
                f"detector.direct_beam_px, detector.roi_px and the reflection")
        return geometry


def two_theta_range_deg(geometry: DetectorGeometry) -> tuple[float, float]:
    """Smallest and largest scattering angle 2 theta (deg) over the pixels of a frame."""
    rows, cols = geometry.frame_shape
    r, c = np.arange(rows, dtype=float), np.arange(cols, dtype=float)
    edge_r = np.concatenate([r, r, np.zeros(cols), np.full(cols, rows - 1.0)])
    edge_c = np.concatenate([np.zeros(rows), np.full(rows, cols - 1.0), c, c])
    q = np.linalg.norm(geometry.q_lab(geometry.num_rocking_steps // 2, edge_r, edge_c), axis=-1)
    two_theta = np.degrees(2 * np.arcsin(np.clip(q / (2 * geometry.k_inv_nm), 0, 1)))
    low, high = float(two_theta.min()), float(two_theta.max())
    # where the direct beam meets the detector plane inside the frame, 2 theta reaches 0 (its only extremum)
    kf, down, side = geometry._detector_axes()
    if kf[0] > 0:
        offset = geometry.distance_m / kf[0] * np.array([1.0, 0.0, 0.0]) - geometry.distance_m * kf
        pitch_m, b = geometry.pixel_um * 1e-6, geometry.binning
        r0, _, c0, _ = geometry.roi_px
        beam_r = (geometry.center_px[0] + offset @ down / pitch_m - r0 - (b - 1) / 2) / b
        beam_c = (geometry.center_px[1] + offset @ side / pitch_m - c0 - (b - 1) / 2) / b
        if 0 <= beam_r <= rows - 1 and 0 <= beam_c <= cols - 1:
            low = 0.0
    return low, high


def detector_geometry(**fields) -> DetectorGeometry:
    """Shorthand: ``BeamlineGeometry(**fields).geometry()``."""
    return BeamlineGeometry(**fields).geometry()
