"""How a cold member starts: the autocorrelation's support, scaled about the origin, is the particle's own."""

import numpy as np
import pytest

from sim.particle import DomainBoundary, Particle, complex_image
from streamer.geometry import OrthogonalGeometry
from streamer.phasing.starts import autocorrelation_support, scaled_about_origin

GEOMETRY = OrthogonalGeometry()


@pytest.mark.parametrize("step_rad", [0.0, np.pi])
def test_half_the_autocorrelation_is_a_centrally_symmetric_particle(step_rad):
    """The autocorrelation of a centrally symmetric particle fills its difference body, twice the particle about
    its centre: scaled by a half, it lies inside the particle and fills most of it (less where the autocorrelation
    falls under the threshold near its edge, more so across an antiphase boundary, whose opposite phases weaken
    parts of it); unscaled it holds about eight times the particle's volume."""
    particle = Particle(shape="hexagon", radius_x_nm=150, radius_y_nm=130, thickness_nm=80, rotation_deg=20,
                        boundaries=(DomainBoundary(normal_angle_deg=30, step_rad=step_rad),) if step_rad else ())
    rho = complex_image(particle, GEOMETRY)
    truth = np.fft.ifftshift(np.abs(rho) > 0)  # the particle about the origin (FFT order), as phasing holds it
    ac = np.fft.ifftn(np.abs(np.fft.fftn(rho)) ** 2)
    for threshold, filled in [(0.02, 0.6), (0.01, 0.75)]:
        half = autocorrelation_support(ac, threshold, 0.5)
        assert (half & ~truth).sum() <= 0.01 * half.sum() and (half & truth).sum() >= filled * truth.sum()
    whole = autocorrelation_support(ac, 0.02, 1.0)
    assert 5 < whole.sum() / truth.sum() < 9 and (whole & truth).sum() >= 0.9 * truth.sum()


def test_scaling_a_mask_about_the_origin():
    # FFT order: the box holds offsets -4..3, -3..2, -2..1 about the origin
    box = np.fft.ifftshift(np.pad(np.ones((8, 6, 4), bool), ((4, 4), (3, 3), (3, 3))))
    half = scaled_about_origin(box, 0.5)
    offsets = [np.fft.fftfreq(n, 1 / n)[np.flatnonzero(half.any(axis=tuple(b for b in range(3) if b != a)))]
               for a, n in enumerate(box.shape)]
    assert [sorted(o) for o in offsets] == [[-2, -1, 0, 1], [-1, 0, 1], [-1, 0]]
    assert scaled_about_origin(box, 1.0) is box
    assert not scaled_about_origin(np.ones((8, 8, 8), bool), 0.25)[4].any()  # sources beyond the grid: out
