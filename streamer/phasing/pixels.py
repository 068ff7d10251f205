"""What a binned voxel measured: the sum of its detector pixels' intensities, not the intensity at its centre.

Binning b pixels along an axis keeps the voxel and halves (b = 2) the field of view; a binned voxel sums the
intensity at b points a pixel apart, which the object's transform on the binned grid does not hold. Its
autocorrelation is multiplied by T(m) = mean_s cos(2 pi s m / (b n)) (s the pixels' offsets from the voxel's
centre, in pixels; m the lag in voxels, n the grid): with b = 2, cos(pi m / 2n), 0.71 at the largest lag. The
modulus step compares the measured intensity with |F|^2 so integrated: exact while the object fills less
than half the field of view, as the oversampling needs anyway (BENCHMARKS.md, "Binned pixels").
"""

from __future__ import annotations

import os

import numpy as np

from streamer.backend import is_numpy

RATIO_LIMIT = 3.0  # |F| / sqrt(integrated), at most: where the integrated intensity is near 0 (early iterates alias)


def binning_transfer(shape: tuple[int, int, int], binned: tuple[int, int, int]) -> np.ndarray | None:
    """T on the half spectrum of a real ``shape`` volume (float32, (z, y, x // 2 + 1)), or None when nothing is
    binned. ``binned``: pixels summed per voxel along each axis; the lag m of an axis of n voxels."""
    if len(binned) != 3 or any(int(b) < 1 for b in binned):
        raise ValueError(f"binned pixels must be three integers >= 1, got {binned}")
    if all(int(b) == 1 for b in binned):
        return None
    transfer = np.ones((shape[0], shape[1], shape[2] // 2 + 1), np.float64)
    for axis, (n, b) in enumerate(zip(shape, binned)):
        if int(b) == 1:
            continue
        lag = np.arange(n // 2 + 1) if axis == 2 else np.fft.fftfreq(n) * n
        offsets = np.arange(int(b)) - (int(b) - 1) / 2  # pixels from the voxel's centre
        factor = np.mean(np.cos(2 * np.pi * offsets[:, None] * lag[None, :] / (int(b) * n)), axis=0)
        view = [1, 1, 1]
        view[axis] = -1
        transfer = transfer * factor.reshape(view)
    return transfer.astype(np.float32)


class BinnedPixels:
    """The intensity of a batch of spectra as binned voxels measure it, in namespace ``xp`` (``None`` from
    ``make`` when nothing is binned)."""

    def __init__(self, xp, shape: tuple[int, int, int], transfer: np.ndarray, threads: int | None = None,
                 first: int = 0):
        self.xp, self.shape, self.threads = xp, tuple(shape), threads
        self.host = is_numpy(xp)  # FFTW (else scipy.fft) real transforms in float32, all threads
        # the transfer is 1 along the axes before the ``first`` binned one: they are not transformed (a detector's
        # 2 x 2 binning: 2D transforms of each rocking step's (row, col) plane, not 3D)
        self.axes, self.lengths = tuple(range(1 + first, 4)), self.shape[first:]  # transformed axes of a batch
        transfer = transfer[(slice(0, 1),) * first]
        self.transfer = transfer if self.host else xp.asarray(transfer)
        self._pairs: dict = {}  # batch -> FFTW buffers and plans (host)

    def input_buffer(self, batch: int):
        """The array ``intensity`` transforms (host FFTW), for |F|^2 to be written into at once; else None."""
        pair = self._host_pair(batch) if self.host else None
        return None if pair is None else pair[0]

    def _host_pair(self, batch: int):
        """(real, half, forward, backward) FFTW plans of a batch, made once; None without pyFFTW."""
        if batch not in self._pairs:
            try:
                import pyfftw
            except ImportError:
                self._pairs[batch] = None
                return None
            real = pyfftw.empty_aligned((batch, *self.shape), "float32")
            half = pyfftw.empty_aligned((batch, *self.shape[:2], self.shape[2] // 2 + 1), "complex64")
            threads = self.threads or os.cpu_count() or 1
            forward = pyfftw.FFTW(real, half, axes=self.axes, threads=threads, flags=("FFTW_ESTIMATE",))
            backward = pyfftw.FFTW(half, real, axes=self.axes, direction="FFTW_BACKWARD", threads=threads,
                                   flags=("FFTW_ESTIMATE",))
            self._pairs[batch] = (real, half, forward, backward)
        return self._pairs[batch]

    @classmethod
    def make(cls, xp, shape, binned, threads: int | None = None) -> BinnedPixels | None:
        transfer = binning_transfer(tuple(shape), tuple(binned))
        if transfer is None:
            return None
        return cls(xp, shape, transfer, threads, first=next(axis for axis, b in enumerate(binned) if int(b) > 1))

    def intensity(self, squared):
        """(P, z, y, x) |F|^2 in (float32), the binned voxels' intensity out (its sum kept)."""
        if self.host:
            pair = self._host_pair(squared.shape[0])
            if pair is not None:  # FFTW, planned by estimate (no planning time), buffers kept
                real, half, forward, backward = pair
                if squared is not real:
                    real[...] = squared
                forward()
                half *= self.transfer
                backward()  # normalised; overwrites ``real``: the caller reads it before the next call
                return real
            import scipy.fft

            workers = self.threads or os.cpu_count() or 1
            half = scipy.fft.rfftn(squared, axes=self.axes, workers=workers)
            half *= self.transfer
            return scipy.fft.irfftn(half, s=self.lengths, axes=self.axes, workers=workers)
        xp = self.xp
        half = xp.fft.rfftn(squared, axes=self.axes) * xp.astype(self.transfer, xp.complex64)
        return xp.fft.irfftn(half, s=self.lengths, axes=self.axes)

    def target(self, squared, summed, amplitude):
        """The amplitude the plain modulus step should give |F| so that the binned voxels meet the measured
        ``amplitude``: amplitude |F| / sqrt(summed), the ratio at most ``RATIO_LIMIT``."""
        xp = self.xp
        positive = summed > 0
        safe = xp.where(positive, summed, xp.ones_like(summed))
        ratio = xp.sqrt(xp.minimum(squared, safe * (RATIO_LIMIT * RATIO_LIMIT)) / safe)
        return xp.astype(amplitude * xp.where(positive, ratio, xp.ones_like(ratio)), xp.float32)

    def misfit(self, summed, amplitude, measured):
        """Per member, sum((sqrt(summed) - amplitude)^2) over the measured voxels."""
        xp = self.xp
        d = xp.sqrt(xp.maximum(summed, xp.zeros_like(summed))) - amplitude
        if measured is not None:
            d = xp.where(measured, d, xp.zeros_like(d))
        return xp.sum(d * d, axis=(1, 2, 3))
