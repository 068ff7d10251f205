"""The analysis' settings: defect thresholds (AnalysisConfig) and when a change is worth a flag (FlagConfig)."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from streamer.settings import Settings


class AnalysisConfig(Settings):
    """Thresholds of the defect analysis (fractions of the maximum amplitude, voxels, rad)."""

    support_threshold: float = Field(0.2, gt=0, lt=1)
    vortex_min_length: int = Field(3, ge=1)
    boundary_jump_rad: float = Field(0.6, gt=0, lt=math.pi)  # the smallest phase step reported as a boundary
    boundary_min_area_fraction: float = Field(0.3, gt=0, le=1)  # of a plane's cross-section that must show it
    boundary_min_coherence: float = Field(0.6, gt=0, le=1)  # resultant of the local steps across the plane
    surface_erosion_voxels: int = Field(1, ge=0)
    boundary_min_domain_fraction: float = Field(0.1, ge=0, lt=0.5)  # each side of a boundary holds this much
    member_match_radius_voxels: float = Field(3.0, gt=0)  # a member reproduces a line within this mean distance
    member_min_fraction: float = Field(0.5, gt=0, le=1)  # lines need this fraction of the population's members
    # a step within this of pi leaves the phase across the plane undefined up to its sign: the plaquettes that
    # straddle such a plane wind at random, and a line whose points mostly lie this close to it is its artefact
    antiphase_tolerance_rad: float = Field(0.75, ge=0, lt=math.pi / 2)  # measured steps read low (blurred)
    antiphase_band_voxels: float = Field(1.5, gt=0)


class FlagConfig(Settings):
    """When a change is worth a flag."""

    vortex_match_radius_nm: float = Field(60.0, gt=0)
    vortex_move_threshold_nm: float = Field(18.0, gt=0)
    broadening_threshold: float = Field(0.25, gt=0)  # relative increase of a peak width over the baseline
    broadening_significance: float = Field(3.0, ge=0)  # ... and by this many combined standard errors
    baseline_scans: int = Field(2, ge=1)
    surface_exit_distance_nm: float = Field(80.0, ge=0)  # a lost line last seen this close to the surface left
    peak_drift_fraction: float = Field(0.25, gt=0, lt=1)  # peak centre off the grid centre by this fraction

    @model_validator(mode="after")
    def _radii(self):
        if self.vortex_match_radius_nm <= self.vortex_move_threshold_nm:
            raise ValueError("vortex_match_radius_nm must exceed vortex_move_threshold_nm")
        return self
