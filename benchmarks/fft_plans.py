"""What planning buys: per shape, FFTW_ESTIMATE and FFTW_MEASURE (planning seconds, then a forward + inverse pair
in milliseconds) against scipy's pocketfft, complex64, out of place, on this host's cores.

The engine's plans are of one member (batch 1) for members of 1M voxels or more (FFTWPlan sweeps them), so those
are the shapes to give; each FFTW plan starts from no wisdom. This is what docs/phasing.md's rule for a shape
with no remembered plan rests on (`[fft] unplanned`).

    .venv/bin/python benchmarks/fft_plans.py 1x128x128x128 1x64x128x128 1x150x192x192 1x200x256x256
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.phasing.fft import AXES, cpu_count  # noqa: E402
from streamer.phasing.wisdom import import_pyfftw  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # the first call pays for page faults and thread start-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shapes", nargs="+", help="batch x z x y x, e.g. 1x128x128x128")
    ap.add_argument("--threads", type=int, default=0, help="FFTW threads and pocketfft workers (0: every core)")
    args = ap.parse_args(argv)
    import scipy.fft

    pyfftw = import_pyfftw()
    threads = args.threads or cpu_count()
    print(f"{threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    print("| shape | ESTIMATE plan s | ESTIMATE pair ms | MEASURE plan s | MEASURE pair ms | pocketfft pair ms |")
    print("|---|---|---|---|---|---|")
    for text in args.shapes:
        shape = tuple(int(n) for n in text.split("x"))
        if len(shape) != 4 or min(shape) < 1:
            ap.error(f"a shape is batch x z x y x, got {text!r}")
        repeats = max(5, int(3e7 / np.prod(shape)))
        src, dst = pyfftw.empty_aligned(shape, "complex64"), pyfftw.empty_aligned(shape, "complex64")
        cells = []
        for effort in ("FFTW_ESTIMATE", "FFTW_MEASURE"):
            pyfftw.forget_wisdom()
            t0 = time.perf_counter()
            plan = pyfftw.FFTW(src, dst, axes=AXES, direction="FFTW_FORWARD", flags=(effort,), threads=threads)
            planning = time.perf_counter() - t0
            src[...] = 1.0  # MEASURE overwrote the arrays while timing its candidates
            cells += [f"{planning:.2f}", f"{2 * median_ms(plan, repeats):.1f}"]  # the inverse is a forward here
        x = np.ones(shape, np.complex64)
        cells.append(f"{2 * median_ms(lambda: scipy.fft.fftn(x, axes=AXES, workers=threads), repeats):.1f}")
        print(f"| {text} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
