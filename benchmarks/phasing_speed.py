"""Phase-retrieval speed: seconds per ER and HIO iteration against the FFT floor of the same shape.

The floor is one planned FFTW forward + inverse pair (pyFFTW, FFTW_MEASURE, all cores) on the
CPU, or one cuFFT pair on a GPU. Also: a population of P in one batch against P single runs. Each
repeat times the floor and every kind of iteration in turn; the figures are medians.
Runs unchanged on a CUDA machine:

    .venv/bin/python benchmarks/phasing_speed.py --size 128 --population 1 8
    .venv/bin/python benchmarks/phasing_speed.py --size --shape 200 256 256 --population 1   # the real scan's shape
    .venv/bin/python benchmarks/phasing_speed.py --backend cupy --size 128 256 --population 1 8 32
    .venv/bin/python benchmarks/phasing_speed.py --size --shape 64 128 128 --population 8 --binned 1 2 2   # a binned Timepix

``--binned``: the data's pixels summed per voxel (the detector demo's 2 x 2: ``1 2 2``); the modulus step then meets
the binned voxels (streamer/phasing/pixels.py), as the live detector path's does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamer.backend import get_namespace, is_numpy
from streamer.cli import process_settings
from streamer.phasing.fft import cpu_count, get_plan
from streamer.phasing.kernels import Kernels
from streamer.phasing.operators import ER, HIO, PhasingState, ShrinkWrap

EVERY_ITERATION = ShrinkWrap(every=1, sigma_start=1.0, sigma_end=1.0, threshold=0.1)  # cohere's default
NEVER = ShrinkWrap(every=0)


def _sync(xp) -> None:
    if not is_numpy(xp):
        import cupy

        cupy.cuda.Device().synchronize()


def _interleaved(xp, fns: dict, repeats: int) -> dict:
    """Median seconds of each of ``fns``, timed in turn within every repeat, so that a neighbour's load
    slows all of them alike and the ratios between them hold on a shared machine."""
    times: dict = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: plans, caches, kernels
    _sync(xp)
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(xp)
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def floor_pair(xp, shape):
    """One planned forward + inverse FFT pair of ``shape`` (the speed limit), as a function to time."""
    if is_numpy(xp):
        import pyfftw

        a = pyfftw.empty_aligned(shape, "complex64")
        b = pyfftw.empty_aligned(shape, "complex64")
        axes = tuple(range(len(shape) - 3, len(shape)))
        fwd = pyfftw.FFTW(a, b, axes=axes, flags=("FFTW_MEASURE",), threads=cpu_count())
        # the same two transforms as the engine's: out of place forward, in place back
        inv = pyfftw.FFTW(b, b, axes=axes, direction="FFTW_BACKWARD", flags=("FFTW_MEASURE",), threads=cpu_count())
        a[...] = np.random.default_rng(0).random(shape)
        return lambda: (fwd.execute(), inv.execute())
    x = xp.asarray(np.random.default_rng(0).random(shape).astype(np.complex64))
    return lambda: xp.fft.ifftn(xp.fft.fftn(x, axes=(-3, -2, -1)), axes=(-3, -2, -1))


def state_for(xp, shape: tuple[int, int, int], population: int, shrinkwrap: ShrinkWrap = NEVER,
              binned: tuple[int, int, int] = (1, 1, 1)) -> PhasingState:
    rng = np.random.default_rng(0)
    nz, ny, nx = shape
    z, y, x = np.ogrid[-nz // 2:nz - nz // 2, -ny // 2:ny - ny // 2, -nx // 2:nx - nx // 2]
    obj = ((np.abs(z) < nz // 10) & ((y / ny) ** 2 + (x / nx) ** 2 < 1 / 16)).astype(np.complex64)
    amplitude = (np.abs(np.fft.fftn(obj, norm="ortho"))).astype(np.float32)
    start = (obj[None] * np.exp(2j * np.pi * rng.random((population, *shape)))).astype(np.complex64)
    support = np.ascontiguousarray(np.broadcast_to(np.abs(obj) > 0, start.shape))
    plan = get_plan(xp, start.shape)
    return PhasingState(xp, xp.asarray(start), xp.asarray(support), xp.asarray(amplitude), None,
                        shrinkwrap, plan=plan, binned=binned)


def measure(xp, shape: tuple[int, int, int], population: int, repeats: int,
            binned: tuple[int, int, int] = (1, 1, 1)) -> dict:
    state = state_for(xp, shape, population, binned=binned)
    wrapped = state_for(xp, shape, population, EVERY_ITERATION, binned=binned)
    er, hio = ER(), HIO(0.9)
    return _interleaved(xp, {"fft_pair_s": floor_pair(xp, (population,) + tuple(shape)),
                             "er_s": lambda: er.apply(state), "hio_s": lambda: hio.apply(state),
                             "hio_sw_s": lambda: hio.apply(wrapped)}, repeats)


def main() -> None:
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs="*", default=[128], help="cubic grids (none: only --shape)")
    ap.add_argument("--shape", type=int, nargs=3, action="append", default=[], metavar=("Z", "Y", "X"),
                    help="also this grid (repeatable), e.g. 200 256 256")
    ap.add_argument("--population", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--binned", type=int, nargs=3, default=[1, 1, 1], metavar=("Z", "Y", "X"),
                    help="pixels summed per voxel of the data (default 1 1 1: none)")
    ap.add_argument("--learned-plans", action="store_true",
                    help="load the FFTW plans learned ahead with ops/fft/learn_plans.py (the floor uses them too)")
    args = ap.parse_args()
    if args.learned_plans:
        from streamer.phasing.wisdom import load_wisdom, wisdom_path

        print(f"FFTW plans learned ahead: {'loaded' if load_wisdom() else 'none found'} ({wisdom_path()})")
    xp = get_namespace(args.backend)
    kernels = Kernels(xp).kind
    print(f"backend {args.backend} (element-wise: {kernels}, threads {cpu_count()}); complex64; per iteration of "
          f"the whole batch; ER and HIO without shrink-wrap, HIO+SW with a shrink-wrap every iteration (sigma 1, "
          f"threshold 0.1); floor = planned FFT pair of the batch; data binned {'x'.join(map(str, args.binned))}")
    print(f"{'size':>11} {'P':>3} {'FFT pair s':>11} {'ER s':>9} {'HIO s':>9} {'HIO+SW s':>9} {'ER/FFT':>7} "
          f"{'HIO/FFT':>8} {'HIO+SW/FFT':>11} {'member-iter/s':>14}")
    single = {}
    for size in [(s, s, s) for s in args.size] + [tuple(s) for s in args.shape]:
        for p in args.population:
            m = measure(xp, size, p, args.repeats, tuple(args.binned))
            if p == 1:
                single[size] = m["hio_s"]
            print(f"{'x'.join(map(str, size)):>11} {p:>3} {m['fft_pair_s']:>11.4f} {m['er_s']:>9.4f} {m['hio_s']:>9.4f} "
                  f"{m['hio_sw_s']:>9.4f} {m['er_s'] / m['fft_pair_s']:>7.2f} {m['hio_s'] / m['fft_pair_s']:>8.2f} "
                  f"{m['hio_sw_s'] / m['fft_pair_s']:>11.2f} {p / m['hio_s']:>14.1f}")
            if p > 1 and size in single:
                print(f"      a batch of {p} costs {m['hio_s'] / (p * single[size]):.2f} x {p} single runs (HIO)")


if __name__ == "__main__":
    main()
