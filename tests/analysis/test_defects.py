import math

import numpy as np
import pytest

from streamer.analysis.boundaries import find_domain_boundaries
from streamer.analysis.defects import find_vortex_lines, plaquette_winding
from streamer.backend import to_numpy

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
    # pure-phase vortices: each core is fitted in its plaquette, where the other one's phase pulls it by 0.03 voxel
    np.testing.assert_allclose(lines[0].position[1:], [11.5, 7.5], atol=0.05)
    np.testing.assert_allclose(lines[1].position[1:], [11.5, 16.5], atol=0.05)
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


# ---- analytic fields of issue 6: each finds the right lines and boundaries, and nothing else ----

M = 32


def _analytic(phase, amplitude=None):
    rho = np.exp(1j * np.broadcast_to(phase, (M, M, M)))
    mask = np.ones((M, M, M), bool)
    if amplitude is not None:
        rho = rho * amplitude
        from streamer.analysis.displacement import particle_support

        mask = particle_support(np.abs(rho), threshold=0.1)
    rho = rho.astype(np.complex64)
    import array_api_compat

    xp = array_api_compat.array_namespace(rho)
    return find_vortex_lines(rho, xp=xp, mask=mask), find_domain_boundaries(rho, mask=mask)


def _zyx():
    return np.ogrid[0:M, 0:M, 0:M]


def test_single_screw_line_runs_through_the_particle_and_ends_on_its_surface():
    z, y, x = _zyx()
    lines, bounds = _analytic(np.arctan2(y - 15.5, x - 12.5) + 0 * z)
    assert bounds == []
    (line,) = lines
    assert line.kind == "screw" and line.winding == 1 and not line.closed and line.ends_on_surface
    assert line.length == M - 2  # one plaquette per z-layer inside the eroded mask
    np.testing.assert_allclose(line.position[1:], [15.5, 12.5])
    np.testing.assert_allclose(line.direction, [1, 0, 0])


def test_screw_pair_of_opposite_handedness():
    z, y, x = _zyx()
    lines, bounds = _analytic(np.arctan2(y - 15.5, x - 8.5) - np.arctan2(y - 15.5, x - 22.5) + 0 * z)
    assert bounds == []
    lines.sort(key=lambda line: line.position[2])
    assert [(line.kind, line.winding) for line in lines] == [("screw", 1), ("screw", -1)]
    assert [round(float(line.position[2]), 1) for line in lines] == [8.5, 22.5]


@pytest.mark.parametrize("sign", [1, -1])
def test_edge_line_along_y_has_its_winding_relative_to_its_direction(sign):
    z, y, x = _zyx()
    # line along +y: counter-clockwise about +y turns z towards x (x, y, z right-handed)
    lines, bounds = _analytic(sign * np.arctan2(x - 15.5, z - 15.5) + 0 * y)
    assert bounds == []
    (line,) = lines
    assert line.kind == "edge" and abs(line.direction[1]) == pytest.approx(1.0)
    assert line.winding == sign and line.ends_on_surface


def _ring_phase(normal_axis: int, radius: float = 8.0):
    """Phase of a vortex ring of ``radius`` voxels centred in the grid, plane normal to ``normal_axis``."""
    g = _zyx()
    h = g[normal_axis] - 15.5
    others = [g[a] - c for a, c in zip(range(3), (15.3, 15.7, 15.4)) if a != normal_axis]
    r = np.sqrt(others[0] ** 2 + others[1] ** 2)
    return np.arctan2(h, r - radius) - np.arctan2(h, r + radius)


def test_closed_loop_in_the_layers_is_one_prismatic_edge_loop():
    lines, bounds = _analytic(_ring_phase(0))
    assert bounds == []
    (loop,) = lines
    assert loop.closed and not loop.ends_on_surface and loop.kind == "edge"
    np.testing.assert_allclose(np.abs(loop.direction), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(loop.position, [15.5, 15.7, 15.3], atol=0.5)
    assert 2 * np.pi * 8 <= loop.length <= 8 * 8 + 4  # between the circle and its lattice path
    assert abs(loop.winding) == 1 and loop.confidence == 1.0
    flipped, _ = _analytic(-_ring_phase(0))
    assert flipped[0].winding == -loop.winding


def test_loop_across_the_layers_is_mixed():
    (loop,), _ = _analytic(_ring_phase(2))
    assert loop.closed and loop.kind == "mixed" and abs(loop.direction[2]) == pytest.approx(1.0)


@pytest.mark.parametrize("step", [np.pi, np.pi / 2])
@pytest.mark.parametrize("normal_axis", [1, 2])
def test_boundary_with_pi_and_half_pi_steps_and_no_vortex(step, normal_axis):
    g = _zyx()
    lines, bounds = _analytic(step * (g[normal_axis] >= 13) + 0 * g[0] * g[1] * g[2])
    assert lines == []
    (b,) = bounds
    assert abs(b.normal[normal_axis]) == pytest.approx(1.0, abs=1e-6)
    assert b.position[normal_axis] == pytest.approx(12.5, abs=0.01)
    assert abs(b.phase_step_rad) == pytest.approx(step, abs=0.05)
    assert b.angle_to_layers_deg == pytest.approx(90.0)


def test_pristine_particle_with_noise_has_no_line_and_no_boundary():
    from scipy import ndimage

    z, y, x = _zyx()
    rng = np.random.default_rng(7)
    shape = ((np.abs(z - 16) < 6) & ((y - 16) ** 2 + (x - 16) ** 2 < 144)).astype(float)
    amplitude = ndimage.gaussian_filter(shape, 1.0)
    phase = 0.2 * x + 0.005 * (x - 16) * (y - 16) + 0.05 * rng.normal(size=(M, M, M))
    noise = 0.05 * (rng.normal(size=(M, M, M)) + 1j * rng.normal(size=(M, M, M)))
    lines, bounds = _analytic(phase, amplitude * np.exp(0j) + noise * np.exp(-1j * phase))
    assert lines == [] and bounds == []


def test_lines_that_the_population_does_not_reproduce_are_dropped():
    import array_api_compat

    from streamer.analysis.defects import reproduced_lines

    z, y, x = _zyx()
    mask = np.ones((M, M, M), bool)
    xp = array_api_compat.array_namespace(mask)

    def lines_of(phase):
        return find_vortex_lines(np.exp(1j * np.broadcast_to(phase, (M, M, M))), xp=xp, mask=mask)

    real = np.arctan2(y - 15.5, x - 8.5) + 0 * z
    spurious = np.arctan2(y - 15.5, x - 22.5) + 0 * z
    best = lines_of(real + spurious)
    members = [lines_of(real + 0.1 * k * x) for k in range(3)] + [lines_of(real + spurious)]
    kept = reproduced_lines(best, members, min_fraction=0.5)
    assert len(best) == 2 and len(kept) == 1
    assert kept[0].position[2] == pytest.approx(8.5, abs=0.05) and kept[0].reproduced_fraction == 1.0
    assert reproduced_lines(best, []) == best  # no population: nothing to check against


@pytest.mark.parametrize("step", [np.pi / 2, 2.094])
def test_a_boundary_splits_the_particle_into_two_domains_offset_by_its_step(step):
    from streamer.analysis.boundaries import segment_domains
    from streamer.analysis.displacement import particle_support

    z, y, x = _zyx()
    plate = ((np.abs(z - 16) <= 5) & ((y - 16) ** 2 + (x - 16) ** 2 <= 144)).astype(float)
    rho = plate * np.exp(1j * (step * (x > 18) + 0.05 * y))
    labels, domains = segment_domains(rho, mask=particle_support(np.abs(rho)))
    assert len(domains) == 2
    assert abs(domains[1].phase_offset_rad) == pytest.approx(step, abs=0.05)
    sides = sorted(d.centroid[2] for d in domains)
    assert sides[0] < 18 < sides[1]
    assert labels[16, 16, 10] != labels[16, 16, 24] and labels[16, 16, 10] > 0


def test_pristine_and_a_screw_pair_are_single_domains():
    from streamer.analysis.boundaries import segment_domains
    from streamer.analysis.displacement import particle_support

    z, y, x = _zyx()
    plate = ((np.abs(z - 16) <= 5) & ((y - 16) ** 2 + (x - 16) ** 2 <= 144)).astype(float)
    pair = np.arctan2(y - 15.5, x - 11.5) - np.arctan2(y - 15.5, x - 20.5)
    for phase in (0.05 * y + 0 * x, pair + 0 * z):
        rho = plate * np.exp(1j * phase)
        assert len(segment_domains(rho, mask=particle_support(np.abs(rho)))[1]) == 1


def test_shared_edges_give_each_orientations_windings_and_line_ends_their_exact_depth():
    """The windings from shared edge steps equal a plaquette's own four steps, and a line end's depth
    (from a tree of the particle's border) equals scipy's Euclidean distance transform there."""
    from scipy import ndimage

    from streamer.analysis.defects import _outside_distance, edge_steps
    from streamer.analysis.displacement import wrapped_step
    from streamer.backend import get_namespace

    xp, rng = get_namespace("numpy"), np.random.default_rng(3)
    rho = (rng.normal(size=(9, 10, 11)) + 1j * rng.normal(size=(9, 10, 11))).astype(np.complex64)
    steps = edge_steps(rho, xp=xp)
    for axis, (u, v) in ((0, (2, 1)), (1, (0, 2)), (2, (1, 0))):
        corner = {}
        for du in (0, 1):
            for dv in (0, 1):
                sl = [slice(None)] * 3
                sl[u], sl[v] = slice(du, rho.shape[u] - 1 + du), slice(dv, rho.shape[v] - 1 + dv)
                corner[du, dv] = rho[tuple(sl)]
        loop = [corner[0, 0], corner[1, 0], corner[1, 1], corner[0, 1], corner[0, 0]]
        total = sum(wrapped_step(a, b, xp=xp) for a, b in zip(loop, loop[1:]))
        want = np.round(total / (2 * math.pi)).astype(np.int8)
        assert np.array_equal(plaquette_winding(rho, xp=xp, normal_axis=axis, steps=steps), want)
        assert np.count_nonzero(want) > 0  # random phases: plenty of pierced plaquettes to compare
    for seed in range(5):
        mask = ndimage.gaussian_filter(np.random.default_rng(seed).random((14, 16, 12)), 2) > 0.5
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
        every = np.argwhere(np.ones(mask.shape, bool))
        assert np.array_equal(_outside_distance(mask)(every), edt[tuple(every.T)])
        assert edt.max() >= 2  # deep enough to tell a distance from a border flag


# ---- issue 18: planes at any orientation, steps from pi/4, members that must agree ----

def _oblique(normal_zyx, step, offset=0.0, extra=0.0):
    """A 40-wide, 14-thick plate in a 48^3 grid whose phase steps by ``step`` across a plane through its
    centre (+ ``offset`` voxels along the unit ``normal_zyx``); ``extra`` is added to the phase."""
    n = 48
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    plate = ((np.abs(z - 24) <= 7) & ((y - 24) ** 2 + (x - 24) ** 2 <= 19**2)).astype(float)
    d = normal_zyx[0] * (z - 24) + normal_zyx[1] * (y - 24) + normal_zyx[2] * (x - 24) - offset
    return plate * np.exp(1j * (step * (d > 0) + extra))


def _unit(tilt_deg, azimuth_deg):
    t, a = math.radians(tilt_deg), math.radians(azimuth_deg)
    return np.array([math.sin(t), math.cos(t) * math.sin(a), math.cos(t) * math.cos(a)])


@pytest.mark.parametrize("tilt_deg, azimuth_deg, step", [(0, 37, math.pi / 4), (25, 110, math.pi / 2),
                                                         (30, -60, math.pi), (12, 200, -2.0)])
def test_a_plane_at_any_orientation_is_found_with_its_normal_and_step(tilt_deg, azimuth_deg, step):
    from streamer.analysis.displacement import particle_support

    true = _unit(tilt_deg, azimuth_deg)
    rho = _oblique(true, step, offset=3.0)
    (b,) = find_domain_boundaries(rho, mask=particle_support(np.abs(rho)))
    cos = float(np.dot(b.normal, true))
    assert math.degrees(math.acos(min(1.0, abs(cos)))) < 5  # the same plane, either orientation
    signed = b.phase_step_rad * np.sign(cos)  # the step read along the true normal
    assert abs(np.angle(np.exp(1j * (signed - step)))) < 0.3 or (abs(step) == pytest.approx(math.pi)
                                                                  and abs(abs(signed) - math.pi) < 0.3)
    assert abs(float(np.dot(b.position - 24, true)) - 3.0) < 1.5  # the plane's offset, voxels


def test_a_large_particle_searched_on_a_sample_of_its_voxels_gives_the_same_planes(monkeypatch):
    import streamer.analysis.boundaries as boundaries
    from streamer.analysis.displacement import particle_support

    cases = [(_oblique(_unit(t, a), step, offset=3.0), _unit(t, a)) for t, a, step in
             [(0, 37, math.pi / 4), (25, 110, math.pi / 2), (30, -60, math.pi)]]
    whole = [find_domain_boundaries(rho, mask=particle_support(np.abs(rho))) for rho, _ in cases]
    assert all(int(particle_support(np.abs(rho)).sum()) > 5000 for rho, _ in cases)
    monkeypatch.setattr(boundaries, "SEARCH_MAX_VOXELS", 2000)  # these particles count as large
    for (rho, true), (w,) in zip(cases, whole):
        (b,) = find_domain_boundaries(rho, mask=particle_support(np.abs(rho)))
        assert math.degrees(math.acos(min(1.0, abs(float(np.dot(b.normal, true)))))) < 5
        assert math.degrees(math.acos(min(1.0, abs(float(np.dot(b.normal, w.normal)))))) < 2
        assert abs(abs(b.phase_step_rad) - abs(w.phase_step_rad)) < 0.1
    n = 48
    ramp = 2.5 * (np.tanh((np.arange(n)[None, None, :] - 24) / 8.0) + 1) / 2 + np.zeros((n, n, n))
    smooth = _oblique(np.array([0, 0, 1.0]), 0.0, extra=ramp)
    assert find_domain_boundaries(smooth, mask=particle_support(np.abs(smooth))) == []


def test_a_smooth_strain_gradient_is_no_boundary():
    from streamer.analysis.displacement import particle_support

    n = 48
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    ramp = 2.5 * (np.tanh((x - 24) / 8.0) + 1) / 2 + 0 * y * z  # 2.5 rad spread over ~16 voxels
    rho = _oblique(np.array([0, 0, 1.0]), 0.0, extra=ramp)
    assert find_domain_boundaries(rho, mask=particle_support(np.abs(rho))) == []


def test_boundaries_that_the_members_do_not_show_are_dropped():
    from streamer.analysis.boundaries import reproduced_boundaries
    from streamer.analysis.displacement import eroded, particle_support

    normal = _unit(20, 45)
    best = _oblique(normal, math.pi / 2)
    inner = eroded(particle_support(np.abs(best)), 1)
    found = find_domain_boundaries(best, mask=particle_support(np.abs(best)))
    assert len(found) == 1
    agree = [_oblique(normal, math.pi / 2 + 0.1 * k) for k in range(3)]
    disagree = [_oblique(normal, 0.0) for _ in range(3)]
    assert reproduced_boundaries(found, agree + disagree[:1], inner) == found
    assert reproduced_boundaries(found, disagree + agree[:1], inner) == []


def test_an_antiphase_plane_whose_blurred_amplitude_opens_a_gap_is_still_found():
    from streamer.analysis.displacement import particle_support
    from streamer.analysis.objects import analyze_object
    from streamer.backend import get_namespace
    from streamer.geometry import OrthogonalGeometry

    true = _unit(15, 70)
    rho = _oblique(true, math.pi)
    n = rho.shape[0]
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    d = true[0] * (z - 24) + true[1] * (y - 24) + true[2] * (x - 24)
    rho = rho * (np.abs(d) > 1.5)  # a pi step blurred by the resolution reads as no amplitude there
    (b,) = find_domain_boundaries(rho, mask=particle_support(np.abs(rho)))
    assert math.degrees(math.acos(min(1.0, abs(float(np.dot(b.normal, true)))))) < 5
    assert abs(abs(b.phase_step_rad) - math.pi) < 0.3
    geometry = OrthogonalGeometry(shape_zyx=rho.shape, voxel_nm=10.0)
    (seen,) = analyze_object(rho, geometry=geometry, xp=get_namespace("numpy")).domain_boundaries
    assert None not in seen.domains and seen.domains[0] != seen.domains[1]


@pytest.mark.parametrize("core", [(11.3, 12.8), (11.5, 12.5), (10.9, 13.1)])
def test_a_line_is_placed_at_its_core_inside_the_plaquette(core):
    """A vortex at a known place between the voxels: the field crosses zero there (rho = (x - x0) + i (y - y0)
    near the core, under a smooth envelope) and the line's points sit on it, not on the plaquette's centre;
    a pure-phase vortex (unit amplitude everywhere, unlike a reconstruction, whose amplitude falls at a core) is
    placed closer than the plaquette's centre is, the fit pulled towards that centre."""
    import array_api_compat

    y0, x0 = core
    z, y, x = _grid()
    envelope = np.exp(-((x - 12.0) ** 2 + (y - 12.0) ** 2) / 200.0) + 0 * z
    centre = np.floor([y0, x0]) + 0.5
    centre_error = float(np.hypot(*(centre - [y0, x0])))
    for rho, tol in ((((x - x0) + 1j * (y - y0)) * envelope, 0.01), (np.exp(1j * _vortex(y0, x0)), None)):
        rho = rho.astype(np.complex64)
        (line,) = find_vortex_lines(rho, xp=array_api_compat.array_namespace(rho), mask=np.ones(rho.shape, bool))
        assert line.winding == 1
        errors = np.hypot(line.points[:, 1] - y0, line.points[:, 2] - x0)
        assert np.all(errors <= (tol if tol is not None else 0.7 * centre_error + 1e-3))


def test_the_random_windings_along_an_antiphase_plane_are_not_lines_and_a_line_across_it_stays():
    """Across a pi step the wrapped phase change is +-pi, its sign left to noise: where a reconstruction's
    amplitude dips along the plane and its phase is noisy, the plaquettes straddling the plane wind at random
    and join into 'lines' inside it. Those are dropped (``in_antiphase_plane``); an edge line crossing the plane
    keeps most of its points away from it and stays. With the band at 0.01 voxel (the rule off) the same object keeps
    them."""
    from streamer.analysis.config import AnalysisConfig
    from streamer.analysis.objects import analyze_object
    from streamer.backend import get_namespace
    from streamer.geometry import OrthogonalGeometry

    n = 48
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    noise = np.random.default_rng(0).normal(0.0, 1.2, (n, n, n))
    near = np.abs(x - 24.0) <= 1.5 + 0 * (y + z)
    geometry = OrthogonalGeometry(shape_zyx=(n, n, n), voxel_nm=10.0)
    xp = get_namespace("numpy")
    for crossing in (False, True):
        extra = np.where(near, noise, 0.0) + (np.arctan2(y - 30.5, z - 24.5) + 0 * x if crossing else 0.0)
        rho = _oblique(np.array([0.0, 0.0, 1.0]), math.pi, extra=extra) * np.where(near, 0.15, 1.0)
        rho = np.conj(rho)  # a reconstruction: rho = |rho| exp(-i G.u)
        found = analyze_object(rho, geometry=geometry, xp=xp)
        (b,) = found.domain_boundaries
        assert abs(abs(b.phase_step_rad) - math.pi) < 0.3
        if crossing:
            (line,) = found.vortices
            assert abs(line.direction[2]) > 0.95  # along x, across the plane
        else:
            assert found.vortices == ()
            kept = analyze_object(rho, geometry=geometry, xp=xp, config=AnalysisConfig(antiphase_band_voxels=0.01))
            assert len(kept.vortices) >= 1  # the random windings the rule drops


def test_a_line_whose_core_cuts_a_tunnel_through_the_support_is_found():
    """A dislocation core's amplitude dips (blurred by the resolution): cut at the support's threshold, the
    particle holds a tunnel along the line and the phase winds around it, not inside the support. The
    tunnel is filled for the line search; without that the same object shows no line."""
    from streamer.analysis.defects import tunnels_filled
    from streamer.analysis.displacement import eroded, particle_support
    from streamer.analysis.objects import analyze_object
    from streamer.backend import get_namespace
    from streamer.geometry import OrthogonalGeometry

    z, y, x = _zyx()
    r2 = (y - 15.3) ** 2 + (x - 12.6) ** 2
    amplitude = (np.abs(z - 15.5) < 8) * (r2 < 13 ** 2) * (1 - np.exp(-r2 / (2 * 2.5**2)))
    rho = np.conj(amplitude * np.exp(1j * np.arctan2(y - 15.3, x - 12.6)))  # rho = |rho| exp(-i G.u)
    support = particle_support(np.abs(rho))
    assert not support[15, 15, 13]  # the tunnel
    xp = get_namespace("numpy")
    hidden = find_vortex_lines(xp.asarray(np.conj(rho)), xp=xp, mask=support, inner=eroded(support, 1))
    assert hidden == []
    assert tunnels_filled(support)[15, 15, 13]
    found = analyze_object(rho, geometry=OrthogonalGeometry(shape_zyx=(M, M, M), voxel_nm=10.0), xp=xp)
    (line,) = found.vortices
    assert line.type == "screw" and line.winding == 1
    np.testing.assert_allclose(line.position[1:], [15.3, 12.6], atol=0.3)


def test_tunnels_filled_fills_enclosed_holes_not_notches_open_to_the_outside():
    from streamer.analysis.defects import tunnels_filled

    block = np.zeros((12, 12, 12), bool)
    block[2:10, 2:10, 2:10] = True
    block[:, 5:7, 5:7] = False  # a tube along z, through the block
    block[4:6, 2:4, 2:10] = False  # a notch open on the block's side
    filled = tunnels_filled(block)
    assert filled[2:10, 5:7, 5:7].all() and not filled[:2].any() and not filled[10:].any()
    assert not filled[4:6, 2:4, 2:10].any()
    assert (filled & ~block).sum() == 8 * 4


def test_a_line_with_a_vortex_pair_beside_it_winds_the_same_way_at_every_step():
    """Confidence counts the line's steps, not its plaquettes: a pair of opposite vortices beside the line
    (three plaquettes a layer, winding +1, -1, +1) leaves each step's net winding +1."""
    z, y, x = _zyx()
    phase = (np.arctan2(y - 15.5, x - 12.5) - np.arctan2(y - 16.5, x - 12.5) + np.arctan2(y - 17.5, x - 12.5)
             + 0 * z)
    (line,) = _analytic(phase)[0]
    assert line.winding == 1 and line.length == 3 * (M - 2)
    assert line.confidence == pytest.approx(1.0)


def test_a_chain_whose_steps_wind_at_random_has_half_the_agreement():
    from streamer.analysis.defects import _agreement

    along = np.arange(8.0)
    assert _agreement(along, np.array([1, -1] * 4, float), 1) == pytest.approx(0.5)
    assert _agreement(np.repeat(along, 3), np.tile([1.0, -1.0, 1.0], 8), 1) == pytest.approx(1.0)


def _blurred_step_boundary(step: float, width: float):
    """The one boundary found in a plate whose phase steps by ``step`` across an oblique plane, linearly over
    ``width`` voxels."""
    from streamer.analysis.displacement import particle_support

    true = _unit(20, 50)
    n = 48
    z, y, x = np.ogrid[0:n, 0:n, 0:n]
    plate = ((np.abs(z - 24) <= 7) & ((y - 24) ** 2 + (x - 24) ** 2 <= 19**2)).astype(float)
    d = true[0] * (z - 24) + true[1] * (y - 24) + true[2] * (x - 24) - 3.0
    rho = plate * np.exp(1j * step * np.clip(d / width + 0.5, 0, 1))
    (b,) = find_domain_boundaries(rho, mask=particle_support(np.abs(rho)))
    return b


@pytest.mark.parametrize("step", [1.2, 2.0])
def test_a_step_blurred_over_two_voxels_is_read_whole(step):
    """A reconstruction blurs a boundary's step over a voxel or two; the ramp taken across the plane then tilts
    with it and shortened the step read across the plane (1.06 for 1.2, 1.91 for 2.0): the ramp is taken again
    from the domains alone."""
    b = _blurred_step_boundary(step, 2.0)
    assert abs(abs(b.phase_step_rad) - step) < 0.03


@pytest.mark.parametrize("step", [1.2, 2.0, np.pi])
@pytest.mark.parametrize("width", [3, 4])
def test_a_step_blurred_wider_is_read_where_it_stops_growing(step, width):
    """A detector grid's coarse rocking voxel blurs a step over three or four lab voxels, wider than the span the
    step is first read across (2.0 over four voxels read 1.62, 1.2 read 0.97, pi 2.90): it is read again further
    out while the reading still grows."""
    b = _blurred_step_boundary(step, width)
    assert abs(abs(b.phase_step_rad) - step) < 0.05
