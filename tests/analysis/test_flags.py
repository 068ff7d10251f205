import numpy as np
import pytest

from streamer.analysis import flags as typed
from streamer.analysis.config import FlagConfig
from streamer.analysis.detections import Boundary, ObjectAnalysis, Vortex
from streamer.analysis.events import flag_record
from streamer.analysis.flags import baseline_peak

CFG = FlagConfig()


def _records(flags):
    """The flags as the event writes them: the evidence the operator sees."""
    return [flag_record(f) for f in flags]


def vortex_flags(previous, current, config):
    return _records(typed.vortex_flags(previous, current, config))


def boundary_flags(previous, current):
    return _records(typed.boundary_flags(previous, current))


def broadening_flags(peak, baseline, config):
    return _records(typed.broadening_flags(peak, baseline, config))


def _vortex(position_nm, winding=1, **kw):
    fields = dict(position=(0.0, 0.0, 0.0), position_nm=tuple(position_nm), winding=winding, direction=(1.0, 0.0, 0.0),
                  type="screw", length_voxels=5, confidence=1.0, length_nm=60.0, closed=False, ends_on_surface=True,
                  points=(), reproduced_fraction=None)
    fields.update({k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})
    return Vortex(**fields)


def _boundary(position_nm, coherence=0.95, phase_step_rad=3.1):
    return Boundary((24.0, 24.0, 24.0), tuple(position_nm), (0.0, 0.0, 1.0), phase_step_rad, 90.0, 100, coherence,
                    0.3, (0, 1))


def _v(x, w=1):
    return _vortex([0.0, 0.0, x], w)


def test_new_lost_and_moved_vortices():
    assert [f["kind"] for f in vortex_flags([], [_v(50), _v(-50, -1)], CFG)] == ["new_vortex", "new_vortex"]
    assert [f["kind"] for f in vortex_flags([_v(50)], [], CFG)] == ["vortex_lost"]
    moved = vortex_flags([_v(50)], [_v(80)], CFG)
    assert [f["kind"] for f in moved] == ["vortex_moved"] and moved[0]["distance_nm"] == 30.0
    assert vortex_flags([_v(50)], [_v(55)], CFG) == []  # jitter below the move threshold


def test_vortex_of_other_winding_or_far_away_is_new():
    kinds = sorted(f["kind"] for f in vortex_flags([_v(50)], [_v(50, -1)], CFG))
    assert kinds == ["new_vortex", "vortex_lost"]
    kinds = sorted(f["kind"] for f in vortex_flags([_v(0)], [_v(200)], CFG))
    assert kinds == ["new_vortex", "vortex_lost"]


def test_boundary_appears_and_resolves():
    b = _boundary([0, 0, 0])
    assert boundary_flags([], [b])[0]["state"] == "appeared"
    assert boundary_flags([b], [])[0]["state"] == "resolved"
    assert boundary_flags([b], [b]) == []


def test_broadening_needs_the_baseline_and_the_threshold():
    peaks = [{"width_parallel": 1.0, "width_perpendicular": 1.0}, {"width_parallel": 1.0, "width_perpendicular": 1.2}]
    assert baseline_peak(peaks[:1], CFG) is None
    base = baseline_peak(peaks, CFG)
    assert base == {"width_parallel": 1.0, "width_perpendicular": 1.1}
    assert broadening_flags({"width_parallel": 1.2, "width_perpendicular": 1.3}, base, CFG) == []
    flags = broadening_flags({"width_parallel": 1.1, "width_perpendicular": 2.2}, base, CFG)
    assert [(f["kind"], f["direction"]) for f in flags] == [("peak_broadening", "perpendicular")]
    assert flags[0]["relative_change"] == pytest.approx(1.0)


def test_flag_config_is_validated():
    with pytest.raises(ValueError):
        FlagConfig(vortex_match_radius_nm=10, vortex_move_threshold_nm=20)


def test_lost_vortex_says_whether_it_left_through_the_surface():
    near = _vortex([0, 0, 120], 1, surface_distance_nm=30.0)
    deep = _vortex([0, 0, 0], -1, surface_distance_nm=130.0)
    flags = vortex_flags([near, deep], [], CFG)
    assert [(f["winding"], f["left_through_surface"]) for f in flags] == [(1, True), (-1, False)]
    assert flags[0]["last_surface_distance_nm"] == 30.0


def test_peak_drift_flags_a_peak_leaving_the_rocking_range():
    def peak_drift_flags(peak, **kw):
        return _records(typed.peak_drift_flags(peak, **kw))

    centred = {"center_of_mass_px": [24.0, 24.2, 23.8]}
    assert peak_drift_flags(centred, shape=(48, 48, 48), rocking_step_deg=0.05, config=CFG) == []
    leaving = {"center_of_mass_px": [24.0, 24.0, 34.0]}  # 10 px off along the rocking axis
    (flag,) = peak_drift_flags(leaving, shape=(48, 48, 48), rocking_step_deg=0.05, config=CFG)
    assert flag["kind"] == "peak_drift" and flag["axes"] == ["rocking"]
    assert flag["recentre_theta_by_deg"] == pytest.approx(0.5)
    on_detector = {"center_of_mass_px": [10.0, 24.0, 24.0]}
    (flag,) = peak_drift_flags(on_detector, shape=(48, 48, 48), rocking_step_deg=0.05, config=CFG)
    assert flag["axes"] == ["q_z (detector rows)"] and flag["recentre_detector_by_px"] == [-14.0, 0.0]


def test_broadening_must_also_exceed_its_error():
    peaks = [{"width_parallel": 1.0, "width_perpendicular": 1.0, "width_parallel_error": 0.01,
              "width_perpendicular_error": 0.01}] * 2
    base = baseline_peak(peaks, CFG)
    assert base["width_perpendicular_error"] == pytest.approx(0.01 / np.sqrt(2))
    noisy = {"width_parallel": 1.0, "width_perpendicular": 1.5, "width_parallel_error": 0.01,
             "width_perpendicular_error": 0.3}  # +50% but within 2 sigma: no flag
    assert broadening_flags(noisy, base, CFG) == []
    sure = dict(noisy, width_perpendicular_error=0.02)
    (flag,) = broadening_flags(sure, base, CFG)
    assert flag["significance"] == pytest.approx(0.5 / np.hypot(0.02, 0.01 / np.sqrt(2)), abs=0.05)
    assert flag["confidence"] > 0.99 and flag["error"] > 0
    assert broadening_flags(noisy, base, FlagConfig(broadening_significance=1.0))  # configurable


def test_every_defect_flag_carries_its_evidence():
    def defect_flags(previous, current):
        return _records(typed.defect_flags(previous, current, CFG))

    a = _vortex([0.0, 0.0, 50.0], 1, position=(24, 24, 28.2), confidence=0.9, surface_distance_nm=40.0)
    b = _vortex([0.0, 0.0, 90.0], 1, position=(24, 24, 31.5), confidence=0.8, surface_distance_nm=40.0)
    bound = _boundary([0, 0, 0])
    (moved,) = defect_flags(ObjectAnalysis(vortices=(a,)), ObjectAnalysis(vortices=(b,)))
    assert moved["kind"] == "vortex_moved" and moved["distance_nm"] == 40.0
    assert moved["from"] == [24, 24, 28.2] and moved["to"] == [24, 24, 31.5] and moved["confidence"] == 0.8
    flags = defect_flags(ObjectAnalysis(), ObjectAnalysis(vortices=(a,), domain_boundaries=(bound,)))
    assert [f["kind"] for f in flags] == ["new_vortex", "domain_boundary"]
    assert flags[0]["position"] == [24, 24, 28.2] and flags[0]["confidence"] == 0.9
    assert flags[1]["confidence"] == 0.95 and flags[1]["boundaries"][0]["coherence"] == 0.95
    assert flags[1]["boundaries"][0]["phase_step_rad"] == 3.1
    (lost,) = vortex_flags([a], [], CFG)
    assert lost["last_position"] == [24, 24, 28.2] and lost["left_through_surface"] and lost["confidence"] == 0.9


def test_broadening_is_raised_once_when_the_width_crosses_the_threshold():
    def peak_flags(peak, history, **kw):
        return _records(typed.peak_flags(peak, history, **kw))

    def peak(perp):
        return {"width_parallel": 1.0, "width_perpendicular": perp, "center_of_mass_px": [24.0, 24.0, 24.0]}

    history, raised = [], []
    for perp in (1.0, 1.0, 1.1, 2.0, 2.1, 1.0, 2.0):
        flags = peak_flags(peak(perp), history, shape=(48, 48, 48), rocking_step_deg=0.05, config=CFG)
        raised.append([f["kind"] for f in flags])
        history.append(peak(perp))
    assert raised == [[], [], [], ["peak_broadening"], [], [], ["peak_broadening"]]
