"""What the lab resampling alone costs a detector-grid case's amplitude correlation (issue 18).

For each named case of `defect_validation.py` on the sheared detector grid, the true object is sampled on the
grid the reconstruction phases on (the case's geometry binned 2 x 2, as `reconstruct` bins it) and resampled
onto the lab grid two ways: the field interpolated linearly (real and imaginary parts), and the amplitude apart
from the phase (`streamer.analysis.scan.to_lab`). Printed: each one's amplitude correlation with the truth on
the lab grid, after registration, as the validation scores a reconstruction: the best a perfect reconstruction
on that grid could score.

    .venv/bin/python benchmarks/resampling_ceiling.py tuning-118 tuning-130 tuning-154 tuning-178 tuning-052 tuning-109
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_validation import SIZES, draw_case, true_object  # noqa: E402
from sim.particle import complex_image_at  # noqa: E402
from streamer.analysis.scan import to_lab  # noqa: E402
from streamer.geometry import DetectorGeometry  # noqa: E402
from streamer.phasing.alignment import amplitude_correlation, register  # noqa: E402


def correlation(obj: np.ndarray, truth: np.ndarray) -> float:
    """Amplitude correlation with the truth after registration (translation, twin, phase offset)."""
    return amplitude_correlation(truth, register(obj.astype(np.complex64), truth.astype(np.complex64)).aligned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="+", help="SET-INDEX of detector-grid cases, e.g. tuning-118")
    args = parser.parse_args()
    for name in args.cases:
        set_name, index = name.split("-")
        case = draw_case(set_name, int(index))
        if case.detector is None:
            print(f"{name}: on the orthogonal grid, nothing resampled")
            continue
        grid = DetectorGeometry(**{k: v for k, v in case.detector.items() if k != "timepix"}).binned(2)
        voxel = min(grid.voxel_sizes_nm)
        rho = complex_image_at(case.particle, grid.real_space_points_nm(), edge_nm=voxel)
        shape = SIZES[case.size]
        truth = true_object(case.particle, shape, voxel)
        linear = grid.to_orthogonal(rho, voxel_nm=voxel, shape_zyx=shape)
        kept = to_lab(grid, grid.lab_geometry(shape, voxel), rho).rho  # as reconstruct resamples
        print(f"{name} ({case.kind}; detector voxels {np.round(grid.voxel_sizes_nm, 1).tolist()} nm, lab {voxel:.1f} nm):"
              f" field interpolated {correlation(linear, truth):.3f}, amplitude apart {correlation(kept, truth):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
