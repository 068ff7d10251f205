"""The orthogonal geometry: rocking angle along q_x, detector rows along q_z (q), columns along q_y, one cubic grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamer.settings import ConfigError, dataclass_from_dict, dataclass_model

#: axis order of a stacked rocking scan (theta, row, col) -> lab order (z, y, x)
STACK_TO_LAB_AXES = (1, 2, 0)


@dataclass(frozen=True)
class OrthogonalGeometry:
    """Sampling of a rocking scan on an orthogonal grid with cubic voxels.

    ``shape_zyx`` is the reconstruction grid (z along q); frames are ``(nz, ny)`` and a rocking
    scan has ``nx`` steps. ``d_spacing_nm`` sets |q|; ``voxel_nm`` sets the real-space pixel,
    and with it the reciprocal pixel and the rocking step that samples exactly one pixel.
    """

    shape_zyx: tuple[int, int, int] = (48, 48, 48)
    voxel_nm: float = 12.0
    d_spacing_nm: float = 0.55
    theta_bragg_deg: float = 7.0

    def __post_init__(self) -> None:
        if len(self.shape_zyx) != 3 or any(int(n) < 8 for n in self.shape_zyx):
            raise ValueError(f"shape_zyx must be three sizes >= 8, got {self.shape_zyx!r}")
        if not (self.voxel_nm > 0 and self.d_spacing_nm > 0):
            raise ValueError("voxel_nm and d_spacing_nm must be positive")

    @property
    def q_bragg_inv_nm(self) -> float:
        """|q| of the reflection, 2 pi / d (nm^-1)."""
        return 2 * math.pi / self.d_spacing_nm

    def dq_inv_nm(self, axis: int) -> float:
        """Reciprocal pixel size (nm^-1) along lab axis 0 (z), 1 (y) or 2 (x)."""
        return 2 * math.pi / (self.shape_zyx[axis] * self.voxel_nm)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Detector frame (rows along q_z, columns along q_y)."""
        return (self.shape_zyx[0], self.shape_zyx[1])

    @property
    def num_rocking_steps(self) -> int:
        return self.shape_zyx[2]

    @property
    def rocking_step_deg(self) -> float:
        """Rocking step that moves q by one reciprocal pixel along x (small-angle)."""
        return math.degrees(self.dq_inv_nm(2) / self.q_bragg_inv_nm)

    def rocking_index(self, theta_deg: float) -> float:
        """Fractional q_x pixel (0 .. nx) sampled at rocking angle ``theta_deg``."""
        nx = self.shape_zyx[2]
        return (theta_deg - self.theta_bragg_deg) / self.rocking_step_deg + nx / 2

    def rocking_range_deg(self) -> tuple[float, float]:
        """First and last theta of a scan that samples the grid's nx q_x pixels."""
        nx = self.shape_zyx[2]
        step = self.rocking_step_deg
        return (self.theta_bragg_deg - nx / 2 * step, self.theta_bragg_deg + (nx / 2 - 1) * step)

    def to_dict(self) -> dict:
        return {
            "kind": "orthogonal",
            "shape_zyx": list(self.shape_zyx),
            "voxel_nm": self.voxel_nm,
            "d_spacing_nm": self.d_spacing_nm,
            "theta_bragg_deg": self.theta_bragg_deg,
        }

    @property
    def stack_shape(self) -> tuple[int, int, int]:
        """Shape of a rocking scan's frame stack (step, row, col)."""
        return (self.num_rocking_steps, *self.frame_shape)

    def real_space_points_nm(self) -> np.ndarray:
        """Lab (z, y, x) position (nm) of every voxel of the grid conjugate to the frame stack.

        Shape (3, steps, rows, cols); index n // 2 of each axis is the origin. Stack axes map to
        lab x (step), z (row) and y (col).
        """
        n_x, n_z, n_y = self.stack_shape
        x, z, y = np.meshgrid(*[(np.arange(n) - n // 2) * self.voxel_nm for n in (n_x, n_z, n_y)], indexing="ij")
        return np.stack([z, y, x])

    @classmethod
    def from_dict(cls, d: dict) -> OrthogonalGeometry:
        """The geometry of a ``to_dict`` (every key required); ConfigError naming the key otherwise."""
        if d.get("kind", "orthogonal") != "orthogonal":
            raise ConfigError(f"unsupported geometry kind {d.get('kind')!r}")
        return dataclass_from_dict(cls, _TABLE, d, "orthogonal geometry")


_TABLE = dataclass_model(OrthogonalGeometry, required=True)  # to_dict's keys, type by type
