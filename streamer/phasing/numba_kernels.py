"""The numba kernels of the CPU path (see streamer.phasing.kernels): module-level so numba caches them on disk.

complex64 rows are seen as interleaved float32 (re, im). Each helper is one simple loop over
contiguous slices starting at 0, the shape LLVM vectorises; the parallel kernels split the voxels
into tasks and call the helpers on each task's slices.
"""

from __future__ import annotations

import numba
import numpy as np

CHUNK = 1 << 13  # voxels per task (32 KiB of float32): a task's scratch stays in the L1/L2 cache
# error_model="numpy": no zero-division branch, so LLVM vectorises the loops (3x on AVX2)
OPTS = {"fastmath": True, "error_model": "numpy", "cache": True}
F32 = np.float32


@numba.njit(**OPTS)
def _squared(psi, out):
    for i in range(out.size):
        out[i] = psi[2 * i] * psi[2 * i] + psi[2 * i + 1] * psi[2 * i + 1]


@numba.njit(**OPTS)
def _modulus_factor(m2s, amp, measured, c):  # m2s: |psi|^2 in, the scale factor out
    tiny, acc = F32(1e-30), F32(0.0)
    for i in range(m2s.size):
        m2, a, m = m2s[i], amp[i], F32(measured[i])
        inv = F32(1.0) / np.sqrt(m2 + tiny)
        d = m * (m2 * inv * c - a)
        acc += d * d
        m2s[i] = m * (a * c * inv) + (F32(1.0) - m) * (c * c)
    return acc


@numba.njit(**OPTS)
def _scale(psi, factor, sign):  # sign -1: the conjugate out
    for i in range(factor.size):
        psi[2 * i] *= factor[i]
        psi[2 * i + 1] *= sign * factor[i]


@numba.njit(parallel=True, **OPTS)
def squared_magnitude(psi, c2, out):  # psi (P, 2N) float32, out (P, N) float32: |psi|^2 c2
    p, n = out.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for j in numba.prange(p * chunks):
        k, lo = j // chunks, (j % chunks) * CHUNK
        hi = min(lo + CHUNK, n)
        row = out[k, lo:hi]
        _squared(psi[k, 2 * lo:2 * hi], row)
        for i in range(row.size):
            row[i] *= c2


@numba.njit(**OPTS)
def _binned_factor(m2s, summed, amp, measured, c, limit2):  # m2s: |psi|^2 in, the scale factor out
    tiny, acc, c2 = F32(1e-30), F32(0.0), c * c
    for i in range(m2s.size):
        m2, s, a, m = m2s[i] * c2, summed[i], amp[i], F32(measured[i])
        d = m * (np.sqrt(max(s, F32(0.0))) - a)
        acc += d * d
        # the target a |psi| c / sqrt(s), the ratio at most sqrt(limit2); the scale a / sqrt(s) c, or c^2 unmeasured
        ratio2 = min(m2, limit2 * s) / (s + tiny) if s > 0 else F32(1.0)
        factor = a * np.sqrt(ratio2 / (m2 + tiny)) * c * c
        m2s[i] = m * factor + (F32(1.0) - m) * (c * c)
    return acc


@numba.njit(parallel=True, **OPTS)
def modulus(psi, summed, amp, measured, c, limit2, sign):  # psi (P, 2N) float32, amp (N,) float32, measured (N,) uint8
    # summed (P, N): binned voxels' intensity, the binned step (_binned_factor); (P, 0): the plain one
    p, n = psi.shape[0], amp.size
    binned = summed.shape[1] > 0
    chunks = (n + CHUNK - 1) // CHUNK
    partial = np.zeros(p * chunks, np.float64)
    for j in numba.prange(p * chunks):
        k, lo = j // chunks, (j % chunks) * CHUNK
        hi = min(lo + CHUNK, n)
        row, factor = psi[k, 2 * lo:2 * hi], np.empty(hi - lo, np.float32)
        _squared(row, factor)
        if binned:
            partial[j] = _binned_factor(factor, summed[k, lo:hi], amp[lo:hi], measured[lo:hi], c, limit2)
        else:
            partial[j] = _modulus_factor(factor, amp[lo:hi], measured[lo:hi], c)
        _scale(row, factor, sign)
    return partial.reshape(p, chunks).sum(axis=1)


@numba.njit(**OPTS)
def _update(rho, rho_p, support, a, b, sign):  # sign -1: rho_p holds the conjugate
    for i in range(support.size):
        m = F32(support[i])
        x0, x1 = rho_p[2 * i], sign * rho_p[2 * i + 1]
        rho[2 * i] = m * x0 + (F32(1.0) - m) * (a * rho[2 * i] + b * x0)
        rho[2 * i + 1] = m * x1 + (F32(1.0) - m) * (a * rho[2 * i + 1] + b * x1)


@numba.njit(**OPTS)
def _update_magnitude(rho, rho_p, support, a, b, sign, magnitude):
    for i in range(support.size):
        m = F32(support[i])
        x0, x1 = rho_p[2 * i], sign * rho_p[2 * i + 1]
        r0 = m * x0 + (F32(1.0) - m) * (a * rho[2 * i] + b * x0)
        r1 = m * x1 + (F32(1.0) - m) * (a * rho[2 * i + 1] + b * x1)
        rho[2 * i], rho[2 * i + 1] = r0, r1
        magnitude[i] = np.sqrt(r0 * r0 + r1 * r1)


@numba.njit(parallel=True, **OPTS)
def update(rho, rho_p, support, a, b, sign, magnitude):  # (P, 2N) float32 x2, (P, N) uint8, (P, N) float32 or (0, 0)
    p, n = support.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for j in numba.prange(p * chunks):
        k, lo = j // chunks, (j % chunks) * CHUNK
        hi = min(lo + CHUNK, n)
        if magnitude.shape[0]:
            _update_magnitude(rho[k, 2 * lo:2 * hi], rho_p[k, 2 * lo:2 * hi], support[k, lo:hi], a, b, sign,
                              magnitude[k, lo:hi])
        else:
            _update(rho[k, 2 * lo:2 * hi], rho_p[k, 2 * lo:2 * hi], support[k, lo:hi], a, b, sign)


@numba.njit(**OPTS)
def _scaled(y, a, x):
    for i in range(y.size):
        y[i] = a * x[i]


@numba.njit(**OPTS)
def _add_pair(y, a, x0, x1):
    for i in range(y.size):
        y[i] += a * (x0[i] + x1[i])


@numba.njit(**OPTS)
def _add_pairs4(y, x0, x1, x2, x3, x4, x5, x6, x7, w0, w1, w2, w3):
    for i in range(y.size):
        y[i] += w0 * (x0[i] + x1[i]) + w1 * (x2[i] + x3[i]) + w2 * (x4[i] + x5[i]) + w3 * (x6[i] + x7[i])


@numba.njit(**OPTS)
def _weighted_sum(out, flat, offsets, w):
    """out = sum_k w[k] flat[offsets[k]:][:out.size] for symmetric taps: the centre, then pairs, four at a time."""
    n, r = out.size, (w.size - 1) // 2
    _scaled(out, w[r], flat[offsets[r]:offsets[r] + n])
    k = 0
    while k + 4 <= r:
        o, m = offsets[k:k + 4], offsets[w.size - 4 - k:w.size - k]  # taps k.. and their mirrors
        _add_pairs4(out, flat[o[0]:o[0] + n], flat[m[3]:m[3] + n], flat[o[1]:o[1] + n], flat[m[2]:m[2] + n],
                    flat[o[2]:o[2] + n], flat[m[1]:m[1] + n], flat[o[3]:o[3] + n], flat[m[0]:m[0] + n],
                    w[k], w[k + 1], w[k + 2], w[k + 3])
        k += 4
    for t in range(k, r):
        m = offsets[w.size - 1 - t]
        _add_pair(out, w[t], flat[offsets[t]:offsets[t] + n], flat[m:m + n])


@numba.njit(**OPTS)
def _row_ends(plane, body, w, taps):
    """The r voxels at both ends of every row of ``plane`` (ny, nx), where the convolution wraps around the
    row: the 2r last and 2r first voxels of each row side by side in a strip, convolved as one line."""
    ny, nx = plane.shape
    r = (w.size - 1) // 2
    strip = np.empty((ny, 4 * r), np.float32)
    for y in range(ny):
        strip[y, :2 * r] = plane[y, nx - 2 * r:]
        strip[y, 2 * r:] = plane[y, :2 * r]
    out = np.empty(ny * 4 * r, np.float32)
    _weighted_sum(out[r:ny * 4 * r - r], strip.reshape(-1), taps, w)
    for y in range(ny):
        body[y * nx + nx - r:(y + 1) * nx] = out[y * 4 * r + r:y * 4 * r + 2 * r]
        body[y * nx:y * nx + r] = out[y * 4 * r + 2 * r:y * 4 * r + 3 * r]


@numba.njit(**OPTS)
def _blur_plane(plane, out, rows, w, taps):
    """One (ny, nx) plane convolved along x then y, wrapping around, into ``out`` (ny*nx,); ``rows`` is
    scratch of (ny + 2r) * nx."""
    ny, nx = plane.shape
    r, n = (w.size - 1) // 2, ny * nx
    body = rows[r * nx:r * nx + n]
    _weighted_sum(body[r:n - r], plane.reshape(-1), taps, w)  # the plane as one line, then the row ends
    if r:
        _row_ends(plane, body, w, taps)
    rows[:r * nx] = body[n - r * nx:]
    rows[r * nx + n:] = body[:r * nx]
    _weighted_sum(out, rows, taps * nx, w)


@numba.njit(**OPTS)
def _peak_bits(bits):
    """The largest of non-negative float32 values seen as int32 (the same order): LLVM vectorises an integer
    maximum, not a float one (8x faster here)."""
    m = bits[0]
    for i in range(bits.size):
        m = max(m, bits[i])
    return m


@numba.njit(parallel=True, **OPTS)
def blur_peak(src, dst, w, peaks, runs):
    """(P, nz, ny, nx) float32 >= 0 convolved along x, y and z, wrapping around; peaks (P, nz): each plane's maximum.

    Each task takes ``runs`` of a member's planes in order, keeping the 2r + 1 planes blurred across
    (x, y) that the z sum needs in a ring in cache: the whole blur reads and writes the volume once.
    """
    p, nz, ny, nx = src.shape
    k_taps, r, n = w.size, (w.size - 1) // 2, ny * nx
    taps = np.arange(k_taps)
    per = (nz + runs - 1) // runs
    peak_bits = peaks.view(np.int32)  # blurred |rho|: non-negative, so the int32 bits sort as the floats do
    for j in numba.prange(p * runs):
        k, z0 = j // runs, (j % runs) * per
        z1 = min(nz, z0 + per)
        if z0 >= z1:
            continue
        ring = np.empty(k_taps * n, np.float32)  # plane z' of the run sits at slot (z' - z0 + r) % k_taps
        rows = np.empty(n + 2 * r * nx, np.float32)
        offsets = np.empty(k_taps, np.int64)
        for zz in range(z0 - r, z0 + r):
            slot = (zz - z0 + r) % k_taps
            _blur_plane(src[k, zz % nz], ring[slot * n:(slot + 1) * n], rows, w, taps)
        for z in range(z0, z1):
            slot = (z + r - z0 + r) % k_taps
            _blur_plane(src[k, (z + r) % nz], ring[slot * n:(slot + 1) * n], rows, w, taps)
            for t in range(k_taps):
                offsets[t] = ((z - r + t - z0 + r) % k_taps) * n
            out = dst[k, z].reshape(-1)
            _weighted_sum(out, ring, offsets, w)
            peak_bits[k, z] = _peak_bits(out.view(np.int32))


@numba.njit(**OPTS)
def _above(values, limit, out):
    for i in range(values.size):
        out[i] = values[i] > limit


@numba.njit(parallel=True, **OPTS)
def threshold(values, limits, out):  # (P, N) float32, (P,) float32, (P, N) uint8
    p, n = values.shape
    chunks = (n + CHUNK - 1) // CHUNK
    for j in numba.prange(p * chunks):
        k, lo = j // chunks, (j % chunks) * CHUNK
        hi = min(lo + CHUNK, n)
        _above(values[k, lo:hi], limits[k], out[k, lo:hi])


@numba.njit(inline="always", **OPTS)
def _from_centre(j, h, n):  # index (FFT order) of the j-th voxel of a line of n read from its centre h = n // 2
    return j - h if j >= h else j - h + n


@numba.njit(**OPTS)
def _fill_line(src, out):  # a line read about its centre (FFT order): set between its first and last set voxel
    n = src.size
    h = n // 2
    first, last = -1, -1
    for j in range(n):
        if src[_from_centre(j, h, n)]:
            if first < 0:
                first = j
            last = j
    for j in range(first + 1, last):
        out[_from_centre(j, h, n)] = 1


@numba.njit(parallel=True, **OPTS)
def fill_lines(src, out):  # (P, Z, Y, X) uint8 each, out a copy of src: the union of the fills along x, y and z
    p, nz, ny, nx = src.shape
    for j in numba.prange(p * nz):  # lines along x and y lie in the plane (k, z)
        k, z = j // nz, j % nz
        for y in range(ny):
            _fill_line(src[k, z, y, :], out[k, z, y, :])
        for x in range(nx):
            _fill_line(src[k, z, :, x], out[k, z, :, x])
    h = nz // 2
    for k in numba.prange(p):  # along z: every (y, x) column at once, plane by plane
        first = np.full(ny * nx, -1, np.int64)
        last = np.full(ny * nx, -1, np.int64)
        for j in range(nz):
            plane = src[k, _from_centre(j, h, nz)].reshape(-1)
            for q in range(plane.size):
                if plane[q]:
                    if first[q] < 0:
                        first[q] = j
                    last[q] = j
        for j in range(nz):
            plane = out[k, _from_centre(j, h, nz)].reshape(-1)
            for q in range(plane.size):
                if first[q] < j < last[q]:
                    plane[q] = 1
