"""Learn FFTW plans ahead of a beamtime, so that every reconstruction runs on the fastest ones.

FFTW_PATIENT tries more algorithms than the FFTW_MEASURE every run asks for, and finds FFTs up to
20% faster (a 128^3 pair on 2 cores: 8.4 ms against 10.4 ms), but takes a minute or two per shape.
Wisdom learned here is saved beside the wisdom the service keeps (the [fft] cache_dir of --config,
by default $BCDI_STREAM_CACHE or ~/.cache/bcdi-stream), and FFTW answers a later MEASURE request
with it at once. Give the batch shapes the runs will use: (population, z, y, x) of the cropped,
binned scan; the live default's population is 8. A population of 1 is what
`reconstruct --population 1` and the peer benchmark use.

    .venv/bin/python ops/fft/learn_plans.py --shape 8 64 128 128 --shape 1 128 128 128 --config ops/configs/service.toml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamer.backend import get_namespace
from streamer.phasing.fft import (
    PLANNER_EFFORTS,
    configure_fft,
    cpu_count,
    get_plan,
    have_pyfftw,
)
from streamer.phasing.wisdom import load_wisdom, save_wisdom, wisdom_path
from streamer.service.config import ServiceConfig
from streamer.settings import ConfigError, load_config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=4, action="append", required=True, metavar=("P", "Z", "Y", "X"),
                    help="a batch shape to plan (repeat for more)")
    ap.add_argument("--effort", choices=sorted(PLANNER_EFFORTS), default="patient")
    ap.add_argument("--threads", type=int, default=0, help="FFTW threads, as the runs will use (0: every core)")
    ap.add_argument("--config", type=Path, default=None, help="the service config whose [fft] cache_dir to fill")
    args = ap.parse_args(argv)
    try:
        fft = load_config(args.config, ServiceConfig).fft
    except ConfigError as exc:
        ap.error(str(exc))
    configure_fft(planner=args.effort, cache_dir=fft.cache_dir)
    if not have_pyfftw():
        ap.error("pyFFTW is not installed: there are no FFTW plans to learn")
    if any(n <= 0 for shape in args.shape for n in shape):
        ap.error(f"every shape needs positive sizes, got {args.shape}")
    threads = args.threads or cpu_count()
    print(f"existing wisdom {'loaded' if load_wisdom() else 'none'} ({wisdom_path()}); {threads} thread(s)")
    for shape in args.shape:
        t0 = time.perf_counter()
        get_plan(get_namespace("numpy"), tuple(shape), threads=threads, effort=PLANNER_EFFORTS[args.effort])
        print(f"{tuple(shape)}: planned with {args.effort} in {time.perf_counter() - t0:.1f} s", flush=True)
    if not save_wisdom():
        print(f"could not save the wisdom to {wisdom_path()}")
        return 1
    print(f"saved to {wisdom_path()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
