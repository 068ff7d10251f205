import math

import numpy as np
import pytest

from sim.defects import DomainBoundary, ScrewDislocation
from sim.devices import make_beamline
from sim.diffraction import DiffractionModel
from sim.particle import (
    Particle,
    complex_image,
    phase_field,
    shape_mask,
)
from sim.scenario import ScenarioError, available_scenarios, load_scenario
from streamer.geometry import OrthogonalGeometry

GEOM = OrthogonalGeometry()


def test_particle_is_a_plate_thin_along_q():
    m = shape_mask(Particle(), GEOM)
    extent = [np.ptp(np.nonzero(m)[a]) + 1 for a in range(3)]
    assert extent[0] * 3 <= extent[1] and extent[0] * 3 <= extent[2]


def test_screw_pair_and_boundary_phases():
    pair = Particle().with_defects([ScrewDislocation(6.0, 54.0, 1), ScrewDislocation(6.0, -54.0, -1)])
    phase = phase_field(pair, GEOM)
    assert np.allclose(phase[0], phase[-1])  # screw lines run along z
    wall = Particle().with_defects([], [DomainBoundary(0.0, 6.0, math.pi)])
    p = phase_field(wall, GEOM)[24, 24]
    assert p[24] == 0 and p[30] == pytest.approx(math.pi)


def test_frames_at_grid_angles_are_slices_of_the_3d_intensity():
    rho = complex_image(Particle(), GEOM)
    model = DiffractionModel(rho, GEOM, peak_counts=1000.0)
    vol = model.expected_volume(1.0)
    assert vol.max() == pytest.approx(1000.0)
    lo, _ = GEOM.rocking_range_deg()
    for k in (0, 20, 24, 31):
        frame = model.expected_frame(lo + k * GEOM.rocking_step_deg, 1.0)
        np.testing.assert_allclose(frame, vol[:, :, k], rtol=1e-6, atol=1e-9)


def test_detector_counts_are_poisson_around_the_expectation():
    sample, stage, detector, potentiostat = make_beamline(load_scenario("quick"), GEOM, seed=3)
    potentiostat.trigger()
    detector.acquire_time.put(0.5)
    stage.move(GEOM.theta_bragg_deg)
    frames = []
    for _ in range(20):
        detector.trigger().wait(5)
        frames.append(detector.image.get())
    frames = np.array(frames)
    assert frames.dtype == np.uint32
    expected = sample.model.expected_frame(GEOM.theta_bragg_deg, 0.5)
    peak = np.unravel_index(np.argmax(expected), expected.shape)
    assert frames[:, peak[0], peak[1]].mean() == pytest.approx(expected[peak], rel=0.05)
    assert frames[:, peak[0], peak[1]].var() == pytest.approx(expected[peak], rel=0.6)


def test_the_beamline_samples_the_scenarios_own_particle():
    """The pristine control declares a hexagonal plate 80 nm thick: the demo's beamline must image that one, not the
    default ellipse (it did until session 10)."""
    scenario = load_scenario("pristine")
    sample, _, _, potentiostat = make_beamline(scenario, GEOM)
    potentiostat.trigger()
    assert sample.base == scenario.particle
    assert sample.base.shape == "hexagon" and sample.base.thickness_nm == 80.0
    assert sample.stage.particle(sample.base).shape == "hexagon"


def test_potentiostat_steps_through_the_scenario():
    sample, _, _, potentiostat = make_beamline(load_scenario("reference"), GEOM)
    labels = []
    for _ in range(7):
        potentiostat.trigger()
        labels.append(sample.stage.label)
    assert labels[:6] == ["pristine", "pristine", "domain boundary", "screw pair", "pair apart", "healed"]
    assert labels[6] == "healed"  # holds the last state
    assert potentiostat.voltage.get() == pytest.approx(4.10)


def test_scenarios_load_and_bad_ones_are_refused(tmp_path):
    assert {"quick", "reference"} <= set(available_scenarios())
    with pytest.raises(ScenarioError, match="available"):
        load_scenario("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[stage]]\nvoltage_v = 3.0\n")
    with pytest.raises(ScenarioError, match="capacity_mah_g"):
        load_scenario(str(bad))
    bad.write_text("[[stage]]\nvoltage_v = 3.0\ncapacity_mah_g = 1\ndislocations = [{y = 1}]\n")
    with pytest.raises(ScenarioError, match=r"stage\[0\].dislocations\[0\].y"):
        load_scenario(str(bad))
