"""What the strain-free control's scatter follows: the twin the averaging gave each member (issue 19).

A member's twin, conj(rho(-r)), fits the data as well as the member; about a centrosymmetric particle the two differ
only in the even part of the phase, whose slope of strain along q (`gradient_energy_j`'s mode) changes sign with the
twin. Reads the live result files of a run folder that kept their members (`[recording] keep_members = true`, e.g.
`bcdi-stream demo --scenario pristine --fast --config KEEP.toml --out DIR`) and prints, per scan: the energy and its
bar, each averaged member's slope along q (1e-7 a voxel) and how their signs split; then the run's energies grouped
by that split, and re-read (not shipped) with the members' twins chosen so that their slopes along q balance. (Since
session 37 the energy is that of the strain's even part, which no twin changes: "shipped" and "rebalanced" agree.)

    .venv/bin/python benchmarks/twin_modes.py DIR
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from streamer.analysis.displacement import beyond_gradient_along_q, strain_as_read
from streamer.analysis.objects import fields_of
from streamer.analysis.offline import result_geometry, result_strain_energy
from streamer.phasing.alignment import register
from streamer.phasing.genetic import members_mean
from streamer.recording.result_file import read_result


def slope_along_q(member: np.ndarray, particle, geometry) -> float:
    """Slope (per voxel) of a member's strain along q, read as the jackknife reads a mean of members."""
    strain = strain_as_read(particle, member, voxel_nm=geometry.voxel_nm, q_inv_nm=geometry.q_bragg_inv_nm)
    return beyond_gradient_along_q(strain)[1]


def energy(result: dict, obj: np.ndarray, members: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The shipped energy and range of ``obj`` with ``members`` in place of the result's own."""
    e = result_strain_energy({**result, "object": obj, "members": members})
    return e["energy_j"], e["energy_j_range"]


def balanced(members: np.ndarray, slopes: list[float], twin_slopes: list[float], twins: list[np.ndarray]):
    """The members with twins chosen (the first kept) so that the sum of their slopes along q is least."""
    choices = itertools.product((False, True), repeat=len(members) - 1)
    best = min(choices, key=lambda c: abs(slopes[0] + sum(t if f else s for f, s, t in
                                                           zip(c, slopes[1:], twin_slopes[1:]))))
    return np.stack([members[0]] + [t if f else m for f, m, t in zip(best, members[1:], twins[1:])])


def summary(name: str, values: np.ndarray, spans: np.ndarray) -> None:
    mean = values.mean()
    excluding = int(((spans[:, 0] > mean) | (spans[:, 1] < mean)).sum())
    print(f"{name}: mean {mean:.3g} J, CV {100 * values.std() / mean:.1f}%, max/min {values.max() / values.min():.2f}, "
          f"{excluding} of {len(values)} bars excluding the mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder whose results/<run>/scan-*.h5 keep their members")
    args = ap.parse_args()
    files = sorted(args.run.glob("results/*/scan-*.h5"))
    if not files:
        raise SystemExit(f"no result files under {args.run}/results")
    rows = []
    for path in files:
        result = read_result(path)
        members = result.get("members")
        if members is None or len(members) < 2:
            raise SystemExit(f"{path} keeps no members: run the service with [recording] keep_members = true")
        geometry = result_geometry(result)
        particle = fields_of(result["object"], geometry)
        twins = [members[0]] + [register(m, members[0], subvoxel=True, twin=True).aligned for m in members[1:]]
        slopes = [slope_along_q(m, particle, geometry) for m in members]
        twin_slopes = [slope_along_q(t, particle, geometry) for t in twins]
        shipped = energy(result, result["object"], members)
        chosen = balanced(members, slopes, twin_slopes, twins)
        mean = members_mean(chosen).astype(np.complex64)
        rebalanced = energy(result, mean, chosen)
        split = abs(sum(np.sign(slopes)))
        rows.append((shipped, rebalanced, split, len(members)))
        print(f"scan {result['metadata'].get('scan', path.stem)}: {shipped[0]:.3g} J [{shipped[1][0]:.3g}, "
              f"{shipped[1][1]:.3g}]; members' slopes along q {np.round(np.array(slopes) * 1e7).astype(int).tolist()}"
              f" (twins' {np.round(np.array(twin_slopes) * 1e7).astype(int).tolist()}); rebalanced {rebalanced[0]:.3g} J",
              flush=True)
    energies = np.array([r[0][0] for r in rows])
    splits = np.array([r[2] for r in rows])
    k = rows[0][3] if rows else 0
    for s in sorted(set(splits)):
        v = energies[splits == s]
        print(f"members split {(k + int(s)) // 2}:{(k - int(s)) // 2}: {len(v)} scans, mean {v.mean():.3g} J, "
              f"CV {100 * v.std() / v.mean():.0f}%")
    summary("shipped", energies, np.array([r[0][1] for r in rows]))
    summary("twins rebalanced (not shipped)", np.array([r[1][0] for r in rows]), np.array([r[1][1] for r in rows]))


if __name__ == "__main__":
    main()
