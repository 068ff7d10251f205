"""Flags in words (streamer/analysis/labels.py): the sentences the page, watch and the report show."""

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analysis.labels import (
    describe_event,
    flag_label,
    flag_sentence,
    pair_label,
)

GOLDEN = Path(__file__).parents[1] / "cli" / "golden" / "demo_reference_fast_events.jsonl"
EVENTS = {e["scan"]: e for e in map(json.loads, GOLDEN.read_text().splitlines())}


def _texts(event):
    return [s.text for s in describe_event(event)]


def test_a_new_pair_is_one_sentence_with_its_place_confidence_and_nucleation_stress():
    said = describe_event(EVENTS[3])
    assert [s.kind for s in said] == ["new_pair", "domain_boundary"]
    assert said[0].text == ("New screw dislocation pair, 107 nm apart, 91 nm below the surface (confidence 1.0): "
                            "a nucleation stress of about 74 MPa; about 15 MPa keeps them drifting apart")
    assert said[0].severity == "alert"
    assert said[0].evidence["pair"] == EVENTS[3]["dislocation_pairs"][0]
    assert [f["kind"] for f in said[0].evidence["flags"]] == ["new_vortex", "new_vortex"]
    assert said[1].text == "Domain boundary resolved: 0 boundary(ies) now, 1 before (confidence 1.0)"


def test_a_pair_that_drifted_to_where_the_surface_pulls_says_so_instead_of_a_stress():
    texts = _texts(EVENTS[4])
    assert texts[0] == ("Screw dislocation (winding -1) moved 34 nm, from z 0, y 1, x -54 nm to z 0, y 0, x -89 nm "
                        "(confidence 1.0)")
    assert texts[2] == ("Screw dislocation pair now 180 nm apart, 54 nm below the surface: the surface's image force "
                        "pulls the lines out, no stress needed")


def test_lines_lost_through_the_surface_and_inside():
    lost = EVENTS[5]["flags"][0]
    assert flag_sentence(lost) == ("Screw dislocation (winding -1) gone, last seen at z 0, y 0, x -89 nm, 65 nm below "
                                   "the surface: it left through the surface (confidence 1.0)")
    inside = flag_sentence({**lost, "left_through_surface": False, "last_surface_distance_nm": 120.0})
    assert "120 nm below the surface: lost inside the particle (farther than 80 nm" in inside


def test_a_boundary_says_where_its_angle_and_step():
    assert _texts(EVENTS[2]) == [
        ("Domain boundary appeared: a plane at z 0, y -1, x -6 nm, 90 deg to the layers, displacement step 0.187 nm "
         "(phase 2.13 rad); 1 boundary(ies) now, 0 before (confidence 1.0)")]
    antiphase = {**EVENTS[2]["flags"][0], "boundaries": [{**EVENTS[2]["flags"][0]["boundaries"][0],
                                                          "phase_step_rad": 3.1}]}
    assert "(phase 3.10 rad, antiphase)" in flag_sentence(antiphase)


def test_peak_flags_say_what_to_do():
    drift = {"kind": "peak_drift", "offset_px": [0.0, 0.5, 9.2], "recentre_theta_by_deg": 0.0184,
             "recentre_detector_by_px": [0.0, -0.5]}
    assert flag_sentence(drift) == ("Bragg peak off the scan's centre by z +0.0, y +0.5, x +9.2 px: re-centre theta by "
                                    "+0.0184 deg and the detector by +0.0, -0.5 px for the next scan")
    broad = {"kind": "peak_broadening", "direction": "perpendicular", "relative_change": 0.42,
             "relative_change_error": 0.05, "significance": 8.4, "confidence": 1.0}
    assert flag_sentence(broad).startswith("Bragg peak broadened perpendicular to q by 42% +- 5% over the baseline "
                                           "(8.4 standard errors; confidence 1.0)")


def test_skipped_failed_and_incomplete_scans_are_said_too():
    skipped = {"scan": 7, "flags": [{"kind": "peak_broadening", "direction": "parallel", "relative_change": 0.3}],
               "reconstruction": {"status": "skipped", "superseded_by": 8}}
    said = describe_event(skipped)
    assert [s.kind for s in said] == ["peak_broadening", "reconstruction"]
    assert said[1].text == ("Not reconstructed: scan 8 was newer and went first (peak metrics and broadening flags "
                            "only)")
    stopped = {"scan": 9, "flags": [], "reconstruction": {"status": "skipped", "reason": "stopped"}}
    (said,) = describe_event(stopped)
    assert said.severity == "warn" and said.text.startswith("Not reconstructed: the service was stopped while the scan "
                                                         "waited")
    failed = {"scan": 2, "flags": [], "reconstruction": {"status": "failed"},
              "error": "analysis of scan 2 failed: the object has no amplitude",
              "ingest": {"complete": False, "status": "timed_out", "missing_frames": [3, 4]}}
    assert _texts(failed) == ["Reconstruction failed: analysis of scan 2 failed: the object has no amplitude",
                              "Scan incomplete (timed_out): 2 frame(s) missing, masked in the reconstruction"]
    assert _texts(EVENTS[0]) == []


def test_the_compact_labels_of_the_terminal_line_are_kept():
    assert flag_label(EVENTS[5]["flags"][0]) == "vortex_lost(through the surface)"
    assert pair_label(EVENTS[3]["dislocation_pairs"][0]).startswith("[pair 107 nm apart: nucleation 74 MPa")


def test_missing_or_malformed_fields_read_as_question_marks():
    assert flag_sentence({"kind": "new_vortex"}) == ("New dislocation line (winding ?) at an unknown place, at an "
                                                      "unknown depth (confidence ?)")
    weird = {"kind": "new_vortex", "position_nm": ["a", None, 1e400], "winding": "x", "confidence": float("nan")}
    assert "z ?, y ?, x ? nm" in flag_sentence(weird)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                       max_size=4), max_leaves=20)
_kinds = st.sampled_from(["new_vortex", "vortex_lost", "vortex_moved", "domain_boundary", "peak_drift",
                          "peak_broadening", "other"]) | _json


@settings(max_examples=200, deadline=None)
@given(flags=st.lists(st.dictionaries(st.text(max_size=12), _json, max_size=6).flatmap(
    lambda d: _kinds.map(lambda k: {**d, "kind": k})), max_size=4),
       rest=st.dictionaries(st.sampled_from(["vortices", "dislocation_pairs", "reconstruction", "ingest", "error"]),
                            _json | st.dictionaries(st.sampled_from(["complete", "missing_frames", "status", "error",
                                                                     "superseded_by"]), _json), max_size=5))
def test_no_event_from_the_wire_makes_it_raise(flags, rest):
    for sentence in describe_event({"scan": 1, "flags": flags, **rest}):
        assert isinstance(sentence.text, str) and sentence.severity in ("alert", "warn", "info")


def test_a_place_near_zero_reads_0_not_minus_0():
    from streamer.analysis.labels import _where

    assert _where([-0.3, 5.6, -0.49]) == "at z 0, y 6, x 0 nm"
