"""How much a remembered `reconstruct` depends on the FFT plan its first run measured (issue 17).

For each of ``--caches`` fresh FFT caches: one `bcdi-stream reconstruct` of the peer comparison's 128^3 data
and recipe (``benchmarks/peer_cohere.py``: 20ER, 180HIO, 20ER, shrink-wrap every iteration, one member) plans
from nothing (FFTW_MEASURE), then ``--runs`` more reuse that plan. Whole processes, wall clock. Each cache's
remembered runs agree with each other; the caches differ by which plan MEASURE kept.

    .venv-peers/bin/python benchmarks/plan_spread.py --caches 5 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_cohere import RECIPE_OURS, ours_toml, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caches", type=int, default=5, help="fresh FFT caches, each planned by a first run")
    ap.add_argument("--runs", type=int, default=3, help="remembered runs per cache")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    bcdi = str(Path(sys.executable).with_name("bcdi-stream"))
    with tempfile.TemporaryDirectory(prefix="plan-spread-") as tmp:
        tmp = Path(tmp)
        _, intensity = simulate(args.size, 1, 2e4)
        np.save(tmp / "intensity.npy", intensity)
        (tmp / "ours.toml").write_text(ours_toml())
        print(f"{args.size}^3, recipe {RECIPE_OURS!r}, one member; load average {os.getloadavg()[0]:.1f}")
        print("| cache | first run (s) | remembered runs (s) | remembered median (s) |\n|---|---|---|---|")
        for c in range(args.caches):
            env = {**os.environ, "BCDI_STREAM_CACHE": str(tmp / f"cache-{c}")}
            walls = []
            for k in range(1 + args.runs):
                cmd = [bcdi, "reconstruct", str(tmp / "intensity.npy"), "--out", str(tmp / "ours.h5"), "--config",
                       str(tmp / "ours.toml"), "--recipe", RECIPE_OURS, "--population", "1", "--average", "1",
                       "--seed", str(k + 1), "--voxel-nm", "12"]  # as peer_cohere.py runs it
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                walls.append(time.perf_counter() - t0)
            print(f"| {c} | {walls[0]:.2f} | {', '.join(f'{w:.2f}' for w in walls[1:])} | "
                  f"{statistics.median(walls[1:]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
