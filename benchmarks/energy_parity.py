"""What a run's strain energy is made of: the strain of the phase's inversion-even and -odd parts, per scan (issue 19).

About a centrosymmetric particle (the pristine control's hexagonal plate), a phase perturbation that is even under
r -> -r changes the intensity only at second order (|F|^2 of a real, centrosymmetric object is blind to it at first
order), an odd one at first order: the data fix the even part far less. Reads the live result files of a run folder
(``results/<run>/scan-*.h5``), splits each object's strain about its particle's centre (its twin registered onto it) and
prints, per scan, the mean eps_zz^2 over the reliable interior of the whole phase, its even part and its odd part,
and the whole strain's energy over the particle's volume with the strain read over Gaussian windows of other widths
along q.

    .venv/bin/python benchmarks/energy_parity.py RUN_FOLDER [--smoothing 2 1 0.5 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from streamer.analysis.displacement import YOUNGS_MODULUS_Z_PA, even_and_odd_strain, strain_along_q
from streamer.analysis.objects import fields_of
from streamer.analysis.offline import result_geometry
from streamer.recording.result_file import read_result


def parity_strains(particle, geometry) -> dict:
    """Mean eps_zz^2 of the whole strain and of the strains of the phase's inversion-even and -odd parts (the odd and
    even strain of ``even_and_odd_strain``), where both r and -r are read."""
    odd, even = even_and_odd_strain(particle, np.conj(particle.flat), voxel_nm=geometry.voxel_nm,
                                    q_inv_nm=geometry.q_bragg_inv_nm)
    both = np.isfinite(odd)
    return {"symmetric_fraction": float(both.sum() / max(np.isfinite(particle.strain).sum(), 1)),
            "all": float(np.mean((odd[both] + even[both]) ** 2)), "even": float(np.mean(odd[both] ** 2)),
            "odd": float(np.mean(even[both] ** 2))}


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
            volume = particle.volumes_voxels[min(particle.volumes_voxels)] * (geometry.voxel_nm * 1e-9) ** 3
            energies[s].append(0.5 * YOUNGS_MODULUS_Z_PA * float(np.nanmean(eps**2)) * volume)
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
