"""Phase-retrieval speed: seconds per ER and HIO iteration against the FFT floor of the same shape.

Runs unchanged on a CUDA machine (``--backend cupy``) and on a CPU (numpy + scipy.fft):

    .venv/bin/python benchmarks/phasing_speed.py --size 128 --population 1 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamer.backend import fftn, get_namespace, is_numpy
from streamer.phasing.operators import ER, HIO, PhasingState, ShrinkWrap


def _sync(xp) -> None:
    if not is_numpy(xp):
        import cupy

        cupy.cuda.Device().synchronize()


def _timed(xp, fn, repeats: int) -> float:
    fn()  # warm-up: plans, caches, kernels
    _sync(xp)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(xp)
    return (time.perf_counter() - t0) / repeats


def measure(xp, size: int, population: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    shape = (size,) * 3
    z, y, x = np.ogrid[-size // 2:size // 2, -size // 2:size // 2, -size // 2:size // 2]
    obj = ((np.abs(z) < size // 10) & (y**2 + x**2 < (size // 4) ** 2)).astype(np.complex64)
    amplitude = np.abs(np.fft.fftn(obj)).astype(np.float32)
    start = (obj[None] * np.exp(2j * np.pi * rng.random((population, *shape)))).astype(np.complex64)
    state = PhasingState(xp, xp.asarray(start), xp.asarray(np.broadcast_to(np.abs(obj) > 0, start.shape).copy()),
                         xp.asarray(amplitude), xp.asarray(np.ones(shape, bool)), ShrinkWrap(every=0))
    rho = state.rho

    def fft_pair():
        fftn(xp, fftn(xp, rho), inverse=True)

    t_fft = _timed(xp, fft_pair, repeats)
    er, hio = ER(), HIO(0.9)
    t_er = _timed(xp, lambda: er.apply(state), repeats)
    t_hio = _timed(xp, lambda: hio.apply(state), repeats)
    return {"fft_pair_s": t_fft, "er_s": t_er, "hio_s": t_hio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs="+", default=[128])
    ap.add_argument("--population", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    xp = get_namespace(args.backend)
    print(f"backend {args.backend}; complex64; per iteration of the whole batch; shrink-wrap off")
    print(f"{'size':>5} {'P':>3} {'FFT pair s':>11} {'ER s':>9} {'HIO s':>9} {'ER/FFT':>7} {'HIO/FFT':>8} "
          f"{'member-iter/s':>14}")
    for size in args.size:
        for p in args.population:
            m = measure(xp, size, p, args.repeats)
            print(f"{size:>5} {p:>3} {m['fft_pair_s']:>11.4f} {m['er_s']:>9.4f} {m['hio_s']:>9.4f} "
                  f"{m['er_s'] / m['fft_pair_s']:>7.2f} {m['hio_s'] / m['fft_pair_s']:>8.2f} {p / m['hio_s']:>14.1f}")


if __name__ == "__main__":
    main()
