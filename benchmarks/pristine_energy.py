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

``--repeat-scans K ... --repeat-seeds S ...`` also phases those scans of the recording again with other seeds
(`bcdi-stream reconstruct REC --scan K --seed S --budget-s 0`, as the service phases them) and prints each scan's
live energy beside its repeats' and their bars (how much of the scan-to-scan scatter one scan's own data leave to the
phasing), then what the repeats' members share: within a reconstruction, a scan, and across scans (BENCHMARKS.md,
"The same data phased again").

    .venv/bin/python benchmarks/pristine_energy.py --seeds 0 1 2 --workdir /tmp/pristine-energy
    .venv/bin/python benchmarks/pristine_energy.py --geometry orthogonal --workdir /tmp/pristine-energy
    .venv/bin/python benchmarks/pristine_energy.py --scenario benchmarks/scenarios/pristine-strained.toml --seeds 0 \
        --variants default --workdir /tmp/pristine-energy
    .venv/bin/python benchmarks/pristine_energy.py --seeds 3 --variants demo --repeat-scans 7 11 16 0 --repeat-seeds 1 2 3 \
        --workdir /tmp/pristine-energy
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


def repeat_energy(result: dict) -> tuple[float, float]:
    """The energy and error bar of a result written by ``reconstruct`` (with its members), as the service reads
    a scan's object."""
    from streamer.analysis.offline import result_strain_energy

    e = result_strain_energy(result)
    return e["energy_j"], e["energy_error_j"]


def shared_parts(results: dict[tuple[int, int], dict]) -> dict:
    """Mean eps^2 (beyond its gradient along q) of the members of ``results`` ((scan, seed) -> result), read where
    every object's phase is trusted: of a member alone, and shared by two members of one reconstruction, of two
    reconstructions of one scan (what that scan's data fix, whatever the seed), of two scans (what the particle,
    the geometry and the phasing fix, whatever the counts)."""
    from streamer.analysis.displacement import (beyond_gradient_along_q, displacement_object, remove_ramp,
                                                strain_along_q)
    from streamer.analysis.objects import fields_of
    from streamer.analysis.offline import result_geometry

    geometry = result_geometry(next(iter(results.values())))
    common = np.logical_and.reduce([fields_of(r["object"], result_geometry(r)).reliable for r in results.values()])
    rests, tags = [], []
    for tag, r in results.items():
        for member in r["members"]:
            flat, _, _ = remove_ramp(displacement_object(member), common)
            eps = strain_along_q(flat, common, voxel_nm=geometry.voxel_nm, q_inv_nm=geometry.q_bragg_inv_nm)
            rest = np.zeros(eps.shape)
            rest[np.isfinite(eps)] = beyond_gradient_along_q(eps)[0]
            rests.append(rest[common])
            tags.append(tag)
    rests, scan, seed = np.array(rests), np.array([t[0] for t in tags]), np.array([t[1] for t in tags])
    gram = rests @ rests.T / rests.shape[1]
    one_scan = scan[:, None] == scan[None, :]
    one_seed = one_scan & (seed[:, None] == seed[None, :]) & ~np.eye(len(tags), dtype=bool)
    return {"member_alone": float(np.mean(np.diag(gram))), "one_reconstruction": float(np.mean(gram[one_seed])),
            "one_scan": float(np.mean(gram[one_scan & (seed[:, None] != seed[None, :])])),
            "two_scans": float(np.mean(gram[~one_scan])) if (~one_scan).any() else float("nan")}


def repeats(cli: list[str], recording: Path, events_path: Path, scans: list[int], seeds: list[int],
            folder: Path) -> list[dict]:
    """Each of ``scans`` phased again with each of ``seeds``; printed beside its live energy (``events_path``)."""
    from streamer.recording.result_file import read_result

    events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
    live = {e["scan"]: (e.get("strain") or {}).get("energy_j", float("nan")) for e in events}
    folder.mkdir(parents=True, exist_ok=True)
    rows, everything = [], {}
    for scan in scans:
        values = []
        for seed in seeds:
            out = folder / f"repeat-scan{scan}-seed{seed}.h5"
            if not out.exists():
                run([*cli, "reconstruct", str(recording), "--scan", str(scan), "--seed", str(seed), "--budget-s", "0",
                     "--out", str(out)], out.with_suffix(".log"))
            everything[scan, seed] = read_result(out)
            values.append(repeat_energy(everything[scan, seed]))
        energy = np.array([v[0] for v in values])
        rows.append({"scan": scan, "live_j": live[scan], "repeats_j": energy.tolist(),
                     "bars_j": [v[1] for v in values]})
        print(f"scan {scan}: live {live[scan]:.3g} J; seeds {seeds}: {', '.join(f'{e:.3g}' for e in energy)} J "
              f"(bars {', '.join(f'{v[1]:.2g}' for v in values)}); std of all {np.std([live[scan], *energy]):.2g} J",
              flush=True)
    if len(seeds) > 1:
        parts = shared_parts(everything)
        print("mean eps^2 (x 1e12) of a member alone, and shared by two members of one reconstruction, of two "
              f"reconstructions of one scan, of two scans: {', '.join(f'{1e12 * v:.1f}' for v in parts.values())}")
        rows.append({"mean_square_strain": parts})
    return rows


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
    ap.add_argument("--repeat-scans", type=int, nargs="*", default=[],
                    help="scans of each recording to phase again with --repeat-seeds (the phasing's own spread)")
    ap.add_argument("--repeat-seeds", type=int, nargs="+", default=[1, 2, 3])
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
            if args.repeat_scans:
                s["repeats"] = repeats(cli, recording, out / "events.jsonl", args.repeat_scans, args.repeat_seeds,
                                       args.workdir / f"{tag}-repeats")
    print(json.dumps([{"geometry": args.geometry, "seed": seed, "variant": name, **s} for seed, name, s in rows]))


if __name__ == "__main__":
    main()
