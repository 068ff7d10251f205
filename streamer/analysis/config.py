"""The analysis' settings: defect thresholds (AnalysisConfig) and when a change is worth a flag (FlagConfig)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnalysisConfig:
    """Thresholds of the defect analysis (fractions of the maximum amplitude, voxels, rad)."""

    support_threshold: float = 0.2
    vortex_min_length: int = 3
    boundary_jump_rad: float = 1.2
    boundary_min_area_fraction: float = 0.25
    surface_erosion_voxels: int = 1
    boundary_min_domain_fraction: float = 0.1  # a boundary separates two domains at least this big
    member_match_radius_voxels: float = 3.0  # a member reproduces a line within this mean distance
    member_min_fraction: float = 0.5  # lines need this fraction of the population's members

    def __post_init__(self):
        if not 0 < self.support_threshold < 1:
            raise ValueError(f"support_threshold must be in (0, 1), got {self.support_threshold}")
        if self.vortex_min_length < 1:
            raise ValueError("vortex_min_length must be >= 1")
        if not 0 < self.boundary_jump_rad < np.pi:
            raise ValueError("boundary_jump_rad must be in (0, pi)")
        if not 0 <= self.boundary_min_domain_fraction < 0.5:
            raise ValueError("boundary_min_domain_fraction must be in [0, 0.5)")
        if not 0 < self.member_min_fraction <= 1 or self.member_match_radius_voxels <= 0:
            raise ValueError("member_min_fraction must be in (0, 1] and member_match_radius_voxels > 0")


@dataclass(frozen=True)
class FlagConfig:
    """When a change is worth a flag."""

    vortex_match_radius_nm: float = 60.0
    vortex_move_threshold_nm: float = 18.0
    broadening_threshold: float = 0.25  # relative increase of a peak width over the baseline
    broadening_significance: float = 3.0  # ... and by this many combined standard errors
    baseline_scans: int = 2
    surface_exit_distance_nm: float = 80.0  # a lost line last seen this close to the surface left through it
    peak_drift_fraction: float = 0.25  # peak centre off the grid centre by this fraction of the half-range

    def __post_init__(self):
        if self.vortex_match_radius_nm <= self.vortex_move_threshold_nm:
            raise ValueError("vortex_match_radius_nm must exceed vortex_move_threshold_nm")
        if self.broadening_threshold <= 0 or self.baseline_scans < 1 or self.broadening_significance < 0:
            raise ValueError("broadening_threshold must be > 0, broadening_significance >= 0 and baseline_scans >= 1")
        if not 0 < self.peak_drift_fraction < 1 or self.surface_exit_distance_nm < 0:
            raise ValueError("peak_drift_fraction must be in (0, 1) and surface_exit_distance_nm >= 0")
