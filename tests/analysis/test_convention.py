"""One phase convention (docs/conventions.md), checked against physics rather than against our own code.

With the forward transform F(q) = sum rho exp(-i q.r), a lattice displaced by u scatters as
rho = |rho| exp(-i G.u): a region of larger c (positive strain) scatters to lower |q|, as a uniform
increase of c moves the whole peak to lower |q| by Bragg's law, delta |G| = -|G| eps / (1 + eps). The
analysis reads the displacement phase G.u = -arg(rho), so that region reads as positive strain, whichever
twin the phase retrieval lands on, and a dislocation winds as the truth file says.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from sim.defects import DislocationLine, DomainBoundary, ScrewDislocation, StrainRegion
from sim.diffraction import DiffractionModel
from sim.particle import Particle, complex_image, voxel_coordinates_nm
from sim.truth import scan_truth
from streamer.analysis.displacement import particle_fields
from streamer.analysis.objects import analyze_object
from streamer.backend import get_namespace
from streamer.geometry import OrthogonalGeometry

GEO = OrthogonalGeometry()  # the demo grid: 48^3 voxels of 12 nm, |q| = 2 pi / 0.55 nm at its origin
PLATE = Particle()  # c = 1.10 nm: its (002) peak sits on the grid origin
EPS = 3e-3
DQ = GEO.dq_inv_nm(0)  # one reciprocal pixel along q (nm^-1)
XP = get_namespace("numpy")


def _intensity(particle: Particle) -> np.ndarray:
    """Noise-free intensity in lab order (q_z along q, q_y, q_x)."""
    return DiffractionModel(complex_image(particle, GEO), GEO, peak_counts=1e4).expected_volume(1.0)


def _peak_px(volume: np.ndarray, half_window: int = 6) -> np.ndarray:
    """The peak's position per axis (pixels): centroid of each projection within a window around its maximum.

    The window keeps the DFT's wrapped-around tails out, which pull a whole-grid centroid towards the middle.
    """
    out = []
    for axis in range(3):
        prof = volume.sum(axis=tuple(a for a in range(3) if a != axis))
        k = int(np.argmax(prof))
        idx = np.arange(k - half_window, k + half_window + 1)
        out.append(float(np.sum(idx * prof[idx]) / np.sum(prof[idx])))
    return np.array(out)


def _bragg_shift_px(eps: float) -> float:
    """Bragg's law: the (002) peak of a lattice with c (1 + eps), relative to c, in reciprocal pixels along q."""
    return (4 * math.pi / (PLATE.lattice_c_nm * (1 + eps)) - PLATE.q_bragg_inv_nm) / DQ


# -- (a), (b): the peak moves the way Bragg's law says, for a uniform change of c and for a strain region

def test_a_uniform_expansion_moves_the_peak_to_lower_q_by_what_braggs_law_predicts():
    base = _peak_px(_intensity(PLATE))
    shift = _peak_px(_intensity(Particle(lattice_c_nm=PLATE.lattice_c_nm * (1 + EPS)))) - base
    assert _bragg_shift_px(EPS) == pytest.approx(-3.132, abs=1e-3)  # 11.42 nm^-1 x 3e-3 / 0.0109 nm^-1
    assert shift[0] == pytest.approx(_bragg_shift_px(EPS), abs=0.02)  # measured -3.132 px
    assert np.abs(shift[1:]).max() < 0.01  # across q the peak stays

    # a whole number of pixels: the intensity is exactly the first one moved by 3 pixels towards lower |q|
    c3 = 4 * math.pi / (PLATE.q_bragg_inv_nm - 3 * DQ)
    moved = _intensity(Particle(lattice_c_nm=c3))
    np.testing.assert_allclose(moved, np.roll(_intensity(PLATE), -3, axis=0), rtol=0, atol=1e-9 * moved.max())


def test_a_strain_region_moves_the_peak_as_a_change_of_c_of_the_same_sign():
    base = _peak_px(_intensity(PLATE))[0]

    def shift(strain, sigma_nm, sigma_z_nm):
        region = StrainRegion(strain=strain, sigma_nm=sigma_nm, sigma_z_nm=sigma_z_nm)
        return _peak_px(_intensity(PLATE.with_defects(regions=[region])))[0] - base

    # a region far wider than the particle strains it almost uniformly: the shift of that change of c
    wide = shift(EPS, 1000.0, 1000.0)
    assert wide == pytest.approx(_bragg_shift_px(EPS), abs=0.05)  # measured -3.126 px
    assert shift(-EPS, 1000.0, 1000.0) == pytest.approx(_bragg_shift_px(-EPS), abs=0.05)
    # a local expanded region (the scenarios' size) pulls the peak the same way, by less
    local = shift(EPS, 60.0, 30.0)
    assert wide < local < -0.3  # measured -0.94 px


# -- (c), (e): a strain region reads back with its sign, directly, after phase retrieval, and as the twin

REGION = StrainRegion(strain=EPS, sigma_nm=50.0, sigma_z_nm=300.0)  # a column through the plate, 50 nm wide


def _strain_contrast(rho: np.ndarray) -> tuple[float, float]:
    """The analysis' strain at the region (its axis, the plate's mid-thickness) less that far from it (>= 120 nm).

    The analysis removes the mean phase gradient (the reference lattice constant is the particle's mean), so a
    strain reads relative to the rest of the particle: that contrast is what a strain region shows. Returns
    its mean and spread (standard deviation over the region's voxels).
    """
    fields = particle_fields(rho, voxel_nm=GEO.voxel_nm, q_inv_nm=GEO.q_bragg_inv_nm)
    strain = np.where(fields.inner, fields.strain, np.nan)
    centre = [round(float(c.mean())) for c in np.nonzero(fields.support)]
    dz, dy, dx = np.ix_(*[np.arange(n) - c for n, c in zip(rho.shape, centre)])
    lateral_nm = np.hypot(dy, dx) * GEO.voxel_nm
    mid = np.abs(dz) <= 2  # the surface layers' phase is the least reliable
    core = np.isfinite(strain) & mid & (lateral_nm <= GEO.voxel_nm)
    far = np.isfinite(strain) & mid & (lateral_nm >= 120.0)
    assert core.sum() >= 15 and far.sum() >= 100
    contrast = strain[core] - np.mean(strain[far])
    return float(np.mean(contrast)), float(np.std(contrast))


def _declared_contrast() -> float:
    """The same contrast of the declared strain field eps_zz(r) at the voxel centres."""
    z, y, x = voxel_coordinates_nm(GEO)
    lateral = np.hypot(y, x)
    eps = REGION.strain * np.exp(-lateral**2 / (2 * REGION.sigma_nm**2)) * np.exp(-(z**2) / (2 * REGION.sigma_z_nm**2))
    mid = np.abs(z) <= 2 * GEO.voxel_nm
    inside = np.broadcast_to(np.abs(z) < PLATE.thickness_nm / 2 - GEO.voxel_nm, eps.shape)
    core = np.broadcast_to(mid & (lateral <= GEO.voxel_nm), eps.shape) & inside
    far = np.broadcast_to(mid & (lateral >= 120.0), eps.shape) & inside & (np.abs(complex_image(PLATE, GEO)) > 0)
    return float(np.mean(eps[core]) - np.mean(eps[far]))


@pytest.fixture(scope="module")
def strained():
    return complex_image(PLATE.with_defects(regions=[REGION]), GEO)


def test_an_expanded_region_reads_as_positive_strain_from_the_simulated_object(strained):
    declared = _declared_contrast()
    assert declared == pytest.approx(EPS, abs=2.5e-4)  # the column's centre against the plate's rim
    mean, spread = _strain_contrast(strained)
    assert mean == pytest.approx(EPS, abs=5e-4)  # measured 2.81e-3 +- 0.03e-3
    assert mean == pytest.approx(declared, abs=1e-4) and spread < 1e-4


def test_an_expanded_region_reads_as_positive_strain_after_phase_retrieval(strained):
    """Poisson counts (1e5 in the brightest voxel) of the strained plate, phased by our engine on the demo grid
    with a short recipe; the retrieval may return the twin, which reads the same strain."""
    from streamer.phasing import PhasingConfig, reconstruct

    expected = DiffractionModel(strained, GEO, peak_counts=1e5).expected_volume(1.0)
    counts = np.random.default_rng(0).poisson(expected).astype(np.float32)
    result = reconstruct(counts, xp=XP, config=PhasingConfig(recipe="(60HIO, 20ER)*2, 10ER", population=1,
                                                             average=1), rng=0)
    mean, spread = _strain_contrast(np.asarray(result.rho))
    assert mean == pytest.approx(EPS, abs=5e-4)  # measured 2.73e-3 +- 0.15e-3 (seeds 0-4: 2.69-2.82e-3)
    assert spread < 1e-3


def test_the_twin_image_reads_the_same_strain_and_the_opposite_windings(strained):
    twin = np.conj(strained[::-1, ::-1, ::-1])  # rho(r) -> conj(rho(-r)): the same measured intensity
    assert _strain_contrast(twin) == pytest.approx(_strain_contrast(strained), abs=1e-9)
    screw = complex_image(PLATE.with_defects([ScrewDislocation(6.0, 6.0, 1)]), GEO)
    (line,) = analyze_object(screw, geometry=GEO, xp=XP).vortices
    (mirrored,) = analyze_object(np.conj(screw[::-1, ::-1, ::-1]), geometry=GEO, xp=XP).vortices
    assert line.winding == 1 and mirrored.winding == -1  # handedness needs the series' alignment to a reference


# -- (d): windings and boundary steps mean what truth.h5 says

def test_the_analysis_finds_the_windings_and_boundary_steps_that_the_truth_declares():
    lines = [ScrewDislocation(6.0, 54.0, 1), ScrewDislocation(6.0, -54.0, -1),
             DislocationLine((6.0, -30.0, 0.0), (0.0, 0.0, 1.0), (-0.5, 0.0, 0.0))]  # an edge line along x
    particle = PLATE.with_defects(lines)
    rho = complex_image(particle, GEO)
    stage = SimpleNamespace(label="lines", voltage_v=3.7, capacity_mah_g=40.0)
    stack = DiffractionModel(rho, GEO, peak_counts=1e4).expected_stack(1.0)
    truth = scan_truth(0, stage, particle, stack, GEO)
    assert [(t["winding"], t["type"]) for t in truth["lines"]] == [(1, "screw"), (-1, "screw"), (-1, "edge")]
    found = analyze_object(rho, geometry=GEO, xp=XP).vortices
    assert len(found) == 3
    for t in truth["lines"]:
        def off_line_nm(v, t=t):  # distance of a found line's centre from the truth line
            d = np.subtract(v.position_nm, t["point_nm"])
            return np.linalg.norm(d - np.dot(d, t["direction"]) * np.asarray(t["direction"]))

        v = min(found, key=off_line_nm)
        assert off_line_nm(v) < GEO.voxel_nm
        sense = 1 if np.dot(v.direction, t["direction"]) > 0 else -1  # a winding is about a direction
        assert (v.winding, v.type) == (sense * t["winding"], t["type"]), t

    for step in (2.094, -2.094):
        wall = DomainBoundary(normal_angle_deg=0.0, offset_nm=6.0, step_rad=step)
        particle = PLATE.with_defects([], [wall])
        truth = scan_truth(0, stage, particle, stack, GEO)["boundaries"][0]
        (b,) = analyze_object(complex_image(particle, GEO), geometry=GEO, xp=XP).domain_boundaries
        sense = 1 if np.dot(b.normal, truth["normal"]) > 0 else -1
        assert sense * b.phase_step_rad == pytest.approx(truth["phase_step_rad"], abs=0.1)
