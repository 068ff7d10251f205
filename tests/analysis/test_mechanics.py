import pytest

from streamer.analysis.events import mechanics_record
from streamer.analysis.mechanics import pair_mechanics


def test_reference_numbers_of_the_paper():
    m = pair_mechanics(100e-9, surface_distance_m=200e-9)
    assert m.critical_stress_pa == pytest.approx(80e6, rel=0.01)
    assert m.activation_energy_j_per_m == pytest.approx(1.1e-8, rel=0.05)
    assert m.drift_stress_pa == pytest.approx(40e6, rel=0.01)
    assert m.drift_stress_with_surface_pa == pytest.approx(20e6, rel=0.01)
    d = mechanics_record(m)  # as the event writes it
    assert d["separation_nm"] == 100.0 and d["critical_stress_mpa"] == pytest.approx(79.58)


def test_wider_pairs_need_less_stress_and_more_energy():
    near, far = pair_mechanics(50e-9), pair_mechanics(200e-9)
    assert far.critical_stress_pa < near.critical_stress_pa
    assert far.activation_energy_j_per_m > near.activation_energy_j_per_m
    assert near.drift_stress_with_surface_pa is None


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
