"""A real diffractometer's geometry: energy, distance, pixels, binning, detector-arm angles, rocking axis and step.

Its (step, row, col) grid is sheared in q and in real space; conventions in docs/geometry.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from streamer.geometry.orthogonal import OrthogonalGeometry
from streamer.settings import ConfigError, dataclass_from_dict, dataclass_model

HC_KEV_NM = 1.2398419843320026  # h c in keV nm: wavelength_nm = HC_KEV_NM / energy_kev

RESAMPLE_CHUNK_VOXELS = 1 << 20  # lab voxels resampled at a time

#: what a geometry file must state (the rest has beamline defaults: docs/geometry.md), with its meaning
MEASURED_KEYS = {
    "energy_kev": "photon energy (keV)",
    "distance_m": "sample-detector distance (m)",
    "pixel_um": "raw pixel pitch (um)",
    "detector_shape_px": "raw detector size [rows, cols]",
    "d_spacing_nm": "d spacing of the reflection (nm)",
    "rocking_step_deg": "rocking step (deg)",
    "num_rocking_steps": "frames per rocking scan",
}


@dataclass(frozen=True)
class DetectorGeometry:
    """A rocking scan on a real diffractometer: the sheared (step, row, col) grid it samples.

    Beam frame: x downstream along the incident beam, y up, z = x cross y. The detector arm puts
    the exit ray at in-plane angle ``delta_deg`` (towards +z) and elevation ``gamma_deg``
    (default: a vertical scattering plane, gamma = 2 theta_Bragg, rocking about z); the
    detector face is normal to that ray at ``distance_m``, rows run downwards, columns along
    row x ray. The sample rotates about ``rocking_axis`` (beam frame) by ``rocking_step_deg`` per
    step. Lab frame (z, y, x): z along the q of the central pixel at the central step, y along the
    rocking axis (its part normal to z), x = y cross z. Frames are ``binning`` x ``binning``
    binned crops ``roi_px`` (row0, row1, col0, col1 of raw pixels) of the detector.
    """

    energy_kev: float = 9.0
    distance_m: float = 1.0
    pixel_um: float = 55.0
    detector_shape_px: tuple[int, int] = (256, 256)
    binning: int = 1
    roi_px: tuple[int, int, int, int] | None = None
    center_px: tuple[float, float] | None = None  # raw pixel hit by the central exit ray (default: middle)
    d_spacing_nm: float = 0.55  # the reflection the arm is set for (P2 (002): c / 2)
    delta_deg: float = 0.0
    gamma_deg: float | None = None  # default: 2 theta_Bragg of d_spacing_nm (vertical scattering plane)
    rocking_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    rocking_step_deg: float = 0.02
    num_rocking_steps: int = 64
    theta_bragg_deg: float | None = None  # sample angle at the central step (default: Bragg angle)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        def fix(name, value):
            object.__setattr__(self, name, value)

        for name in ("energy_kev", "distance_m", "pixel_um", "d_spacing_nm"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        shape = tuple(int(n) for n in self.detector_shape_px)
        if len(shape) != 2 or min(shape) < 8:
            raise ValueError(f"detector_shape_px must be two sizes >= 8, got {self.detector_shape_px!r}")
        fix("detector_shape_px", shape)
        if int(self.binning) != self.binning or self.binning < 1:
            raise ValueError(f"binning must be an integer >= 1, got {self.binning!r}")
        fix("binning", int(self.binning))
        roi = tuple(int(v) for v in (self.roi_px or (0, shape[0], 0, shape[1])))
        if len(roi) != 4 or not (0 <= roi[0] < roi[1] <= shape[0] and 0 <= roi[2] < roi[3] <= shape[1]):
            raise ValueError(f"roi_px {self.roi_px!r} must be (row0, row1, col0, col1) inside {shape}")
        if (roi[1] - roi[0]) % self.binning or (roi[3] - roi[2]) % self.binning:
            raise ValueError(f"roi_px {roi} is not a whole number of {self.binning}x{self.binning} bins")
        fix("roi_px", roi)
        fix("center_px", tuple(float(v) for v in (self.center_px or (shape[0] // 2, shape[1] // 2))))
        ratio = self.wavelength_nm / (2 * self.d_spacing_nm)
        if ratio >= 1:
            raise ValueError(f"d_spacing_nm {self.d_spacing_nm} is below half the wavelength: no Bragg reflection")
        bragg = math.degrees(math.asin(ratio))
        fix("gamma_deg", float(2 * bragg if self.gamma_deg is None else self.gamma_deg))
        fix("theta_bragg_deg", float(bragg if self.theta_bragg_deg is None else self.theta_bragg_deg))
        fix("delta_deg", float(self.delta_deg))
        axis = np.asarray(self.rocking_axis, float)
        if axis.shape != (3,) or not np.linalg.norm(axis) > 0:
            raise ValueError(f"rocking_axis must be a non-zero 3-vector, got {self.rocking_axis!r}")
        fix("rocking_axis", tuple(float(v) for v in axis / np.linalg.norm(axis)))
        if int(self.num_rocking_steps) < 2 or self.rocking_step_deg == 0:
            raise ValueError("num_rocking_steps must be >= 2 and rocking_step_deg non-zero")
        fix("num_rocking_steps", int(self.num_rocking_steps))
        fix("rocking_step_deg", float(self.rocking_step_deg))
        q = self._beam_q_centre()
        if abs(np.dot(q / np.linalg.norm(q), axis / np.linalg.norm(axis))) > 0.99:
            raise ValueError("rocking_axis is (nearly) parallel to q: rocking would not move through the peak")

    # -- scalars ---------------------------------------------------------------------------------
    @property
    def wavelength_nm(self) -> float:
        return HC_KEV_NM / self.energy_kev

    @property
    def k_inv_nm(self) -> float:
        """Wavenumber 2 pi / lambda (nm^-1)."""
        return 2 * math.pi / self.wavelength_nm

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(rows, cols) of a binned, cropped frame."""
        r0, r1, c0, c1 = self.roi_px
        return ((r1 - r0) // self.binning, (c1 - c0) // self.binning)

    @property
    def stack_shape(self) -> tuple[int, int, int]:
        return (self.num_rocking_steps, *self.frame_shape)

    @property
    def pixels_per_voxel(self) -> tuple[int, int, int]:
        """Detector pixels summed into each voxel of the stack along (step, row, col): what the phasing's modulus
        step models (``PhasingConfig.binned_pixels``)."""
        return (1, self.binning, self.binning)

    @property
    def q_bragg_inv_nm(self) -> float:
        """|q| at the central pixel and step (nm^-1)."""
        return float(np.linalg.norm(self.q_center_inv_nm))

    def binned(self, binning: int) -> DetectorGeometry:
        """The same measurement with frames binned ``binning`` x ``binning`` (the crop is kept)."""
        return replace(self, binning=binning)

    def rebinned(self, factor: int) -> tuple[DetectorGeometry, tuple[int, int]]:
        """Frames of this geometry binned ``factor`` x more: (geometry, (rows, cols) of frame pixels left over).

        A crop that is not a whole number of the new bins loses its last rows / columns (fewer than
        ``factor``), as ``bin_frames`` drops them; the crop's start and the beam centre stay.
        """
        if int(factor) != factor or factor < 1:
            raise ValueError(f"binning factor must be an integer >= 1, got {factor!r}")
        b = self.binning * int(factor)
        r0, r1, c0, c1 = self.roi_px
        rows, cols = (r1 - r0) // b * b, (c1 - c0) // b * b
        if not (rows and cols):
            raise ValueError(f"roi_px {self.roi_px} is smaller than one {b}x{b} bin")
        left = ((r1 - r0 - rows) // self.binning, (c1 - c0 - cols) // self.binning)
        return replace(self, binning=b, roi_px=(r0, r0 + rows, c0, c0 + cols)), left

    def rocking_index(self, theta_deg: float) -> float:
        """Fractional rocking step (0 .. steps - 1) at sample angle ``theta_deg``."""
        return (theta_deg - self.theta_bragg_deg) / self.rocking_step_deg + self.num_rocking_steps // 2

    def rocking_angles_deg(self) -> np.ndarray:
        return self.theta_bragg_deg + (np.arange(self.num_rocking_steps) - self.num_rocking_steps // 2) * self.rocking_step_deg

    def rocking_range_deg(self) -> tuple[float, float]:
        angles = self.rocking_angles_deg()
        return (float(angles[0]), float(angles[-1]))

    # -- q of every voxel ------------------------------------------------------------------------
    @property
    def lab_from_beam(self) -> np.ndarray:
        """3x3 matrix: lab (z, y, x) components of a beam-frame (x, y, z) vector."""
        if "lab" not in self._cache:
            e_z = self._beam_q_centre() / np.linalg.norm(self._beam_q_centre())
            a = np.asarray(self.rocking_axis)
            e_y = a - np.dot(a, e_z) * e_z
            e_y /= np.linalg.norm(e_y)
            self._cache["lab"] = np.stack([e_z, e_y, np.cross(e_y, e_z)])
        return self._cache["lab"]

    def q_lab(self, step, row, col) -> np.ndarray:
        """Exact q (nm^-1, lab z, y, x in the last axis) of (step, row, col); indices broadcast, may be fractional."""
        step, row, col = (np.asarray(v, float)[..., None] for v in (step, row, col))
        kf_dir, down, side = self._detector_axes()
        r0, _, c0, _ = self.roi_px
        b = self.binning
        pitch_m = self.pixel_um * 1e-6
        dr = (r0 + row * b + (b - 1) / 2 - self.center_px[0]) * pitch_m
        dc = (c0 + col * b + (b - 1) / 2 - self.center_px[1]) * pitch_m
        p = self.distance_m * kf_dir + dr * down + dc * side
        q = self.k_inv_nm * (p / np.linalg.norm(p, axis=-1, keepdims=True) - np.array([1.0, 0.0, 0.0]))
        angle = -np.radians((step - self.num_rocking_steps // 2) * self.rocking_step_deg)
        a = np.asarray(self.rocking_axis)
        q = (q * np.cos(angle) + np.cross(a, q) * np.sin(angle)
             + a * (q @ a)[..., None] * (1 - np.cos(angle)))  # the sample's frame (Rodrigues)
        return q @ self.lab_from_beam.T

    @property
    def center_index(self) -> tuple[int, int, int]:
        """(step, row, col) of the grid origin: n // 2 along each axis."""
        return tuple(n // 2 for n in self.stack_shape)

    @property
    def q_center_inv_nm(self) -> np.ndarray:
        """q (lab, nm^-1) at the grid origin."""
        return self.q_lab(*self.center_index)

    @property
    def q_basis_inv_nm(self) -> np.ndarray:
        """3x3 B: column j is the q step (lab z, y, x; nm^-1) of one index along stack axis j.

        Near the origin q(n) = q_center + B (n - center); it is exact to second order in the offset.
        """
        if "B" not in self._cache:
            c = np.array(self.center_index, float)
            cols = []
            for j in range(3):
                e = np.eye(3)[j]
                cols.append((self.q_lab(*(c + e)) - self.q_lab(*(c - e))) / 2)
            self._cache["B"] = np.stack(cols, axis=1)
        return self._cache["B"]

    @property
    def real_basis_nm(self) -> np.ndarray:
        """3x3 A: column j is the real-space step (lab z, y, x; nm) of the grid conjugate to the stack.

        q . r = 2 pi sum_j n_j m_j / N_j for q = B n and r = A m, so a discrete Fourier transform of
        an object sampled at r = A m gives its diffraction at q = B n.
        """
        return 2 * math.pi * np.linalg.inv(self.q_basis_inv_nm).T / np.array(self.stack_shape, float)

    @property
    def voxel_sizes_nm(self) -> tuple[float, float, float]:
        """Resolution 2 pi / (N_j |b_j|) along each stack axis (step, row, col), nm."""
        b = np.linalg.norm(self.q_basis_inv_nm, axis=0)
        return tuple(float(2 * math.pi / (n * bj)) for n, bj in zip(self.stack_shape, b))

    def real_space_points_nm(self) -> np.ndarray:
        """Lab (z, y, x) position (nm) of every voxel conjugate to the stack, shape (3, steps, rows, cols)."""
        m = np.meshgrid(*[np.arange(n) - n // 2 for n in self.stack_shape], indexing="ij")
        return np.einsum("ij,j...->i...", self.real_basis_nm, np.stack(m).astype(float))

    # -- back to an orthogonal lab grid ----------------------------------------------------------
    def to_orthogonal(self, stack: np.ndarray, *, voxel_nm: float | None = None,
                      shape_zyx: tuple[int, int, int] | None = None, order: int = 1,
                      origin_index: tuple[float, float, float] | None = None) -> np.ndarray:
        """Resample a real-space array on the conjugate (step, row, col) grid onto a lab (z, y, x) grid; or
        several, stacked on a leading axis, at the same points (the lab coordinates computed once).

        The lab grid has cubic voxels ``voxel_nm`` (default: the finest of ``voxel_sizes_nm``) with its
        origin at index n // 2, where the stack's (fractional) index ``origin_index`` lands (default its
        centre index); points outside the measured grid are 0.
        """
        voxel = min(self.voxel_sizes_nm) if voxel_nm is None else float(voxel_nm)
        return self._resample(stack, np.linalg.inv(self.real_basis_nm), voxel, shape_zyx, order, origin_index)

    def intensity_to_orthogonal(self, stack: np.ndarray, *, dq_inv_nm: float | None = None,
                                shape_zyx: tuple[int, int, int] | None = None, order: int = 1) -> np.ndarray:
        """Resample a frame stack (intensity) onto a lab (q_z, q_y, q_x) grid centred on ``q_center_inv_nm``."""
        dq = min(np.linalg.norm(self.q_basis_inv_nm, axis=0)) if dq_inv_nm is None else float(dq_inv_nm)
        return self._resample(stack, np.linalg.inv(self.q_basis_inv_nm), dq, shape_zyx, order)

    def q_grid_shape(self, dq_inv_nm: float) -> tuple[int, int, int]:
        """(q_z, q_y, q_x) sizes of the orthogonal q grid of spacing ``dq_inv_nm``, centred on
        ``q_center_inv_nm``, that holds every measured q (the bounding box of the sheared grid)."""
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in self.stack_shape], indexing="ij")).reshape(3, -1)
        offsets = self.q_basis_inv_nm @ (corners - np.array(self.center_index, float)[:, None])
        half = np.abs(offsets).max(axis=1) / dq_inv_nm
        return tuple(int(2 * math.ceil(h) + 2) for h in half)

    def support_half_extent_nm(self, support: np.ndarray) -> np.ndarray:
        """Largest |z|, |y|, |x| (lab, nm) of the voxels of ``support``, a (step, row, col) mask on the
        conjugate real-space grid (origin at index n // 2)."""
        support = np.asarray(support, bool)
        if support.shape != self.stack_shape:
            raise ValueError(f"support shape {support.shape} does not match the geometry's {self.stack_shape}")
        if not support.any():
            return np.zeros(3)
        idx = np.argwhere(support).T - np.array(self.center_index, float)[:, None]
        return np.abs(self.real_basis_nm @ idx).max(axis=1)

    def lab_geometry(self, shape_zyx: tuple[int, int, int], voxel_nm: float,
                     q_inv_nm: float | None = None) -> OrthogonalGeometry:
        """The orthogonal description of a lab grid (cubic ``voxel_nm``, z along ``q_center_inv_nm``) that
        objects of this geometry are resampled onto (``to_orthogonal``): what the analysis sees.

        ``q_inv_nm``: |q| of the reflection (default |q| at the grid origin), which sets d.
        """
        q = self.q_bragg_inv_nm if q_inv_nm is None else float(q_inv_nm)
        return OrthogonalGeometry(shape_zyx=tuple(int(n) for n in shape_zyx), voxel_nm=float(voxel_nm),
                                  d_spacing_nm=2 * math.pi / q, theta_bragg_deg=self.theta_bragg_deg)

    def _resample(self, stack, lab_to_index, spacing, shape_zyx, order, origin_index=None):
        from scipy.ndimage import map_coordinates

        stack = np.asarray(stack)
        several = stack.ndim == len(self.stack_shape) + 1  # arrays on a leading axis, resampled at the same points
        if stack.shape[int(several):] != self.stack_shape:
            raise ValueError(f"stack shape {stack.shape} does not match the geometry's {self.stack_shape}")
        if not spacing > 0:
            raise ValueError(f"grid spacing must be > 0, got {spacing}")
        shape = tuple(int(n) for n in (shape_zyx or (self.stack_shape[1], self.stack_shape[2], self.stack_shape[0])))
        axes = [(np.arange(n) - n // 2) * spacing for n in shape]
        origin = np.array(self.center_index if origin_index is None else origin_index, float)[:, None]
        arrays = stack if several else stack[None]
        complex_ = np.iscomplexobj(stack)
        out = np.zeros((len(arrays),) + shape, np.result_type(stack.real.dtype, np.complex64) if complex_ else stack.dtype)
        per_slab = max(1, RESAMPLE_CHUNK_VOXELS // max(1, shape[1] * shape[2]))
        for z0 in range(0, shape[0], per_slab):  # slabs bound the coordinates' memory (48 bytes a voxel)
            zs = axes[0][z0:z0 + per_slab]
            lab = np.stack(np.meshgrid(zs, axes[1], axes[2], indexing="ij")).reshape(3, -1)
            idx = lab_to_index @ lab + origin
            for array, target in zip(arrays, out):
                sampled = [map_coordinates(a, idx, order=order, mode="constant", cval=0.0).reshape(len(zs), *shape[1:])
                           for a in ((array.real, array.imag) if complex_ else (array,))]
                target[z0:z0 + len(zs)] = sampled[0] + 1j * sampled[1] if complex_ else sampled[0]
        return out if several else out[0]

    # -- internals and serialisation -------------------------------------------------------------
    def _detector_axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Beam-frame unit vectors: the central exit ray, the row direction (down) and the column direction."""
        d, g = math.radians(self.delta_deg), math.radians(self.gamma_deg)
        kf = np.array([math.cos(g) * math.cos(d), math.sin(g), math.cos(g) * math.sin(d)])
        up = np.array([0.0, 1.0, 0.0]) - kf[1] * kf
        down = -up / np.linalg.norm(up)
        return kf, down, np.cross(down, kf)

    def _beam_q_centre(self) -> np.ndarray:
        kf, _, _ = self._detector_axes()
        return self.k_inv_nm * (kf - np.array([1.0, 0.0, 0.0]))

    def to_dict(self) -> dict:
        return {
            "kind": "detector",
            "energy_kev": self.energy_kev, "distance_m": self.distance_m, "pixel_um": self.pixel_um,
            "detector_shape_px": list(self.detector_shape_px), "binning": self.binning,
            "roi_px": list(self.roi_px), "center_px": list(self.center_px), "d_spacing_nm": self.d_spacing_nm,
            "delta_deg": self.delta_deg, "gamma_deg": self.gamma_deg, "rocking_axis": list(self.rocking_axis),
            "rocking_step_deg": self.rocking_step_deg, "num_rocking_steps": self.num_rocking_steps,
            "theta_bragg_deg": self.theta_bragg_deg,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DetectorGeometry:
        """The geometry of a ``to_dict`` (missing keys take their defaults); ConfigError naming the key otherwise."""
        if d.get("kind", "detector") != "detector":
            raise ConfigError(f"not a detector geometry: kind {d.get('kind')!r}")
        return dataclass_from_dict(cls, _TABLE, d, "detector geometry")

    @classmethod
    def from_measured(cls, d: dict, source: str = "geometry") -> DetectorGeometry:
        """The geometry of a file or start document: ``MEASURED_KEYS`` must be there (a missing one
        is a ConfigError naming it and ``source``), the rest may take its default."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source} must be a table of detector geometry fields, got {type(d).__name__}")
        missing = [f"{k} ({what})" for k, what in MEASURED_KEYS.items() if k not in d]
        if missing:
            raise ConfigError(f"{source}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        try:
            return cls.from_dict(d)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


_TABLE = dataclass_model(DetectorGeometry)  # the keys of to_dict, type by type
