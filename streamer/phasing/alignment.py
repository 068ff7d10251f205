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


def _separable(factors: list[np.ndarray]) -> np.ndarray:
    """The product of 1D arrays, each along its own axis (broadcast, complex64)."""
    out = np.ones((1,) * len(factors), np.complex64)
    for ax, f in enumerate(factors):
        shape = [1] * len(factors)
        shape[ax] = f.size
        out = out * f.astype(np.complex64).reshape(shape)
    return out


def _mirror_ramp(shape: tuple[int, ...], half: bool = False) -> np.ndarray:
    """exp(2 pi i sum(k / n)) on the spectrum's grid (``half``: the last axis of a real transform's).

    It gives a flipped array's spectrum from the array's own: F(conj(flip(x))) = ramp conj(F(x)), and
    for a real a, F(flip(a)) = ramp conj(F(a)).
    """
    return _separable([np.exp(2j * np.pi * np.arange(n // 2 + 1 if half and ax == len(shape) - 1 else n) / n)
                       for ax, n in enumerate(shape)])


def _peak_shift(xc: np.ndarray, subvoxel: bool) -> tuple[float, ...]:
    """The circular shift at the cross-correlation's peak; with ``subvoxel`` refined by a parabola through
    the peak and its neighbours."""
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


def _best_shifts(moving: np.ndarray, reference: np.ndarray, subvoxel: bool):
    """Circular shifts of ``moving`` and of its twin that maximise their amplitude overlap with ``reference``.

    |twin| is |moving| flipped, so one real transform of |moving| serves both cross-correlations.
    """
    import scipy.fft

    ref = scipy.fft.rfftn(np.abs(reference), workers=-1)
    spectrum = scipy.fft.rfftn(np.abs(moving), workers=-1)
    direct = scipy.fft.irfftn(ref * np.conj(spectrum), s=moving.shape, workers=-1)
    mirrored = scipy.fft.irfftn(ref * spectrum * np.conj(_mirror_ramp(moving.shape, half=True)), s=moving.shape,
                                workers=-1)
    return _peak_shift(direct, subvoxel), _peak_shift(mirrored, subvoxel)


def _shift_ramp(shape: tuple[int, ...], shift: tuple[float, ...]) -> np.ndarray:
    """The Fourier phase ramp that shifts an array of ``shape`` by ``shift`` voxels (circularly)."""
    return _separable([np.exp(-2j * np.pi * np.fft.fftfreq(n).astype(np.float32) * np.float32(s))
                       for s, n in zip(shift, shape)])


def _whole(shift: tuple[float, ...]) -> bool:
    return all(float(s).is_integer() for s in shift)


def shift_array(x: np.ndarray, shift: tuple[float, ...]) -> np.ndarray:
    """Circular shift by whole voxels (np.roll) or, for fractions, by a Fourier phase ramp."""
    if _whole(shift):
        return np.roll(x, tuple(int(s) for s in shift), axis=tuple(range(x.ndim)))
    return _fft(_fft(x) * _shift_ramp(x.shape, shift), inverse=True).astype(
        x.dtype if np.iscomplexobj(x) else np.complex64)


def register(moving: np.ndarray, reference: np.ndarray, *, subvoxel: bool = False,
             twin: bool | None = None) -> Registration:
    """Align complex ``moving`` to complex ``reference`` (same shape), trying both twins (``twin`` True or False: that
    one only).

    With ``subvoxel`` the twins are compared after their fractional shifts, computed on the spectra
    (Parseval), and only the better one is transformed back.
    """
    moving = np.asarray(moving)
    reference = np.asarray(reference)
    if moving.shape != reference.shape:
        raise ValueError(f"shapes differ: moving {moving.shape}, reference {reference.shape}")
    shifts = _best_shifts(moving, reference, subvoxel)
    spectra = None  # with fractional shifts: the twins' spectra and the reference's
    if subvoxel and not all(_whole(shift) for shift in shifts):
        m = _fft(moving)
        spectra = (m, _mirror_ramp(moving.shape) * np.conj(m), _fft(reference))
    best = None
    for flip, shift in zip((False, True), shifts):
        if twin is not None and flip != twin:
            continue
        if spectra is None or _whole(shift):
            shifted = shift_array(twin_image(moving) if flip else moving, shift)
            overlap = np.vdot(shifted, reference)  # sum(conj(shifted) * reference)
            norm = np.linalg.norm(shifted) * np.linalg.norm(reference)
            in_space = True
        else:  # the same sums on the spectra (Parseval; the ramp keeps the norm): no transform back yet
            shifted = spectra[flip] * _shift_ramp(moving.shape, shift)
            overlap = np.vdot(shifted, spectra[2]) / moving.size
            norm = np.linalg.norm(shifted) * np.linalg.norm(spectra[2]) / moving.size
            in_space = False
        corr = float(np.abs(overlap) / norm) if norm > 0 else 0.0
        if best is None or corr > best[3]:
            best = (shifted, shift, flip, corr, overlap, in_space)
    shifted, shift, twin, corr, overlap, in_space = best
    if not in_space:
        shifted = _fft(shifted, inverse=True).astype(moving.dtype if np.iscomplexobj(moving) else np.complex64)
    offset = float(np.angle(overlap))
    return Registration(shifted * np.exp(1j * offset).astype(np.complex64), shift, twin, offset, corr)


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
