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
    shift: tuple[int, ...]
    twin: bool
    phase_offset_rad: float
    correlation: float  # |<ref, aligned>| / (|ref| |aligned|), 1 for identical objects


def twin_image(rho: np.ndarray) -> np.ndarray:
    """conj(rho(-r)) about index 0 (any offset is absorbed by the translation search)."""
    return np.conj(np.flip(rho))


def _best_shift(moving: np.ndarray, reference: np.ndarray) -> tuple[int, ...]:
    """Integer circular shift of ``moving`` that maximises its amplitude overlap with ``reference``."""
    xc = np.fft.ifftn(np.fft.fftn(np.abs(reference)) * np.conj(np.fft.fftn(np.abs(moving))))
    idx = np.unravel_index(int(np.argmax(np.abs(xc))), xc.shape)
    return tuple(int(i) if i <= n // 2 else int(i - n) for i, n in zip(idx, xc.shape))


def register(moving: np.ndarray, reference: np.ndarray) -> Registration:
    """Align complex ``moving`` to complex ``reference`` (same shape), trying both twins."""
    moving = np.asarray(moving)
    reference = np.asarray(reference)
    if moving.shape != reference.shape:
        raise ValueError(f"shapes differ: moving {moving.shape}, reference {reference.shape}")
    best = None
    for twin, candidate in ((False, moving), (True, twin_image(moving))):
        shift = _best_shift(candidate, reference)
        shifted = np.roll(candidate, shift, axis=tuple(range(candidate.ndim)))
        overlap = np.vdot(shifted, reference)  # sum(conj(shifted) * reference)
        norm = np.linalg.norm(shifted) * np.linalg.norm(reference)
        corr = float(np.abs(overlap) / norm) if norm > 0 else 0.0
        if best is None or corr > best.correlation:
            offset = float(np.angle(overlap))
            best = Registration(shifted * np.exp(1j * offset), shift, twin, offset, corr)
    return best


def amplitude_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two amplitude maps."""
    return float(np.corrcoef(np.abs(a).ravel(), np.abs(b).ravel())[0, 1])
