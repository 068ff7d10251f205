"""Defect validation (issue 18): randomised particles with known defects, through the real commands.

Every case is drawn from distributions fixed in this file before any tuning (``draw_case``), from one of three
seed sets: ``tuning`` (free to look at while changing the analysis), ``scoring`` (only for the figures in
BENCHMARKS.md) and ``holdout`` (added in session 34, after every change so far: scoring's figures judged those
changes, so its cases are no longer unseen; holdout's are, until a change is judged on them). A case is a
plate-like particle (ellipse or hexagon, 3-5 times thinner than wide, any rotation about q, rounded edges, a weak
strain region in half of them) holding one kind of content:

  pristine    nothing
  screw       one screw line or a pair of opposite windings, tilted up to 20 deg from q
  edge_mixed  one line at 38-52 deg (mixed) or 72-90 deg (edge) from q, any azimuth, b = c/2 along q
  boundary    a plane at any azimuth, its normal tilted up to 35 deg out of the layers, step +-(pi/4..pi)
  antiphase   the same with a step of pi
  gaps        a screw pair or one line (0-52 deg from q) seen through a Timepix quad's gap cross, hot pixels

The dose (photons in the intensity) is log-uniform in 1e6-1e9 (a detector case whose brightest pixel would pass
80% of the Timepix ceiling is attenuated below it), with a dark background. ``gaps`` cases and a third of the
others are frame stacks on the sheared detector geometry (9 keV, 0.8-1.2 m, 55 um pixels, rocking steps of
0.02-0.035 deg, dead and hot pixels; frames binned 2 x 2 by reconstruct); the rest are orthogonal intensities
(z along q), a third of them with one or two detector-gap planes masked near the peak.

Each case is written to files and run as a new user would, with the commands' defaults:

    bcdi-stream reconstruct intensity.npy --voxel-nm V [--mask mask.npy] --out result.h5
    bcdi-stream reconstruct frames.h5 --geometry geometry.json --mask bad.npy --out result.h5
    bcdi-stream analyze result.h5 --json analysis.json

and scored against its truth (``score_case``): the result is registered onto the true object (translation, twin,
phase offset); lines match within MATCH_NM of a true line (recall, precision, winding about the true direction
once the twin is undone, position error across the line, type); a boundary matches when its centre lies within
MATCH_NM of the true plane and its normal within 45 deg (recall by step, normal and step errors); the amplitude
correlation with the truth.

    .venv/bin/python benchmarks/defect_validation.py --set scoring --per-kind 10       # the acceptance run
    .venv/bin/python benchmarks/defect_validation.py --set tuning --per-kind 2 --size small --workdir /tmp/dv
    .venv/bin/python benchmarks/defect_validation.py --workdir /tmp/dv --set tuning --per-kind 2 --code /tmp/old
        # the same reconstructions analysed (and, when missing, reconstructed) by another checkout's code
    .venv/bin/python benchmarks/defect_validation.py --set tuning --per-kind 3 --only 1 7 8 --workdir /tmp/dvB \
        --reconstruct-args "--budget-s 0"   # chosen cases of the tuning set, reconstructed another way
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.defects import DislocationLine, DomainBoundary, StrainRegion  # noqa: E402
from sim.detector import Timepix, TimepixSpec  # noqa: E402
from sim.particle import (  # noqa: E402
    Particle,
    bragg_offset_inv_nm,
    complex_image_at,
    detector_edge_nm,
    signed_distance_nm,
)
from sim.truth import defects_truth  # noqa: E402

# -- fixed before tuning: kinds, seed sets, sizes, distributions ---------------------------------------------
KINDS = ("pristine", "screw", "edge_mixed", "boundary", "antiphase", "gaps")
# case i of a set: numpy default_rng([SET_SEEDS[set], i])
SET_SEEDS = {"tuning": 18_001, "scoring": 18_002, "holdout": 18_003}
SIZES = {"full": (64, 128, 128), "small": (32, 64, 64)}  # intensity (orthogonal) or binned stack (detector)
DETECTOR_FRACTION = 1 / 3  # of the kinds other than gaps
GAP_PLANE_FRACTION = 1 / 3  # of the orthogonal cases
DOSE_LOG10 = (6.0, 9.0)
RADIUS_FRACTION = (0.15, 0.22)  # plate radius / field of view across
ASPECT = (3.0, 5.0)  # width / thickness
SCREW_TILT_DEG = (0.0, 20.0)
MIXED_DEG, EDGE_DEG = (38.0, 52.0), (72.0, 90.0)
BOUNDARY_TILT_DEG = 35.0
BOUNDARY_STEP_RAD = (math.pi / 4, math.pi)
C_NM = 1.10  # P2 c; (002): d = 0.55 nm
MATCH_NM = 40.0  # a found line (boundary centre) this close to a true line (plane) matches it
TIMEPIX_CEILING = 11810


@dataclass
class Case:
    """One randomised case: the particle, how it is measured, and the seed that made it."""

    set: str
    index: int
    kind: str
    size: str
    particle: Particle
    detector: dict | None  # DetectorGeometry fields + "timepix" (TimepixSpec fields) for a frame stack
    voxel_nm: float  # orthogonal grid voxel, or the binned detector grid's finest resolution
    dose: float
    background_per_voxel: float
    gap_planes: list = field(default_factory=list)  # orthogonal: [axis, start, stop) planes masked

    @property
    def name(self) -> str:
        return f"{self.set}-{self.index:03d}-{self.kind}"


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _direction(rng, lo_deg: float, hi_deg: float) -> np.ndarray:
    """A unit (z, y, x) vector at an angle to z drawn in [lo, hi] degrees, any azimuth."""
    a, phi = math.radians(rng.uniform(lo_deg, hi_deg)), rng.uniform(0, 2 * math.pi)
    return np.array([math.cos(a), math.sin(a) * math.sin(phi), math.sin(a) * math.cos(phi)])


def _inside_line(particle: Particle, point, direction, margin_nm: float) -> bool:
    """Every point of a steep line (over 60 deg from the layers) within the plate's thickness lies ``margin_nm``
    inside its outline; a line nearer the layers leaves through the side, so only its middle must."""
    point, direction = np.asarray(point, float), np.asarray(direction, float)
    column = replace(particle, thickness_nm=1e9)  # its signed distance at z = 0 is the in-plane one
    if abs(direction[0]) < 0.5:
        centre = point.copy()
        centre[0] = 0.0
        return bool(signed_distance_nm(column, centre[:, None])[0] <= -margin_nm)
    half = particle.thickness_nm / 2
    s = np.linspace((-half - point[0]) / direction[0], (half - point[0]) / direction[0], 25)
    flat = point[:, None] + direction[:, None] * s[None, :]
    flat[0] = 0.0
    return bool(np.all(signed_distance_nm(column, flat) <= -margin_nm))


def _line_through(rng, particle: Particle, direction, margin_nm: float, spread: float = 0.8, z_spread: float = 0.0):
    """A point (z, y, x) through which a line along ``direction`` stays ``margin_nm`` inside the outline."""
    for _ in range(500):
        y, x = (rng.uniform(-1, 1, 2) * spread * np.array([particle.radius_y_nm, particle.radius_x_nm]))
        z = rng.uniform(-1, 1) * z_spread * particle.thickness_nm / 2
        p = np.array([z, y, x])
        if _inside_line(particle, p, direction, margin_nm):
            return p
    raise RuntimeError("no line position found inside the particle")


def draw_case(set_name: str, index: int, size: str = "full") -> Case:
    """Case ``index`` of seed set ``set_name``: its kind is KINDS[index % 6]; everything else is drawn."""
    if set_name not in SET_SEEDS:
        raise ValueError(f"set must be one of {sorted(SET_SEEDS)}, got {set_name!r}")
    rng = np.random.default_rng([SET_SEEDS[set_name], index])
    kind = KINDS[index % len(KINDS)]
    nz, ny, _ = SIZES[size]
    on_detector = kind == "gaps" or rng.random() < DETECTOR_FRACTION
    detector = None
    if on_detector:
        from streamer.geometry import DetectorGeometry

        quad = kind == "gaps"
        raw = 2 * ny  # raw ROI pixels across, binned 2 x 2 by reconstruct
        spec = {"chips": 4 if quad else 1, "gap_px": 4, "dark_counts_per_s": float(rng.uniform(0.0, 0.05)),
                "hot_pixel_fraction": float(rng.uniform(2e-4, 1e-3)), "hot_counts_per_s": float(rng.uniform(20, 500)),
                "dead_pixel_fraction": float(rng.uniform(2e-4, 1e-3)), "defect_seed": int(rng.integers(1 << 30))}
        shape_px = TimepixSpec(**spec).shape_px
        if quad:  # the peak 6-40 raw pixels off the gap cross (rows and columns 256-260)
            centre = [258.0 + float(rng.choice([-1, 1]) * rng.uniform(6, 40)) for _ in range(2)]
        else:
            centre = [shape_px[0] / 2, shape_px[1] / 2]
        r0, c0 = int(round(centre[0])) - raw // 2, int(round(centre[1])) - raw // 2
        detector = {"energy_kev": 9.0, "distance_m": float(rng.uniform(0.8, 1.2)), "pixel_um": 55.0,
                    "detector_shape_px": list(shape_px), "roi_px": [r0, r0 + raw, c0, c0 + raw],
                    "center_px": centre, "d_spacing_nm": C_NM / 2,
                    "rocking_step_deg": float(rng.uniform(0.02, 0.035)) * 64 / nz, "num_rocking_steps": nz,
                    "timepix": spec}
        geo = DetectorGeometry(**{k: v for k, v in detector.items() if k != "timepix"})
        voxel = float(min(geo.rebinned(2)[0].voxel_sizes_nm))
    else:
        voxel = float(rng.uniform(8.0, 12.0))
    radius = float(rng.uniform(*RADIUS_FRACTION)) * ny * voxel
    aspect_y = float(rng.uniform(0.8, 1.0))
    thickness = 2 * radius / float(rng.uniform(*ASPECT))
    shape = str(rng.choice(["ellipse", "hexagon"]))
    rounding = float(rng.uniform(0.0, 0.25)) * thickness / 2
    rotation = float(rng.uniform(0, 180))
    regions = ()
    if rng.random() < 0.5:
        regions = (StrainRegion(center_nm=(0.0, *(rng.uniform(-0.4, 0.4, 2) * radius)),
                                strain=float(rng.uniform(-3e-4, 3e-4)), sigma_nm=0.4 * radius,
                                sigma_z_nm=thickness / 3),)
    particle = Particle(radius_x_nm=radius, radius_y_nm=aspect_y * radius, thickness_nm=thickness, shape=shape,
                        rounding_nm=rounding, rotation_deg=rotation, regions=regions, lattice_c_nm=C_NM)
    margin = rounding + 3.5 * voxel  # lines keep off the surface by the erosion and the resolution
    lines, boundaries = [], []
    if kind == "screw" or (kind == "gaps" and rng.random() < 0.6):
        t = _direction(rng, *SCREW_TILT_DEG)
        if rng.random() < 0.5 or kind == "gaps":  # a pair of opposite windings
            for _ in range(500):
                a = _line_through(rng, particle, t, margin)
                b = _line_through(rng, particle, t, margin)
                sep = np.linalg.norm(np.cross(b - a, t))
                if max(70.0, 7 * voxel) <= sep <= 1.2 * radius:
                    break
            else:
                raise RuntimeError("no pair of line positions found inside the particle")
            w = int(rng.choice([-1, 1]))
            lines = [DislocationLine(tuple(a), tuple(t), (0.5 * w, 0, 0)),
                     DislocationLine(tuple(b), tuple(t), (-0.5 * w, 0, 0))]
        else:
            lines = [DislocationLine(tuple(_line_through(rng, particle, t, margin)), tuple(t),
                                     (0.5 * int(rng.choice([-1, 1])), 0, 0))]
    elif kind in ("edge_mixed", "gaps"):
        if kind == "gaps":
            t = _direction(rng, 0.0, MIXED_DEG[1])
        else:
            t = _direction(rng, *(MIXED_DEG if rng.random() < 0.5 else EDGE_DEG))
        z_spread = 0.2 if abs(t[0]) < 0.5 else 0.0
        p = _line_through(rng, particle, t, margin, spread=0.45, z_spread=z_spread)
        lines = [DislocationLine(tuple(p), tuple(t), (0.5 * int(rng.choice([-1, 1])), 0, 0))]
    elif kind in ("boundary", "antiphase"):
        tilt = float(rng.uniform(-BOUNDARY_TILT_DEG, BOUNDARY_TILT_DEG))
        step = math.pi if kind == "antiphase" else float(rng.uniform(*BOUNDARY_STEP_RAD) * rng.choice([-1, 1]))
        extent = radius * math.cos(math.radians(tilt)) + thickness / 2 * abs(math.sin(math.radians(tilt)))
        boundaries = [DomainBoundary(float(rng.uniform(0, 180)), float(rng.uniform(-0.3, 0.3) * extent), step, tilt)]
    particle = particle.with_defects(lines, boundaries, regions=regions)
    gap_planes = []
    if not on_detector and rng.random() < GAP_PLANE_FRACTION:  # a detector row and/or column gap near the peak
        for axis in ([0, 1] if rng.random() < 0.5 else [int(rng.integers(0, 2))]):
            n = SIZES[size][axis]
            start = n // 2 + int(rng.choice([-1, 1]) * rng.integers(3, max(4, n // 8)))
            gap_planes.append([axis, start, start + 2])
    dose = float(10 ** rng.uniform(*DOSE_LOG10))
    return Case(set_name, index, kind, size, particle, detector, voxel, dose, float(rng.uniform(0.0, 0.02)),
                gap_planes)


def case_indices(per_kind: int, kinds=KINDS) -> list[int]:
    """Indices of the first ``per_kind`` cases of each of ``kinds`` (a case's index fixes its kind)."""
    return [KINDS.index(k) + len(KINDS) * j for j in range(per_kind) for k in kinds]


# -- writing a case ------------------------------------------------------------------------------------------
def _orthogonal_points(shape, voxel_nm: float) -> np.ndarray:
    axes = [(np.arange(n) - n // 2) * voxel_nm for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij")).astype(float)


def true_object(particle: Particle, shape, voxel_nm: float) -> np.ndarray:
    """rho = A exp(-i G.u) on an orthogonal lab grid (z, y, x) centred on the particle, surface one voxel wide."""
    return complex_image_at(particle, _orthogonal_points(shape, voxel_nm), edge_nm=voxel_nm)


def write_case(case: Case, folder: Path) -> list[str]:
    """The case's input files and truth in ``folder``; returns the reconstruct arguments after the input."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SET_SEEDS[case.set], case.index, 1])  # the noise: its own stream
    truth = {"case": case.name, "kind": case.kind, "dose": case.dose, "voxel_nm": case.voxel_nm,
             "particle": {k: v for k, v in asdict(case.particle).items()
                          if k in ("radius_x_nm", "radius_y_nm", "thickness_nm", "shape", "rounding_nm",
                                   "rotation_deg")},
             "detector": case.detector, "gap_planes": case.gap_planes, **defects_truth(case.particle)}
    if case.detector is None:
        shape = SIZES[case.size]
        rho = true_object(case.particle, shape, case.voxel_nm)
        far = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(rho)))
        intensity = np.abs(far) ** 2
        intensity *= case.dose / intensity.sum()
        counts = rng.poisson(intensity + case.background_per_voxel).astype(np.float32)
        mask = np.zeros(shape, bool)
        for axis, a, b in case.gap_planes:
            sl = [slice(None)] * 3
            sl[axis] = slice(a, b)
            mask[tuple(sl)] = True
        counts[mask] = 0
        np.save(folder / "intensity.npy", counts)
        args = [str(folder / "intensity.npy"), "--voxel-nm", f"{case.voxel_nm:.4f}"]
        if mask.any():
            np.save(folder / "mask.npy", mask)
            args += ["--mask", str(folder / "mask.npy")]
    else:
        import h5py

        from sim.diffraction import DiffractionModel
        from streamer.geometry import DetectorGeometry

        fields = {k: v for k, v in case.detector.items() if k != "timepix"}
        geometry = DetectorGeometry(**fields)
        spec = TimepixSpec(**case.detector["timepix"])
        points = geometry.real_space_points_nm()
        rho = complex_image_at(case.particle, points, q_offset_inv_nm=bragg_offset_inv_nm(case.particle, geometry),
                               edge_nm=detector_edge_nm(geometry))
        model = DiffractionModel(rho, geometry, peak_counts=1.0)
        expected = model.expected_stack(1.0)
        dose = min(case.dose, case.dose * 0.8 * TIMEPIX_CEILING / (expected.max() * case.dose / expected.sum()))
        expected *= dose / expected.sum()
        truth["dose"] = dose
        timepix = Timepix(spec, seed=int(rng.integers(1 << 30)))
        r0, r1, c0, c1 = geometry.roi_px
        signal = np.zeros(spec.shape_px, np.float32)
        frames = np.empty((len(expected), r1 - r0, c1 - c0), np.uint32)
        for k, frame in enumerate(expected):
            signal[r0:r1, c0:c1] = frame
            frames[k] = timepix.read(signal, 1.0)[r0:r1, c0:c1]
        with h5py.File(folder / "frames.h5", "w") as f:
            f.create_dataset("frames", data=frames, compression="gzip", compression_opts=1)
        _, dead = spec.defect_maps()
        np.save(folder / "bad.npy", (dead | spec.gap_mask())[r0:r1, c0:c1])  # what the detector's owner knows
        (folder / "geometry.json").write_text(json.dumps({"geometry": fields}, indent=1))
        args = [str(folder / "frames.h5"), "--geometry", str(folder / "geometry.json"),
                "--mask", str(folder / "bad.npy")]
    (folder / "truth.json").write_text(json.dumps(truth, indent=1, default=float))
    return args


# -- running the commands ------------------------------------------------------------------------------------
def _command(code: Path | None) -> tuple[list[str], dict]:
    env = dict(os.environ)
    exe = Path(sys.executable).parent / "bcdi-stream"
    if code is not None:
        env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
        # -P: without it `-m` puts the working directory (this checkout, when run from it) before PYTHONPATH
        return [sys.executable, "-P", "-m", "streamer.cli"], env
    return ([str(exe)] if exe.exists() else [sys.executable, "-m", "streamer.cli"]), env


def run_case(case: Case, folder: Path, *, code: Path | None = None, force: bool = False,
             extra: tuple[str, ...] = ()) -> dict:
    """Write the case (once), reconstruct it (unless its result exists; ``extra``: more reconstruct options),
    analyse it; the commands' seconds."""
    cmd, env = _command(code)
    result, analysis = folder / "result.h5", folder / "analysis.json"
    timing = {}
    if force or not result.exists():
        args = write_case(case, folder)
        t0 = time.perf_counter()
        log = subprocess.run(cmd + ["reconstruct", *args, *extra, "--out", str(result)], env=env, capture_output=True,
                             text=True, check=False)
        (folder / "reconstruct.log").write_text(log.stdout + log.stderr)
        if log.returncode:
            raise RuntimeError(f"{case.name}: reconstruct failed:\n{log.stderr[-2000:]}")
        timing["reconstruct_s"] = time.perf_counter() - t0
        (folder / "timing.json").write_text(json.dumps(timing))
    elif (folder / "timing.json").exists():
        timing = json.loads((folder / "timing.json").read_text())
    t0 = time.perf_counter()
    log = subprocess.run(cmd + ["analyze", str(result), "--json", str(analysis)], env=env, capture_output=True,
                         text=True, check=False)
    if log.returncode:
        raise RuntimeError(f"{case.name}: analyze failed:\n{log.stderr[-2000:]}")
    timing["analyze_s"] = time.perf_counter() - t0
    return timing


# -- scoring -------------------------------------------------------------------------------------------------
def _line_kind(direction) -> str:
    angle = math.degrees(math.acos(min(1.0, abs(float(direction[0])))))
    return "screw" if angle < 30 else "edge" if angle > 60 else "mixed"


def _wrap(a: float) -> float:
    return float((a + math.pi) % (2 * math.pi) - math.pi)


def registered(result_obj: np.ndarray, support: np.ndarray, truth_obj: np.ndarray):
    """The result's registration onto the truth (phase ramp removed first): its Registration."""
    from streamer.analysis.displacement import remove_ramp
    from streamer.phasing.alignment import register

    flat = remove_ramp(result_obj, support)[0] if support.any() else result_obj
    return register(flat.astype(np.complex64), truth_obj.astype(np.complex64), subvoxel=True)


def score_case(case: Case, folder: Path) -> dict:
    """One case's figures against its truth, from its result and analysis files."""
    from streamer.recording.result_file import read_result

    return score_result(case, read_result(folder / "result.h5"), json.loads((folder / "analysis.json").read_text()))


def score_result(case: Case, result: dict, found: dict) -> dict:
    """One case's figures against its truth (see the module docstring): ``result`` as read from a result file
    (object, support, metadata geometry), ``found`` the fields of ``bcdi-stream analyze``."""
    from streamer.phasing.alignment import amplitude_correlation

    obj = np.asarray(result["object"])
    geo = result["metadata"]["geometry"]
    voxel = float(geo["voxel_nm"])
    shape = np.array(obj.shape)
    truth_obj = true_object(case.particle, obj.shape, voxel)
    support = np.asarray(result.get("support")) if result.get("support") is not None else np.abs(obj) > 0.2 * np.abs(obj).max()
    reg = registered(obj, support.astype(bool), truth_obj)
    sign = -1.0 if reg.twin else 1.0

    def to_truth_nm(points) -> np.ndarray:
        p = np.atleast_2d(np.asarray(points, float))
        if reg.twin:
            p = (shape - 1) - p
        p = np.mod(p + np.asarray(reg.shift), shape)
        return (p - shape // 2) * voxel

    true_lines = defects_truth(case.particle)["lines"]
    lines = []
    for v in found.get("vortices", []):
        pts = to_truth_nm(v["points"])
        lines.append({"centre": pts.mean(axis=0), "direction": sign * np.asarray(v["direction"], float),
                      "winding": int(v["winding"]), "type": v["type"]})
    cands = []
    for i, t in enumerate(true_lines):
        p, d = np.asarray(t["point_nm"]), _unit(t["direction"])
        for j, f in enumerate(lines):
            off = f["centre"] - p
            dist = float(np.linalg.norm(off - (off @ d) * d))
            if dist <= MATCH_NM:
                cands.append((dist, i, j))
    matched, used_t, used_f = [], set(), set()
    for dist, i, j in sorted(cands):
        if i in used_t or j in used_f:
            continue
        used_t.add(i)
        used_f.add(j)
        t, f = true_lines[i], lines[j]
        d = _unit(t["direction"])
        cos = float(f["direction"] @ d)
        matched.append({"position_error_nm": dist, "winding_right": f["winding"] * (1 if cos >= 0 else -1) == t["winding"],
                        "direction_error_deg": math.degrees(math.acos(min(1.0, abs(cos)))),
                        "type_right": f["type"] == _line_kind(d), "true_type": _line_kind(d)})
    true_b = defects_truth(case.particle)["boundaries"]
    # the twin conj(rho(-r)) steps by the same phase along the same normal (the inversion turns the normal round and
    # the conjugation the step's sign), unlike a line's winding about its direction
    found_b = [{"centre": to_truth_nm(b["position"])[0], "normal": _unit(b["normal"]),
                "step": float(b["phase_step_rad"])} for b in found.get("domain_boundaries", [])]
    b_matched, used_b = [], set()
    for t in true_b:
        n, p = _unit(t["normal"]), np.asarray(t["point_nm"])
        best = None
        for j, f in enumerate(found_b):
            dist = abs(float((f["centre"] - p) @ n))
            cos = float(f["normal"] @ n)
            if j in used_b or dist > MATCH_NM or abs(cos) < math.cos(math.radians(45)):
                continue
            if best is None or dist < best[0]:
                best = (dist, j, cos)
        if best is None:
            b_matched.append({"found": False, "step_rad": t["phase_step_rad"]})
            continue
        dist, j, cos = best
        used_b.add(j)
        step = found_b[j]["step"] * (1 if cos >= 0 else -1)
        b_matched.append({"found": True, "step_rad": t["phase_step_rad"], "normal_error_deg": math.degrees(math.acos(min(1.0, abs(cos)))),
                          "step_error_rad": abs(_wrap(step - t["phase_step_rad"])), "found_step_rad": step,
                          "plane_distance_nm": dist})
    return {"case": case.name, "kind": case.kind, "detector": case.detector is not None, "dose": case.dose,
            "true_lines": len(true_lines), "found_lines": len(lines), "matched": matched,
            "false_lines": len(lines) - len(matched), "boundaries": b_matched,
            "false_boundaries": len(found_b) - len(used_b), "amplitude_correlation": amplitude_correlation(truth_obj, reg.aligned),
            "twin": bool(reg.twin), "correlation": float(reg.correlation)}


# -- the figures ---------------------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion k / n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _fraction(k: int, n: int) -> str:
    if n == 0:
        return "n/a (0 cases)"
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.2f} (95% {lo:.2f}-{hi:.2f})"


def _spread(values) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return "n/a"
    return (f"median {np.median(v):.3g}, mean {v.mean():.3g} +- {v.std():.2g}, range {v.min():.3g}-{v.max():.3g} "
            f"(n={len(v)})")


def summarise(scores: list[dict]) -> dict:
    """The validation figures over ``scores``, as printable lines (and the raw counts)."""
    out = {}
    true_n = sum(s["true_lines"] for s in scores)
    matched = [m for s in scores for m in s["matched"]]
    found_n = sum(s["found_lines"] for s in scores)
    out["vortex recall"] = _fraction(len(matched), true_n)
    out["vortex precision"] = _fraction(len(matched), found_n)
    out["winding right (matched lines, twin undone)"] = _fraction(sum(m["winding_right"] for m in matched), len(matched))
    out["line type right"] = _fraction(sum(m["type_right"] for m in matched), len(matched))
    out["line position error across the line (nm)"] = _spread([m["position_error_nm"] for m in matched])
    out["line direction error (deg)"] = _spread([m["direction_error_deg"] for m in matched])
    for kind in KINDS:
        sub = [s for s in scores if s["kind"] == kind]
        if not sub:
            continue
        t = sum(s["true_lines"] for s in sub)
        m = sum(len(s["matched"]) for s in sub)
        f = sum(s["found_lines"] for s in sub)
        out[f"  {kind}: lines recall / precision"] = f"{_fraction(m, t)} / {_fraction(m, f)}"
    bounds = [b for s in scores for b in s["boundaries"]]
    big = [b for b in bounds if abs(b["step_rad"]) >= math.pi / 2 - 1e-9]
    small = [b for b in bounds if abs(b["step_rad"]) < math.pi / 2 - 1e-9]
    out["boundary recall, |step| >= pi/2"] = _fraction(sum(b["found"] for b in big), len(big))
    out["boundary recall, pi/4 <= |step| < pi/2"] = _fraction(sum(b["found"] for b in small), len(small))
    hits = [b for b in bounds if b["found"]]
    out["boundary normal error (deg)"] = _spread([b["normal_error_deg"] for b in hits])
    out["boundary step error (rad)"] = _spread([b["step_error_rad"] for b in hits])
    out["boundaries reported, not true"] = f"{sum(s['false_boundaries'] for s in scores)} in {len(scores)} cases"
    pristine = [s for s in scores if s["kind"] == "pristine"]
    out["pristine cases with a line or boundary"] = _fraction(
        sum(1 for s in pristine if s["found_lines"] or s["false_boundaries"]), len(pristine))
    for kind in KINDS:
        sub = [s["amplitude_correlation"] for s in scores if s["kind"] == kind]
        if sub:
            out[f"amplitude correlation, {kind}"] = _spread(sub)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=sorted(SET_SEEDS), default="scoring")
    ap.add_argument("--per-kind", type=int, default=10)
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--workdir", type=Path, default=None, help="cases and results (kept; reused when present)")
    ap.add_argument("--code", type=Path, default=None, help="run the commands from this checkout (PYTHONPATH)")
    ap.add_argument("--force", action="store_true", help="reconstruct again even when a result exists")
    ap.add_argument("--json", type=Path, default=None, help="write every case's score here")
    ap.add_argument("--only", type=int, nargs="+", default=None, help="just these case numbers (of the set)")
    ap.add_argument("--reconstruct-args", default="",
                    help='more reconstruct options for every case, e.g. "--budget-s 0" (compare with the defaults)')
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(f"/tmp/defect-validation-{args.set}-{args.size}")
    scores, timings = [], []
    extra = tuple(shlex.split(args.reconstruct_args))
    for index in case_indices(args.per_kind, args.kinds):
        if args.only is not None and index not in args.only:
            continue
        case = draw_case(args.set, index, args.size)
        folder = workdir / case.name
        timing = run_case(case, folder, code=args.code, force=args.force, extra=extra)
        s = score_case(case, folder)
        s.update(timing)
        scores.append(s)
        timings.append(timing)
        print(f"{case.name:28s} {'det' if s['detector'] else 'ort'} dose {s['dose']:.1e} lines {s['true_lines']}"
              f" found {s['found_lines']} matched {len(s['matched'])} wind_ok "
              f"{sum(m['winding_right'] for m in s['matched'])} pos "
              f"{[round(m['position_error_nm'], 1) for m in s['matched']]} boundaries "
              f"{[(b['found'], round(b.get('normal_error_deg', -1), 1), round(b.get('step_error_rad', -1), 2)) for b in s['boundaries']]}"
              f" false_b {s['false_boundaries']} amp_corr {s['amplitude_correlation']:.3f}"
              f" t {timing.get('reconstruct_s', float('nan')):.0f}+{timing['analyze_s']:.0f} s", flush=True)
    print(f"\n== defect validation: set {args.set}, {len(scores)} cases ({args.per_kind} per kind), size {args.size}")
    for key, value in summarise(scores).items():
        print(f"  {key}: {value}")
    rec = [t["reconstruct_s"] for t in timings if "reconstruct_s" in t]
    print(f"  seconds per case: reconstruct {_spread(rec)}; analyze {_spread([t['analyze_s'] for t in timings])}")
    if args.json:
        args.json.write_text(json.dumps(scores, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
