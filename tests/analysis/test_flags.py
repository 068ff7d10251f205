import numpy as np
import pytest

from streamer.analysis.flags import (
    FlagConfig,
    baseline_peak,
    boundary_flags,
    broadening_flags,
    vortex_flags,
)

CFG = FlagConfig()


def _v(x, w=1):
    return {"position_nm": [0.0, 0.0, x], "winding": w}


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
    b = {"position_nm": [0, 0, 0]}
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
    near = {"position_nm": [0, 0, 120], "winding": 1, "surface_distance_nm": 30.0}
    deep = {"position_nm": [0, 0, 0], "winding": -1, "surface_distance_nm": 130.0}
    flags = vortex_flags([near, deep], [], CFG)
    assert [(f["winding"], f["left_through_surface"]) for f in flags] == [(1, True), (-1, False)]
    assert flags[0]["last_surface_distance_nm"] == 30.0


def test_peak_drift_flags_a_peak_leaving_the_rocking_range():
    from streamer.analysis.flags import peak_drift_flags

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
    from streamer.analysis.flags import defect_flags

    a = {"position_nm": [0.0, 0.0, 50.0], "position": [24, 24, 28.2], "winding": 1, "confidence": 0.9,
         "type": "screw", "surface_distance_nm": 40.0}
    b = dict(a, position_nm=[0.0, 0.0, 90.0], position=[24, 24, 31.5], confidence=0.8)
    bound = {"position_nm": [0, 0, 0], "coherence": 0.95, "phase_step_rad": 3.1}
    (moved,) = defect_flags({"vortices": [a], "domain_boundaries": []},
                            {"vortices": [b], "domain_boundaries": []}, CFG)
    assert moved["kind"] == "vortex_moved" and moved["distance_nm"] == 40.0
    assert moved["from"] == a["position"] and moved["to"] == b["position"] and moved["confidence"] == 0.8
    flags = defect_flags({"vortices": [], "domain_boundaries": []}, {"vortices": [a], "domain_boundaries": [bound]}, CFG)
    assert [f["kind"] for f in flags] == ["new_vortex", "domain_boundary"]
    assert flags[0]["position"] == a["position"] and flags[0]["confidence"] == 0.9
    assert flags[1]["confidence"] == 0.95 and flags[1]["boundaries"] == [bound]
    (lost,) = vortex_flags([a], [], CFG)
    assert lost["last_position"] == a["position"] and lost["left_through_surface"] and lost["confidence"] == 0.9


def test_broadening_is_raised_once_when_the_width_crosses_the_threshold():
    from streamer.analysis.flags import peak_flags

    def peak(perp):
        return {"width_parallel": 1.0, "width_perpendicular": perp, "center_of_mass_px": [24.0, 24.0, 24.0]}

    history, raised = [], []
    for perp in (1.0, 1.0, 1.1, 2.0, 2.1, 1.0, 2.0):
        flags = peak_flags(peak(perp), history, shape=(48, 48, 48), rocking_step_deg=0.05, config=CFG)
        raised.append([f["kind"] for f in flags])
        history.append(peak(perp))
    assert raised == [[], [], [], ["peak_broadening"], [], [], ["peak_broadening"]]
