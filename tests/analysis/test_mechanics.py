import math

import pytest

from streamer.analysis.events import mechanics_record
from streamer.analysis.labels import pair_label
from streamer.analysis.mechanics import pair_mechanics


def test_the_critical_separation_and_activation_energy_are_the_extremum_of_the_pair_energy():
    """dE/dr = 0 of the paper's eq. 5, found numerically, gives r_c = G b / (pi s) and E_c = E(r_c)."""
    from scipy.optimize import minimize_scalar

    from streamer.analysis.mechanics import pair_energy_j_per_m

    for stress in (20e6, 80e6, 300e6):
        best = minimize_scalar(lambda r: -pair_energy_j_per_m(r, stress), bounds=(6e-9, 5e-6), method="bounded",
                               options={"xatol": 1e-13})
        m = pair_mechanics(best.x)
        assert m.critical_stress_pa == pytest.approx(stress, rel=1e-4)
        assert m.activation_energy_j_per_m == pytest.approx(-best.fun, rel=1e-6)


def test_reference_numbers_the_derivation_gives():
    """80 MPa and 40 MPa at 100 nm as the paper; E_c = 9.32e-9 J/m (the paper prints 1.1e-8 from a "- 1"
    that eq. 5 does not give); the image force of a surface 200 nm away costs G b / (4 pi d) = 9.9 MPa."""
    m = pair_mechanics(100e-9, surface_distance_m=200e-9)
    g_b2 = 50e9 * 0.5e-9**2
    assert m.critical_stress_pa == pytest.approx(79.58e6, rel=1e-3)
    assert m.activation_energy_j_per_m == pytest.approx(g_b2 * (2 * math.log(20) + math.log(2) - 2) / (2 * math.pi))
    assert m.activation_energy_j_per_m == pytest.approx(9.32e-9, rel=1e-3)
    assert m.drift_stress_pa == pytest.approx(39.79e6, rel=1e-3)
    assert m.image_stress_pa == pytest.approx(9.95e6, rel=1e-3)
    assert m.drift_stress_with_surface_pa == pytest.approx(29.84e6, rel=1e-3) and not m.image_force_dominates
    d = mechanics_record(m)  # as the event writes it
    assert d["separation_nm"] == 100.0 and d["critical_stress_mpa"] == pytest.approx(79.58)
    assert "screw" in d["assumption"] and "b = 0.5 nm" in d["assumption"]


def test_the_image_force_of_a_near_surface_is_never_a_negative_stress():
    m = pair_mechanics(180e-9, surface_distance_m=60e-9)  # the demo's drifting pair: 22 MPa < 33 MPa image
    assert m.image_force_dominates and m.drift_stress_with_surface_pa is None
    assert m.image_stress_pa == pytest.approx(50e9 * 0.5e-9 / (4 * math.pi * 60e-9))
    assert "the image force dominates" in pair_label({**mechanics_record(m), "surface_distance_nm": 60.0})
    assert "drift 30 MPa" in pair_label({**mechanics_record(pair_mechanics(100e-9, surface_distance_m=200e-9)),
                                         "surface_distance_nm": 200.0})


def test_wider_pairs_need_less_stress_and_more_energy():
    near, far = pair_mechanics(50e-9), pair_mechanics(200e-9)
    assert far.critical_stress_pa < near.critical_stress_pa
    assert far.activation_energy_j_per_m > near.activation_energy_j_per_m
    assert near.drift_stress_with_surface_pa is None and near.image_stress_pa is None


@pytest.mark.parametrize("kwargs", [{"separation_m": 1e-9}, {"separation_m": 1e-7, "surface_distance_m": 0.0}])
def test_bad_inputs_are_refused(kwargs):
    with pytest.raises(ValueError):
        pair_mechanics(**kwargs)


def test_pairs_are_opposite_lines_with_in_plane_surface_distance():
    import numpy as np

    from streamer.analysis.detections import Vortex
    from streamer.analysis.events import pair_record
    from streamer.analysis.objects import dislocation_pairs

    def line(position, position_nm, winding, direction):
        return Vortex(tuple(position), tuple(position_nm), winding, tuple(direction), "screw", 5, 1.0, 50.0, False,
                      True, (), None)

    support = np.zeros((10, 40, 40), bool)
    support[2:8, 5:35, 5:35] = True  # a plate: thin along z
    z_line = [1.0, 0.0, 0.0]
    vortices = [
        line([5, 20, 12], [0, 0, -80], 1, z_line),
        line([5, 20, 28], [0, 0, 80], -1, z_line),
        line([5, 30, 20], [0, 150, 0], 1, z_line),
    ]
    (pair,) = [pair_record(p) for p in dislocation_pairs(vortices, support, voxel_nm=10.0)]
    assert pair["vortices"] == [0, 1] and pair["separation_nm"] == 160.0
    assert pair["surface_distance_nm"] == 70.0  # to the plate's edge (x = 4), not to its faces
