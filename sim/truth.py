"""Ground truth of each simulated scan, in the lab frame, written beside the recording (docs/truth.md).

Per scan: the declared defects (lines with point, direction, Burgers vector, winding and type;
boundaries with plane and phase step; strain walls, strain regions, mosaic), the lattice constant,
the Bragg peak's widths along and across q (FWHM of projections of the noise-free 3D intensity,
resampled onto an orthogonal q grid), the partial strain energy along q, and the complex object
itself on an orthogonal lab grid, rho = A exp(-i G.u) as docs/conventions.md defines it. Windings and
Burgers vectors are those of the displacement (b gained once around the line, counter-clockwise about
its direction), so they mean the same defect as the analysis' windings of -arg(rho).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Self

import h5py
import numpy as np

from sim.particle import Particle, amplitude_at, complex_image_at, phase_at
from streamer.analysis.peak import peak_metrics
from streamer.geometry import OrthogonalGeometry

TRUTH_LAYOUT_VERSION = 2  # 2: rho = A exp(-i G.u) (docs/conventions.md); 1 held A exp(+i G.u)
PHASE_CONVENTION = "rho = |rho| exp(-i G.u), forward FFT exp(-i q.r) (docs/conventions.md)"
YOUNG_MODULUS_Z_PA = 150e9  # Y_z of the layered oxide along [002] (SCIENCE.md)
TRUTH_VOXEL_NM = 4.0
STRAIN_STEP_NM = 0.5  # half-step of the central difference that gives eps_zz


def truth_axes_nm(particle: Particle, voxel_nm: float = TRUTH_VOXEL_NM) -> list[np.ndarray]:
    """(z, y, x) coordinates (nm) of the truth grid: the particle's bounding box plus two voxels,
    odd sizes with the origin (particle centre) at index n // 2."""
    half = (particle.thickness_nm / 2, max(particle.radius_x_nm, particle.radius_y_nm),
            max(particle.radius_x_nm, particle.radius_y_nm))
    axes = []
    for h in half:
        n = 2 * math.ceil(h / voxel_nm + 2) + 1
        axes.append((np.arange(n) - n // 2) * voxel_nm)
    return axes


def _points(axes) -> np.ndarray:
    return np.stack(np.meshgrid(*axes, indexing="ij")).astype(float)


def truth_object(particle: Particle, voxel_nm: float = TRUTH_VOXEL_NM) -> np.ndarray:
    """rho = A exp(-i G.u) (complex64, lab z, y, x) on the truth grid; its phase is the defects' alone
    (no lattice-constant ramp), -arg(rho) their displacement phase."""
    return complex_image_at(particle, _points(truth_axes_nm(particle, voxel_nm))).astype(np.complex64)


def strain_along_q(particle: Particle, points: np.ndarray) -> np.ndarray:
    """eps_zz = du_z/dz at ``points`` (3, n): wrapped central difference of the displacement phase G.u,
    over |G| (positive where the lattice is expanded along q)."""
    dz = np.zeros_like(points)
    dz[0] = STRAIN_STEP_NM
    dphi = np.angle(np.exp(1j * (phase_at(particle, points + dz) - phase_at(particle, points - dz))))
    return dphi / (2 * STRAIN_STEP_NM * particle.q_bragg_inv_nm)


def strain_energy(particle: Particle, voxel_nm: float = TRUTH_VOXEL_NM) -> dict:
    """Partial strain energy along [002], E = 1/2 Y_z sum eps_zz^2 dV over the particle (J), and rms eps_zz.

    The homogeneous change of lattice constant is a stress-free state of charge and is left out.
    """
    pts = _points(truth_axes_nm(particle, voxel_nm))
    inside = amplitude_at(particle, pts) > 0
    eps = strain_along_q(particle, pts[:, inside])
    volume_m3 = (voxel_nm * 1e-9) ** 3
    return {"strain_energy_j": float(0.5 * YOUNG_MODULUS_Z_PA * np.sum(eps**2) * volume_m3),
            "rms_strain": float(np.sqrt(np.mean(eps**2))) if eps.size else 0.0}


def peak_widths(intensity_stack: np.ndarray, geometry, *, size: int = 96) -> dict:
    """Widths (nm^-1) of a rocking scan's 3D intensity (step, row, col) along and across q.

    The intensity is resampled onto an orthogonal q grid (``size``^3, the finest q step of the
    geometry) and measured with ``streamer.analysis.peak.peak_metrics`` (FWHM of projections).
    """
    if isinstance(geometry, OrthogonalGeometry):
        vol = np.transpose(intensity_stack, (1, 2, 0))
        pixel = tuple(geometry.dq_inv_nm(a) for a in range(3))
    else:
        dq = float(min(np.linalg.norm(geometry.q_basis_inv_nm, axis=0)))
        vol = geometry.intensity_to_orthogonal(intensity_stack, dq_inv_nm=dq, shape_zyx=(size, size, size))
        pixel = (dq, dq, dq)
    m = peak_metrics(vol, pixel_inv_nm=pixel)
    return {"width_parallel_inv_nm": m["width_parallel"], "width_perpendicular_inv_nm": m["width_perpendicular"],
            "width_perpendicular_y_inv_nm": m["width_perpendicular_y"],
            "width_perpendicular_x_inv_nm": m["width_perpendicular_x"]}


def defects_truth(particle: Particle) -> dict:
    """The particle's lines (each loop side as a segment) and boundaries, JSON-able, lab frame (nm from
    the particle centre): what a scan's truth and a validation case's truth both state."""
    lines = [{"point_nm": list(d.point_nm), "direction": list(d.direction), "burgers_c": list(d.burgers_c),
              "winding": d.winding, "type": d.kind} for d in particle.dislocations]
    for k, loop in enumerate(particle.loops):  # each side of a loop: a segment from its point to the next vertex
        for side, end in zip(loop.segments(), loop.vertices_nm[1:] + loop.vertices_nm[:1]):
            lines.append({"point_nm": list(side.point_nm), "direction": list(side.direction),
                          "burgers_c": list(side.burgers_c), "winding": side.winding, "type": side.kind,
                          "loop": k, "end_nm": list(end)})
    boundaries = [{"point_nm": [v * b.offset_nm for v in b.normal], "normal": list(b.normal),
                   "phase_step_rad": b.step_rad} for b in particle.boundaries]
    return {"lines": lines, "boundaries": boundaries}


def scan_truth(scan: int, stage, particle: Particle, intensity_stack: np.ndarray, geometry) -> dict:
    """The JSON-able truth of one scan (lab frame: z along q, origin at the particle centre)."""
    defects = defects_truth(particle)
    lines, boundaries = defects["lines"], defects["boundaries"]
    return {
        "scan": scan, "label": stage.label, "voltage_v": stage.voltage_v, "capacity_mah_g": stage.capacity_mah_g,
        "lattice_c_nm": particle.lattice_c_nm, "bragg_vector_inv_nm": particle.bragg_vector_inv_nm().tolist(),
        "particle": {"shape": particle.shape, "radius_x_nm": particle.radius_x_nm,
                     "radius_y_nm": particle.radius_y_nm, "thickness_nm": particle.thickness_nm,
                     "rounding_nm": particle.rounding_nm, "rotation_deg": particle.rotation_deg},
        "lines": lines, "boundaries": boundaries,
        "strain_walls": [asdict(w) for w in particle.walls],
        "strain_regions": [asdict(r) for r in particle.regions],
        "mosaic": asdict(particle.mosaic) if particle.mosaic is not None else None,
        "peak": peak_widths(intensity_stack, geometry),
        **strain_energy(particle),
    }


class TruthWriter:
    """``truth.h5``: one group per scan, ``/scans/NNNN``, holding its truth JSON and object."""

    def __init__(self, path: Path, *, run: str, scenario: str, seed: int, geometry: dict):
        self.path = Path(path)
        self._f = h5py.File(self.path, "w")
        self._f.attrs.update(layout_version=TRUTH_LAYOUT_VERSION, run=run, scenario=scenario, seed=seed,
                             geometry_json=json.dumps(geometry), frame="lab: z along q, origin at the particle centre",
                             phase_convention=PHASE_CONVENTION)
        self._f.create_group("scans")

    def add(self, truth: dict, particle: Particle, voxel_nm: float = TRUTH_VOXEL_NM) -> None:
        g = self._f["scans"].create_group(f"{truth['scan']:04d}")
        g.attrs["truth_json"] = json.dumps(truth)
        ds = g.create_dataset("rho", data=truth_object(particle, voxel_nm), compression="gzip", compression_opts=4)
        ds.attrs.update(voxel_nm=voxel_nm, axes="z,y,x", origin_index=[n // 2 for n in ds.shape])
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_truth(path: Path) -> list[dict]:
    """Every scan's truth dict, in scan order, with ``rho`` (complex64, z, y, x) and ``voxel_nm`` added."""
    out = []
    with h5py.File(path, "r") as f:
        if f.attrs.get("layout_version") != TRUTH_LAYOUT_VERSION:
            raise ValueError(f"{path} is not a truth file of layout {TRUTH_LAYOUT_VERSION} (layout 1 held the "
                             "conjugate object, exp(+i G.u): simulate the run again)")
        for name in sorted(f["scans"]):
            g = f["scans"][name]
            truth = json.loads(g.attrs["truth_json"])
            truth["rho"] = g["rho"][()]
            truth["voxel_nm"] = float(g["rho"].attrs["voxel_nm"])
            out.append(truth)
    return out
