"""Coherent diffraction of the simulated particle: one detector frame per rocking angle.

The far field is the Fourier transform of rho (origin at index n // 2, as fftshift puts it).
A frame at rocking angle theta is the (q_z, q_y) plane at the fractional q_x pixel that the
geometry assigns to theta, evaluated by a direct sum over x, so any theta is valid.
"""

from __future__ import annotations

import numpy as np

from streamer.geometry import OrthogonalGeometry


class DiffractionModel:
    """Holds the partial transform of one particle state and renders frames from it."""

    def __init__(self, rho: np.ndarray, geometry: OrthogonalGeometry, *, peak_counts: float):
        if rho.shape != geometry.shape_zyx:
            raise ValueError(f"rho shape {rho.shape} does not match geometry {geometry.shape_zyx}")
        self.geometry = geometry
        # transform over (z, y) now; the x sum is done per frame at the requested q_x
        g = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(rho, axes=(0, 1)), axes=(0, 1)), axes=(0, 1))
        self._partial = g
        nx = geometry.shape_zyx[2]
        self._x = np.arange(nx) - nx // 2
        # scale so that the brightest voxel of the 3D intensity expects ``peak_counts`` per second
        full = np.abs(np.fft.fft(np.fft.ifftshift(g, axes=2), axis=2)) ** 2
        self._scale = peak_counts / full.max()

    def expected_frame(self, theta_deg: float, exposure_s: float) -> np.ndarray:
        """Mean counts (float) of the frame at ``theta_deg``."""
        nx = self.geometry.shape_zyx[2]
        k = self.geometry.rocking_index(theta_deg) - nx // 2
        kernel = np.exp(-2j * np.pi * k * self._x / nx)
        amp = self._partial @ kernel
        return np.abs(amp) ** 2 * (self._scale * exposure_s)

    def expected_volume(self, exposure_s: float) -> np.ndarray:
        """Mean counts of a whole scan on the grid, in lab order (q_z, q_y, q_x)."""
        full = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(self._partial, axes=2), axis=2), axes=2)
        return np.abs(full) ** 2 * (self._scale * exposure_s)
