import math

import numpy as np
import pytest

from streamer.backend import to_numpy
from streamer.defects import find_domain_boundaries, find_vortex_lines, plaquette_winding

N = 24


def _grid():
    return np.ogrid[0:N, 0:N, 0:N]


def _field(phase):
    return np.exp(1j * phase).astype(np.complex64)


def _vortex(y0, x0, sign=1):
    z, y, x = _grid()
    return sign * np.arctan2(y - y0, x - x0) + 0 * z


def test_single_vortex_winds_once_at_its_plaquette(xp):
    rho = _field(_vortex(11.5, 12.5, +1))
    w = to_numpy(plaquette_winding(xp.asarray(rho), xp=xp, normal_axis=0))
    assert w.dtype == np.int8
    assert np.all(w[:, 11, 12] == 1)
    assert np.count_nonzero(w) == N
    for axis in (1, 2):
        assert np.count_nonzero(to_numpy(plaquette_winding(xp.asarray(rho), xp=xp, normal_axis=axis))) == 0


def test_pair_of_opposite_vortices_is_found_with_positions_and_signs(xp):
    rho = _field(_vortex(11.5, 7.5, +1) + _vortex(11.5, 16.5, -1))
    lines = find_vortex_lines(xp.asarray(rho), xp=xp, mask=np.ones(rho.shape, bool), min_length=3)
    lines.sort(key=lambda line: line.position[2])
    assert [line.winding for line in lines] == [1, -1]
    np.testing.assert_allclose(lines[0].position[1:], [11.5, 7.5], atol=1e-9)
    np.testing.assert_allclose(lines[1].position[1:], [11.5, 16.5], atol=1e-9)
    assert all(line.kind == "screw" and line.confidence == 1.0 for line in lines)
    assert all(abs(line.direction[0]) == pytest.approx(1.0) for line in lines)


def test_smooth_phase_has_no_vortex(xp):
    z, y, x = _grid()
    rho = _field(0.3 * x + 0.2 * y - 0.1 * z + 0.01 * x * y)
    assert find_vortex_lines(xp.asarray(rho), xp=xp, mask=np.ones(rho.shape, bool)) == []


def test_vortex_line_along_x_is_an_edge_type_line():
    z, y, x = _grid()
    rho = _field(np.arctan2(z - 11.5, y - 12.5) + 0 * x)
    lines = find_vortex_lines(rho, xp=__import__("array_api_compat").array_namespace(rho),
                              mask=np.ones(rho.shape, bool))
    assert len(lines) == 1
    assert lines[0].kind == "edge"
    assert abs(lines[0].direction[2]) == pytest.approx(1.0)


def test_vortex_outside_the_mask_is_ignored():
    rho = _field(_vortex(11.5, 4.5))
    mask = np.zeros(rho.shape, bool)
    mask[:, :, 10:] = True
    import array_api_compat

    assert find_vortex_lines(rho, xp=array_api_compat.array_namespace(rho), mask=mask) == []


def _plate_mask():
    z, y, x = _grid()
    return np.broadcast_to((np.abs(z - 12) < 5) & ((y - 12) ** 2 + (x - 12) ** 2 < 100), (N, N, N))


@pytest.mark.parametrize("step", [2 * math.pi / 3, math.pi])
def test_domain_boundary_plane_and_step_are_found(step):
    z, y, x = _grid()
    rho = _field(step * (x >= 12) + 0 * y * z)
    found = find_domain_boundaries(rho, mask=_plate_mask())
    assert len(found) == 1
    b = found[0]
    assert abs(b.normal[2]) == pytest.approx(1.0, abs=1e-6)
    assert b.position[2] == pytest.approx(11.5, abs=0.01)
    assert abs(b.phase_step_rad) == pytest.approx(step, abs=0.05)
    assert b.angle_to_layers_deg == pytest.approx(90.0)


def test_blurred_step_is_still_one_boundary():
    z, y, x = _grid()
    phase = np.clip((x - 11.0) / 2.0, 0, 1) * 2.1 + 0 * y * z  # spread over two voxels
    assert len(find_domain_boundaries(_field(phase), mask=_plate_mask())) == 1


def test_vortex_pair_is_not_a_domain_boundary():
    rho = _field(_vortex(11.5, 7.5, +1) + _vortex(11.5, 16.5, -1))
    assert find_domain_boundaries(rho, mask=_plate_mask()) == []
