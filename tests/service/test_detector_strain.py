"""A strain region on the real detector grid reads back with its sign and size in the lab frame (issue 16).

A column of +3e-3 expansion along q through the reference plate, simulated on the sheared detector grid of
the reference scenario (9 keV, 1 m, 55 um pixels binned 2 x 2, 64 steps of 0.02 deg), Poisson counts, phased
on the detector grid and resampled onto the lab frame by the service's worker. The analysis removes the
particle's mean lattice constant, so the region reads as its contrast against the rest of the plate.
"""

import tomllib

import numpy as np
import pytest

from sim.scenario import parse_scenario
from sim.series import scan_states, scenario_geometry
from streamer.analysis.displacement import particle_fields
from streamer.service.assembly import AssembledScan
from streamer.service.config import ServiceConfig
from streamer.service.processing import ScanProcessor

EPS = 3e-3
SCENARIO = f"""
name = "strained"
description = "a column of expansion"
[particle]
shape = "ellipse"
radius_x_nm = 144.0
radius_y_nm = 132.0
thickness_nm = 96.0
[geometry]
kind = "detector"
detector_shape_px = [256, 256]
rocking_step_deg = 0.02
num_rocking_steps = 64
[detector]
chips = 1
hot_pixel_fraction = 0.0
dead_pixel_fraction = 0.0
[acquisition]
peak_counts_per_s = 1e5
exposure_s = 1.0
[[stage]]
label = "strained"
voltage_v = 3.5
capacity_mah_g = 10.0
regions = [{{ strain = {EPS}, sigma_nm = 60.0, sigma_z_nm = 300.0 }}]
"""


@pytest.fixture(scope="module")
def lab_object():
    scen = parse_scenario(tomllib.loads(SCENARIO))
    geometry = scenario_geometry(scen)
    (state,) = list(scan_states(scen, geometry))
    counts = np.random.default_rng(0).poisson(state.model.expected_stack(1.0)).astype(np.uint32)
    meta = {"geometry": geometry.to_dict(), "voltage_v": 3.5}
    scan = AssembledScan("s", 0, meta, dict(enumerate(counts)), counts.shape, np.full(len(counts), 7.0),
                         np.arange(len(counts), dtype=float), [])
    proc = ScanProcessor(ServiceConfig(realtime_policy="all", budget={"mode": "off"},
                                       phasing={"recipe": "(60HIO, 20ER)*2, 10ER", "population": 2, "average": 2},
                                       detector={"count_ceiling": 0, "hot_pixel_factor": 0}))
    event = proc.process(proc.prepare(scan, {}))
    assert event["reconstruction"]["status"] == "done" and event["frame"]["name"] == "lab"
    return proc.tracker("s").last.rho, event["frame"]


def test_an_expanded_region_reads_as_plus_3e_3_in_the_lab_frame(lab_object):
    """Measured (seed 0): 2.47e-3 at the column (within 20 nm of its axis) against the rim (>= 120 nm out);
    the declared field's own contrast at those voxels is 2.58e-3 (the Gaussian has not died out at the rim),
    the reference the reading is held to. (Session 9: the code before read 2.51e-3 against a check of
    3e-3 +- 5e-4, at the edge of it: a rounding change of the FFT moved it to 2.47e-3.)"""
    rho, frame = lab_object
    voxel = frame["voxel_nm"]
    fields = particle_fields(rho, voxel_nm=voxel, q_inv_nm=frame["q_inv_nm"])
    strain = np.where(fields.inner, fields.strain, np.nan)
    centre = [float(c.mean()) for c in np.nonzero(fields.support)]
    dz, dy, dx = np.ix_(*[(np.arange(n) - c) * voxel for n, c in zip(rho.shape, centre)])
    lateral = np.broadcast_to(np.hypot(dy, dx), rho.shape)
    mid = np.broadcast_to(np.abs(dz) <= 2 * voxel, rho.shape)  # mid-thickness: the surface layers are least reliable
    core = np.isfinite(strain) & mid & (lateral < 20.0)
    far = np.isfinite(strain) & mid & (lateral >= 120.0)
    assert core.sum() >= 20 and far.sum() >= 200
    measured = float(np.mean(strain[core]) - np.mean(strain[far]))
    declared_field = EPS * np.exp(-lateral**2 / (2 * 60.0**2)) * np.exp(-np.broadcast_to(dz, rho.shape) ** 2 /
                                                                        (2 * 300.0**2))
    declared = float(np.mean(declared_field[core]) - np.mean(declared_field[far]))
    assert measured == pytest.approx(declared, abs=3e-4)
    assert measured > 0.5 * EPS  # positive: an expanded region reads as expansion (a sign error reads -3e-3)


def test_a_uniform_change_of_c_moves_the_peak_on_the_detector_as_braggs_law_says():
    """c -> c (1 + 3e-3) on the real detector grid: |q| at the peak's centre of mass (the service's peak
    metrics, through the detector's q of each pixel and step) falls by the same fraction."""
    from streamer.service.config import DetectorConfig
    from streamer.service.detector_scan import DetectorMaps, detector_peak, prepare_detector_scan

    qs = []
    for c_nm in (1.10, 1.10 * (1 + EPS)):
        scen = parse_scenario(tomllib.loads(SCENARIO.replace("thickness_nm = 96.0", f"thickness_nm = 96.0\nlattice_c_nm = {c_nm}")
                                            .replace("regions = [", "# regions = [")))
        geometry = scenario_geometry(scen)
        (state,) = list(scan_states(scen, geometry))
        counts = np.random.default_rng(1).poisson(state.model.expected_stack(1.0)).astype(np.float32)
        config = DetectorConfig(count_ceiling=0, hot_pixel_factor=0)
        _, _, q = detector_peak(prepare_detector_scan(counts, geometry, config, DetectorMaps(config)))
        qs.append(q)
    assert qs[0] == pytest.approx(4 * np.pi / 1.10, rel=3e-4)  # the (002) of c = 1.10 nm
    assert qs[1] / qs[0] - 1 == pytest.approx(-EPS / (1 + EPS), abs=1e-4)  # d = c / 2 = 2 pi / |q|
