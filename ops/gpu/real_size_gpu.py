"""Time the full treatment of a real-size scan on a GPU (issue 17): the default population and recipe.

A plate holding a phase vortex in a (steps, rows, cols) grid of the issue's shape, its far-field
intensity with Poisson counts, phased by ``reconstruct`` on ``--backend`` twice (the first run includes
cuFFT planning and kernel compilation). Prints the wall time of each run, the time per iteration per
member, the peak device memory and the amplitude correlation of the result with the true object:

    python3 ops/gpu/real_size_gpu.py --backend cupy --shape 200 256 256
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from streamer.backend import get_namespace
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.alignment import amplitude_correlation


def plate(shape: tuple[int, int, int]) -> np.ndarray:
    """A flat plate a quarter of the grid wide with a winding-1 vortex through it (complex64)."""
    z, y, x = (np.arange(n)[(slice(None),) + (None,) * (2 - i)] - n // 2 for i, n in enumerate(shape))
    body = (np.abs(z) < shape[0] // 10) & ((y / (shape[1] / 8)) ** 2 + (x / (shape[2] / 8)) ** 2 < 1)
    return (body * np.exp(1j * np.arctan2(y, x + 0.5))).astype(np.complex64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cupy", choices=["cupy", "numpy", "strict"])
    ap.add_argument("--shape", type=int, nargs=3, default=[200, 256, 256])
    ap.add_argument("--population", type=int, default=PhasingConfig().population)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args(argv)
    xp = get_namespace(args.backend)
    obj = plate(tuple(args.shape))
    exact = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2
    intensity = np.random.default_rng(0).poisson(exact * (1e9 / exact.sum())).astype(np.float32)
    cfg = PhasingConfig(population=args.population, warm_start=False)
    print(f"shape {tuple(args.shape)}, {intensity.sum():.3g} photons, population {cfg.population}, recipe {cfg.recipe}")
    for run in range(args.runs):
        marks = []  # (seconds since the start, iterations done) at every progress report

        def progress(p, marks=marks):
            marks.append((time.perf_counter() - t0, p["iteration"]))

        t0 = time.perf_counter()
        res = reconstruct(intensity, xp=xp, config=cfg, rng=run, progress=progress)
        wall = time.perf_counter() - t0
        per = wall / (res.iterations * cfg.population) * 1e3
        corr = amplitude_correlation(res.rho, obj)
        (t_first, n_first), (t_done, n_done) = marks[0], marks[-1]
        per_iteration = (t_done - t_first) / max(1, n_done - n_first)
        start = t_first - n_first * per_iteration
        print(f"run {run}: {wall:.1f} s for {res.iterations} iterations x {cfg.population} members "
              f"({per:.2f} ms per iteration per member), correlation with the truth {corr:.3f}; "
              f"start (host: checks, autocorrelation support, random starts) {start:.1f} s, iterations "
              f"{t_done - start:.1f} s ({per_iteration * 1e3:.1f} ms per iteration of the batch), "
              f"finish (host: ranking, alignment, averaging) {wall - t_done:.1f} s", flush=True)
    if args.backend == "cupy":
        import cupy

        print(f"device memory held by cupy's pool: {cupy.get_default_memory_pool().total_bytes() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
