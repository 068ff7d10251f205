"""Operando series: rocking scans repeated through a charge, several particles in turn, with the
pipeline's verdict in the loop (peak tracking and the re-measure decision).

Between scans the plan triggers the ``verdict`` device (the pipeline's event of the last scan, or a
timeout) and, by ``policy``, re-measures a flagged scan: ``never``; ``auto`` (re-measure with
``Remeasure``'s longer exposure / finer steps); ``ask`` (trigger the ``decision`` device: the
operator's action, or its default after a timeout). Every decision is recorded in the start document
of the run that follows it (``decision`` on a re-measure, ``previous_verdict`` otherwise).

A scan whose verdict carries an alarm (its recording failed, its analysis failed) is handled by
``on_alarm``: ``pause`` (default: the RunEngine pauses between runs until someone resumes it, so an
unattended series does not go on measuring what nobody records or analyses), ``ask`` (the
``decision`` device: the operator re-measures or continues) or ``continue`` (recorded only).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import asdict, dataclass

import bluesky.plan_stubs as bps

from plans.metadata import check_experiment_md
from plans.rocking import rocking_scan

POLICIES = ("never", "auto", "ask")
ALARM_ACTIONS = ("pause", "ask", "continue")
log = logging.getLogger(__name__)
#: flags that ask for a re-measure by default (peak drift is handled by tracking instead)
REMEASURE_FLAGS = ("new_vortex", "vortex_lost", "vortex_moved", "domain_boundary", "peak_broadening")


@dataclass(frozen=True)
class Remeasure:
    """How a flagged scan is measured again, and which flags call for it."""

    exposure_factor: float = 2.0  # longer exposure
    step_factor: int = 1  # finer rocking steps over the same width (num * step_factor frames)
    on_flags: tuple[str, ...] = REMEASURE_FLAGS

    def __post_init__(self):
        if not self.exposure_factor >= 1 or not (isinstance(self.step_factor, int) and self.step_factor >= 1):
            raise ValueError(f"Remeasure needs exposure_factor >= 1 and an integer step_factor >= 1, got "
                             f"{self.exposure_factor}, {self.step_factor}")
        object.__setattr__(self, "on_flags", tuple(self.on_flags))


@dataclass(frozen=True)
class ParticleTarget:
    """One particle of the series: its id, the theta of its Bragg peak and (optionally) where it sits."""

    particle_id: str
    center_deg: float
    position: tuple[float, ...] = ()  # one value per sample positioner given to the plan


def tracked_centre(center_deg: float, width_deg: float, num: int, com_x_px: float) -> float:
    """The theta of a peak whose centre of mass sits at frame ``com_x_px`` of the scan centred on ``center_deg``."""
    if math.isnan(com_x_px):
        return center_deg
    return center_deg + (com_x_px - num // 2) * width_deg / num


def _verdict(verdict, run: str, scan: int):
    """Trigger the verdict device for one scan; its outcome, flag kinds and rocking-axis centre of mass."""
    yield from bps.mv(verdict.run_id, run, verdict.scan_index, scan)
    yield from bps.trigger(verdict, wait=True)
    outcome = yield from bps.rd(verdict.outcome)
    kinds = yield from bps.rd(verdict.flag_kinds)
    com_x = yield from bps.rd(verdict.peak_com_x_px)
    alarm = yield from bps.rd(verdict.alarm)
    record = {"scan": scan, "outcome": outcome, "flags": [k for k in kinds.split(",") if k]}
    if alarm:
        record["alarm"] = str(alarm)
    return record, float(com_x)


def _on_alarm(record: dict, on_alarm: str, decision, run: str):
    """Pause, ask or go on after a scan whose recording or analysis failed; the record says which."""
    log.warning("scan %d of run %s: %s (on_alarm=%s)", record["scan"], run, record["alarm"], on_alarm)
    if on_alarm == "pause":
        yield from bps.pause()  # between runs: resuming goes on with the next scan
        return {**record, "alarm_action": "paused"}
    if on_alarm == "ask":
        yield from bps.mv(decision.run_id, run, decision.scan_index, record["scan"])
        yield from bps.trigger(decision, wait=True)
        action = yield from bps.rd(decision.action)
        source = yield from bps.rd(decision.source)
        return {**record, "alarm_action": f"asked:{action}", "operator_action": action,
                "decided_by": "default" if source == "default" else f"operator:{source}"}
    return {**record, "alarm_action": "continued"}


def _decide(record: dict, policy: str, remeasure: Remeasure, decision, run: str):
    """The action on a scan's verdict by ``policy``: ``remeasure`` or ``continue``, and who decided."""
    flagged = sorted(set(record["flags"]) & set(remeasure.on_flags))
    if policy == "never" or not flagged:
        return {**record, "decision": "continue", "decided_by": "policy" if flagged else "no flag"}
    if policy == "auto":
        return {**record, "decision": "remeasure", "decided_by": "auto", "because": flagged}
    yield from bps.mv(decision.run_id, run, decision.scan_index, record["scan"])
    yield from bps.trigger(decision, wait=True)
    action = yield from bps.rd(decision.action)
    source = yield from bps.rd(decision.source)
    return {**record, "decision": "remeasure" if action == "remeasure" else "continue",
            "decided_by": "default" if source == "default" else f"operator:{source}", "operator_action": action,
            "because": flagged}


def operando_series(detector, stage, potentiostat, center_deg: float, width_deg: float = 1.0, num: int = 60,
                    exposure_s: float = 1.0, *, num_scans: int, stop_voltage_v: float | None = None,
                    stop_capacity_mah_g: float | None = None, series: str | None = None, md: dict | None = None,
                    particles=None, positioners=(), verdict=None, decision=None, policy: str = "never",
                    track_peak: bool = False, remeasure: Remeasure | None = None, on_alarm: str = "pause"):
    """Rocking scans through a charge: each round reads the cell, then scans every particle in turn.

    Stops after ``num_scans`` rounds, or once the voltage read before a round reaches ``stop_voltage_v``
    or the capacity ``stop_capacity_mah_g`` (that round is still measured). Every scan is its own run
    whose start document carries the series id (``{series}-{particle}`` with several particles), the
    scan index within it, the charge round, voltage and capacity. ``track_peak`` moves the next scan's
    centre to the measured centre of mass of the last one (``verdict`` needed, as for ``auto``/``ask``).
    ``on_alarm`` (with a ``verdict``): what a scan whose recording or analysis failed does to the series.
    Returns the series id.
    """
    if num_scans < 1:
        raise ValueError(f"num_scans must be >= 1, got {num_scans}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if verdict is None and (track_peak or policy != "never"):
        raise ValueError(f"policy {policy!r} / track_peak={track_peak} needs the pipeline's verdict device")
    if policy == "ask" and decision is None:
        raise ValueError("policy 'ask' needs the operator decision device")
    if on_alarm not in ALARM_ACTIONS:
        raise ValueError(f"on_alarm must be one of {ALARM_ACTIONS}, got {on_alarm!r}")
    if on_alarm == "ask" and verdict is not None and decision is None:
        raise ValueError("on_alarm 'ask' needs the operator decision device")
    remeasure = remeasure or Remeasure()
    md = check_experiment_md(md)
    targets = [ParticleTarget(**p) if isinstance(p, dict) else p
               for p in (particles or [ParticleTarget(md.get("particle_id") or "particle", center_deg)])]
    for t in targets:
        if len(t.position) != len(positioners):
            raise ValueError(f"particle {t.particle_id!r} has {len(t.position)} position values for "
                             f"{len(positioners)} positioners")
    series = series or f"series-{uuid.uuid4().hex[:8]}"
    runs = {t.particle_id: series if len(targets) == 1 else f"{series}-{t.particle_id}" for t in targets}
    centres = {t.particle_id: t.center_deg for t in targets}
    next_scan = dict.fromkeys(runs, 0)
    last_record: dict[str, dict] = {}

    def scan(target, round_k, voltage, capacity, extra_md, exposure, steps):
        pid = target.particle_id
        k = next_scan[pid]
        next_scan[pid] += 1
        scan_md = {**md, "series": runs[pid], "scan_index": k, "charge_round": round_k, "particle_id": pid,
                   "voltage_v": voltage, "capacity_mah_g": capacity, "policy": policy, "track_peak": track_peak,
                   **extra_md}
        orthogonal = isinstance(md.get("geometry"), dict) and md["geometry"].get("kind", "orthogonal") == "orthogonal"
        if steps != num and orthogonal:  # finer steps sample a longer q_x grid (a detector geometry: rocking_scan)
            geometry = dict(md["geometry"])
            geometry["shape_zyx"] = list(geometry["shape_zyx"][:2]) + [steps]
            scan_md["geometry"] = geometry
        yield from rocking_scan(detector, stage, centres[pid], width_deg, steps, exposure, md=scan_md)
        if verdict is None:
            return None
        record, com_x = yield from _verdict(verdict, runs[pid], k)
        if track_peak:
            centres[pid] = tracked_centre(centres[pid], width_deg, steps, com_x)
            record["next_center_deg"] = centres[pid]
        return record

    for round_k in range(num_scans):
        yield from bps.trigger(potentiostat, wait=True)
        for target in targets:
            pid = target.particle_id
            if positioners:
                yield from bps.mv(*[v for pair in zip(positioners, target.position) for v in pair])
            voltage = yield from bps.rd(potentiostat.voltage)
            capacity = yield from bps.rd(potentiostat.capacity)
            extra = {"previous_verdict": last_record.pop(pid)} if pid in last_record else {}
            record = yield from scan(target, round_k, voltage, capacity, extra, exposure_s, num)
            if record is None:
                continue
            if record.get("alarm"):
                record = yield from _on_alarm(record, on_alarm, decision, runs[pid])
                if record.get("operator_action") == "remeasure":
                    record = {**record, "decision": "remeasure", "because": ["alarm"]}
            if "decision" not in record:
                record = yield from _decide(record, policy, remeasure, decision, runs[pid])
            if record["decision"] == "remeasure":
                again = {"remeasure_of": record["scan"], "decision": record, "remeasure": asdict(remeasure)}
                record = yield from scan(target, round_k, voltage, capacity, again,
                                         exposure_s * remeasure.exposure_factor, num * remeasure.step_factor)
                record = {**record, "decision": "continue", "decided_by": "re-measure"}
                if record.get("alarm"):  # the re-measure failed too: pause or ask, never re-measure again
                    record = yield from _on_alarm(record, on_alarm, decision, runs[pid])
            last_record[pid] = record
        if stop_voltage_v is not None and voltage >= stop_voltage_v:
            break
        if stop_capacity_mah_g is not None and capacity >= stop_capacity_mah_g:
            break
    return series
