"""The strain-free control's strain energy over its 24 scans, every scan cold (the default) and warm-started (issue 19).

For each seed, `bcdi-stream demo --scenario pristine --fast --seed S [--geometry G]` is run once (its recording
kept in WORKDIR/seedS, or WORKDIR/orthogonal-seedS; an existing one is reused), then its recording is replayed through `bcdi-stream replay` (every scan
reconstructed, as the live service does) with each variant's `[phasing]` settings. Printed per variant and seed:
the scans' mean energy, the coefficient of variation across scans, max/min, and how many scans' error bars
(`strain.energy_j_range`) exclude the run's mean (issue 19 asks CV <= 20% and none), and how well the bars are
calibrated: the spread of (energy - mean) / half-bar across scans (1 for one-standard-error bars that hold the scatter)
and how many scans lie beyond 1, 2 and 3 half-bars of the mean.

``--scenario`` runs another unchanged control (a scenario file, e.g. benchmarks/scenarios/pristine-strained.toml:
the same particle with a static strain); ``--variants default`` skips the warm-started replay, ``--variants demo``
reads the demo's own live events and replays nothing. (The replays have no
time budget, so with the default ``warm_start = "auto"`` every scan starts cold: BENCHMARKS.md, "Every scan cold".)

    .venv/bin/python benchmarks/pristine_energy.py --seeds 0 1 2 --workdir /tmp/pristine-energy
    .venv/bin/python benchmarks/pristine_energy.py --geometry orthogonal --workdir /tmp/pristine-energy
    .venv/bin/python benchmarks/pristine_energy.py --scenario benchmarks/scenarios/pristine-strained.toml --seeds 0 \
        --variants default --workdir /tmp/pristine-energy
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

VARIANTS = {"warm": "[phasing]\nwarm_start = true\n", "default": ""}


def energies(events_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each scan's energy and the upper end of its range, in scan order."""
    events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
    events = sorted((e for e in events if "energy_j" in (e.get("strain") or {})), key=lambda e: e["scan"])
    return (np.array([e["strain"]["energy_j"] for e in events]),
            np.array([e["strain"]["energy_j_range"] for e in events]))


def summary(energy: np.ndarray, span: np.ndarray) -> dict:
    mean = float(energy.mean())
    half = (span[:, 1] - span[:, 0]) / 2
    z = np.abs(energy - mean) / np.where(half > 0, half, np.nan)
    return {"scans": len(energy), "mean_j": mean, "cv": float(energy.std() / mean),
            "max_over_min": float(energy.max() / energy.min()),
            "bars_excluding_mean": int(((span[:, 0] > mean) | (span[:, 1] < mean)).sum()),
            "deviation_over_half_bar_rms": float(np.sqrt(np.nanmean(z**2))),
            "beyond_half_bars": {k: int(np.sum(z > k)) for k in (1, 2, 3)}}


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"failed: {' '.join(cmd)} (see {log})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pristine-energy"))
    ap.add_argument("--geometry", choices=["detector", "orthogonal"], default="detector",
                    help="the demo's grid: the Timepix quad's detector grid (its default) or the orthogonal toy grid")
    ap.add_argument("--scenario", default="pristine", help="the control's scenario (name or file; default pristine)")
    ap.add_argument("--variants", nargs="+", choices=sorted([*VARIANTS, "demo"]), default=list(VARIANTS),
                    help="replays to run: the defaults (every scan cold), and every scan after the first warm-started; "
                         "'demo': no replay, the demo's own live events (every scan cold too)")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "streamer.cli"]
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        tag = f"seed{seed}" if args.geometry == "detector" else f"orthogonal-seed{seed}"
        if args.scenario != "pristine":
            tag = f"{Path(args.scenario).stem}-{tag}"
        folder = args.workdir / tag
        if not list(folder.glob("demo-*.h5")):
            run([*cli, "demo", "--scenario", args.scenario, "--fast", "--seed", str(seed), "--geometry", args.geometry,
                 "--out", str(folder)], args.workdir / f"demo-{tag}.log")
        (recording,) = folder.glob("demo-*.h5")
        for name in args.variants:
            out = folder if name == "demo" else args.workdir / f"{tag}-{name}"
            if name != "demo":
                config = out.with_suffix(".toml")
                config.write_text(VARIANTS[name])
                run([*cli, "replay", str(recording), "--out", str(out), "--config", str(config)],
                    out.with_suffix(".log"))
            rows.append((seed, name, summary(*energies(out / "events.jsonl"))))
            s = rows[-1][2]
            print(f"{args.geometry}, seed {seed}, {name}: {s['scans']} scans, mean {s['mean_j']:.2e} J, CV {100 * s['cv']:.0f}%, "
                  f"max/min {s['max_over_min']:.1f}, error bars excluding the mean {s['bars_excluding_mean']} "
                  f"of {s['scans']}; |energy - mean| / half-bar rms {s['deviation_over_half_bar_rms']:.2f}, beyond "
                  f"1/2/3 half-bars {'/'.join(str(v) for v in s['beyond_half_bars'].values())}", flush=True)
    print(json.dumps([{"geometry": args.geometry, "seed": seed, "variant": name, **s} for seed, name, s in rows]))


if __name__ == "__main__":
    main()
