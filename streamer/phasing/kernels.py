"""The element-wise and stencil steps of every iteration, fused where it pays.

* ``modulus(psi, amplitude, measured, c)``: the Fourier (modulus) projection of an unnormalised
  spectrum ``psi`` (P, z, y, x) in one pass: measured pixels take the amplitude ``amplitude * c``
  and keep their phase (an exact zero stays zero), unmeasured ones are scaled by ``c**2`` (so an unnormalised inverse gives the
  orthonormal result). Returns (psi, per-member sum of (|psi| c - amplitude)^2 over measured pixels);
  with ``conjugate=True`` psi holds the projection's conjugate (for an FFTW plan's ``inverse_conjugate``).
* ``update(rho, rho_p, support, a, b)``: rho <- rho_p inside the support, a*rho + b*rho_p outside
  (ER: a = b = 0; HIO: a = 1, b = -beta; RAAR: a = beta, b = 1 - 2 beta); optionally also |rho|;
  ``conjugated=True``: ``rho_p`` holds the conjugate of the projected object.
* ``shrink_support(magnitude, sigma, threshold)``: the shrink-wrap support, from the magnitude
  convolved with a truncated Gaussian (separable, periodic: the object is in FFT order), as
  scipy.ndimage.gaussian_filter(mode="wrap") computes it; cheaper on a CPU than an FFT pair.
* ``fill_lines(support)``: the support filled between its first and last voxel on every line along
  z, y and x (each line read about the grid's centre: the object sits about index 0 in FFT order).

Numpy arrays go through numba kernels (one pass, all cores, in place), cupy arrays through
ElementwiseKernels where one exists, any other namespace through plain ``xp`` code (new arrays):
the same arithmetic, so array-api-strict checks the algorithm the GPU runs.
"""

from __future__ import annotations

import math
from functools import lru_cache

from streamer.backend import is_numpy


def _namespace_kind(xp) -> str:
    if is_numpy(xp):
        return "numba" if _numba_kernels() is not None else "xp"
    import array_api_compat

    return "cupy" if array_api_compat.is_cupy_namespace(xp) else "xp"


@lru_cache(maxsize=1)
def _numba_kernels():
    try:
        from streamer.phasing import numba_kernels as nk
    except ImportError:
        return None
    return nk.modulus, nk.update, nk.blur_peak, nk.threshold, nk.fill_lines, nk.squared_magnitude


@lru_cache(maxsize=1)
def preload_numba_kernels() -> bool:
    """Load the numba kernels' cached machine code for the argument types the CPU path passes, without running
    them: a process pays this once (about 0.5 s; later calls return at once), and a caller may do it on a thread
    while it reads its input. False when numba is missing."""
    kernels = _numba_kernels()
    if kernels is None:
        return False
    import numba
    import numpy as np

    modulus, update, blur_peak, threshold, fill_lines, squared_magnitude = kernels
    f32 = np.float32(1.0)
    pairs, values, flags = np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32), np.zeros((1, 1), np.uint8)
    volume, weights = np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)
    signatures = ((modulus, (pairs, values, weights, flags[0], f32, f32, f32)),
                  (update, (pairs, pairs, flags, f32, f32, f32, values)),
                  (blur_peak, (volume, volume, weights, values, 1)),
                  (threshold, (values, weights, flags)),
                  (fill_lines, (volume.astype(np.uint8), volume.astype(np.uint8))),
                  (squared_magnitude, (pairs, f32, values)))
    for kernel, args in signatures:
        kernel.compile(tuple(numba.typeof(a) for a in args))
    return True


# cupy ElementwiseKernels: (inputs, outputs, CUDA body, name); ops/gpu/check_cuda_kernels.py compiles them
# with NVRTC on a machine without a GPU.
CUDA_KERNELS = {
    "modulus": ("float32 amp, bool measured, float32 c", "complex64 psi, float32 d2", """
        float re = psi.real(), im = psi.imag();
        if (measured) {
            float m2 = re * re + im * im;
            float d;
            if (m2 > 0.f) { float inv = rsqrtf(m2); d = m2 * inv * c - amp; float f = amp * c * inv;
                            psi = complex<float>(re * f, im * f); }
            else { d = -amp; }
            d2 = d * d;
        } else { psi = complex<float>(re * c * c, im * c * c); d2 = 0.f; }
        """, "bcdi_modulus"),
    "update": ("complex64 rho_p, bool support, float32 a, float32 b", "complex64 rho",
               "rho = support ? rho_p : complex<float>(a) * rho + complex<float>(b) * rho_p;", "bcdi_update"),
}


@lru_cache(maxsize=1)
def _cupy_kernels():
    import cupy

    return tuple(cupy.ElementwiseKernel(*CUDA_KERNELS[name]) for name in ("modulus", "update"))


@lru_cache(maxsize=64)
def gaussian_weights(sigma: float, shape: tuple[int, ...]) -> tuple[float, ...]:
    """Normalised taps of a Gaussian of ``sigma`` voxels, truncated at 4 sigma (as scipy.ndimage), and
    at half the smallest axis so a wrapped convolution of ``shape`` never sees a tap twice."""
    radius = max(0, min(int(4.0 * sigma + 0.5), min(shape) // 2))
    taps = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)]
    total = sum(taps)
    return tuple(t / total for t in taps)


def _wrapped_convolve(xp, a, weights, axis: int):
    """``a`` convolved with ``weights`` along ``axis``, periodic (the object is in FFT order)."""
    n, r = a.shape[axis], (len(weights) - 1) // 2

    def along(sl):
        return tuple(sl if d == axis else slice(None) for d in range(a.ndim))

    padded = xp.concat([a[along(slice(n - r, n))], a, a[along(slice(0, r))]], axis=axis) if r else a
    out = None
    for k, w in enumerate(weights):
        term = padded[along(slice(k, k + n))] * w
        out = term if out is None else out + term
    return out


class Kernels:
    """The fused steps for one namespace; ``measured`` may be None (every pixel measured)."""

    def __init__(self, xp, threads: int | None = None):
        self.xp = xp
        self.kind = _namespace_kind(xp)
        self._scratch = None  # cupy: per-voxel misfit of the last projection
        self._all_measured = None  # the mask of "every pixel measured", made once per shape
        self._empty_sums = None  # the numba modulus kernel's "not binned" (``_no_sums``)
        self._buffers: dict = {}  # numba: reused float32 arrays by name
        self.threads = threads  # numba threads for this caller (None: numba's default, all cores)

    def _numba_threads(self):
        import numba

        most = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(min(self.threads, most) if self.threads else most)

    def buffer(self, name: str, shape: tuple[int, ...]):
        """A float32 array of ``shape`` kept under ``name`` and handed out again while the shape holds."""
        import numpy as np

        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = self._buffers[name] = np.empty(shape, np.float32)
        return buf

    def _flat_measured(self, amp, measured):
        import numpy as np

        if measured is not None:
            return measured.reshape(-1).view(np.uint8)
        if self._all_measured is None or self._all_measured.size != amp.size:
            self._all_measured = np.ones(amp.size, np.uint8)
        return self._all_measured

    def _no_sums(self, p: int):
        """The (P, 0) ``summed`` that tells the numba modulus kernel the data are not binned."""
        import numpy as np

        if self._empty_sums is None or self._empty_sums.shape[0] != p:
            self._empty_sums = np.zeros((p, 0), np.float32)
        return self._empty_sums

    def squared_magnitude(self, psi, c: float, out=None):
        """|psi|^2 c^2, float32, psi's shape (numba: into ``out`` or a kept buffer)."""
        xp = self.xp
        if self.kind != "numba":
            return xp.real(psi * xp.conj(psi)) * xp.asarray(c * c, dtype=xp.float32)
        import numpy as np

        self._numba_threads()
        out = self.buffer("squared", tuple(psi.shape)) if out is None else out
        p = psi.shape[0]
        _numba_kernels()[5](psi.reshape(p, -1).view(np.float32), np.float32(c * c), out.reshape(p, -1))
        return out

    def _numba_modulus(self, psi, summed, amp, measured, c: float, limit: float, conjugate: bool):
        """The one numba modulus kernel on a block: ``summed`` (P, N) binned, or (P, 0) plain."""
        import numpy as np

        self._numba_threads()
        p = psi.shape[0]
        sums = _numba_kernels()[0](psi.reshape(p, -1).view(np.float32), summed.reshape(p, -1), amp.reshape(-1),
                                   self._flat_measured(amp, measured), np.float32(c), np.float32(limit * limit),
                                   np.float32(-1.0 if conjugate else 1.0))
        return psi, sums

    def binned_modulus(self, psi, summed, amp, measured, c: float, limit: float, *, conjugate: bool = False):
        """The numba modulus step against binned voxels' intensity ``summed`` (pixels.py): psi scaled towards
        amp / sqrt(summed), the ratio |psi| c / sqrt(summed) at most ``limit``; per member misfit of sqrt(summed)."""
        return self._numba_modulus(psi, summed, amp, measured, c, limit, conjugate)

    def modulus(self, psi, amp, measured, c: float, *, conjugate: bool = False):
        xp = self.xp
        if self.kind == "numba":
            return self._numba_modulus(psi, self._no_sums(psi.shape[0]), amp, measured, c, 1.0, conjugate)
        if conjugate:  # only FFTW plans ask for it: numpy, here without numba
            projected, sums = self.modulus(psi, amp, measured, c)
            return xp.conj(projected), sums
        if self.kind == "cupy":
            modulus, _ = _cupy_kernels()
            if self._scratch is None or self._scratch.shape != psi.shape:
                self._scratch = xp.empty(psi.shape, dtype=xp.float32)
            if measured is None:
                if self._all_measured is None or self._all_measured.shape != amp.shape:
                    self._all_measured = xp.ones(amp.shape, dtype=xp.bool)
                measured = self._all_measured
            modulus(amp, measured, xp.float32(c), psi, self._scratch)
            return psi, xp.sum(self._scratch, axis=(1, 2, 3))
        mag = xp.abs(psi)
        safe = xp.where(mag > 0, mag, xp.ones_like(mag))  # a zero stays zero: its phase is undefined
        projected = psi * xp.astype(amp * c / safe, psi.dtype)
        d = mag * c - amp
        if measured is not None:
            projected = xp.where(measured, projected, psi * (c * c))
            d = xp.where(measured, d, xp.zeros_like(d))
        return projected, xp.sum(d * d, axis=(1, 2, 3))

    def update(self, rho, rho_p, support, a: float, b: float, *, magnitude_out=None, conjugated: bool = False):
        """The support step, in place where the namespace allows; numba also writes |rho| into
        ``magnitude_out`` (float32, rho's shape) in the same pass, for a shrink-wrap to follow."""
        xp = self.xp
        if self.kind == "numba":
            import numpy as np

            update = _numba_kernels()[1]
            self._numba_threads()
            p = rho.shape[0]
            flat_mag = np.empty((0, 0), np.float32) if magnitude_out is None else magnitude_out.reshape(p, -1)
            update(rho.reshape(p, -1).view(np.float32), rho_p.reshape(p, -1).view(np.float32),
                   support.reshape(p, -1).view(np.uint8), np.float32(a), np.float32(b),
                   np.float32(-1.0 if conjugated else 1.0), flat_mag)
            return rho
        if conjugated:
            rho_p = xp.conj(rho_p)
        if magnitude_out is not None:
            raise ValueError("magnitude_out is for the numba kernels; elsewhere take xp.abs(rho)")
        if self.kind == "cupy":
            _, update = _cupy_kernels()
            update(rho_p, support, xp.float32(a), xp.float32(b), rho)
            return rho
        outside = rho * a + rho_p * b if (a or b) else xp.zeros_like(rho)
        return xp.where(support, rho_p, outside)

    def blur(self, values, sigma: float):
        """(P, z, y, x) float32 convolved with a Gaussian of ``sigma`` voxels (truncated, wrapped), per member
        (numba: into a buffer that the next blur reuses)."""
        if self.kind != "numba":
            weights = gaussian_weights(round(float(sigma), 3), tuple(values.shape[1:]))
            for axis in (3, 2, 1):
                values = _wrapped_convolve(self.xp, values, weights, axis)
            return values
        return self._numba_blur(values, sigma)[0]

    def _numba_blur(self, values, sigma: float):
        """(blurred values in a reused buffer, each member's peak); the values must be >= 0 for the peak."""
        import numba
        import numpy as np

        weights = gaussian_weights(round(float(sigma), 3), tuple(values.shape[1:]))
        blur_peak = _numba_kernels()[2]
        self._numba_threads()
        p, nz = values.shape[:2]
        out, peaks = self.buffer("blurred", tuple(values.shape)), self.buffer("peaks", (p, nz))
        runs = -(-numba.get_num_threads() // p)  # enough runs of planes for every thread
        blur_peak(np.ascontiguousarray(values, np.float32), out, np.asarray(weights, np.float32), peaks, runs)
        return out, peaks.max(axis=1)

    def shrink_support(self, magnitude, sigma: float, threshold: float):
        """The shrink-wrap support: where the blurred magnitude (>= 0, as |rho|) exceeds ``threshold`` x its peak,
        per member."""
        if self.kind != "numba":
            xp = self.xp
            blurred = self.blur(magnitude, sigma)
            return blurred > threshold * xp.max(blurred, axis=(1, 2, 3), keepdims=True)
        import numpy as np

        blurred, peaks = self._numba_blur(magnitude, sigma)
        p = blurred.shape[0]
        support = np.empty(blurred.shape, bool)
        _numba_kernels()[3](blurred.reshape(p, -1), (np.float32(threshold) * peaks).astype(np.float32),
                            support.reshape(p, -1).view(np.uint8))
        return support

    def fill_lines(self, support):
        """``support`` (P, z, y, x) bool, FFT order, filled between its first and last voxel on every line along z,
        y and x (the union of the three fills), per member: a convex particle's support is unchanged; an empty slab
        or a hole across one is closed."""
        if self.kind == "numba":
            import numpy as np

            src = np.ascontiguousarray(support, bool)
            out = src.copy()
            _numba_kernels()[4](src.view(np.uint8), out.view(np.uint8))
            return out
        xp = self.xp
        axes = (1, 2, 3)
        half = tuple(n // 2 for n in support.shape[1:])
        centred = xp.roll(support, half, axis=axes)
        out = centred
        for axis in axes:
            count = xp.cumulative_sum(xp.astype(centred, xp.int16), axis=axis, dtype=xp.int16)
            total = count[(slice(None),) * axis + (slice(-1, None), ...)]
            out = out | ((count > 0) & (count < total))
        return xp.roll(out, tuple(-h for h in half), axis=axes)
