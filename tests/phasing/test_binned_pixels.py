"""Binned data: a voxel sums its detector pixels' intensities (streamer/phasing/pixels.py)."""

import numpy as np
import pytest

from streamer.backend import get_namespace
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.operators import ER, PhasingState
from streamer.phasing.pixels import BinnedPixels, binning_transfer


def _particle(shape, rng):
    """A rough complex blob filling a quarter of each axis, phases of a few radians."""
    obj = np.zeros(shape, np.complex64)
    z, y, x = (n // 4 for n in shape)
    block = rng.uniform(0.5, 1.0, (z, y, x)) * np.exp(1j * rng.normal(0, 1.5, (z, y, x)))
    obj[2:2 + z, 3:3 + y, 1:1 + x] = block
    return obj


def _binned_by_summing(obj, binned):
    """What a detector measures: |F|^2 at every pixel of a field of view ``binned`` times wider (the object
    embedded, point samples), then ``binned`` pixels summed per voxel. The binned grid's voxel j is centred
    between its pixels: the object's transform there carries a ramp of half a pixel less a half voxel."""
    big = np.zeros(tuple(n * b for n, b in zip(obj.shape, binned)), np.complex64)
    big[tuple(slice(0, n) for n in obj.shape)] = obj
    pixels = np.abs(np.fft.fftn(big)) ** 2
    for axis, b in enumerate(binned):
        pixels = np.roll(pixels, (b - 1) // 2, axis=axis) if b % 2 else pixels  # odd b: the centre pixel on j
        shape = list(pixels.shape)
        shape[axis:axis + 1] = [shape[axis] // b, b]
        pixels = pixels.reshape(shape).sum(axis=axis + 1)
    return pixels


def _ramp(shape, binned):
    """The object's phase ramp that moves its transform on the binned grid to the centres of the voxels' pixels
    (an even number of pixels: half a pixel from the first)."""
    ramp = np.ones(shape, np.complex64)
    for axis, (n, b) in enumerate(zip(shape, binned)):
        offset = (b - 1) / 2 if b % 2 == 0 else 0.0
        view = [1, 1, 1]
        view[axis] = -1
        ramp = ramp * np.exp(-2j * np.pi * offset * np.arange(n) / (n * b)).reshape(view)
    return ramp


@pytest.mark.parametrize("binned", [(1, 2, 2), (2, 1, 3), (1, 1, 4)])
def test_the_model_is_the_sum_of_the_pixels(binned):
    """Exact while the object fills under half the field of view: |F|^2 integrated with ``binning_transfer``
    equals the pixels summed, where the transform at the voxels' centres alone misses by 1-4% of the peak."""
    obj = _particle((16, 20, 24), np.random.default_rng(1))
    measured = _binned_by_summing(obj, binned)
    spectrum = np.fft.fftn(obj * _ramp(obj.shape, binned))[None]
    model = BinnedPixels.make(get_namespace("numpy"), obj.shape, binned)
    integrated = model.intensity((np.abs(spectrum) ** 2).astype(np.float32))[0] * np.prod(binned)
    centre_only = np.abs(spectrum[0]) ** 2 * np.prod(binned)
    scale = measured.max()
    assert np.abs(integrated - measured).max() < 1e-4 * scale
    assert np.abs(centre_only - measured).max() > 0.01 * scale


def test_unbinned_data_need_no_model_and_bad_binning_is_refused():
    assert binning_transfer((8, 8, 8), (1, 1, 1)) is None
    assert BinnedPixels.make(get_namespace("numpy"), (8, 8, 8), (1, 1, 1)) is None
    t = binning_transfer((8, 8, 8), (1, 2, 2))
    assert t.shape == (8, 8, 5) and t.dtype == np.float32 and t[0, 0, 0] == 1.0
    assert np.isclose(t[0, 4, 4], np.cos(np.pi / 4) ** 2)  # the largest lags: cos(pi m / 2n) per binned axis
    with pytest.raises(ValueError, match=">= 1"):
        binning_transfer((8, 8, 8), (1, 0, 2))


@pytest.mark.parametrize("backend", ["numpy", "strict"])
def test_the_truth_fits_binned_data_only_through_the_model(backend):
    """The chi-square of the true object on 2 x 2 binned data: near zero with the model, not without; one ER
    step from the truth keeps it with the model and moves it without."""
    obj = _particle((12, 16, 16), np.random.default_rng(2))
    binned = (1, 2, 2)
    # the engine's scale: |F| / sqrt(voxels) (orthonormal), FFT order
    amplitude = np.sqrt(_binned_by_summing(obj, binned) / np.prod(binned) / obj.size).astype(np.float32)
    start = obj * _ramp(obj.shape, binned)
    support = np.abs(start) > 0
    xp = get_namespace(backend)
    chi, moved = {}, {}
    for name, b in (("model", binned), ("plain", (1, 1, 1))):
        state = PhasingState(xp, xp.asarray(start[None].copy()), xp.asarray(support[None]), xp.asarray(amplitude),
                             None, None, binned=b)
        chi[name] = float(np.asarray(state.chi_square())[0])
        ER().apply(state)
        moved[name] = float(np.abs(np.asarray(state.rho)[0] - start).max() / np.abs(start).max())
    assert chi["model"] < 1e-8 and chi["plain"] > 1e-4
    assert moved["model"] < 1e-3 and moved["plain"] > 1e-2


def test_a_reconstruction_of_binned_data_runs_on_every_path():
    """The population on the CPU kernels and on the strict namespace, with the model: both fit the binned data."""
    obj = _particle((16, 16, 16), np.random.default_rng(3))
    intensity = np.fft.fftshift(_binned_by_summing(obj, (1, 2, 2)))
    cfg = PhasingConfig(recipe="(20HIO, 5ER)*2", population=2, binned_pixels=(1, 2, 2), coarse_crop=1.0)
    for backend in ("numpy", "strict"):
        result = reconstruct(intensity, xp=get_namespace(backend), config=cfg, rng=1)
        assert result.chi_square.shape == (2,) and float(result.chi_square.min()) < 1e-3, backend
