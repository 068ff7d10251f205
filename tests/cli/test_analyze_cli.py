"""`bcdi-stream analyze` and `report` on result files made from analytic fields."""

import json
import re

import numpy as np
import pytest
from scipy import ndimage

from streamer.cli import build_parser, main
from streamer.geometry import DetectorGeometry, OrthogonalGeometry
from streamer.recording.event_log import read_events
from streamer.recording.result_file import write_result

GEO = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=12.0)
C = 16  # grid centre index


def _plate_amplitude():
    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    plate = (np.abs(z - C) <= 5) & ((y - C) ** 2 + (x - C) ** 2 <= 12**2)
    return ndimage.gaussian_filter(plate.astype(float), 0.7)


def _object(dislocations=(), boundary_step=0.0):
    """Plate with screw lines along z at (y, x) voxel positions (fractional) and a boundary at x = C + 0.5."""
    _z, y, x = np.ogrid[0:32, 0:32, 0:32]
    phase = np.zeros((32, 32, 32)) + 0.01 * (y - C)
    for yy, xx, w in dislocations:
        phase = phase + w * np.arctan2(y - yy, x - xx)
    phase = phase + boundary_step * (x > C)
    return _plate_amplitude() * np.exp(1j * phase)


def _peak(perp=1.0):
    return {"width_parallel": 0.2, "width_perpendicular": 0.05 * perp, "width_parallel_error": 0.002,
            "width_perpendicular_error": 0.0005, "center_of_mass_px": [16.0, 16.0, 16.0]}


SCRIPT = [  # (label, object, peak, expected flags of that scan)
    ("pristine", _object(), _peak(), []),
    ("pristine", _object(), _peak(), []),
    ("boundary", _object(boundary_step=2.094), _peak(), ["domain_boundary:appeared"]),
    ("pair", _object([(15.5, 11.5, 1), (15.5, 20.5, -1)]), _peak(2.0),
     ["domain_boundary:resolved", "new_vortex", "new_vortex", "peak_broadening"]),
    ("apart", _object([(15.5, 8.5, 1), (15.5, 23.5, -1)]), _peak(2.0), ["vortex_moved", "vortex_moved"]),
    ("healed", _object(), _peak(2.0), ["vortex_lost", "vortex_lost"]),
]


def _write_series(folder, roll_scan=4):
    paths = []
    for scan, (label, obj, peak, _) in enumerate(SCRIPT):
        if scan == roll_scan:  # stored translated, as an unaligned reconstruction would be
            obj = np.roll(obj, (0, 2, -3), axis=(0, 1, 2))
        meta = {"geometry": GEO.to_dict(), "run": "r1", "scan": scan, "voltage_v": 3.4 + 0.1 * scan,
                "capacity_mah_g": 10.0 + 8 * scan, "label": label}
        paths.append(write_result(folder / f"scan-{scan:04d}.h5", obj=obj, support=np.abs(obj) > 0.1,
                                  recipe="ER**10", metadata=meta, peak=peak))
    return paths


def _kinds(event):
    return sorted(f["kind"] + (f":{f['state']}" if f["kind"] == "domain_boundary" else "") for f in event["flags"])


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    paths = _write_series(folder)
    out = folder / "events.jsonl"
    assert main(["analyze", *map(str, reversed(paths)), "--json", str(out)]) == 0  # any order: sorted by scan
    return folder, paths, read_events(out)


def test_a_series_gets_the_scripted_flags_at_their_scans_and_nothing_else(series):
    _, _, events = series
    assert [e["scan"] for e in events] == list(range(len(SCRIPT)))
    for event, (label, _, _, expected) in zip(events, SCRIPT):
        assert _kinds(event) == sorted(expected), label
    lost = [f for f in events[5]["flags"] if f["kind"] == "vortex_lost"]
    assert all(f["left_through_surface"] for f in lost)
    moved = [f for f in events[4]["flags"] if f["kind"] == "vortex_moved"]
    assert sorted(f["distance_nm"] for f in moved) == pytest.approx([36.0, 36.0], abs=1.0)  # 3 voxels of 12 nm
    (pair,) = events[3]["dislocation_pairs"]
    assert pair["separation_nm"] == pytest.approx(108, abs=1)
    (b,) = events[2]["domain_boundaries"]
    assert abs(b["phase_step_rad"]) == pytest.approx(2.094, abs=0.05) and b["angle_to_layers_deg"] == 90.0
    assert len(events[2]["domains"]) == 2 and sorted(b["domains"]) == [0, 1]
    offsets = [d["phase_offset_rad"] for d in events[2]["domains"]]
    assert abs(offsets[1] - offsets[0]) == pytest.approx(2.094, abs=0.1)
    assert [len(e["domains"]) for e in events] == [1, 1, 2, 1, 1, 1]


def test_positions_are_voxel_indices_of_each_files_own_object(series):
    _, _, events = series
    xs = sorted(v["position"][2] for v in events[3]["vortices"])
    assert xs == pytest.approx([11.5, 20.5], abs=0.05)  # pure-phase cores: each fit pulled 0.03 by the other line
    rolled = sorted((v["position"][1], v["position"][2]) for v in events[4]["vortices"])  # stored rolled by (2, -3)
    assert rolled == [pytest.approx((17.5, 5.5), abs=0.05), pytest.approx((17.5, 20.5), abs=0.05)]
    assert events[4]["phasing"]["shift_voxels"] == [0, -2, 3]


def test_one_result_gives_the_event_fields(series, tmp_path, capsys):
    _, paths, _ = series
    assert main(["analyze", str(paths[3])]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"vortices", "domain_boundaries", "peak", "strain", "dislocation_pairs"} <= set(record)
    assert record["scan"] == 3 and record["flags"] == []
    lines = sorted((round(v["position"][2], 1), v["type"]) for v in record["vortices"])
    assert lines == [(11.5, "screw"), (20.5, "screw")]
    # opposite handedness; which is + is the phase-sign convention's business (docs/conventions.md)
    assert sorted(v["winding"] for v in record["vortices"]) == [-1, 1]
    assert all(v["ends_on_surface"] and not v["closed"] for v in record["vortices"])


def test_lines_the_population_members_do_not_show_are_dropped(tmp_path, capsys):
    best = _object([(15.5, 11.5, 1), (15.5, 20.5, -1)])
    members = np.stack([_object([(15.5, 11.5, 1)]) for _ in range(3)])  # only the left line reproduces
    meta = {"geometry": GEO.to_dict(), "run": "r", "scan": 0}
    path = write_result(tmp_path / "r.h5", obj=best, support=np.abs(best) > 0.1, recipe="x", metadata=meta,
                        members=members)
    assert main(["analyze", str(path)]) == 0
    (v,) = json.loads(capsys.readouterr().out)["vortices"]
    assert v["position"][2] == pytest.approx(11.5, abs=0.05) and v["reproduced_fraction"] == 1.0


def test_a_folder_of_results_is_its_files_in_scan_order(series, tmp_path, capsys):
    """A live run's results/<run>/ folder (docs/results.md) is analysed as the files it holds."""
    folder, _, events = series
    out = tmp_path / "again.jsonl"
    assert main(["analyze", str(folder), "--json", str(out)]) == 0
    assert [_kinds(e) for e in read_events(out)] == [_kinds(e) for e in events]
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty")]) == 2
    assert "holds no result files" in capsys.readouterr().err


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "none.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    obj = _object()
    a = write_result(tmp_path / "a.h5", obj=obj, support=obj != 0, recipe="x",
                     metadata={"geometry": GEO.to_dict(), "run": "a", "scan": 0})
    b = write_result(tmp_path / "b.h5", obj=obj, support=obj != 0, recipe="x",
                     metadata={"geometry": GEO.to_dict(), "run": "b", "scan": 0})
    assert main(["analyze", str(a), str(b)]) == 2
    assert "several runs" in capsys.readouterr().err
    c = write_result(tmp_path / "c.h5", obj=obj, support=obj != 0, recipe="x", metadata={"run": "c"})
    assert main(["analyze", str(c)]) == 2
    assert "no geometry" in capsys.readouterr().err


def test_an_object_on_a_detector_grid_is_analysed_in_the_lab_frame(tmp_path, capsys):
    """A result whose object is still on the sheared (step, row, col) grid: resampled onto the lab grid first,
    so a screw line sits at its lab position, along lab z; the event says which frame."""
    det = DetectorGeometry(roi_px=(64, 192, 64, 192), binning=2, rocking_step_deg=0.03, num_rocking_steps=32)
    z, y, x = det.real_space_points_nm()
    plate = (np.abs(z) < 60) & ((y / 130) ** 2 + (x / 150) ** 2 <= 1)
    obj = plate * np.exp(1j * np.arctan2(y - 10.0, x - 50.0))  # a screw line along z at y = 10, x = 50 nm
    path = write_result(tmp_path / "det.h5", obj=obj, support=plate, recipe="x",
                        metadata={"geometry": det.to_dict(), "run": "d", "scan": 0})
    assert main(["analyze", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    voxel = min(det.voxel_sizes_nm)
    assert record["frame"]["name"] == "lab" and record["frame"]["voxel_nm"] == pytest.approx(voxel, rel=1e-4)
    (v,) = record["vortices"]
    assert v["type"] == "screw" and abs(v["direction"][0]) > 0.95
    assert np.hypot(v["position_nm"][1] - 10.0, v["position_nm"][2] - 50.0) < voxel
    bad = write_result(tmp_path / "bad.h5", obj=obj[:, :32], support=plate[:, :32], recipe="x",
                       metadata={"geometry": det.to_dict(), "run": "d", "scan": 0})
    assert main(["analyze", str(bad)]) == 2
    assert "does not match its detector geometry's stack (32, 64, 64)" in capsys.readouterr().err


def test_report_is_one_self_contained_html_with_plots(series, tmp_path):
    folder, paths, _ = series
    out = tmp_path / "report.html"
    assert main(["report", str(folder), "--out", str(out), "--results", str(paths[3]), str(paths[2])]) == 0
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 3  # timelines + two reconstructions
    # one file: its scripts (the 3D view) are inline, nothing is fetched
    assert "http://" not in text and "https://" not in text and not re.search(r"<script[^>]*\bsrc=", text)
    assert "Domain boundary appeared" in text and "it left through the surface" in text  # flags in words
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_analyze_and_report_have_help_with_an_example(capsys):
    for cmd in ("analyze", "report"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([cmd, "--help"])
        assert exc.value.code == 0 and "example" in capsys.readouterr().out


def test_a_phase_jump_sheet_along_the_surface_is_not_a_boundary():
    from streamer.analysis.boundaries import find_domain_boundaries
    from streamer.analysis.displacement import particle_support
    from streamer.analysis.objects import analyze_object
    from streamer.backend import get_namespace

    z, y, x = np.ogrid[0:32, 0:32, 0:32]
    skin = _plate_amplitude() * np.exp(1j * (1.0 * (z >= C + 4) + 0 * x * y))  # the top layer jumps
    assert find_domain_boundaries(skin, mask=particle_support(np.abs(skin)))  # a sheet of jumps is there
    fields = analyze_object(skin, geometry=GEO, xp=get_namespace("numpy"))
    assert fields.domain_boundaries == () and fields.vortices == ()
