import numpy as np
import pytest

from streamer.analysis.displacement import (
    particle_fields,
    remove_ramp,
    strain_along_q,
    strain_energy,
    strain_energy_estimate,
)
from streamer.analysis.views import central_slices

Q, VOXEL, EPS = 11.4, 12.0, 2e-4


def _plate():
    support = np.zeros((12, 20, 20), bool)
    support[2:10, 3:17, 3:17] = True
    return support


def test_strain_of_two_opposite_domains_and_its_energy():
    z, y, x = np.ogrid[0:12, 0:20, 0:20]
    eps = np.where(x >= 10, EPS, -EPS)  # balanced, so the mean (the phase ramp) is zero
    rho = np.exp(1j * Q * eps * z * VOXEL) * _plate()
    flat, ramp, _ = remove_ramp(rho, _plate())
    assert ramp[0] == pytest.approx(0, abs=1e-9)
    s = strain_along_q(flat, _plate(), voxel_nm=VOXEL, q_inv_nm=Q)  # uniform along z: the window changes nothing
    inside = np.isfinite(s)
    assert np.array_equal(inside, _plate())  # forward and backward steps reach every voxel of the particle
    np.testing.assert_allclose(np.abs(s[inside]), EPS, rtol=1e-6)
    e = strain_energy(s, voxel_nm=VOXEL)
    volume = inside.sum() * (VOXEL * 1e-9) ** 3
    assert e["energy_j"] == pytest.approx(0.5 * 150e9 * EPS**2 * volume, rel=1e-6, abs=0)
    assert e["rms_strain"] == pytest.approx(EPS, rel=1e-9, abs=0)


def test_a_phase_ramp_and_a_screw_dislocation_are_not_strain():
    z, y, x = np.ogrid[0:12, 0:20, 0:20]
    rho = np.exp(1j * (0.3 * z + np.arctan2(y - 9.5, x - 9.5) + 0 * z)) * _plate()
    flat, ramp, _ = remove_ramp(rho, _plate())
    assert ramp[0] == pytest.approx(0.3, abs=1e-9)
    s = strain_along_q(flat, _plate(), voxel_nm=VOXEL, q_inv_nm=Q)
    assert np.nanmax(np.abs(s)) < 1e-9


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        strain_along_q(np.ones((4, 4, 4)), np.ones((4, 4)), voxel_nm=1, q_inv_nm=1)
    with pytest.raises(ValueError, match="no pair"):
        strain_along_q(np.ones((4, 4, 4)), np.zeros((4, 4, 4)), voxel_nm=1, q_inv_nm=1)


def test_the_live_page_shows_the_strain_the_analysis_measures():
    """One strain definition: the page's slices are cuts of the particle's one strain field."""
    z, y, x = np.ogrid[0:12, 0:20, 0:20]
    rho = np.exp(1j * (Q * EPS * VOXEL * (z - 6.0) ** 2 / 4 + 0.2 * x)) * _plate()
    fields = particle_fields(rho, voxel_nm=VOXEL, q_inv_nm=Q, threshold=0.2, erosion=1)
    view = central_slices(fields)
    cz, cy, cx = view["centre"]
    oz, oy, ox = view["origin"]
    want = np.where(fields.inner, fields.strain, np.nan)[cz, oy:oy + view["shape"][1], ox:ox + view["shape"][2]]
    np.testing.assert_allclose(view["strain"]["yx"], want.astype(np.float32), equal_nan=True)
    assert np.isfinite(view["strain"]["yx"]).any()


def _thin_plate(rng, surface_error_rad=0.0, noise_rad=0.0, eps=0.0, half=3):
    """The demo's plate on its grid (2 ``half`` + 1 = 7 layers of 12 nm, 24 x 22 voxels across), its outer layers at
    a third of the amplitude with a phase error as a reconstruction leaves them, a little phase noise inside;
    ``eps`` (z, y, x -> strain) adds a strain field through the thickness."""
    z, y, x = np.ogrid[0:16, 0:32, 0:32]
    across = ((y - 16) / 11) ** 2 + ((x - 16) / 12) ** 2 <= 1
    amp = np.where(np.abs(z - 8) <= half, 1.0, np.where(np.abs(z - 8) == half + 1, 0.3, 0.0)) * across
    phase = noise_rad * rng.standard_normal(amp.shape)
    phase += np.where(np.abs(z - 8) == half + 1, surface_error_rad * rng.choice([-1.0, 1.0], amp.shape), 0.0)
    if callable(eps):
        phase += np.cumsum(eps(z, y, x) * np.ones(amp.shape), axis=0) * Q * VOXEL  # phi = |G| * integral of eps dz
    return amp * np.exp(-1j * phase)  # rho = |rho| exp(-i G.u)


def test_a_strain_free_plate_whose_surface_phase_is_off_reads_no_strain_or_energy(rng):
    """Issue 19: surface layers off by up to 0.5 rad made a strain-free plate read strains of 1e-3 and energies
    a thousand times the noise's. Only the reliable interior is read now, and its noise is averaged along q."""
    rho = _thin_plate(rng, surface_error_rad=0.5, noise_rad=0.01)
    fields = particle_fields(rho, voxel_nm=VOXEL, q_inv_nm=Q, threshold=0.2, erosion=1)
    assert not (fields.reliable & (np.abs(rho) < 0.5)).any()  # the dim outer layers are left out
    assert np.sqrt(np.nanmean(fields.strain**2)) < 8e-5 and np.isfinite(fields.strain).sum() > 600
    plain = strain_along_q(remove_ramp(np.conj(rho), fields.support)[0], fields.support, voxel_nm=VOXEL,
                           q_inv_nm=Q, smoothing_voxels=0)  # the old reading: every layer, plain steps
    assert np.nanmax(np.abs(plain)) > 3e-3
    e = strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q)
    clean = strain_energy_estimate(particle_fields(_thin_plate(rng), voxel_nm=VOXEL, q_inv_nm=Q), voxel_nm=VOXEL,
                                   q_inv_nm=Q)
    assert clean["energy_j"] == pytest.approx(0, abs=1e-25)
    assert e["energy_j"] < 2 * e["noise_energy_j"] + 1e-21  # what is left is the noise, and the error says so
    assert e["energy_j_range"][0] < 0.2 * e["energy_j"] and e["energy_error_j"] >= e["noise_energy_j"] > 0


def _band(z, y, x):
    """A strain even about the plate's centre: -EPS in a band across its middle, +EPS beyond (about equal areas)."""
    return np.where(np.abs(x - 16) <= 5, -EPS, EPS)


def test_the_energy_is_the_interiors_density_over_the_whole_particle_and_a_real_strain_stands_out(rng):
    """A strain that differs across the plate (-2e-4 in a band across its middle, +2e-4 beyond) reads back exactly
    in the interior; the energy is its density times the particle's volume, far above the noise of a strain-free
    one."""
    band = particle_fields(_thin_plate(rng, eps=_band), voxel_nm=VOXEL, q_inv_nm=Q, threshold=0.2, erosion=1)
    x = np.arange(32)[None, None, :]
    read = np.isfinite(band.strain)
    outer, middle = read & (np.abs(x - 16) >= 7), read & (np.abs(x - 16) <= 4)
    assert np.ptp(band.strain[outer]) < 1e-12 and np.ptp(band.strain[middle]) < 1e-12  # no smearing along z
    # read against the interior's mean lattice (the ramp), the two regions differ by what was put in
    assert band.strain[outer][0] - band.strain[middle][0] == pytest.approx(2 * EPS, rel=1e-6, abs=0)
    e = strain_energy_estimate(band, voxel_nm=VOXEL, q_inv_nm=Q)
    volume = band.volumes_voxels[0.1] * (VOXEL * 1e-9) ** 3
    assert volume > np.isfinite(band.strain).sum() * (VOXEL * 1e-9) ** 3  # the particle, not only where it is read
    assert e["energy_j"] == pytest.approx(0.5 * 150e9 * np.nanmean(band.strain**2) * volume, rel=1e-6, abs=0)
    assert e["energy_j"] == pytest.approx(0.5 * 150e9 * EPS**2 * volume, rel=0.1, abs=0)
    assert e["odd_energy_j"] < 1e-9 * e["energy_j"]  # all of it even
    noisy = strain_energy_estimate(particle_fields(_thin_plate(rng, 0.5, 0.01), voxel_nm=VOXEL, q_inv_nm=Q),
                                   voxel_nm=VOXEL, q_inv_nm=Q)
    assert e["energy_j"] - e["energy_error_j"] > 3 * (noisy["energy_j"] + noisy["energy_error_j"])


def test_members_that_disagree_widen_the_error(rng):
    """The jackknife over the averaged members: a slow phase error that differs from member to member (a
    strain through the thickness that changes across the plate) is in the error bar, which the noise between
    neighbours misses."""
    z = np.arange(16)[:, None, None] - 8.0
    x = np.arange(32)[None, None, :] - 16.0
    base = _thin_plate(rng, noise_rad=0.005, half=6)  # 13 layers: room for a curvature through them
    agree = np.stack([base] * 4)
    bent = np.stack([base * np.exp(1j * c * z**2 * x / 4) for c in (-0.03, 0.0, 0.02, 0.03)])
    fields = particle_fields(bent.mean(axis=0), voxel_nm=VOXEL, q_inv_nm=Q)
    calm = strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q, members=agree)
    spread = strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q, members=bent)
    assert calm["members_error_j"] == pytest.approx(0, abs=1e-30)
    assert spread["members_error_j"] > 5 * spread["noise_energy_j"]
    assert spread["energy_error_j"] >= spread["members_error_j"]
    with pytest.raises(ValueError, match="members must be"):
        strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q, members=bent[:, :4])


def test_a_mean_of_members_that_cancels_where_the_object_does_not_leaves_the_error_alone(rng):
    """The object on the lab grid keeps its amplitude apart from its phase (``to_lab``), so where the members' phases
    disagree (near their dislocation cores, a voxel apart) a mean of K - 1 of them can cancel where the object's
    amplitude is whole. Read there, that mean's phase is its noise, and its winding a strain of 1e-2: a live bar grew
    300-fold. Each mean of K - 1 is read where its own phase is trusted too."""
    y, x = np.ogrid[0:32, 0:32]
    patch = np.hypot(y - 16, x - 16) <= 3
    offsets = (0.0, 0.0, 2 * np.pi / 3, 4 * np.pi / 3)  # without either of the first two, the rest cancel in the patch
    members = np.stack([_thin_plate(rng, noise_rad=0.01) * np.exp(1j * np.where(patch, o, 0.0)) for o in offsets])
    obj = np.abs(members).mean(axis=0) * np.exp(1j * np.angle(members.mean(axis=0)))
    fields = particle_fields(obj, voxel_nm=VOXEL, q_inv_nm=Q)
    assert fields.reliable[8][patch].all()  # the object trusts the patch
    e = strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q, members=members)
    assert e["members_error_j"] < e["energy_j"]  # was 1e4 times it


def test_the_strains_odd_part_is_reported_apart_from_the_energy(rng):
    """A displacement phase even about the particle's centre (an odd strain: one varying linearly through the
    thickness, two halves strained oppositely) is what one reflection's data fix only at second order, and what a
    twin reverses: the members of one scan of a strain-free plate disagree on it in sign. It is left out of
    ``energy_j`` and reported as ``odd_energy_j`` (the two add up to the whole strain's energy); the linear
    variation along q, part of it, also as ``gradient_energy_j``."""
    gradient = 2e-5  # per voxel along z
    halves = lambda z, y, x: EPS * np.sign(x - 16.0)  # odd about the plate's centre column
    odd = lambda z, y, x: halves(z, y, x) + gradient * (z - 8.0)
    half = 6  # 13 layers
    alone = strain_energy_estimate(particle_fields(_thin_plate(rng, eps=_band, half=half), voxel_nm=VOXEL,
                                                   q_inv_nm=Q), voxel_nm=VOXEL, q_inv_nm=Q)
    fields = particle_fields(_thin_plate(rng, eps=lambda z, y, x: _band(z, y, x) + odd(z, y, x), half=half),
                             voxel_nm=VOXEL, q_inv_nm=Q)
    e = strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q)
    assert e["energy_j"] == pytest.approx(alone["energy_j"], rel=1e-3, abs=0)
    assert alone["gradient_energy_j"] == pytest.approx(0, abs=1e-6 * alone["energy_j"])
    assert alone["odd_energy_j"] == pytest.approx(0, abs=1e-6 * alone["energy_j"])
    slope = e["strain_gradient_per_nm"] * VOXEL  # per voxel: the window along q, leaning inwards at the faces of
    assert 0.5 * gradient < slope <= gradient  # a plate 9 layers thick where it is read, flattens a gradient
    inside = np.isfinite(fields.strain)
    z = np.nonzero(inside)[0].astype(float)
    volume = fields.volumes_voxels[0.1] * (VOXEL * 1e-9) ** 3
    want = 0.5 * 150e9 * slope**2 * np.mean((z - z.mean()) ** 2) * volume  # the gradient's own energy
    assert e["gradient_energy_j"] == pytest.approx(want, rel=1e-6, abs=0)
    halves_energy = 0.5 * 150e9 * EPS**2 * volume
    assert e["odd_energy_j"] == pytest.approx(halves_energy + e["gradient_energy_j"], rel=0.1, abs=0)
    whole = 0.5 * 150e9 * np.mean(fields.strain[inside] ** 2) * volume
    assert e["energy_j"] + e["odd_energy_j"] == pytest.approx(whole, rel=1e-3, abs=0)


def test_the_energy_is_the_same_whichever_twins_an_average_mixed(rng):
    """A strained region off the plate's centre: its twin, conj(rho(-r)), fits the data as well and holds the region
    mirrored; a scan's members can come out either way, and their average holds both halves as strong (the even
    strain the same, the odd cancelled). The energy (the even strain's) reads the same for the object, its twin and
    their average: half the region's own energy when it does not overlap its mirror, the other half the odd part."""
    region = lambda z, y, x: 3 * EPS * np.exp(-((x - 23.0) ** 2 + (y - 16.0) ** 2) / 8.0) * np.ones_like(z * 1.0)
    rho = _thin_plate(rng, eps=region, half=4)
    from streamer.phasing.alignment import register, twin_image
    from streamer.phasing.genetic import members_mean

    twin = register(twin_image(rho), rho, subvoxel=True, twin=False).aligned
    mixed = members_mean(np.stack([rho, twin]))
    e, t, m = (strain_energy_estimate(particle_fields(r, voxel_nm=VOXEL, q_inv_nm=Q), voxel_nm=VOXEL, q_inv_nm=Q)
               for r in (rho, twin, mixed))
    fields = particle_fields(rho, voxel_nm=VOXEL, q_inv_nm=Q)
    read = np.isfinite(fields.strain)
    scale = 0.5 * 150e9 * e["volume_m3"]
    own = scale * np.mean(np.broadcast_to(region(*np.ogrid[0:16, 0:32, 0:32]), read.shape)[read] ** 2)
    assert e["odd_energy_j"] == pytest.approx(own / 2, rel=0.02, abs=0)  # (R(r) - R(-r)) / 2 holds half of R^2
    whole = scale * np.mean(fields.strain[read] ** 2)  # read against the mean lattice, which the region shifts
    assert e["energy_j"] + e["odd_energy_j"] == pytest.approx(whole, rel=1e-3, abs=0)
    assert t["energy_j"] == pytest.approx(e["energy_j"], rel=1e-3, abs=0)
    assert m["energy_j"] == pytest.approx(e["energy_j"], rel=0.02, abs=0)
    assert m["odd_energy_j"] < 1e-3 * e["odd_energy_j"]  # what the twins disagree on cancels in their average


def _smooth_noise(rng, shape, rms_rad: float, sigma_voxels: float = 1.5) -> np.ndarray:
    """Phase noise smooth over a few voxels across the layers, as a reconstruction's is (its resolution spans them)."""
    from scipy import ndimage

    n = ndimage.gaussian_filter(rng.standard_normal(shape), (0, sigma_voxels, sigma_voxels))
    return rms_rad * n / n.std()


def test_noise_replicas_say_how_much_of_the_energy_is_noise(rng):
    """A strain-free plate's energy is all noise (the answer is zero). Its noise is smooth over the resolution, so
    the neighbours' differences see a part of it and the bar stops short of zero; replicas (the object with the
    noise drawn once more, as streamer/phasing/replicas.py makes them) measure the whole of it, and the bar reaches
    zero. A real strain keeps its bar far from zero: the noise is a small part of its energy."""
    shape = (16, 32, 32)

    def noise():
        return np.exp(-1j * _smooth_noise(rng, shape, 0.02))

    def read(obj):
        fields = particle_fields(obj, voxel_nm=VOXEL, q_inv_nm=Q)
        replicas = np.stack([obj * noise() for _ in range(4)])
        return (strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q),
                strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q, replicas=replicas))

    alone, e = read(_thin_plate(rng) * noise())
    assert alone["noise_energy_j"] < 0.6 * alone["energy_j"] and alone["energy_j_range"][0] > 0
    assert e["noise_energy_j"] == pytest.approx(e["energy_j"], rel=0.3, abs=0)  # all of it
    assert e["energy_j_range"][0] == 0 and np.isfinite(e["noise_scatter_j"]) and e["noise_scatter_j"] > 0
    assert e["energy_j"] == alone["energy_j"]  # the replicas change the error, never the energy

    _, s = read(_thin_plate(rng, eps=_band) * noise())
    assert s["noise_energy_j"] < 0.2 * s["energy_j"] and s["energy_j_range"][0] > 0.7 * s["energy_j"]
    assert s["energy_j_range"][0] > 3 * e["energy_j_range"][1]  # the strain stands out of the strain-free plate's bar
    fields = particle_fields(_thin_plate(rng), voxel_nm=VOXEL, q_inv_nm=Q)
    with pytest.raises(ValueError, match="replicas must be"):
        strain_energy_estimate(fields, voxel_nm=VOXEL, q_inv_nm=Q, replicas=np.ones((2, 16, 32, 4), complex))
