"""The phasing engine: fused kernels, guided generations, averaging with error bars, warm start, quality."""

import numpy as np
import pytest

from sim.diffraction import DiffractionModel
from sim.particle import DomainBoundary, Particle, ScrewDislocation, complex_image
from streamer.analysis.boundaries import find_domain_boundaries
from streamer.analysis.defects import find_vortex_lines
from streamer.analysis.displacement import particle_support
from streamer.backend import get_namespace
from streamer.geometry import OrthogonalGeometry
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.alignment import (
    amplitude_correlation,
    register,
    shift_array,
    twin_image,
)
from streamer.phasing.genetic import average_aligned, breed, fitting, metric_values
from streamer.phasing.starts import autocorrelation_support
from streamer.phasing.kernels import Kernels
from streamer.phasing.recipe import parse_recipe

NP = get_namespace("numpy")
GEOMETRY = OrthogonalGeometry()


def _scan(particle, seed, peak_counts=2e4):
    truth = complex_image(particle, GEOMETRY)
    expected = DiffractionModel(truth, GEOMETRY, peak_counts=peak_counts).expected_volume(1.0)
    return truth, np.random.default_rng(seed).poisson(expected).astype(np.float32)


def _pair(y_nm):
    return Particle().with_defects([ScrewDislocation(6.0, y_nm, 1), ScrewDislocation(6.0, -y_nm, -1)])


@pytest.mark.parametrize("masked", [False, True])
def test_fused_kernels_match_plain_array_code(masked):
    """The numba kernels (what a CPU runs) and the namespace code (what strict checks) agree."""
    rng = np.random.default_rng(0)
    shape = (3, 10, 12, 14)
    psi = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    psi[0, 0, 0, 0] = 0
    amp = rng.random(shape[1:]).astype(np.float32)
    measured = rng.random(shape[1:]) > 0.2 if masked else None
    fused, plain = Kernels(NP), Kernels(get_namespace("strict"))
    assert fused.kind == "numba" and plain.kind == "xp"
    strict = get_namespace("strict")
    out_p, sums_p = plain.modulus(strict.asarray(psi), strict.asarray(amp),
                                  None if measured is None else strict.asarray(measured), 0.3)
    out_f, sums_f = fused.modulus(psi.copy(), amp, measured, 0.3)
    np.testing.assert_allclose(out_f, np.asarray(out_p), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(sums_f, np.asarray(sums_p), rtol=1e-4)
    for kernels in (fused, Kernels(NP, threads=1)):  # the conjugate out, for an FFTW plan's inverse_conjugate
        out_c, sums_c = kernels.modulus(psi.copy(), amp, measured, 0.3, conjugate=True)
        np.testing.assert_allclose(out_c, np.conj(np.asarray(out_p)), rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(sums_c, np.asarray(sums_p), rtol=1e-4)
    support = rng.random(shape) > 0.5
    rho, rho_p = psi.copy(), (psi * 0.5 + 1).astype(np.complex64)
    for a, b in ((0.0, 0.0), (1.0, -0.9), (0.9, 0.8)):
        want = np.asarray(plain.update(strict.asarray(rho), strict.asarray(rho_p), strict.asarray(support), a, b))
        got = fused.update(rho.copy(), rho_p, support, a, b)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got = fused.update(rho.copy(), np.conj(rho_p), support, a, b, conjugated=True)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got = np.asarray(plain.update(strict.asarray(rho), strict.asarray(np.conj(rho_p)), strict.asarray(support),
                                      a, b, conjugated=True))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_shrink_wrap_blur_is_a_wrapped_gaussian_filter_on_every_path():
    """The numba separable blur, the namespace code and scipy.ndimage agree; the support follows the blob."""
    from scipy import ndimage

    rng = np.random.default_rng(2)
    mag = rng.random((2, 16, 18, 20)).astype(np.float32) * 0.05
    mag[0, 0:3, 0:4, 0:5] += 1.0  # a blob in FFT order: it wraps around the array's corner
    mag[1, 5:8, 6:10, 7:12] += 1.0
    strict = get_namespace("strict")
    fused, plain = Kernels(NP), Kernels(strict)
    for sigma in (1.0, 1.7):
        want = np.stack([ndimage.gaussian_filter(m, sigma, mode="wrap", truncate=4.0) for m in mag])
        np.testing.assert_allclose(fused.blur(mag, sigma), want, atol=2e-6)
        np.testing.assert_allclose(np.asarray(plain.blur(strict.asarray(mag), sigma)), want, atol=2e-6)
        support = fused.shrink_support(mag, sigma, 0.3)
        np.testing.assert_array_equal(support, want > 0.3 * want.max(axis=(1, 2, 3), keepdims=True))
        np.testing.assert_array_equal(support, np.asarray(plain.shrink_support(strict.asarray(mag), sigma, 0.3)))
    assert support[0, 0, 0, 0] and support[0, -1, 1, 2] and not support[0, 8, 9, 10]  # grown across the wrap
    assert support[1, 6, 8, 9] and not support[1, 0, 0, 0]
    # the magnitude a fused update returns is |rho| after the update
    rho = (rng.normal(size=mag.shape) + 1j * rng.normal(size=mag.shape)).astype(np.complex64)
    magnitude = np.empty(mag.shape, np.float32)
    out = fused.update(rho.copy(), rho * 0.5, mag > 0.5, 1.0, -0.9, magnitude_out=magnitude)
    np.testing.assert_allclose(magnitude, np.abs(out), rtol=1e-6)


def test_fill_lines_closes_a_slab_across_a_convex_particle_and_nothing_else():
    """A plate in FFT order (it wraps around the array's corner) with an oblique empty slab comes back filled, but
    for the slab's ends at the rim (where no line along z, y or x has plate on both sides), and never beyond the
    plate; the whole plate and one with a quarter cut away come back as they are; numba and the namespace code
    agree."""
    grids = np.meshgrid(*[np.fft.fftfreq(n, 1 / n) for n in (16, 24, 24)], indexing="ij")
    z, y, x = grids
    plate = (np.abs(z) <= 3) & ((y / 9.0) ** 2 + (x / 7.0) ** 2 <= 1)
    slab = np.abs(0.3 * z + 0.8 * y - 0.5 * x - 1.0) < 1.2
    dented = plate & ~((y > 0) & (x > 0))  # a quarter cut away: concave, but no line along an axis crosses the cut
    support = np.stack([plate, plate & ~slab, dented])
    strict = get_namespace("strict")
    fused = Kernels(NP).fill_lines(support)
    np.testing.assert_array_equal(fused, np.asarray(Kernels(strict).fill_lines(strict.asarray(support))))
    np.testing.assert_array_equal(fused[0], plate)
    np.testing.assert_array_equal(fused[2], dented)
    gap = plate & slab
    assert not (fused[1] & ~plate).any() and gap.sum() > 200 and (fused[1] & gap).sum() > 0.85 * gap.sum()
    assert not support[1, 0, 0, 0] and fused[1, 0, 0, 0]
    random = np.random.default_rng(3).random((2, 9, 10, 11)) < 0.1  # odd sizes: the centre of a line
    np.testing.assert_array_equal(Kernels(NP).fill_lines(random),
                                  np.asarray(Kernels(strict).fill_lines(strict.asarray(random))))


def test_metrics_rank_and_breeding_keeps_the_best():
    rng = np.random.default_rng(1)
    members = (rng.random((3, 8, 8, 8)) * np.exp(1j * rng.random((3, 8, 8, 8)))).astype(np.complex64)
    supports = np.abs(members) > 0.3
    chi = np.array([0.3, 0.1, 0.2])
    assert list(np.argsort(metric_values("chi", members, supports, chi))) == [1, 2, 0]
    assert np.argmin(metric_values("area", members, supports, chi)) == np.argmin(supports.sum(axis=(1, 2, 3)))
    sharp = members.copy()
    sharp[2] = 0
    sharp[2, 4, 4, 4] = 1  # one bright voxel: the sharpest image there is
    assert np.argmin(metric_values("sharpness", sharp, supports, chi)) == 2
    children, _ = breed(members, supports, np.array([1, 2, 0]))
    np.testing.assert_array_equal(children[1], members[1])
    assert not np.array_equal(children[0], members[0])
    # a partner that is the best shifted by whole voxels and phase-offset breeds back into the best
    twin_members = np.stack([np.roll(members[1], (2, -1, 3), axis=(0, 1, 2)) * np.exp(0.7j), members[1]])
    kids, _ = breed(twin_members.astype(np.complex64), np.ones((2, 8, 8, 8), bool), np.array([1, 0]))
    np.testing.assert_allclose(np.abs(kids[0]), np.abs(members[1]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unknown ranking metric"):
        metric_values("beauty", members, supports, chi)


def test_only_members_that_fit_about_as_well_as_the_best_are_averaged(drifting_pair):
    ranked = np.array([3, 0, 2, 1])
    chi = np.array([0.0108, 0.03, 0.0115, 0.0100])
    np.testing.assert_array_equal(fitting(ranked, chi, 1.1), [3, 0])
    np.testing.assert_array_equal(fitting(ranked, chi, 3.0), ranked)
    np.testing.assert_array_equal(fitting(ranked, np.full(4, np.nan), 1.1), ranked)
    # another metric ranked member 1 first: it stays, though it fits worst
    np.testing.assert_array_equal(fitting(np.array([1, 3, 0, 2]), chi, 1.1), [1, 3, 0])
    # through a reconstruction: every member's chi-square is reported and the average holds exactly those that fit
    (_, intensity), _ = drifting_pair
    for ratio in (1.0, 10.0):
        cfg = PhasingConfig(population=3, average=3, recipe="20HIO, 10ER", average_max_chi_ratio=ratio,
                            average_min_agreement=0.0)
        result = reconstruct(intensity, xp=NP, config=cfg, rng=4)
        chi = np.array(result.metric["chi_square"])
        assert len(chi) == 3 and result.metric["averaged"] == len(result.members)
        assert len(result.members) == (1 if ratio == 1.0 else 3) == int(np.sum(chi <= ratio * chi.min() * (1 + 1e-3)))
    # members that fit but do not agree with the best are left out too (at 1.0 every other one)
    alone = reconstruct(intensity, xp=NP, config=cfg.replace(average_min_agreement=1.0), rng=4)
    assert alone.metric["averaged"] == len(alone.members) == 1


def test_members_that_disagree_with_the_best_are_not_averaged():
    """Two solutions that fit alike (an antiphase particle's amplitude shared otherwise between its domains):
    only the best's is averaged, moved, twinned or phase-shifted as its members may be."""
    truth, _ = _scan(_pair(54.0), 0)
    a = truth.astype(np.complex64)
    z = np.arange(a.shape[0])[:, None, None]
    b = (a * np.where(z < a.shape[0] // 2, 0.3, 1.0)).astype(np.complex64)  # half the particle faint
    members = np.stack([a, shift_array(a, (1.0, -2.0, 0.0)) * np.exp(0.7j), b, twin_image(b)])
    mean, amp_err, _, aligned, agree = average_aligned(members, 0, 0.9)
    np.testing.assert_array_equal(agree, [True, True, False, False])
    assert len(aligned) == 2 and amplitude_correlation(mean, a) > 0.999 and float(amp_err.max()) < 0.05 * np.abs(a).max()
    everyone = average_aligned(members, 0, 0.0)
    assert everyone[4].all() and amplitude_correlation(everyone[0], a) < 0.99


def test_the_average_keeps_the_amplitude_where_members_put_a_step_a_voxel_apart():
    """Two members of a plate with a pi step, one's a voxel further along z than the other's over half the plate
    (no translation of one member makes it the other): their sum cancels on that half layer, the crystal does not;
    the average keeps the members' amplitude there, with the phase of their sum."""
    shape = (16, 16, 16)
    z, y = np.arange(shape[0])[:, None, None], np.arange(shape[1])[None, :, None]
    plate = np.zeros(shape, np.complex64)
    plate[4:12, 4:12, 4:12] = 1.0
    members = np.stack([plate * np.where(z < 8, 1, -1), plate * np.where(z < 8 + (y >= 8), 1, -1)])
    mean, _, phase_err, aligned, _ = average_aligned(members.astype(np.complex64), 0, 0.0)
    np.testing.assert_allclose(np.abs(mean), np.abs(aligned).mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.angle(mean * np.conj(aligned.sum(axis=0)))[5:11, 5:11, 5:11], 0.0, atol=1e-5)
    layer = (8, slice(9, 11), slice(5, 11))  # where the members' steps differ, away from the plate's edges
    assert float(np.abs(aligned.mean(axis=0))[layer].max()) < 0.3  # the sum cancels there
    assert float(np.abs(mean)[layer].min()) > 0.8
    assert float(phase_err[layer].min()) > 1.0  # the members disagree there, in phase


def _chi_square(rho, intensity):
    """The engine's misfit of a centred object against a centred intensity (orthonormal FFT, no mask)."""
    spectrum = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(rho), norm="ortho"))
    return float(np.sum((np.abs(spectrum) - np.sqrt(intensity)) ** 2) / np.sum(intensity))


def test_the_polished_average_fits_the_data_better_than_the_average(drifting_pair):
    """Members end with errors of their own and their average fits none of the data's constraints exactly;
    polished by error reduction inside the best member's support, it fits better (BENCHMARKS.md, "A polished
    average")."""
    (_, intensity), _ = drifting_pair
    cfg = PhasingConfig(population=4, average=4, recipe="60HIO, 20ER", average_max_chi_ratio=10.0, polish_er=0)
    plain = reconstruct(intensity, xp=NP, config=cfg, rng=6)
    polished = reconstruct(intensity, xp=NP, config=cfg.replace(polish_er=40), rng=6)
    assert "polished_chi_square" not in plain.metric
    np.testing.assert_array_equal(plain.members, polished.members)  # the members are not touched
    before, after = _chi_square(plain.rho, intensity), _chi_square(polished.rho, intensity)
    assert after == pytest.approx(polished.metric["polished_chi_square"], rel=0.02)
    assert after < 0.5 * before, (before, after)
    single = reconstruct(intensity, xp=NP, config=cfg.replace(polish_er=40, average=1), rng=6)
    assert "polished_chi_square" not in single.metric  # one member is already a fit: nothing to polish
    warm = reconstruct(intensity, xp=NP, config=cfg.replace(polish_er=40, warm_start=True), rng=6, start=plain.rho)
    assert warm.warm_started and "polished_chi_square" not in warm.metric  # warm starts are not polished


def test_subvoxel_registration_recovers_a_fractional_shift():
    truth, _ = _scan(_pair(54.0), 0)
    moved = shift_array(truth.astype(np.complex64), (0.0, 1.4, -2.3)) * np.exp(1j * 0.5)
    reg = register(moved, truth, subvoxel=True)
    assert reg.shift == pytest.approx((0.0, -1.4, 2.3), abs=0.25)
    assert reg.correlation > 0.99 and not reg.twin


def test_subvoxel_registration_finds_the_twin_on_odd_grids():
    """The twin's cross-correlation and overlap come from the moving object's spectrum (a mirror ramp):
    they must hold on odd and even axes alike, fractional shift and all."""
    rng = np.random.default_rng(5)
    z, y, x = np.ogrid[:15, :18, :13]
    amp = np.exp(-((z - 6.3) ** 2 / 6 + (y - 8.0) ** 2 / 10 + (x - 5.2) ** 2 / 4)) * (1 + 0.5 * (y > 8))
    obj = (amp * np.exp(1j * rng.uniform(-1, 1, amp.shape) * amp)).astype(np.complex64)
    twin = register(shift_array(twin_image(obj), (1.3, -2.6, 0.4)) * np.exp(1j * 1.1), obj, subvoxel=True)
    plain = register(shift_array(obj, (1.3, -2.6, 0.4)) * np.exp(1j * 1.1), obj, subvoxel=True)
    assert twin.twin and not plain.twin
    assert plain.shift == pytest.approx((-1.3, 2.6, -0.4), abs=0.25)
    for reg in (twin, plain):  # the parabola's fraction is good to about a tenth of a voxel
        assert reg.correlation > 0.99 and np.abs(reg.aligned - obj).max() < 0.1 * np.abs(obj).max()


@pytest.fixture(scope="module")
def drifting_pair():
    """Two consecutive scans of an operando series: the pair moves 12 nm apart between them."""
    return _scan(_pair(54.0), 1), _scan(_pair(66.0), 2)


@pytest.fixture(scope="module")
def cold_results(drifting_pair):
    # every member averaged, whichever fit best (which members pass the cuts turns on the CPU's rounding)
    cfg = PhasingConfig(population=4, average=4, average_max_chi_ratio=100.0, average_min_agreement=0.0)
    (_, i1), (_, i2) = drifting_pair
    return reconstruct(i1, xp=NP, config=cfg, rng=1), reconstruct(i2, xp=NP, config=cfg, rng=2)


def test_averaged_population_matches_the_truth_with_error_bars(drifting_pair, cold_results):
    (truth, _), _ = drifting_pair
    result, _ = cold_results
    assert result.members.shape == (4,) + truth.shape and result.error_curve.shape == (610,)
    aligned = register(result.rho, truth).aligned
    assert amplitude_correlation(aligned, truth) >= 0.95
    inside = particle_support(np.abs(result.rho))
    assert 0 < np.median(result.amplitude_error[inside]) < 0.2 * np.abs(result.rho).max()
    assert 0 < np.median(result.phase_error[inside]) < 0.5
    lines = find_vortex_lines(aligned, xp=NP, mask=particle_support(np.abs(aligned)))
    assert sorted(line.winding for line in lines) == [-1, 1]


def test_warm_start_reaches_the_cold_error_in_a_third_of_the_iterations(drifting_pair, cold_results):
    (_, _), (truth2, i2) = drifting_pair
    first, cold = cold_results
    warm = reconstruct(i2, xp=NP, config=PhasingConfig(population=4, average=4, warm_start=True), rng=2, start=first.rho)
    assert warm.warm_started and warm.recipe == "40HIO, 30ER"
    # where the cold recipe's cycles end (400 iterations of `(180HIO, 20ER)*2, 210ER`): its ER tail then polishes
    # below what 70 warm iterations do
    steps = parse_recipe(cold.recipe).ops
    assert str(steps[-1]).endswith("ER") and "HIO" in str(steps[0])
    cycles_done = cold.error_curve[cold.iterations - steps[-1].iterations - 1]
    reached = np.flatnonzero(warm.error_curve <= cycles_done)
    assert reached.size and reached[0] + 1 <= len(cold.error_curve) / 3, (reached[:1], cycles_done)
    assert amplitude_correlation(register(warm.rho, truth2).aligned, truth2) >= 0.95
    lines = find_vortex_lines(warm.rho, xp=NP, mask=particle_support(np.abs(warm.rho)))
    assert sorted(line.winding for line in lines) == [-1, 1]


def test_guided_generations_run_and_report(drifting_pair):
    (_, intensity), _ = drifting_pair
    seen = []
    cfg = PhasingConfig(recipe="60HIO, 20ER", population=4, generations=2, average=2, coarse_min_voxels=8)
    result = reconstruct(intensity, xp=NP, config=cfg, rng=5, progress=seen.append)
    assert result.generations == 2 and result.error_curve.shape == (160,)
    assert [s["generation"] for s in seen if s.get("done")] == [1, 2]
    assert any(s.get("iteration") == 10 for s in seen)
    search = [s for s in seen if "search" in s]  # the cold start's coarse search reports each candidate first
    assert [s["search"] for s in search] == [1, 2, 3] and seen[:3] == search
    assert search[0]["shape"] == tuple(n // 2 for n in intensity.shape)
    assert result.members.shape[0] == 2


def test_guided_run_is_the_same_on_the_strict_namespace(drifting_pair):
    (_, intensity), _ = drifting_pair
    cfg = PhasingConfig(recipe="20ER", population=3, generations=2, average=2, polish_er=5,  # ER: no chaos
                        average_max_chi_ratio=10.0)  # both averaged, so the average is polished too
    strict = reconstruct(intensity, xp=get_namespace("strict"), config=cfg, rng=4)
    plain = reconstruct(intensity, xp=NP, config=cfg, rng=4)
    np.testing.assert_allclose(strict.chi_square, plain.chi_square, rtol=2e-3)
    assert strict.metric["polished_chi_square"] == pytest.approx(plain.metric["polished_chi_square"], rel=2e-3)
    assert np.abs(strict.rho - plain.rho).max() <= 2e-3 * np.abs(plain.rho).max()


def test_boundary_and_low_dose_pristine():
    """The live default (8 members, the best 4 averaged); 4 members all averaged fall below 0.95 about
    one start in three, at the boundary, so the test asks what the product ships."""
    boundary = Particle().with_defects(boundaries=[DomainBoundary(step_rad=2 * np.pi / 3)])
    truth, intensity = _scan(boundary, 3)
    result = reconstruct(intensity, xp=NP, config=PhasingConfig(), rng=3)
    aligned = register(result.rho, truth).aligned
    assert amplitude_correlation(aligned, truth) >= 0.95
    found = find_domain_boundaries(aligned, mask=particle_support(np.abs(aligned)), jump_rad=1.2)
    assert len(found) == 1 and abs(abs(found[0].phase_step_rad) - 2 * np.pi / 3) < 0.4

    truth, intensity = _scan(Particle(), 4, peak_counts=2e3)  # a tenth of the dose
    result = reconstruct(intensity, xp=NP, config=PhasingConfig(), rng=4)
    assert amplitude_correlation(register(result.rho, truth).aligned, truth) >= 0.95
    assert find_vortex_lines(result.rho, xp=NP, mask=particle_support(np.abs(result.rho))) == []


def test_a_cold_member_starts_from_its_best_fitting_coarse_candidate(drifting_pair, monkeypatch):
    """The coarse search: one candidate per autocorrelation threshold, phased on the central half of q; each member
    starts from the one that fits best there, interpolated onto the full grid inside its support, whatever else
    shares its batch (a cluster's shards); no search: the plain autocorrelation start."""
    from streamer.phasing import engine

    (_, intensity), _ = drifting_pair
    cfg = PhasingConfig(recipe="20HIO, 10ER", coarse_min_voxels=8)  # the 48^3 grid's search, on 24^3
    chi = {}
    run = engine.run_members

    def recording(problem, rho, support, **kw):
        gen = run(problem, rho, support, **kw)
        chi[problem.config.autocorrelation_threshold] = gen.chi_square
        assert problem.shape == tuple(n // 2 for n in intensity.shape)  # the central half of q
        assert problem.config.autocorrelation_scale == 0.5  # half the autocorrelation: the particle's size
        return gen

    monkeypatch.setattr(engine, "run_members", recording)
    problem = engine.make_problem(intensity, config=cfg, rng=5)
    rho, support = engine.start_members(problem, range(3))
    assert rho.shape == (3, *intensity.shape) and support.any(axis=(1, 2, 3)).all() and not np.any(rho[~support])
    singles = {t: engine.start_members(engine.make_problem(intensity, config=cfg.replace(coarse_thresholds=[t]),
                                                           rng=5), range(3))[0] for t in cfg.coarse_thresholds}
    for k in range(3):
        best = min(cfg.coarse_thresholds, key=lambda t: chi[t][k])
        np.testing.assert_allclose(rho[k], singles[best][k], atol=1e-6 * np.abs(rho[k]).max())
    alone = engine.start_members(problem, [2])[0][0]
    np.testing.assert_allclose(alone, rho[2], atol=1e-4 * np.abs(rho[2]).max())

    monkeypatch.setattr(engine, "run_members", run)
    plain = engine.make_problem(intensity, config=cfg.replace(coarse_thresholds=[]), rng=5)
    rho, support = engine.start_members(plain, range(2))
    ac = np.abs(np.fft.ifftn(plain.amplitude.astype(np.complex128) ** 2))
    expected = autocorrelation_support(ac, cfg.autocorrelation_threshold, cfg.autocorrelation_scale)
    assert (support[0] == expected).mean() > 0.999
    with pytest.raises(ValueError, match="coarse_thresholds"):
        PhasingConfig(coarse_thresholds=[0.1, 1.5])
    with pytest.raises(ValueError, match="coarse_autocorrelation_scales"):
        PhasingConfig(coarse_autocorrelation_scales=[])
    both = PhasingConfig(coarse_autocorrelation_scales=[0.5, 1.0])
    assert both.coarse_candidates(1) == [(t, 1.0) for t in (0.1, 0.04, 0.02)]  # odd members: the whole support
    assert both.search == (0.5, 3, 32)  # what the time budget counts: three candidates a member, as with one scale
    assert not PhasingConfig().searches(intensity.shape)  # 24^3 is too coarse to search on by default
    assert PhasingConfig().searches((64, 128, 128)) and not PhasingConfig(coarse_crop=1).searches((64, 128, 128))


def test_members_take_the_coarse_scales_in_turn(drifting_pair, monkeypatch):
    """Two scales: even members search from half the autocorrelation, odd ones from all of it, each batch of
    members sharing a candidate run together; a member's start is the one a search of its own scale alone gives."""
    from streamer.phasing import engine

    (_, intensity), _ = drifting_pair
    cfg = PhasingConfig(recipe="20HIO, 10ER", coarse_min_voxels=8, coarse_thresholds=[0.1, 0.04],
                        coarse_autocorrelation_scales=[0.5, 1.0])
    calls = []
    run = engine.run_members

    def recording(problem, rho, support, **kw):
        calls.append((problem.config.autocorrelation_threshold, problem.config.autocorrelation_scale, len(rho)))
        return run(problem, rho, support, **kw)

    monkeypatch.setattr(engine, "run_members", recording)
    rho, _ = engine.start_members(engine.make_problem(intensity, config=cfg, rng=5), range(3))
    assert sorted(calls) == [(0.04, 0.5, 2), (0.04, 1.0, 1), (0.1, 0.5, 2), (0.1, 1.0, 1)]
    for scale, members in ((0.5, [0, 2]), (1.0, [1])):
        one = cfg.replace(coarse_autocorrelation_scales=[scale])
        alone = engine.start_members(engine.make_problem(intensity, config=one, rng=5), members)[0]
        np.testing.assert_allclose(alone, rho[members], atol=1e-4 * np.abs(rho).max())


def test_warm_start_of_another_shape_is_refused(drifting_pair):
    (_, intensity), _ = drifting_pair
    with pytest.raises(ValueError, match="warm start has shape"):
        reconstruct(intensity, xp=NP, config=PhasingConfig(warm_start=True, population=1), start=np.ones((8, 8, 8)))


def test_cold_starts_fill_the_support_along_lines_and_warm_starts_do_not(drifting_pair):
    """The line fill closes the slab a pi step opens in a cold start; a warm start keeps its previous support's shape
    (filled, the live series carried a curvature through the thickness: BENCHMARKS.md)."""
    from streamer.phasing.engine import make_problem

    (_, intensity), _ = drifting_pair
    cold = make_problem(intensity, config=PhasingConfig())
    warm = make_problem(intensity, config=PhasingConfig(warm_start=True), start=np.ones(intensity.shape, np.complex64))
    assert cold.shrinkwrap.fill_lines and not warm.shrinkwrap.fill_lines
    assert warm.shrinkwrap.sigma_start == warm.shrinkwrap.sigma_end
    assert not make_problem(intensity, config=PhasingConfig(shrinkwrap={"fill_lines": False})).shrinkwrap.fill_lines


def test_thread_count_is_a_setting_not_a_result(drifting_pair):
    """One thread (a shared host) reconstructs what every core does."""
    (_, intensity), _ = drifting_pair
    cfg = PhasingConfig(recipe="20ER", population=2, average=2)
    one = reconstruct(intensity, xp=NP, config=cfg.replace(threads=1), rng=6)
    every = reconstruct(intensity, xp=NP, config=cfg, rng=6)
    np.testing.assert_allclose(one.chi_square, every.chi_square, rtol=1e-3)
    with pytest.raises(ValueError, match="threads"):
        PhasingConfig(threads=-1)



def test_plans_learned_ahead_are_saved_for_later_runs(tmp_path, monkeypatch):
    """ops/fft/learn_plans.py plans the shapes given and leaves wisdom a later run loads."""
    import runpy
    import sys
    from pathlib import Path

    from streamer.phasing import fft, wisdom
    from streamer.phasing.wisdom import load_wisdom, wisdom_path

    monkeypatch.setattr(fft, "_planner", fft._planner)  # the script configures this process: restored after
    monkeypatch.setattr(wisdom, "_wisdom_dir", wisdom._wisdom_dir)
    monkeypatch.setenv("BCDI_STREAM_CACHE", str(tmp_path))  # the [fft] cache_dir default's fallback
    script = Path(__file__).resolve().parents[2] / "ops/fft/learn_plans.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--shape", "2", "8", "8", "8", "--effort", "estimate"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    assert wisdom_path().parent == tmp_path and wisdom_path().stat().st_size > 0 and load_wisdom()
    monkeypatch.setattr(sys, "argv", [str(script), "--shape", "2", "0", "8", "8"])
    with pytest.raises(SystemExit) as refused:
        runpy.run_path(str(script), run_name="__main__")
    assert refused.value.code == 2


def test_cuda_kernels_wrap_as_cupy_would_for_the_nvrtc_check():
    """ops/gpu/check_cuda_kernels.py wraps every CUDA body with typed const inputs and output references,
    and refuses a dtype it cannot map (so a new kernel cannot slip past the GPU-less compile check)."""
    import runpy
    from pathlib import Path

    from streamer.phasing.kernels import CUDA_KERNELS

    check = runpy.run_path(str(Path(__file__).resolve().parents[2] / "ops/gpu/check_cuda_kernels.py"))
    source = check["kernel_source"](*CUDA_KERNELS["update"])
    assert 'extern "C" __global__ void bcdi_update(' in source
    assert "const bool support = _raw_support[i];" in source and "complex<float> &rho = _raw_rho[i];" in source
    assert CUDA_KERNELS["update"][2] in source
    for spec in CUDA_KERNELS.values():
        check["kernel_source"](*spec)  # every dtype maps to a C type
    with pytest.raises(ValueError, match="float16"):
        check["kernel_source"]("float16 x", "float32 y", "y = x;", "k")


def test_gpu_path_check_passes_on_strict_and_catches_a_wrong_step(monkeypatch, capsys):
    """ops/gpu/check_gpu_path.py (the first thing to run on a CUDA machine) compares a namespace's steps and
    reconstruction with numpy's: it holds for array-api-strict, and fails when the namespace's blur is off."""
    import runpy
    from pathlib import Path

    from streamer.phasing import kernels

    check = runpy.run_path(str(Path(__file__).resolve().parents[2] / "ops/gpu/check_gpu_path.py"))
    assert check["main"](["--backend", "strict", "--size", "24"]) == 0
    assert "all checks hold" in capsys.readouterr().out
    convolve = kernels._wrapped_convolve
    monkeypatch.setattr(kernels, "_wrapped_convolve", lambda xp, a, w, axis: convolve(xp, a, w, axis) * 1.001)
    assert check["main"](["--backend", "strict", "--size", "24"]) == 1
    out = capsys.readouterr().out
    assert "FAIL shrink-wrap blur (sigma 1.0)" in out and "ok   support update (HIO)" in out


def test_preloaded_kernels_are_the_ones_a_reconstruction_runs():
    """``preload_numba_kernels`` (the reconstruct command runs it on a thread while it reads its input) loads
    every signature a reconstruction calls, masked or not: none is compiled or loaded later (fresh process)."""
    import subprocess
    import sys

    script = """
import numpy as np
from streamer.backend import get_namespace
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.kernels import _numba_kernels, preload_numba_kernels
from streamer.phasing.operators import ShrinkWrap
assert preload_numba_kernels()
before = [len(k.signatures) for k in _numba_kernels()]
rng = np.random.default_rng(0)
intensity = rng.poisson(50 * rng.random((16, 16, 16))).astype(np.float32)
mask = np.zeros(intensity.shape, bool)
mask[:, 0] = True
config = PhasingConfig(recipe="4HIO, 4ER", population=2, average=2, shrinkwrap=ShrinkWrap(every=2))
for m in (None, mask):
    reconstruct(intensity, xp=get_namespace("numpy"), config=config, rng=1, mask=m)
print(before, [len(k.signatures) for k in _numba_kernels()])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = done.stdout.strip().split("] [")
    assert before.lstrip("[") == after.rstrip("]"), done.stdout


def test_inverse_once_is_the_orthonormal_inverse_fft_with_and_without_fftw():
    from streamer.phasing import fft

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 6, 10, 8)) + 1j * rng.standard_normal((3, 6, 10, 8))).astype(np.complex64)
    want = np.fft.ifftn(x.astype(np.complex128), axes=(-3, -2, -1), norm="ortho")
    batched = fft.FFTWPlan((3, 6, 10, 8), threads=2, effort="FFTW_ESTIMATE")  # small members: one batched plan
    got = fft.inverse_once(x, threads=2, plan=batched)  # through a one-member plan that takes its wisdom
    assert got.dtype == np.complex64 and got.shape == x.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(fft.inverse_once(x[0], plan=batched), want[0], atol=1e-5)  # one volume, no batch axis
    np.testing.assert_allclose(fft.inverse_once(x), want, atol=1e-5)  # no FFTW plan: scipy's pocketfft


@pytest.mark.parametrize("batch", [1, 3])
def test_inverse_once_through_a_plan_that_transforms_one_member_at_a_time(monkeypatch, batch):
    from streamer.phasing import fft

    monkeypatch.setattr(fft, "MEMBER_SWEEP_VOXELS", 1)  # members this small are swept too
    plan = fft.FFTWPlan((batch, 6, 10, 8), threads=1, effort="FFTW_ESTIMATE")
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 6, 10, 8)) + 1j * rng.standard_normal((2, 6, 10, 8))).astype(np.complex64)

    def elsewhere(*args, **kwargs):
        raise AssertionError("the plan's buffers were not used")

    import scipy.fft

    monkeypatch.setattr(scipy.fft, "ifftn", elsewhere)
    monkeypatch.setattr(fft.FFTWPlan, "__init__", elsewhere)  # no other plan made either
    got = fft.inverse_once(x, plan=plan)
    np.testing.assert_allclose(got, np.fft.ifftn(x, axes=(-3, -2, -1), norm="ortho"), atol=1e-5)


def test_warm_members_each_get_their_own_smooth_curvature():
    """Members 1.. of a warm start carry the previous object's phase times white noise and a quadratic phase of
    their own (zero and flat at the particle's centre, even in r, scaled to the particle's rms extent);
    member 0 starts from the previous object exactly."""
    from streamer.phasing.engine import make_problem, start_members

    shape = (16, 20, 24)
    start = np.zeros(shape, np.complex64)
    start[4:12, 5:15, 6:18] = 1.0  # a box about the centre (the start as a result holds it, centred)
    intensity = np.ones(shape, np.float32)
    cfg = PhasingConfig(population=4, warm_start=True, warm_perturbation_rad=0.0, warm_curvature_rad=0.3)
    rho, _ = start_members(make_problem(intensity, config=cfg, rng=1, start=start), range(4))
    shifted = np.fft.fftshift(rho, axes=(1, 2, 3))  # back to the centred frame
    np.testing.assert_array_equal(shifted[0], start)
    centre = tuple(n // 2 for n in shape)
    phases = np.angle(shifted[1:][(slice(None), *np.nonzero(np.abs(start) > 0))])
    assert np.all(np.abs(np.angle(shifted[1:][(slice(None), *centre)])) < 1e-6)  # no offset, no ramp at the centre
    assert 0.05 < np.std(phases) < 2.0  # a smooth phase of the asked size over the particle
    assert not np.allclose(phases[0], phases[1], atol=0.01)  # each member its own
    for member in shifted[1:]:  # even: phi(c + d) = phi(c - d)
        np.testing.assert_allclose(np.angle(member[8 + 3, 10 - 4, 12 + 5]), np.angle(member[8 - 3, 10 + 4, 12 - 5]),
                                   atol=1e-5)
    flat = start_members(make_problem(intensity, config=cfg.replace(warm_curvature_rad=0.0), rng=1, start=start),
                         range(4))[0]
    np.testing.assert_array_equal(flat[1], flat[0])  # neither noise nor curvature: all members alike
