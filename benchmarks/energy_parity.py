"""What a run's strain energy is made of: the strain of the phase's inversion-even and -odd parts, per scan (issue 19).

About a centrosymmetric particle (the pristine control's hexagonal plate), a phase perturbation that is even under
r -> -r changes the intensity only at second order (|F|^2 of a real, centrosymmetric object is blind to it at first
order), an odd one at first order: the data fix the even part far less. Reads the live result files of a run folder
(``results/<run>/scan-*.h5``), reflects each object's flattened displacement phase about its particle's centre and
prints, per scan, the mean eps_zz^2 over the reliable interior of the whole phase, its even part and its odd part,
and the energy (``strain_energy_estimate``) with the strain read over Gaussian windows of other widths along q.

    .venv/bin/python benchmarks/energy_parity.py RUN_FOLDER [--smoothing 2 1 0.5 0]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from scipy import ndimage

from streamer.analysis.displacement import strain_along_q, strain_energy_estimate
from streamer.analysis.objects import fields_of
from streamer.analysis.offline import result_geometry
from streamer.recording.result_file import read_result


def symmetric_box(shape, centre) -> tuple[slice, ...]:
    """The largest box about the integer ``centre`` that fits in ``shape``."""
    return tuple(slice(c - min(c, n - 1 - c), c + min(c, n - 1 - c) + 1) for c, n in zip(centre, shape))


def parity_strains(particle, geometry) -> dict:
    """Mean eps_zz^2 of the whole flattened phase and of its inversion-even and -odd parts, where both r and -r are
    in the reliable interior."""
    centre = [int(round(v)) for v in ndimage.center_of_mass(particle.support)]
    box = symmetric_box(particle.flat.shape, centre)
    flat, reliable = particle.flat[box], particle.reliable[box]
    both = reliable & reliable[::-1, ::-1, ::-1]
    phase = np.angle(flat)
    mirrored = phase[::-1, ::-1, ::-1]
    out = {"symmetric_fraction": float(both.sum() / max(reliable.sum(), 1))}
    for name, part in (("all", phase), ("even", (phase + mirrored) / 2), ("odd", (phase - mirrored) / 2)):
        eps = strain_along_q(np.abs(flat) * np.exp(1j * part), both, voxel_nm=geometry.voxel_nm,
                             q_inv_nm=geometry.q_bragg_inv_nm)
        out[name] = float(np.nanmean(eps**2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder (demo, serve, replay) holding results/<run>/scan-*.h5")
    ap.add_argument("--smoothing", type=float, nargs="+", default=[2.0, 1.0, 0.5, 0.0],
                    help="widths (voxels along q) of the strain's Gaussian window to read the energy with")
    args = ap.parse_args()
    files = sorted(args.run.glob("results/*/scan-*.h5"))
    if not files:
        raise SystemExit(f"no result files under {args.run}/results")
    rows, energies = [], {s: [] for s in args.smoothing}
    print("scan  mean eps^2 (1e-10): all / even / odd   energy (J) by window width")
    for path in files:
        result = read_result(path)
        geometry = result_geometry(result)
        particle = fields_of(result["object"], geometry)
        parts = parity_strains(particle, geometry)
        rows.append(parts)
        for s in args.smoothing:
            eps = strain_along_q(particle.flat, particle.reliable, voxel_nm=geometry.voxel_nm,
                                 q_inv_nm=geometry.q_bragg_inv_nm, smoothing_voxels=s)
            energies[s].append(strain_energy_estimate(dataclasses.replace(particle, strain=eps),
                                                      voxel_nm=geometry.voxel_nm)["energy_j"])
        print(f"{result['metadata'].get('scan', path.stem):>4}  {parts['all'] * 1e10:7.3f} {parts['even'] * 1e10:7.3f} "
              f"{parts['odd'] * 1e10:7.3f}   " + " ".join(f"{energies[s][-1]:.2e}" for s in args.smoothing))
    for name in ("all", "even", "odd"):
        v = np.array([r[name] for r in rows])
        print(f"{name}: mean {v.mean() * 1e10:.3f}e-10, CV {100 * v.std() / v.mean():.0f}%")
    for s in args.smoothing:
        e = np.array(energies[s])
        print(f"window {s} voxels: mean {e.mean():.3e} J, CV {100 * e.std() / e.mean():.0f}%, max/min {e.max() / e.min():.1f}")


if __name__ == "__main__":
    main()
