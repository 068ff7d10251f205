"""Noise replicas of one recorded scan (issue 19): how many error-reduction iterations they need, what they cost,
and what they say of the strain energy.

Phases the scan as the service does (its recorded preparation, the service's phasing), then makes the replicas
(streamer/phasing/replicas.py) with each number of iterations given and prints each replica's strain energy (its
even strain's, as the service reads an object), the seconds they took, and the energy and error the service gives
the object with them: the noise's energy (the replicas' even strain less the object's), their spread, and the
error bar. On a strain-free particle the noise's energy should be about the object's whole energy.

    .venv/bin/python benchmarks/noise_replicas.py RECORDING.h5 --scan 1 --iterations 5 10 20 50 400
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from streamer.analysis.offline import result_strain_energy
from streamer.analysis.scan import lab_grid, to_lab
from streamer.cli.common import recorded_preparation
from streamer.cli.reconstruct import binned_pixels, load_input
from streamer.phasing.engine import make_problem, reconstruct
from streamer.phasing.replicas import noise_replicas
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recording", type=Path)
    ap.add_argument("--scan", type=int, default=0)
    ap.add_argument("--count", type=int, default=4, help="replicas per setting (default 4)")
    ap.add_argument("--iterations", type=int, nargs="+", default=[20], help="ER iterations of each replica")
    ap.add_argument("--seed", type=int, default=0, help="the phasing's seed")
    args = ap.parse_args()
    service = load_config(None, ServiceConfig, {"detector": recorded_preparation(args.recording, None)})
    p = load_input(args.recording, scan=args.scan, dataset=None, mask_path=None, q_axis=0, binning=None,
                   detector=service.detector)
    phasing = service.phasing.replace(binned_pixels=binned_pixels(p.meta, p.detector), noise_replicas=0)
    mask = p.mask if p.mask.any() else None
    t0 = time.perf_counter()
    result = reconstruct(p.intensity, xp=np, config=phasing, rng=args.seed, mask=mask)
    print(f"scan {args.scan}: phased {p.intensity.shape} in {time.perf_counter() - t0:.0f} s "
          f"({result.iterations} iterations x {phasing.population} members)", flush=True)
    problem = make_problem(p.intensity, config=phasing, rng=args.seed, mask=mask)
    lab = lab_grid(p.detector, result.support, q_inv_nm=p.q_inv_nm)

    def energy(replicas):
        moved = to_lab(p.detector, lab, result.rho, support=result.support, members=result.members,
                       replicas=replicas)
        return result_strain_energy({"object": moved.rho, "members": moved.members, "replicas": moved.replicas,
                                     "metadata": {"geometry": lab.to_dict()}})

    alone = energy(None)
    print(f"object: {alone['energy_j']:.3g} J, error without replicas {alone['energy_error_j']:.3g} "
          f"(neighbours' noise {alone['noise_energy_j']:.3g})", flush=True)
    for n in args.iterations:
        t0 = time.perf_counter()
        reps = noise_replicas(result.rho, result.support, problem.amplitude, problem.measured, count=args.count,
                              iterations=n, seed=problem.seed, binned=phasing.binned_pixels)
        seconds = time.perf_counter() - t0
        e = energy(reps)
        each = [result_strain_energy({"object": m, "metadata": {"geometry": lab.to_dict()}})["energy_j"]
                for m in to_lab(p.detector, lab, result.rho, support=result.support, members=reps).members]
        print(f"{n} ER: {args.count} replicas in {seconds:.1f} s; their energies "
              f"{' '.join(f'{v:.3g}' for v in each)} J (mean {np.mean(each):.3g}); noise's energy "
              f"{e['noise_energy_j']:.3g} ({e['noise_energy_j'] / e['energy_j']:.2f} of the object's), spread "
              f"{e['noise_scatter_j']:.3g}; error bar {e['energy_error_j']:.3g} J", flush=True)


if __name__ == "__main__":
    main()
