"""Noise replicas: the object phased again against its data with the counting noise drawn once more."""

import numpy as np
import pytest

from sim.diffraction import DiffractionModel
from sim.particle import Particle, complex_image
from streamer.geometry import OrthogonalGeometry
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.replicas import noise_replicas, replica_amplitudes

GEOMETRY = OrthogonalGeometry()


def test_replica_amplitudes_carry_poisson_noise_and_leave_unmeasured_voxels():
    """sqrt of a Poisson count of mean L has variance 1/4 for large L (Poisson statistics); a voxel not measured
    keeps its amplitude; the same seed draws the same replicas."""
    amplitude = np.full((20, 30, 40), 100.0, np.float32)  # 1e4 counts a voxel
    measured = np.ones(amplitude.shape, bool)
    measured[0] = False
    first, second = list(replica_amplitudes(amplitude, measured, 2, seed=5))
    inside = first[1:]
    assert inside.mean() == pytest.approx(100.0, abs=0.01)
    assert inside.var() == pytest.approx(0.25, rel=0.05)
    assert (first[0] == 100.0).all() and not np.array_equal(first, second)
    again = next(replica_amplitudes(amplitude, measured, 1, seed=5))
    assert np.array_equal(first, again)


def _spreads(peak_counts: float) -> tuple[float, float, float]:
    """(replicas' relative difference, their data's, the support's share of the grid) at ``peak_counts``."""
    truth = complex_image(Particle(), GEOMETRY)
    expected = DiffractionModel(truth, GEOMETRY, peak_counts=peak_counts).expected_volume(1.0)
    amplitude = np.fft.ifftshift(np.sqrt(expected)).astype(np.float32)
    support = np.abs(truth) > 0.1 * np.abs(truth).max()
    a, b = noise_replicas(truth.astype(np.complex64), support, amplitude, None, count=2, iterations=30, seed=3)
    da, db = replica_amplitudes(amplitude, None, 2, seed=3)
    relative = [float(np.linalg.norm(x - y) / np.linalg.norm(ref)) for x, y, ref in ((a, b, a), (da, db, amplitude))]
    return relative[0], relative[1], float(support.mean())


def test_replicas_carry_the_data_noise_that_falls_inside_the_support():
    """White noise in the data, projected onto a support that is a share f of the grid, keeps f of its power
    (Parseval): the replicas differ relatively by sqrt(f) times their data, at a dose 250 times another as well."""
    low, high = _spreads(2e3), _spreads(5e5)
    assert low[0] > 5 * high[0]  # the noise falls with the dose ...
    for obj, data, share in (low, high):  # ... the share that reaches the object does not
        assert obj / data == pytest.approx(np.sqrt(share), rel=0.25)


def test_a_reconstruction_comes_with_its_replicas():
    """``reconstruct`` returns ``noise_replicas`` replicas of its average, centred as it is and close to it;
    none when asked for none."""
    truth = complex_image(Particle(), GEOMETRY)
    counts = np.random.default_rng(0).poisson(DiffractionModel(truth, GEOMETRY, peak_counts=2e4).expected_volume(1.0))
    config = PhasingConfig(recipe="60HIO, 40ER", population=2, average=2, noise_replicas=3, noise_replica_er=20)
    result = reconstruct(counts.astype(np.float32), xp=np, config=config, rng=1)
    assert result.replicas.shape == (3,) + result.rho.shape and result.replicas.dtype == np.complex64
    for r in result.replicas:
        assert np.linalg.norm(r - result.rho) < 0.2 * np.linalg.norm(result.rho)
    none = reconstruct(counts.astype(np.float32), xp=np, config=config.replace(noise_replicas=0), rng=1)
    assert none.replicas is None
