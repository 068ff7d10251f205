"""A scenario's scans as detector frames, with no pipeline: what ``bcdi-stream simulate`` records.

The particle of each scan is sampled on the geometry's sheared real-space grid and transformed
once (``DiffractionModel``); frames are then slices of that intensity read out by the Timepix.
Consecutive scans with the same particle share one transform. One seeded generator draws every
frame in order, so a seed gives the same frames bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sim.detector import Timepix, TimepixSpec
from sim.diffraction import DiffractionModel
from sim.particle import (
    Particle,
    amplitude_at,
    bragg_offset_inv_nm,
    complex_image_at,
    detector_edge_nm,
)
from sim.scenario import Scenario, Stage
from streamer.geometry import DetectorGeometry, from_dict


@dataclass(frozen=True)
class ScanState:
    """One scan: its index, the scenario stage, the particle and its diffraction."""

    scan: int
    stage: Stage
    particle: Particle
    model: DiffractionModel


def scenario_geometry(scenario: Scenario) -> DetectorGeometry:
    """The scenario's detector geometry (``[geometry]`` table), checked against its detector."""
    geometry = from_dict(scenario.geometry) if scenario.geometry else DetectorGeometry()
    check_geometry(geometry, scenario.detector)
    return geometry


def check_geometry(geometry, spec: TimepixSpec) -> None:
    if geometry.to_dict()["kind"] != "detector":
        raise ValueError("simulating detector frames needs a geometry of kind 'detector'")
    if geometry.binning != 1:
        raise ValueError(f"the simulator records raw frames: geometry binning must be 1, got {geometry.binning}")
    if tuple(geometry.detector_shape_px) != spec.shape_px:
        raise ValueError(f"geometry detector_shape_px {geometry.detector_shape_px} does not match the "
                         f"Timepix ({spec.chips} chip(s): {spec.shape_px})")


def scan_states(scenario: Scenario, geometry: DetectorGeometry) -> Iterator[ScanState]:
    """Each scan's particle and its diffraction, computed once per particle state."""
    points = geometry.real_space_points_nm()
    edge = detector_edge_nm(geometry)
    reference_sum = float(amplitude_at(scenario.particle, points, edge_nm=edge).sum())  # perfect crystal's |F(0)|
    last: tuple[Particle, DiffractionModel] | None = None
    for scan, stage in enumerate(scenario.stages):
        particle = stage.particle(scenario.particle)
        if last is None or last[0] != particle:
            rho = complex_image_at(particle, points, q_offset_inv_nm=bragg_offset_inv_nm(particle, geometry),
                                   edge_nm=edge)
            model = DiffractionModel(rho, geometry, peak_counts=scenario.acquisition.peak_counts_per_s,
                                     reference_sum=reference_sum)
            last = (particle, model)
        yield ScanState(scan, stage, particle, last[1])


def scan_frames(model: DiffractionModel, geometry: DetectorGeometry, detector: Timepix,
                exposure_s: float) -> Iterator[tuple[int, float, np.ndarray]]:
    """(step, theta_deg, uint32 frame) of one rocking scan; signal only inside ``geometry.roi_px``."""
    r0, r1, c0, c1 = geometry.roi_px
    signal = np.zeros(detector.spec.shape_px, np.float32)
    for step, theta in enumerate(geometry.rocking_angles_deg()):
        signal[r0:r1, c0:c1] = model.expected_step(step, exposure_s)
        yield step, float(theta), detector.read(signal, exposure_s)
