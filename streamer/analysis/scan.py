"""One scan's analysis: phase retrieval (warm-started from the run's last object), then the series tracker.

Pure array-in, array-out: no sockets, files or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.analysis.series import SeriesTracker, TrackedScan
from streamer.phasing import PhasingConfig, reconstruct


@dataclass
class ScanAnalysis:
    """A reconstructed, tracked scan and how it was reconstructed."""

    tracked: TrackedScan
    phasing: dict  # recipe, iterations, population, chi-square, alignment, support size

    @property
    def rho(self) -> np.ndarray:
        return self.tracked.rho

    @property
    def errors(self) -> dict:
        return self.tracked.errors


def phasing_info(result) -> dict:
    """What the event says of a reconstruction."""
    members = result.members
    info = {"recipe": result.recipe, "iterations": result.iterations, "population": len(result.chi_square),
            "chi_square": float(result.chi_square[result.best]), "warm_started": result.warm_started,
            "generations": result.generations, "averaged": 0 if members is None else len(members)}
    if result.phase_error is not None and result.support.any():
        info["median_phase_error_rad"] = round(float(np.median(result.phase_error[result.support])), 4)
    return info


def analyze_scan(intensity: np.ndarray, *, scan: int, geometry, xp, tracker: SeriesTracker,
                 phasing: PhasingConfig | None = None, mask: np.ndarray | None = None, rng=None,
                 reconstructor=reconstruct) -> ScanAnalysis:
    """Reconstruct a scan's intensity in lab order (q_z, q_y, q_x; ``mask`` True = unmeasured), starting
    from the run's last object, and give the object to the run's ``tracker``.

    ``reconstructor`` has the signature of ``streamer.phasing.reconstruct`` (e.g. a cluster's).
    """
    phasing = phasing or PhasingConfig()
    if tuple(intensity.shape) != tuple(geometry.shape_zyx):
        raise ValueError(f"intensity shape {intensity.shape} does not match geometry {geometry.shape_zyx}")
    result = reconstructor(intensity, xp=xp, config=phasing, rng=rng, mask=mask, start=tracker.previous_rho)
    errors = {k: v for k, v in (("amplitude_error", result.amplitude_error), ("phase_error", result.phase_error))
              if v is not None}
    info = phasing_info(result)
    tracked = tracker.observe(scan, result.rho, geometry=geometry, xp=xp, members=result.members, errors=errors)
    if tracked.alignment.correlation_to_previous is not None:
        info["twin_flipped"] = tracked.alignment.twin_flipped
        info["correlation_to_previous"] = round(tracked.alignment.correlation_to_previous, 4)
    info["support_voxels"] = tracked.analysis.support_voxels
    return ScanAnalysis(tracked, info)
