"""Remove the ambiguities of a reconstruction against a reference: translation, twin, phase offset.

A retrieved object is only defined up to a global phase, a translation and the twin image
rho(r) <-> conj(rho(-r)); comparing or averaging needs all three removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Registration:
    aligned: np.ndarray
    shift: tuple[float, ...]  # voxels, fractional with subvoxel=True
    twin: bool
    phase_offset_rad: float
    correlation: float  # |<ref, aligned>| / (|ref| |aligned|), 1 for identical objects


def twin_image(rho: np.ndarray) -> np.ndarray:
    """conj(rho(-r)) about index 0 (any offset is absorbed by the translation search)."""
    return np.conj(np.flip(rho))


def _fft(x, inverse=False):
    import scipy.fft

    return (scipy.fft.ifftn if inverse else scipy.fft.fftn)(x, workers=-1)


def _wrap(i: float, n: int) -> float:
    return i if i <= n // 2 else i - n


def _best_shift(moving: np.ndarray, reference: np.ndarray, subvoxel: bool) -> tuple[float, ...]:
    """Circular shift of ``moving`` that maximises its amplitude overlap with ``reference``;
    with ``subvoxel`` refined by a parabola through the correlation peak and its neighbours."""
    xc = np.abs(_fft(_fft(np.abs(reference)) * np.conj(_fft(np.abs(moving))), inverse=True))
    idx = np.unravel_index(int(np.argmax(xc)), xc.shape)
    shift = []
    for ax, (i, n) in enumerate(zip(idx, xc.shape)):
        frac = 0.0
        if subvoxel:
            lo, hi = list(idx), list(idx)
            lo[ax], hi[ax] = (i - 1) % n, (i + 1) % n
            a, b, c = xc[tuple(lo)], xc[idx], xc[tuple(hi)]
            denom = a - 2 * b + c
            frac = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0
        shift.append(_wrap(int(i), n) + frac)
    return tuple(shift)


def shift_array(x: np.ndarray, shift: tuple[float, ...]) -> np.ndarray:
    """Circular shift by whole voxels (np.roll) or, for fractions, by a Fourier phase ramp."""
    if all(float(s).is_integer() for s in shift):
        return np.roll(x, tuple(int(s) for s in shift), axis=tuple(range(x.ndim)))
    ramp = np.ones(x.shape, np.complex64)
    for ax, (s, n) in enumerate(zip(shift, x.shape)):
        f = np.fft.fftfreq(n).astype(np.float32)
        shape = [1] * x.ndim
        shape[ax] = n
        ramp = ramp * np.exp(-2j * np.pi * f * np.float32(s)).reshape(shape)
    return _fft(_fft(x) * ramp, inverse=True).astype(x.dtype if np.iscomplexobj(x) else np.complex64)


def register(moving: np.ndarray, reference: np.ndarray, *, subvoxel: bool = False) -> Registration:
    """Align complex ``moving`` to complex ``reference`` (same shape), trying both twins."""
    moving = np.asarray(moving)
    reference = np.asarray(reference)
    if moving.shape != reference.shape:
        raise ValueError(f"shapes differ: moving {moving.shape}, reference {reference.shape}")
    best = None
    for twin, candidate in ((False, moving), (True, twin_image(moving))):
        shift = _best_shift(candidate, reference, subvoxel)
        shifted = shift_array(candidate, shift)
        overlap = np.vdot(shifted, reference)  # sum(conj(shifted) * reference)
        norm = np.linalg.norm(shifted) * np.linalg.norm(reference)
        corr = float(np.abs(overlap) / norm) if norm > 0 else 0.0
        if best is None or corr > best.correlation:
            offset = float(np.angle(overlap))
            best = Registration(shifted * np.exp(1j * offset).astype(np.complex64), shift, twin, offset, corr)
    return best


def follow(array: np.ndarray, reg: Registration, *, axes=(0, 1, 2)) -> np.ndarray:
    """Apply ``reg``'s twin flip and whole-voxel shift to another array on the same grid (a support,
    error bars, members stacked on a leading axis); a complex array also takes the conjugation of
    the twin and the phase offset."""
    array = np.asarray(array)
    if reg.twin:
        array = np.flip(array, axis=axes)
        if np.iscomplexobj(array):
            array = np.conj(array)
    array = np.roll(array, tuple(round(s) for s in reg.shift), axis=axes)
    if np.iscomplexobj(array):
        array = array * np.exp(1j * reg.phase_offset_rad).astype(array.dtype)
    return array


def amplitude_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two amplitude maps."""
    return float(np.corrcoef(np.abs(a).ravel(), np.abs(b).ravel())[0, 1])
