"""Flags and pairs in words, from the event record: the one wording of the live page, ``watch``, the report
and the terminal.

``describe_event`` turns one event (docs/events.md) into short sentences an operator reads in seconds (what,
where, how sure, what it means), each with the raw record it came from; ``flag_label`` and ``pair_label`` are
the compact forms of the one-line-per-scan printer. Records come from the wire: any field may be missing or
malformed, and a sentence then says "?" rather than raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SEVERE = frozenset({"new_vortex", "vortex_lost", "domain_boundary", "new_pair"})
AXES = ("z", "y", "x")


@dataclass(frozen=True)
class Sentence:
    """One thing to tell the operator about a scan."""

    kind: str  # a flag's kind, or new_pair / pair / reconstruction / ingest / error
    severity: str  # "alert" (a defect changed), "warn" (act on the beam or the data), "info"
    text: str
    evidence: dict = field(default_factory=dict)  # the raw record(s) the sentence says in words

    def as_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "text": self.text, "evidence": self.evidence}


def _num(value, digits: int = 0, signed: bool = False) -> str:
    """A number rounded to ``digits`` places ("0", never "-0"), "?" for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "?"
    value = round(value, digits) + 0.0  # -0.0 + 0.0 is 0.0
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _list(value) -> list:
    """A list from the wire, or an empty one for anything else."""
    return list(value) if isinstance(value, (list, tuple)) else []


def is_severe(flag) -> bool:
    """A flag whose kind says a defect changed (``SEVERE``); False for anything unreadable."""
    return isinstance(flag, dict) and isinstance(flag.get("kind"), str) and flag["kind"] in SEVERE


def _where(position_nm) -> str:
    """A lab position (z, y, x) in nm from the particle's centre, e.g. ``z 0, y 6, x 54 nm``."""
    if not isinstance(position_nm, (list, tuple)) or len(position_nm) != 3:
        return "at an unknown place"
    return "at " + ", ".join(f"{a} {_num(v)}" for a, v in zip(AXES, position_nm)) + " nm"


def _confidence(record: dict) -> str:
    return f"confidence {_sure(record.get('confidence'))}"


def _sure(value) -> str:
    """A confidence with two decimals, one when the second is 0 (``1.0``, ``0.98``)."""
    text = _num(value, 2)
    return text[:-1] if text != "?" and text.endswith("0") else text


def _line(record: dict) -> str:
    """A line's type and handedness, e.g. ``screw dislocation (winding +1)``."""
    kind = record.get("type")
    kind = kind if kind in ("screw", "edge", "mixed") else "dislocation"
    winding = record.get("winding")
    noun = "dislocation" if kind != "dislocation" else "line"
    return f"{kind} {noun} (winding {_num(winding, signed=True)})"


def _depth(distance_nm) -> str:
    return f"{_num(distance_nm)} nm below the surface" if _num(distance_nm) != "?" else "at an unknown depth"


def flag_sentence(flag: dict) -> str:
    """One flag in words, e.g. ``New screw dislocation (winding +1) at z 0, y 6, x 54 nm, 107 nm below the
    surface (confidence 1.0)``."""
    if not isinstance(flag, dict):
        return "Unreadable flag"
    kind = flag.get("kind")
    if kind == "new_vortex":
        return (f"New {_line(flag)} {_where(flag.get('position_nm'))}, {_depth(flag.get('surface_distance_nm'))} "
                f"({_confidence(flag)})")
    if kind == "vortex_lost":
        how = ("it left through the surface" if flag.get("left_through_surface") is True
               else f"lost inside the particle (farther than {_num(flag.get('surface_exit_distance_nm'))} nm from the "
                    "surface: a reconstruction may have missed it)")
        return (f"{_line(flag).capitalize()} gone, last seen {_where(flag.get('last_position_nm'))}, "
                f"{_depth(flag.get('last_surface_distance_nm'))}: {how} ({_confidence(flag)})")
    if kind == "vortex_moved":
        return (f"{_line(flag).capitalize()} moved {_num(flag.get('distance_nm'))} nm, from "
                f"{_where(flag.get('from_nm'))[3:]} to {_where(flag.get('to_nm'))[3:]} ({_confidence(flag)})")
    if kind == "domain_boundary":
        return _boundary_sentence(flag)
    if kind == "peak_drift":
        offset = flag.get("offset_px")
        off = (", ".join(f"{a} {_num(v, 1, True)}" for a, v in zip(AXES, offset)) + " px"
               if isinstance(offset, (list, tuple)) and len(offset) == 3 else "? px")
        detector = flag.get("recentre_detector_by_px")
        det = (f" and the detector by {', '.join(_num(v, 1, True) for v in detector)} px"
               if isinstance(detector, (list, tuple)) and detector else "")
        return (f"Bragg peak off the scan's centre by {off}: re-centre theta by "
                f"{_num(flag.get('recentre_theta_by_deg'), 4, True)} deg{det} for the next scan")
    if kind == "peak_broadening":
        change, error = flag.get("relative_change"), flag.get("relative_change_error")
        pct = _num(100 * change if isinstance(change, (int, float)) else None)
        err = _num(100 * error if isinstance(error, (int, float)) else None)
        direction = {"parallel": "along q", "perpendicular": "perpendicular to q"}.get(flag.get("direction"),
                                                                                       str(flag.get("direction", "?")))
        return (f"Bragg peak broadened {direction} by {pct}% +- {err}% over the baseline "
                f"({_num(flag.get('significance'), 1)} standard errors; {_confidence(flag)}): the crystal is "
                "less perfect than at the start")
    return f"Flag {kind!s}: " + ", ".join(f"{k}={v}" for k, v in flag.items() if k != "kind")


def _boundary_sentence(flag: dict) -> str:
    state, count, before = flag.get("state"), flag.get("count"), flag.get("previous_count")
    shown = [b for b in _list(flag.get("boundaries")) if isinstance(b, dict)]
    if state == "appeared":
        b = shown[0] if shown else {}
        step = b.get("phase_step_rad")
        return (f"Domain boundary appeared: a plane {_where(b.get('position_nm'))}, "
                f"{_num(b.get('angle_to_layers_deg'))} deg to the layers, displacement step "
                f"{_num(b.get('displacement_step_nm'), 3)} nm (phase {_num(step, 2)} rad"
                f"{', antiphase' if isinstance(step, (int, float)) and abs(abs(step) - math.pi) < 0.3 else ''}); "
                f"{_num(count)} boundary(ies) now, {_num(before)} before ({_confidence(flag)})")
    if state == "resolved":
        return (f"Domain boundary resolved: {_num(count)} boundary(ies) now, {_num(before)} before "
                f"({_confidence(flag)})")
    return f"Domain boundaries changed from {_num(before)} to {_num(count)} ({_confidence(flag)})"


def _mechanics(pair: dict, *, nucleation: bool = True) -> str:
    """What a pair means: the stress that nucleated it (a new pair), and what drives it apart."""
    if pair.get("image_force_dominates") is True:
        drift = "the surface's image force pulls the lines out, no stress needed"
    else:
        stress = pair.get("drift_stress_with_surface_mpa")
        drift = f"about {_num(pair.get('drift_stress_mpa') if stress is None else stress)} MPa keeps them drifting apart"
    return f"a nucleation stress of about {_num(pair.get('critical_stress_mpa'))} MPa; {drift}" if nucleation else drift


def pair_sentence(pair: dict, *, new: bool = False, confidence=None, kind: str = "screw") -> str:
    """A dislocation pair with its mechanics, e.g. ``New screw dislocation pair, 108 nm apart, 107 nm below the
    surface (confidence 1.0): a nucleation stress of about 74 MPa; ...``."""
    lead = f"New {kind} dislocation pair," if new else f"{kind.capitalize()} dislocation pair now"
    sure = f" (confidence {_sure(confidence)})" if confidence is not None else ""
    return (f"{lead} {_num(pair.get('separation_nm'))} nm apart, {_depth(pair.get('surface_distance_nm'))}{sure}: "
            f"{_mechanics(pair, nucleation=new)}")


def _same_place(a, b) -> bool:
    try:
        return len(a) == len(b) == 3 and all(abs(float(x) - float(y)) < 1e-6 for x, y in zip(a, b))
    except (TypeError, ValueError):
        return False


def describe_event(event: dict) -> list[Sentence]:
    """Everything worth saying about one scan, most severe first: each flag (two new lines that form a pair
    become one pair sentence with its mechanics), pairs whose lines moved, and a scan that was skipped,
    failed, incomplete or in error."""
    if not isinstance(event, dict):
        return [Sentence("error", "warn", "Unreadable event")]
    out: list[Sentence] = []
    flags = [f for f in _list(event.get("flags")) if isinstance(f, dict)]
    vortices = [v for v in _list(event.get("vortices")) if isinstance(v, dict)]
    pairs = [p for p in _list(event.get("dislocation_pairs")) if isinstance(p, dict)]
    used: set[int] = set()
    for pair in pairs:
        ends = _list(pair.get("vortices"))
        if len(ends) != 2 or not all(isinstance(i, int) and 0 <= i < len(vortices) for i in ends):
            continue
        lines = [vortices[i] for i in ends]
        new = [next((k for k, f in enumerate(flags) if f.get("kind") == "new_vortex" and k not in used
                     and _same_place(f.get("position"), v.get("position"))), None) for v in lines]
        moved = [next((k for k, f in enumerate(flags) if f.get("kind") == "vortex_moved" and k not in used
                       and _same_place(f.get("to"), v.get("position"))), None) for v in lines]
        types = {v.get("type") if isinstance(v.get("type"), str) else None for v in lines}
        kind = types.pop() if len(types) == 1 and None not in types else "mixed"
        if None not in new:
            used.update(new)
            confidence = min((flags[k].get("confidence") for k in new), key=lambda c: c if isinstance(c, (int, float))
                             else math.inf)
            out.append(Sentence("new_pair", "alert", pair_sentence(pair, new=True, confidence=confidence, kind=kind),
                                {"pair": pair, "flags": [flags[k] for k in new]}))
        elif any(k is not None for k in moved):
            out.append(Sentence("pair", "info", pair_sentence(pair, kind=kind), {"pair": pair}))
    for k, flag in enumerate(flags):
        if k in used:
            continue
        kind = str(flag.get("kind"))
        out.append(Sentence(kind, "alert" if kind in SEVERE else "warn", flag_sentence(flag), flag))
    out.sort(key=lambda s: {"alert": 0, "warn": 1, "info": 2}[s.severity])
    out += _scan_status(event)
    return out


def _scan_status(event: dict) -> list[Sentence]:
    """A skipped, failed or impossible reconstruction, an incomplete scan, an error: in words."""
    out = []
    rec = event.get("reconstruction") if isinstance(event.get("reconstruction"), dict) else {}
    status = rec.get("status")
    if status == "skipped" and rec.get("reason") == "stopped":
        out.append(Sentence("reconstruction", "warn", "Not reconstructed: the service was stopped while the scan "
                            "waited (its frames are recorded: replay the recording to reconstruct it)", rec))
    elif status == "skipped":
        out.append(Sentence("reconstruction", "info", f"Not reconstructed: scan {rec.get('superseded_by', '?')} was "
                            "newer and went first (peak metrics and broadening flags only)", rec))
    elif status in ("failed", "not_possible"):
        why = rec.get("error") or event.get("error") or "no reason given"
        out.append(Sentence("reconstruction", "warn", f"Reconstruction {'failed' if status == 'failed' else 'not possible'}"
                            f": {why}", rec))
    ingest = event.get("ingest") if isinstance(event.get("ingest"), dict) else {}
    missing = ingest.get("missing_frames")
    if ingest and ingest.get("complete") is False:
        count = len(missing) if isinstance(missing, (list, tuple)) else "?"
        out.append(Sentence("ingest", "warn", f"Scan incomplete ({ingest.get('status', '?')}): {count} frame(s) "
                            "missing, masked in the reconstruction", ingest))
    if event.get("error") and status not in ("failed", "not_possible"):
        out.append(Sentence("error", "warn", f"Error: {event['error']}", {"error": event["error"]}))
    return out


def flag_label(flag: dict) -> str:
    """A flag's kind with what qualifies it, e.g. ``vortex_lost(through the surface)``."""
    kind = flag.get("kind", "?")
    if kind == "domain_boundary":
        return f"{kind}({flag.get('state')})"
    if kind == "vortex_lost" and flag.get("left_through_surface"):
        return f"{kind}(through the surface)"
    if kind == "peak_drift":
        return f"{kind}(re-centre theta by {flag.get('recentre_theta_by_deg', 0):+.3f} deg)"
    if kind == "peak_broadening":
        return f"{kind}({flag.get('direction')} +{100 * flag.get('relative_change', 0):.0f}%)"
    return kind


def pair_label(pair: dict) -> str:
    """A dislocation pair with its mechanics estimates, e.g. ``[pair 108 nm apart: nucleation 74 MPa, ...]``."""
    drift = ("the image force dominates" if pair.get("image_force_dominates") else
             f"drift {pair['drift_stress_with_surface_mpa']:.0f} MPa"
             if pair.get("drift_stress_with_surface_mpa") is not None else f"drift {pair['drift_stress_mpa']:.0f} MPa")
    return (f"[pair {pair['separation_nm']:.0f} nm apart: nucleation {pair['critical_stress_mpa']:.0f} MPa, {drift}, "
            f"{pair['surface_distance_nm']:.0f} nm from the surface]")
