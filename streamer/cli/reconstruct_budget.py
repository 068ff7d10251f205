"""What `bcdi-stream reconstruct` phases within its time budget: the choice, from FFT costs timed on this host."""

from __future__ import annotations

import time

import numpy as np

DEFAULT_BUDGET_S = 60.0  # the CLI default for a large input finishes in about a minute on a laptop-class CPU
RESULT_WRITE_BYTES_PER_S = 200e6  # an uncompressed result file written on a busy 2-core machine (300 MB/s measured)


def budget_choice(args, phasing, xp, shape, out, limits, *, spent_s: float = 0.0):
    """The reconstructor and phasing the time budget allows (``--budget-s``), with the choice; None: no budget.

    The budget is the whole command's: what was spent before phasing (reading, preparing the data) and the
    writing of the result file (the object, its support and error maps, the members) come off it first, then
    the phasing gets ``share`` of the rest (the margin for its prediction's error). The prediction is scaled
    by the slowness the last budgeted runs on this host found (taken / predicted, kept beside the FFT
    wisdom, apart for runs on the scipy stand-in), as the service learns it per run (and starts a run from it);
    also returned, with the key this run's error is remembered under."""
    from streamer.phasing import reconstruct
    from streamer.phasing.budget import choose, cropped_shape, iteration_overhead, on_coarser_grid
    from streamer.service.costs import FftCosts, remembered_slowness, slowness_key

    explicit = any(v is not None for v in (args.population, args.recipe, args.generations))
    budget = args.budget_s if args.budget_s is not None else (None if explicit else DEFAULT_BUDGET_S)
    if not budget:
        return reconstruct, phasing, None, 1.0, slowness_key(xp)
    from streamer.phasing.fft import runs_on_stand_in

    voxels = int(np.prod(shape))
    writing_s = voxels * (8 * (1 + phasing.population) + 4 * 2 + 1) / RESULT_WRITE_BYTES_PER_S
    phasing_s = max(budget - spent_s - writing_s, 0.1 * budget) * limits.share
    costs = FftCosts(xp, threads=phasing.threads or None)
    stand_in = False

    def time_pair(grid):  # timing a grid's pair (planning it first when nothing remembers its plan) is spent
        nonlocal phasing_s
        t0 = time.monotonic()
        costs.time_pair(grid)
        phasing_s = max(phasing_s - (time.monotonic() - t0), 0.1 * budget * limits.share)

    try:
        time_pair(tuple(shape))  # the full grid's
        if phasing.searches(tuple(shape)):  # and the search's (small batched FFTs cost less than N log N scales)
            time_pair(cropped_shape(tuple(shape), phasing.coarse_crop))
        for rounds_left in (2, 1, 0):
            for _ in range(2):  # choose with the slowness of the FFTs the choice will run on
                slowness = remembered_slowness(slowness_key(xp, stand_in))
                choice = choose(tuple(shape), phasing_s, recipe=phasing.recipe, population=phasing.population,
                                fft_pair_s=lambda s, b: costs(s, b) * phasing.generations * slowness,
                                min_population=min(limits.min_population, phasing.population),
                                overhead=iteration_overhead(phasing.binned_pixels),
                                max_memory_bytes=limits.max_memory_gb * 2**30 or None,
                                search=phasing.search, polish=phasing.polish_er,
                                replicas=phasing.replica_iterations)
                chosen = runs_on_stand_in(xp, (choice.population, *choice.shape), threads=phasing.threads or None)
                settled, stand_in = chosen == stand_in, chosen  # the key the run's own error is remembered under
                if settled:
                    break
            if stand_in or costs.timed(choice.shape) or not rounds_left:
                break
            # a cropped grid's cost was scaled by N log N from the full grid's, which FFTW misses by 20% or more
            # (216x216x162 runs slower per point than 256x256x200): time it (its plan the run needs anyway), choose again
            time_pair(choice.shape)
    finally:
        costs.close()
    phasing = phasing.replace(population=choice.population, recipe=choice.recipe,
                              average=min(phasing.average, choice.population))
    print(f"time budget {budget:g} s: {choice.population} members x {choice.iterations} iterations on "
          f"{'x'.join(map(str, choice.shape))} (q kept {100 * choice.crop:.0f}%), predicted {choice.predicted_s:.0f} s; "
          f"{choice.reason}" + ("" if choice.reason == "the full reconstruction fits" else
                                "; for the full treatment: --budget-s 0"), file=out, flush=True)
    run = reconstruct if choice.shape == tuple(shape) else on_coarser_grid(reconstruct, choice.shape)
    return run, phasing, choice, slowness, slowness_key(xp, stand_in)
