"""A population of P in one batch against P single runs: whole reconstructions, same recipe, same data.

Each repeat times one ``reconstruct()`` with ``population=P`` and then P calls with ``population=1``
(seeds 1..P), in turn, in this one process; the figures are medians. The single runs get every
advantage a process offers them: the FFT plans, buffers and compiled kernels made for the first
are reused by the others. The batch ranks its members and keeps the best (``average=1``), the
singles do nothing more than their one member. The per-iteration comparison is in
``phasing_speed.py``.

    .venv/bin/python benchmarks/batch_vs_singles.py --size 128 --population 8 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# the recipe on a simulated screw-pair scan, as the peer benchmark runs it (benchmarks/ is on the path)
from peer_cohere import ours_config, simulate

from streamer.backend import get_namespace
from streamer.cli import process_settings
from streamer.phasing import reconstruct


def main() -> None:
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="grid edge (voxels of 12 nm)")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--learned-plans", action="store_true",
                    help="load the FFTW plans learned ahead with ops/fft/learn_plans.py")
    args = ap.parse_args()
    if args.population < 2 or args.repeats < 1:
        ap.error("--population must be >= 2 and --repeats >= 1")
    if args.learned_plans:
        from streamer.phasing.wisdom import load_wisdom, wisdom_path

        print(f"FFTW plans learned ahead: {'loaded' if load_wisdom() else 'none found'} ({wisdom_path()})")
    xp = get_namespace(args.backend)
    _truth, intensity = simulate(args.size, 1, 2e4)
    single_cfg = ours_config(box=False)
    batch_cfg = single_cfg.replace(population=args.population)
    print(f"{args.size}^3, backend {args.backend}, recipe {single_cfg.recipe!r}, shrink-wrap every iteration; "
          f"one batch of {args.population} against {args.population} single runs, {args.repeats} repeats")

    def batch():
        return [reconstruct(intensity, xp=xp, config=batch_cfg, rng=0)]

    def singles():
        return [reconstruct(intensity, xp=xp, config=single_cfg, rng=k + 1) for k in range(args.population)]

    for fn in (batch, singles):  # warm-up: plans, buffers, kernels
        fn()
    wall: dict[str, list[float]] = {"batch": [], "singles": []}
    cpu: dict[str, list[float]] = {"batch": [], "singles": []}
    for r in range(args.repeats):
        for name, fn in (("batch", batch), ("singles", singles)):
            w0, c0 = time.perf_counter(), time.process_time()
            results = fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
            if sum(res.chi_square.size for res in results) != args.population:
                raise RuntimeError(f"{name} ran {sum(res.chi_square.size for res in results)} members")
        print(f"repeat {r + 1}: batch {wall['batch'][-1]:.2f} s, singles {wall['singles'][-1]:.2f} s, "
              f"ratio {wall['batch'][-1] / wall['singles'][-1]:.3f}")
    wb, ws = float(np.median(wall["batch"])), float(np.median(wall["singles"]))
    cb, cs = float(np.median(cpu["batch"])), float(np.median(cpu["singles"]))
    print(f"median wall: batch {wb:.2f} s, {args.population} singles {ws:.2f} s: the batch costs {wb / ws:.3f} x")
    print(f"median CPU:  batch {cb:.2f} s, {args.population} singles {cs:.2f} s: the batch costs {cb / cs:.3f} x")
    ratios = np.array(wall["batch"]) / np.array(wall["singles"])
    print(f"per-repeat wall ratios: min {ratios.min():.3f}, max {ratios.max():.3f}")


if __name__ == "__main__":
    main()
