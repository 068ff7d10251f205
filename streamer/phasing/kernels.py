"""The two element-wise steps of every iteration, fused where it pays.

* ``modulus(psi, amplitude, measured, c)``: the Fourier (modulus) projection of an unnormalised
  spectrum ``psi`` (P, z, y, x) in one pass: measured pixels take the amplitude ``amplitude * c``
  and keep their phase (an exact zero stays zero), unmeasured ones are scaled by ``c**2`` (so an unnormalised inverse gives the
  orthonormal result). Returns (psi, per-member sum of (|psi| c - amplitude)^2 over measured pixels).
* ``update(rho, rho_p, support, a, b)``: rho <- rho_p inside the support, a*rho + b*rho_p outside
  (ER: a = b = 0; HIO: a = 1, b = -beta; RAAR: a = beta, b = 2 beta - 1).

Numpy arrays go through numba kernels (one pass, all cores, in place), cupy arrays through
ElementwiseKernels, any other namespace through plain ``xp`` code (new arrays): the same
arithmetic, so array-api-strict checks the algorithm the GPU runs.
"""

from __future__ import annotations

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
        import numba
        import numpy as np
    except ImportError:
        return None

    chunk = 1 << 15  # voxels per task: one parallel region per call, whatever the batch size

    # complex64 arrays are seen as interleaved float32 (re, im): branch-free loops that vectorise
    @numba.njit(parallel=True, fastmath=True, cache=True)
    def modulus(psi, amp, measured, c):  # psi (P, 2N) float32, amp (N,) float32, measured (N,) uint8
        p, n = psi.shape[0], amp.size
        chunks = (n + chunk - 1) // chunk
        partial = np.zeros(p * chunks, np.float64)
        c2 = c * c
        tiny = np.float32(1e-30)
        for j in numba.prange(p * chunks):
            k, lo = j // chunks, (j % chunks) * chunk
            acc = np.float32(0.0)
            for i in range(lo, min(lo + chunk, n)):
                re, im = psi[k, 2 * i], psi[k, 2 * i + 1]
                m = np.float32(measured[i])
                m2 = re * re + im * im
                inv = np.float32(1.0) / np.sqrt(m2 + tiny)
                d = m * (m2 * inv * c - amp[i])
                acc += d * d
                f = m * (amp[i] * c * inv) + (np.float32(1.0) - m) * c2
                psi[k, 2 * i] = re * f
                psi[k, 2 * i + 1] = im * f
            partial[j] = acc
        return partial.reshape(p, chunks).sum(axis=1)

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def update(rho, rho_p, support, a, b):  # (P, 2N) float32, float32, (P, N) uint8
        p, n = support.shape
        chunks = (n + chunk - 1) // chunk
        for j in numba.prange(p * chunks):
            k, lo = j // chunks, (j % chunks) * chunk
            for i in range(lo, min(lo + chunk, n)):
                m = np.float32(support[k, i])
                for t in range(2):
                    x = rho_p[k, 2 * i + t]
                    rho[k, 2 * i + t] = m * x + (np.float32(1.0) - m) * (a * rho[k, 2 * i + t] + b * x)

    return modulus, update


@lru_cache(maxsize=1)
def _cupy_kernels():
    import cupy

    modulus = cupy.ElementwiseKernel(
        "float32 amp, bool measured, float32 c", "complex64 psi, float32 d2",
        """
        float re = psi.real(), im = psi.imag();
        if (measured) {
            float m2 = re * re + im * im;
            float d;
            if (m2 > 0.f) { float inv = rsqrtf(m2); d = m2 * inv * c - amp; float f = amp * c * inv;
                            psi = complex<float>(re * f, im * f); }
            else { d = -amp; }
            d2 = d * d;
        } else { psi = complex<float>(re * c * c, im * c * c); d2 = 0.f; }
        """, "bcdi_modulus")
    update = cupy.ElementwiseKernel(
        "complex64 rho_p, bool support, float32 a, float32 b", "complex64 rho",
        "rho = support ? rho_p : complex<float>(a) * rho + complex<float>(b) * rho_p;", "bcdi_update")
    return modulus, update


class Kernels:
    """The fused steps for one namespace; ``measured`` may be None (every pixel measured)."""

    def __init__(self, xp, threads: int | None = None):
        self.xp = xp
        self.kind = _namespace_kind(xp)
        self._scratch = None  # cupy: per-voxel misfit of the last projection
        self._all_measured = None  # the mask of "every pixel measured", made once per shape
        self.threads = threads  # numba threads for this caller (None: numba's default, all cores)

    def _numba_threads(self):
        import numba

        most = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(min(self.threads, most) if self.threads else most)

    def modulus(self, psi, amp, measured, c: float):
        xp = self.xp
        if self.kind == "numba":
            import numpy as np

            modulus, _ = _numba_kernels()
            self._numba_threads()
            if measured is None:
                if self._all_measured is None or self._all_measured.size != amp.size:
                    self._all_measured = np.ones(amp.size, np.uint8)
                flat_meas = self._all_measured
            else:
                flat_meas = measured.reshape(-1).view(np.uint8)
            p = psi.shape[0]
            sums = modulus(psi.reshape(p, -1).view(np.float32), amp.reshape(-1), flat_meas, np.float32(c))
            return psi, sums
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

    def update(self, rho, rho_p, support, a: float, b: float):
        xp = self.xp
        if self.kind == "numba":
            import numpy as np

            _, update = _numba_kernels()
            self._numba_threads()
            p = rho.shape[0]
            update(rho.reshape(p, -1).view(np.float32), rho_p.reshape(p, -1).view(np.float32),
                   support.reshape(p, -1).view(np.uint8), np.float32(a), np.float32(b))
            return rho
        if self.kind == "cupy":
            _, update = _cupy_kernels()
            update(rho_p, support, xp.float32(a), xp.float32(b), rho)
            return rho
        outside = rho * a + rho_p * b if (a or b) else xp.zeros_like(rho)
        return xp.where(support, rho_p, outside)
