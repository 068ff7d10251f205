"""The time budget's choice (issue 17): what fits, in which order things are given up, and why."""

import pytest

from streamer.phasing.budget import (
    choose,
    crop_about_centre,
    cropped_shape,
    recipe_iterations,
    scaled_recipe,
    voxel_after_crop_nm,
)
from streamer.phasing.recipe import DEFAULT_RECIPE


def fft_cost(per_voxel_s=4e-9):
    """An FFT pair costing n log n per member (the shape of FFTW's timings)."""
    import math

    def cost(shape, batch):
        n = shape[0] * shape[1] * shape[2]
        return per_voxel_s * n * math.log2(n) / 20 * batch
    return cost


def test_a_recipe_scales_its_counts_and_keeps_its_repeats():
    assert scaled_recipe(DEFAULT_RECIPE, 0.5) == "(90HIO, 10ER)*2, 105ER"
    assert recipe_iterations(scaled_recipe(DEFAULT_RECIPE, 0.5)) == 305
    assert scaled_recipe("HIO, 2ER", 0.1) == "HIO, 1ER"  # never below one
    with pytest.raises(ValueError):
        scaled_recipe("10ER", 0)


def test_the_full_reconstruction_is_kept_when_it_fits():
    c = choose((64, 64, 64), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=fft_cost())
    assert (c.shape, c.population, c.iterations, c.crop) == ((64, 64, 64), 8, 610, 1.0)
    assert c.reason == "the full reconstruction fits" and c.predicted_s <= c.budget_s and c.full


def test_resolution_is_kept_first_then_half_the_iterations_then_members():
    cost = fft_cost()
    full = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost).predicted_s
    c = choose((128, 128, 128), full / 2, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    assert (c.crop, c.iterations, c.population) == (1.0, 305, 8) and not c.full  # every member, half the iterations
    c = choose((128, 128, 128), full / 3, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    assert (c.crop, c.iterations, c.population) == (1.0, 305, 4)  # then members
    c = choose((128, 128, 128), full / 7, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    assert (c.crop, c.iterations, c.population) == (1.0, 305, 2)
    c = choose((128, 128, 128), full / 40, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    assert c.crop < 1.0 and all(k < 128 for k in c.shape)  # then the resolution
    assert c.predicted_s <= c.budget_s and "would take" in c.reason


def test_nothing_fits_gives_the_cheapest_and_says_it_will_be_late():
    c = choose((256, 256, 200), 1e-3, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=fft_cost(), fixed_s=2.0)
    assert c.predicted_s > c.budget_s and "will be late" in c.reason and not c.full
    assert c.population == 2 and c.crop == 0.5


def test_fixed_costs_count_against_the_budget():
    cost = fft_cost()
    free = choose((64, 64, 64), 5.0, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    loaded = choose((64, 64, 64), 5.0, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost, fixed_s=4.5)
    assert loaded.predicted_s <= 5.0 and (loaded.population, loaded.iterations) < (free.population, free.iterations) \
        or loaded.crop < free.crop


def test_crops_keep_the_centre_and_the_field_of_view():
    import numpy as np

    v = np.zeros((100, 64, 50))
    v[50, 32, 25] = 1
    kept = cropped_shape(v.shape, 0.75)
    assert kept == (72, 48, 36)
    c = crop_about_centre(v, kept)
    assert c.shape == kept and c[36, 24, 18] == 1  # index n // 2 stays the centre
    assert voxel_after_crop_nm(10.0, 100, 72) == pytest.approx(13.889, rel=1e-3)
    with pytest.raises(ValueError):
        crop_about_centre(v, (101, 64, 50))


def test_fourier_crop_and_pad_keep_the_field_of_view_and_a_band_limited_object():
    import numpy as np

    from streamer.phasing.budget import fourier_crop, fourier_pad

    z, y, x = np.indices((32, 32, 32)) - 16
    rho = np.exp(-(z**2 + y**2 + x**2) / (2 * 4.0**2)) * np.exp(0.2j * x)  # smooth: band-limited in practice
    small = fourier_crop(rho.astype(np.complex64), (24, 24, 24))
    assert small.shape == (24, 24, 24)
    back = fourier_pad(small, (32, 32, 32))
    assert np.abs(back - rho).max() < 1e-3 * np.abs(rho).max()
    assert abs(small[12, 12, 12]) == pytest.approx(abs(rho[16, 16, 16]), rel=1e-3)  # same field of view


def test_a_reconstruction_on_a_coarser_grid_comes_back_on_the_full_grid():
    import numpy as np

    from streamer.phasing import PhasingConfig, reconstruct
    from streamer.phasing.budget import on_coarser_grid

    rng = np.random.default_rng(0)
    z, y, x = np.indices((32, 32, 32)) - 16
    truth = ((abs(z) < 5) & (abs(y) < 7) & (abs(x) < 6)).astype(np.complex64)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))) ** 2
    calls = []

    def spy(data, **kwargs):
        calls.append(data.shape)
        return reconstruct(data, **kwargs)

    run = on_coarser_grid(spy, (24, 24, 24))
    result = run(intensity, xp=np, config=PhasingConfig(population=2, average=2, recipe="60HIO, 20ER"), rng=rng)
    assert calls == [(24, 24, 24)]
    assert result.rho.shape == result.support.shape == (32, 32, 32) and result.members.shape == (2, 32, 32, 32)
    amp = np.abs(result.rho)
    assert abs(int((amp > 0.5 * amp.max()).sum()) - int(truth.real.sum())) < 0.35 * truth.real.sum()


def test_the_memory_limit_is_respected_and_named_when_nothing_fits():
    from streamer.phasing.budget import BYTES_PER_MEMBER_VOXEL

    shape = (64, 64, 64)
    one_member = 64**3 * BYTES_PER_MEMBER_VOXEL
    c = choose(shape, 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=fft_cost(), max_memory_bytes=4.5 * one_member)
    assert c.population == 4 and c.crop == 1.0  # 8 members would not fit, 4 do
    with pytest.raises(ValueError, match="fits in .* GiB of memory"):
        choose(shape, 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=fft_cost(), max_memory_bytes=0.1 * one_member)


def test_a_warm_starts_short_recipe_is_kept_and_members_and_resolution_give_way():
    cost = fft_cost()
    full = choose((64, 64, 64), 1e6, recipe="40HIO, 20ER", population=8, fft_pair_s=cost).predicted_s
    c = choose((64, 64, 64), full / 3, recipe="40HIO, 20ER", population=8, fft_pair_s=cost, keep_iterations=True)
    assert c.iterations == 60 and c.recipe == "40HIO, 20ER" and c.population == 2 and c.crop == 1.0
    c = choose((64, 64, 64), full / 8, recipe="40HIO, 20ER", population=8, fft_pair_s=cost, keep_iterations=True)
    assert c.iterations == 60 and c.crop < 1.0


def test_a_cold_starts_coarse_search_is_counted_and_gives_way_with_the_rest():
    """Each member first runs the recipe once per candidate on the grid cropped again (PhasingConfig.coarse_crop)."""
    import math

    from streamer.phasing.budget import ENGINE_OVERHEAD

    cost = fft_cost()
    plain = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    searched = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost, search=(0.5, 3, 32))
    search_s = 3 * 610 * ENGINE_OVERHEAD * cost((64, 64, 64), 8)
    assert math.isclose(searched.predicted_s, plain.predicted_s + search_s, rel_tol=1e-9)
    tight = choose((128, 128, 128), plain.predicted_s * 1.01, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost,
                   search=(0.5, 3, 32))
    assert (tight.crop, tight.iterations, tight.population) == (1.0, 305, 8)
    assert f"would take {searched.predicted_s:.0f} s" in tight.reason
    off = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost, search=(1.0, 3, 32))
    assert off.predicted_s == plain.predicted_s
    small = choose((48, 48, 48), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost, search=(0.5, 3, 32))
    assert small.predicted_s == choose((48, 48, 48), 1e6, recipe=DEFAULT_RECIPE, population=8,
                                       fft_pair_s=cost).predicted_s  # a 24^3 search is not run


def test_the_polish_of_the_average_is_counted_at_one_members_cost():
    import math

    from streamer.phasing.budget import ENGINE_OVERHEAD

    cost = fft_cost()
    plain = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    polished = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost, polish=100)
    assert math.isclose(polished.predicted_s, plain.predicted_s + 100 * ENGINE_OVERHEAD * cost((128, 128, 128), 1),
                        rel_tol=1e-9)
    alone = choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=1, fft_pair_s=cost, polish=100)
    assert alone.predicted_s == choose((128, 128, 128), 1e6, recipe=DEFAULT_RECIPE, population=1,
                                       fft_pair_s=cost).predicted_s  # one member: nothing averaged, nothing polished


def test_binned_data_cost_their_summed_intensity_and_give_way_sooner():
    """The modulus step of binned data (pixels.py) costs BINNED_OVERHEAD FFT pairs more per member-iteration."""
    import math

    from streamer.phasing.budget import BINNED_OVERHEAD, ENGINE_OVERHEAD, iteration_overhead

    assert iteration_overhead((1, 1, 1)) == ENGINE_OVERHEAD
    assert iteration_overhead((1, 2, 2)) == iteration_overhead((2, 1, 1)) == ENGINE_OVERHEAD + BINNED_OVERHEAD
    cost, shape = fft_cost(), (64, 128, 128)
    plain = choose(shape, 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost)
    binned = choose(shape, 1e6, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost,
                    overhead=iteration_overhead((1, 2, 2)))
    assert math.isclose(binned.predicted_s / plain.predicted_s, iteration_overhead((1, 2, 2)) / ENGINE_OVERHEAD)
    tight = choose(shape, plain.predicted_s * 1.01, recipe=DEFAULT_RECIPE, population=8, fft_pair_s=cost,
                   overhead=iteration_overhead((1, 2, 2)))
    assert tight.iterations < plain.iterations and tight.predicted_s <= plain.predicted_s * 1.01
