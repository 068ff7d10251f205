"""Offline analysis of reconstruction results: one result's defect fields, or a series' events.

Given the contents of result files (see streamer/recording/result_file.py, read elsewhere) this yields the
same fields and flags as live operation: each object is aligned to the previous one (translation,
twin, phase offset), analysed, and compared with the previous scan; the peak flags use the peak
metrics stored with each result. Pure: no files, sockets or clocks.
"""

from __future__ import annotations

import numpy as np

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.analysis.events import build_event
from streamer.analysis.flags import defect_flags, peak_flags
from streamer.analysis.scan import analyze_object
from streamer.geometry import OrthogonalGeometry
from streamer.phasing.alignment import register, twin_image


def result_geometry(result: dict) -> OrthogonalGeometry:
    """The geometry stored in a result's metadata, checked against its object."""
    geo = (result.get("metadata") or {}).get("geometry") or {}
    if not geo:
        raise ValueError("the result's metadata has no geometry")
    geometry = OrthogonalGeometry.from_dict(dict(geo))
    if tuple(np.shape(result["object"])) != geometry.shape_zyx:
        raise ValueError(f"object shape {np.shape(result['object'])} does not match its geometry {geometry.shape_zyx}")
    return geometry


def _to_object_index(points, shift, twin: bool, shape) -> list:
    """Voxel indices in the aligned frame -> indices of the result's own object array."""
    p = np.asarray(points, float)
    n = np.asarray(shape, float)
    c = np.mod(p - np.asarray(shift, float), n)
    if twin:
        c = (n - 1) - c
    return np.round(c, 2).tolist()


def analyze_result(result: dict, *, xp, config: AnalysisConfig | None = None, reference: np.ndarray | None = None):
    """Event fields of one result (``vortices``, ``domain_boundaries``, ``dislocation_pairs``, ``strain``,
    ``peak``) and its object aligned to ``reference`` (or as stored when there is none).

    ``position`` and ``points`` are voxel indices (z, y, x) of the result's own object array;
    ``position_nm`` are nm from the grid centre in the aligned frame shared by a series.
    """
    geometry = result_geometry(result)
    obj = np.asarray(result["object"])
    members = result.get("members")
    shift, twin, info = (0, 0, 0), False, {}
    if reference is not None and reference.shape == obj.shape:
        reg = register(obj, reference)
        obj, shift, twin = reg.aligned, tuple(float(s) for s in reg.shift), reg.twin
        info = {"twin_flipped": twin, "shift_voxels": [round(s, 3) for s in shift],
                "correlation_to_previous": round(reg.correlation, 4)}
        if members is not None:
            m = np.asarray(members)
            if twin:
                m = np.stack([twin_image(k) for k in m])
            members = np.roll(m, tuple(round(s) for s in shift), axis=(1, 2, 3))  # whole-voxel registration
    fields = analyze_object(obj, geometry=geometry, xp=xp, config=config, members=members)
    for v in fields["vortices"]:
        v["position"] = _to_object_index(v["position"], shift, twin, obj.shape)
        v["points"] = _to_object_index(v["points"], shift, twin, obj.shape)
    for b in fields["domain_boundaries"]:
        b["position"] = _to_object_index(b["position"], shift, twin, obj.shape)
    for d in fields["domains"]:
        d["centroid"] = _to_object_index(d["centroid"], shift, twin, obj.shape)
    fields["alignment"] = info
    fields["support_voxels"] = int(fields["support_voxels"])
    fields["peak"] = dict(result.get("peak") or {})
    return fields, obj


def analyze_series(results: list[dict], *, xp, config: AnalysisConfig | None = None,
                   flags: FlagConfig | None = None) -> list[dict]:
    """One event (the events.jsonl record) per result, in the order given (scan order), with the
    flags of the same scan-to-scan comparison as live operation."""
    flags = flags or FlagConfig()
    events, previous, reference, history = [], None, None, []
    for result in results:
        meta = dict(result.get("metadata") or {})
        geometry = result_geometry(result)
        fields, reference = analyze_result(result, xp=xp, config=config, reference=reference)
        peak = fields.pop("peak")
        found = []
        if peak:
            found += peak_flags(peak, history, shape=geometry.shape_zyx, rocking_step_deg=geometry.rocking_step_deg,
                                config=flags)
            history.append(peak)
        if previous is not None:
            found = defect_flags(previous, fields, flags) + found
        events.append(build_event(
            run=meta.get("run", ""), scan=int(meta.get("scan", len(events))), metadata=meta, peak=peak,
            vortices=fields["vortices"], domain_boundaries=fields["domain_boundaries"], flags=found, latency_s=0.0,
            dislocation_pairs=fields["dislocation_pairs"], strain=fields["strain"], domains=fields["domains"],
            phasing={"recipe": result.get("recipe", ""), "support_voxels": fields["support_voxels"],
                     **fields["alignment"]},
            reconstruction={"status": "done", "compared_with_scan": None if previous is None else events[-1]["scan"],
                            "source": "offline"},
        ))
        previous = fields
    return events
