"""The guided (genetic) part of phase retrieval: rank members by a metric, breed the best into the others,
align and average the best of the last generation. Host numpy; members are few, voxels many.
"""

from __future__ import annotations

import numpy as np

from streamer.phasing.alignment import amplitude_correlation, follow, register

METRICS = ("chi", "sharpness", "area")
BREEDING = ("sqrt_ab", "avg_ab")


def metric_values(name: str, members: np.ndarray, supports: np.ndarray, chi: np.ndarray) -> np.ndarray:
    """Per-member score, lower is better: chi-square; -sharpness (sum |rho|^4 / (sum |rho|^2)^2);
    support area (voxels)."""
    if name == "chi":
        return np.asarray(chi, np.float64)
    if name == "sharpness":
        a2 = np.abs(members.reshape(len(members), -1)) ** 2
        return -np.sum(a2**2, axis=1) / np.maximum(np.sum(a2, axis=1) ** 2, 1e-30)
    if name == "area":
        return supports.reshape(len(supports), -1).sum(axis=1).astype(np.float64)
    raise ValueError(f"unknown ranking metric {name!r}; use one of {METRICS}")


def breed(members: np.ndarray, supports: np.ndarray, ranking: np.ndarray, mode: str = "sqrt_ab"):
    """Children of the best member with every other one (the best is kept as it is).

    Each partner is first aligned to the best (translation, twin, phase offset), so the child
    combines two images of the same object: ``sqrt_ab`` takes sqrt(|a||b|) with the phase of a + b,
    ``avg_ab`` the mean (a + b) / 2. A child's support is the union of the two.
    """
    if mode not in BREEDING:
        raise ValueError(f"unknown breeding mode {mode!r}; use one of {BREEDING}")
    best = int(ranking[0])
    a = members[best]
    children, child_supports = members.copy(), supports.copy()
    for j in range(len(members)):
        if j == best:
            continue
        reg = register(members[j], a)
        b = reg.aligned
        sb = follow(supports[j], reg)
        if mode == "sqrt_ab":
            children[j] = np.sqrt(np.abs(a) * np.abs(b)) * np.exp(1j * np.angle(a + b))
        else:
            children[j] = 0.5 * (a + b)
        child_supports[j] = supports[best] | sb
    return children, child_supports


def members_mean(aligned: np.ndarray) -> np.ndarray:
    """The aligned members' mean amplitude with the phase of their sum (``average_aligned``'s object)."""
    return np.abs(aligned).mean(axis=0) * np.exp(1j * np.angle(aligned.sum(axis=0)))


def average_aligned(members: np.ndarray, reference_index: int = 0, min_agreement: float = 0.0):
    """Align every member to one reference and average those whose amplitude correlates with the reference's at
    least ``min_agreement``: (mean, amplitude std, phase std, aligned members averaged, their mask).

    Members within the chi-square cut can still have converged to another solution (an antiphase particle's
    amplitude shared otherwise between its domains); averaging one in blurs what the others agree on. The mean
    is the members' mean amplitude with the phase of their sum (as ``breed``'s children): where members put a
    phase step of pi a voxel apart (an antiphase boundary), their sum cancels, but the crystal is no thinner there
    (BENCHMARKS.md, "The members' amplitude kept across a boundary"). The phase spread is that of each member's
    phase about the mean's, wrapped to (-pi, pi].
    """
    ref = members[reference_index]
    aligned = np.empty_like(members)
    for k, m in enumerate(members):
        aligned[k] = ref if k == reference_index else register(m, ref, subvoxel=True).aligned
    agree = np.array([k == reference_index or amplitude_correlation(a, ref) >= min_agreement
                      for k, a in enumerate(aligned)])
    aligned = aligned[agree]
    amplitudes = np.abs(aligned)
    mean = members_mean(aligned)
    amp_err = amplitudes.std(axis=0).astype(np.float32)
    dphi = np.angle(aligned * np.conj(mean)[None])
    phase_err = np.sqrt(np.mean(dphi**2, axis=0)).astype(np.float32)
    return mean.astype(np.complex64), amp_err, phase_err, aligned, agree


def fitting(candidates: np.ndarray, chi_square, max_ratio: float) -> np.ndarray:
    """The ``candidates`` (member indices, best first) whose chi-square is within ``max_ratio`` of the lowest of
    theirs: members that fit the data about as well as the best, in their order (the first, the ranking's best
    by any metric, always)."""
    chi = np.asarray(chi_square, np.float64)[candidates]
    if not np.isfinite(chi).any():
        return candidates
    fits = chi <= max_ratio * np.nanmin(chi)
    fits[0] = True
    return candidates[fits]
