import pytest

from streamer.compare import FlagConfig, baseline_peak, boundary_flags, broadening_flags, vortex_flags

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
