"""The strain energy of a run's live result files, read again with this code's estimator (issue 19).

Reads `results/<run>/scan-*.h5` of each run folder (from `bcdi-stream demo`, `serve` or `replay`; with
`[recording] keep_members = true` the members and noise replicas too, so the error bar is the service's own) and
prints, per scan, the energy (`strain_energy_estimate`: the strain's even part), its error bar, the noise's part of
it (from the replicas where kept) and the odd part left out; per run, the
scans' mean, the coefficient of variation across scans, how many error bars exclude the run's mean (issue 19 asks
CV <= 20% and none on the pristine control), the spread of (energy - mean) / bar, and each change from one scan to
the next in combined bars (the reference asks more than 3 where the boundary appears and where it resolves).

    .venv/bin/python benchmarks/energy_of_results.py RUN_FOLDER [RUN_FOLDER ...] [--quiet] [--without-replicas]

``--without-replicas`` reads the files as if they had kept no noise replicas: the error bar as before them (the noise
from neighbouring voxels), on the same objects.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from streamer.analysis.offline import result_strain_energy
from streamer.recording.result_file import read_result


def run_energies(folder: Path, replicas: bool = True) -> list[dict]:
    """Each result file's scan, energy, error bar, noise and odd energies, and how many members and replicas it kept."""
    rows = []
    for path in sorted(folder.glob("results/*/scan-*.h5")):
        result = read_result(path)
        if not replicas:
            result["replicas"] = None
        members, kept = result.get("members"), result.get("replicas")
        e = result_strain_energy(result)
        rows.append({"scan": result["metadata"].get("scan", path.stem), "energy_j": e["energy_j"],
                     "error_j": e["energy_error_j"], "odd_energy_j": e["odd_energy_j"],
                     "noise_energy_j": e["noise_energy_j"], "members": 0 if members is None else len(members),
                     "replicas": 0 if kept is None else len(kept)})
    return rows


def summary(rows: list[dict]) -> str:
    energy = np.array([r["energy_j"] for r in rows])
    bar = np.array([r["error_j"] for r in rows])
    mean = energy.mean()
    z = (energy - mean) / bar
    steps = [(energy[i] - energy[i - 1]) / math.hypot(bar[i], bar[i - 1]) for i in range(1, len(rows))]
    return (f"{len(rows)} scans: mean {mean:.3g} J, CV {100 * energy.std() / mean:.1f}%, "
            f"{int((np.abs(z) > 1).sum())} error bars excluding the mean, (E - mean) / bar spread {z.std():.2f} "
            f"(largest {np.abs(z).max():.2f}), max/min {energy.max() / energy.min():.2f}; changes scan to scan in "
            f"combined bars: {' '.join(f'{s:+.1f}' for s in steps)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="run folders holding results/<run>/scan-*.h5")
    ap.add_argument("--quiet", action="store_true", help="the runs' summaries only")
    ap.add_argument("--without-replicas", action="store_true", help="leave kept noise replicas out (bars as before)")
    args = ap.parse_args()
    for folder in args.runs:
        rows = run_energies(folder, replicas=not args.without_replicas)
        if not rows:
            raise SystemExit(f"no result files under {folder}/results")
        print(f"## {folder}")
        if not args.quiet:
            for r in rows:
                print(f"scan {r['scan']}: {r['energy_j']:.3g} +- {r['error_j']:.2g} J, noise "
                      f"{r['noise_energy_j']:.2g} J, odd part {r['odd_energy_j']:.2g} J ({r['members']} members, "
                      f"{r['replicas']} replicas)")
        print(summary(rows), flush=True)


if __name__ == "__main__":
    main()
