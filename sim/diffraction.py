"""Coherent diffraction of the simulated particle: one detector frame per rocking step.

The particle is sampled on the real-space grid conjugate to the geometry's (step, row, col)
grid (sheared for a ``DetectorGeometry``), so a discrete Fourier transform gives the intensity at
exactly the q each detector pixel sees at each step (origin at index n // 2, as fftshift puts it).
The 3D intensity is computed once per particle state; a frame at a grid step is a slice of it,
and a frame between steps is a direct sum over the rocking axis.
"""

from __future__ import annotations

import numpy as np

from streamer.geometry import STACK_TO_LAB_AXES, OrthogonalGeometry

LAB_TO_STACK_AXES = (2, 0, 1)  # (z, y, x) -> (x, z, y): rocking steps sample x, rows z, columns y


class DiffractionModel:
    """Holds one particle state's transform and renders mean-count frames from it.

    ``rho``: the complex image on the geometry's real-space grid (lab order for an orthogonal
    geometry, stack order otherwise; see ``sim.particle.complex_image``). Intensities are scaled so
    that ``peak_counts`` counts per second fall in the brightest voxel, or, with ``reference_sum``
    (sum of |rho| of the particle without defects), in the brightest voxel of that perfect crystal,
    so that defects and mosaic spread lower the peak as they do on a real detector.
    """

    def __init__(self, rho: np.ndarray, geometry, *, peak_counts: float, reference_sum: float | None = None):
        self.geometry = geometry
        orthogonal = isinstance(geometry, OrthogonalGeometry)
        expected = geometry.shape_zyx if orthogonal else geometry.stack_shape
        if rho.shape != tuple(expected):
            raise ValueError(f"rho shape {rho.shape} does not match geometry {tuple(expected)}")
        if not peak_counts > 0:
            raise ValueError(f"peak_counts must be > 0, got {peak_counts}")
        stack = np.transpose(rho, LAB_TO_STACK_AXES) if orthogonal else rho
        # transform over (row, col) once; the rocking axis is done at once for the grid steps and
        # per frame for steps in between
        self._partial = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(stack, axes=(1, 2)), axes=(1, 2)), axes=(1, 2))
        full = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(self._partial, axes=0), axis=0), axes=0)
        intensity = (full.real**2 + full.imag**2)
        norm = float(intensity.max()) if reference_sum is None else float(reference_sum) ** 2
        if not norm > 0:
            raise ValueError("the particle has no scattering volume on this grid")
        self._scale = peak_counts / norm
        self._intensity = (intensity * self._scale).astype(np.float32)  # counts per second
        n = stack.shape[0]
        self._m = np.arange(n) - n // 2

    @property
    def intensity_per_s(self) -> np.ndarray:
        """Mean counts per second of every (step, row, col) of a scan (float32, read-only view)."""
        view = self._intensity.view()
        view.flags.writeable = False
        return view

    def expected_step(self, step: int, exposure_s: float) -> np.ndarray:
        """Mean counts (float32) of the frame at integer rocking step ``step``."""
        return self._intensity[step] * np.float32(exposure_s)

    def expected_frame(self, theta_deg: float, exposure_s: float) -> np.ndarray:
        """Mean counts of the frame at rocking angle ``theta_deg`` (any angle)."""
        s = self.geometry.rocking_index(theta_deg)
        k = round(s)
        if abs(s - k) < 1e-9 and 0 <= k < self._intensity.shape[0]:
            return self._intensity[k].astype(float) * exposure_s
        n = self._intensity.shape[0]
        kernel = np.exp(-2j * np.pi * (s - n // 2) * self._m / n)
        amp = np.tensordot(kernel, self._partial, axes=(0, 0))  # rocking axis in centred order
        return (amp.real**2 + amp.imag**2) * (self._scale * exposure_s)

    def expected_stack(self, exposure_s: float) -> np.ndarray:
        """Mean counts of a whole scan in stack order (step, row, col)."""
        return self._intensity.astype(float) * exposure_s

    def expected_volume(self, exposure_s: float) -> np.ndarray:
        """Mean counts of a whole scan in lab order (q_z, q_y, q_x); orthogonal geometry only."""
        if not isinstance(self.geometry, OrthogonalGeometry):
            raise TypeError("expected_volume needs an orthogonal geometry; use expected_stack and "
                             "geometry.intensity_to_orthogonal")
        return np.transpose(self.expected_stack(exposure_s), STACK_TO_LAB_AXES)

    def amplitude_stack(self) -> np.ndarray:
        """Complex far field (sqrt of counts per second, with phase) of every (step, row, col)."""
        full = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(self._partial, axes=0), axis=0), axes=0)
        return full * np.sqrt(self._scale)
