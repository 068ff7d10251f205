"""Population throughput in one process against a Dask LocalCluster of worker processes, and the bytes per scan.

One guided reconstruction (the same seed each time) runs in-process (``reconstruct``), then with its
population sharded over the workers (``reconstruct_on_cluster``), then as whole-scan tasks, one per
scan, ``--scans`` at once. Prints member-iterations per second for each, the bytes scattered per
scan (the data, once per worker) and the bytes the workers sent (best members, scores, the result).
Each path runs once to warm up (numba, FFTW plans) before it is timed.

    .venv/bin/python benchmarks/cluster_throughput.py --size 64 --population 8 --generations 2
    .venv/bin/python benchmarks/cluster_throughput.py --scheduler tcp://gpu-node:8786 --backend cupy --size 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from distributed import Client, LocalCluster

from streamer.backend import get_namespace
from streamer.cli import process_settings
from streamer.phasing import PhasingConfig, parse_recipe, reconstruct
from streamer.service.cluster import reconstruct_on_cluster, scheduler_workers, submit_scan


def intensity(n: int, seed: int = 0) -> np.ndarray:
    """Poisson counts of a plate with a phase vortex, centred."""
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    plate = (np.abs(z) < n // 8) & (y**2 + x**2 < (n // 4) ** 2)
    obj = plate * np.exp(1j * np.arctan2(y, x + 0.5))
    expected = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2
    return np.random.default_rng(seed).poisson(expected * 1e5 / expected.max()).astype(np.float32)


def timed(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--recipe", default="40HIO, 20ER")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster")
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--scans", type=int, default=2, help="whole-scan tasks submitted at once")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--backend", default="numpy", help="array backend of the workers and of the in-process run")
    ap.add_argument("--scheduler", default="", help="an existing scheduler instead of a LocalCluster")
    args = ap.parse_args()

    cfg = PhasingConfig(recipe=args.recipe, population=args.population, generations=args.generations,
                        average=max(1, args.population // 2))
    data = intensity(args.size)
    member_its = args.population * args.generations * parse_recipe(args.recipe).iterations
    xp = get_namespace(args.backend)
    print(f"{args.size}^3, population {args.population} x {args.generations} generations of '{args.recipe}' "
          f"({member_its} member-iterations per scan), backend {args.backend}")

    t_local = timed(lambda: reconstruct(data, xp=xp, config=cfg, rng=1), args.repeats)
    print(f"in-process: {t_local:.2f} s per scan, {member_its / t_local:.0f} member-iterations/s")

    cluster = None if args.scheduler else LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                                                       processes=True, host="127.0.0.1", dashboard_address=":0")
    with Client(args.scheduler or cluster, set_as_default=False) as client:
        workers = len(scheduler_workers(client))
        reports = []

        def sharded():
            reports.append(reconstruct_on_cluster(client, data, config=cfg, rng=1, backend=args.backend)[1])

        t_sharded = timed(sharded, args.repeats)
        rep = reports[-1]
        print(f"sharded over {workers} workers {rep['shards']}: {t_sharded:.2f} s per scan, "
              f"{member_its / t_sharded:.0f} member-iterations/s ({t_local / t_sharded:.2f}x in-process)")
        print(f"  scattered per scan: {rep['scatter_bytes'] / 1e6:.3f} MB ({workers} x the data, "
              f"{data.nbytes / 1e6:.3f} MB); sent by the workers: {rep['moved_bytes'] / 1e6:.3f} MB "
              f"(one volume = {data.size * 9 / 1e6:.3f} MB complex64 + support)")

        def per_scan():
            futures = [submit_scan(client, data, config=cfg, rng=1 + k, backend=args.backend) for k in range(args.scans)]
            client.gather(futures)

        t_scans = timed(per_scan, args.repeats)
        print(f"{args.scans} whole-scan tasks at once: {t_scans:.2f} s, "
              f"{args.scans * member_its / t_scans:.0f} member-iterations/s ({args.scans * t_local / t_scans:.2f}x "
              f"in-process)")
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
