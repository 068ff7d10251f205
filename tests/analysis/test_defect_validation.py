"""The defect validation's scorer (benchmarks/defect_validation.py, issue 18) on answers whose score is known.

The benchmark's figures are only as good as its scoring: here the truth itself is the "reconstruction", and the
"analysis" states the true lines and planes, or wrong ones, so each figure's right value is known. One small
case also goes through the real commands, as the benchmark runs them (its accuracy is the benchmark's to
report; here only that every figure is made).
"""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dv():
    spec = importlib.util.spec_from_file_location("defect_validation", ROOT / "benchmarks" / "defect_validation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["defect_validation"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _first(dv, kind: str, detector: bool = False):
    """The first tuning case of ``kind`` (small) measured on the orthogonal grid unless ``detector``."""
    for index in range(dv.KINDS.index(kind), 600, len(dv.KINDS)):
        case = dv.draw_case("tuning", index, "small")
        if (case.detector is not None) == detector:
            return case
    raise AssertionError(f"no {kind} case")


def _truth_result(dv, case):
    shape = dv.SIZES["small"]
    obj = dv.true_object(case.particle, shape, case.voxel_nm)
    support = np.abs(obj) > 0.2 * np.abs(obj).max()
    return {"object": obj, "support": support, "metadata": {"geometry": {"voxel_nm": case.voxel_nm}}}, np.array(shape)


def _index(points_nm, shape, voxel_nm):
    """Lab nm about the particle centre -> grid indices of the truth's grid (the scorer's inverse map)."""
    return np.asarray(points_nm, float) / voxel_nm + shape // 2


def _found_lines(lines, shape, voxel_nm, *, flip_winding=False):
    found = []
    for t in lines:
        p, d = np.asarray(t["point_nm"]), np.asarray(t["direction"]) / np.linalg.norm(t["direction"])
        pts = [p + s * d for s in np.linspace(-30, 30, 7)]
        found.append({"points": _index(pts, shape, voxel_nm).tolist(), "direction": d.tolist(),
                      "winding": -t["winding"] if flip_winding else t["winding"], "type": t["type"]})
    return found


def test_the_true_lines_score_full_recall_with_their_windings_and_a_wrong_winding_is_seen(dv):
    from sim.truth import defects_truth

    case = _first(dv, "screw")
    result, shape = _truth_result(dv, case)
    lines = defects_truth(case.particle)["lines"]
    assert lines
    score = dv.score_result(case, result, {"vortices": _found_lines(lines, shape, case.voxel_nm)})
    assert not score["twin"] and score["amplitude_correlation"] > 0.999
    assert len(score["matched"]) == score["true_lines"] == len(lines) and score["false_lines"] == 0
    assert all(m["winding_right"] and m["position_error_nm"] < case.voxel_nm for m in score["matched"])
    assert all(m["direction_error_deg"] < 1.0 for m in score["matched"])
    wrong = dv.score_result(case, result, {"vortices": _found_lines(lines, shape, case.voxel_nm, flip_winding=True)})
    assert not any(m["winding_right"] for m in wrong["matched"])
    corners = [np.array([z, y, x], float) for z in (2, shape[0] - 3) for y in (2, shape[1] - 3) for x in (2, shape[2] - 3)]

    def to_lines_nm(index):  # distance (nm) from the nearest true line
        p = (index - shape // 2) * case.voxel_nm
        return min(np.linalg.norm((p - t["point_nm"]) - ((p - t["point_nm"]) @ u) * u)
                   for t in lines for u in [np.asarray(t["direction"]) / np.linalg.norm(t["direction"])])

    corner = max(corners, key=to_lines_nm)
    assert to_lines_nm(corner) > dv.MATCH_NM
    stray = {"points": [corner.tolist(), (corner + [1, 0, 0]).tolist()], "direction": [1.0, 0.0, 0.0], "winding": 1,
             "type": "screw"}
    missed = dv.score_result(case, result, {"vortices": [stray]})
    assert missed["matched"] == [] and missed["false_lines"] == 1
    figures = dv.summarise([score, missed])
    assert figures["vortex recall"].startswith(f"{len(lines)}/{2 * len(lines)}")
    assert figures["vortex precision"].startswith(f"{len(lines)}/{len(lines) + 1}")


def test_a_plane_is_found_only_with_its_place_and_normal(dv):
    from sim.truth import defects_truth

    case = _first(dv, "boundary")
    result, shape = _truth_result(dv, case)
    (plane,) = defects_truth(case.particle)["boundaries"]
    n = np.asarray(plane["normal"]) / np.linalg.norm(plane["normal"])
    at = _index([plane["point_nm"]], shape, case.voxel_nm)[0]
    right = {"position": at.tolist(), "normal": n.tolist(), "phase_step_rad": plane["phase_step_rad"]}
    score = dv.score_result(case, result, {"domain_boundaries": [right]})
    (b,) = score["boundaries"]
    assert b["found"] and b["normal_error_deg"] < 0.5 and b["step_error_rad"] < 1e-6 and score["false_boundaries"] == 0
    flipped = dv.score_result(case, result, {"domain_boundaries": [{**right, "normal": (-n).tolist(),
                                                                      "phase_step_rad": -plane["phase_step_rad"]}]})
    assert flipped["boundaries"][0]["found"] and flipped["boundaries"][0]["step_error_rad"] < 1e-6  # same plane
    tilt = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    tilted = n * math.cos(math.radians(60)) + tilt / np.linalg.norm(tilt) * math.sin(math.radians(60))
    wrong = dv.score_result(case, result, {"domain_boundaries": [{**right, "normal": tilted.tolist()}]})
    assert not wrong["boundaries"][0]["found"] and wrong["false_boundaries"] == 1
    figures = dv.summarise([score, wrong])
    big = abs(plane["phase_step_rad"]) >= math.pi / 2
    key = "boundary recall, |step| >= pi/2" if big else "boundary recall, pi/4 <= |step| < pi/2"
    assert figures[key].startswith("1/2")


def test_a_boundary_in_a_twin_reconstruction_keeps_its_step(dv):
    """A reconstruction that came back as the twin conj(rho(-r)) holds the plane mirrored through the centre; read
    across it along the same normal, its phase steps as the truth's does (measured on the twin itself here), and the
    scorer counts that step right."""
    from sim.truth import defects_truth

    case = _first(dv, "boundary")
    result, shape = _truth_result(dv, case)
    (plane,) = defects_truth(case.particle)["boundaries"]
    obj, twin = result["object"], np.conj(np.flip(result["object"]))
    n = np.asarray(plane["normal"]) / np.linalg.norm(plane["normal"])

    def step(rho, at):  # of the displacement phase G.u = -arg(rho) (docs/conventions.md), along n
        ahead, behind = (tuple(np.round(at + s * 3 * n).astype(int)) for s in (1, -1))
        return -float(np.angle(rho[ahead] * np.conj(rho[behind])))

    here = _index([plane["point_nm"]], shape, case.voxel_nm)[0]
    at = (shape - 1) - here
    measured = step(twin, at)
    assert abs(step(obj, here) - plane["phase_step_rad"]) < 0.05 * abs(plane["phase_step_rad"])
    assert abs(measured - plane["phase_step_rad"]) < 0.05 * abs(plane["phase_step_rad"])
    found = {"position": at.tolist(), "normal": n.tolist(), "phase_step_rad": measured}
    score = dv.score_result(case, {**result, "object": twin, "support": np.flip(result["support"])},
                            {"domain_boundaries": [found]})
    (b,) = score["boundaries"]
    assert score["twin"] and b["found"] and b["step_error_rad"] < 0.05 * abs(plane["phase_step_rad"])


def test_a_pristine_case_with_a_line_counts_against_it(dv):
    case = _first(dv, "pristine")
    result, shape = _truth_result(dv, case)
    clean = dv.score_result(case, result, {})
    assert clean["true_lines"] == 0 and clean["false_lines"] == 0 and clean["false_boundaries"] == 0
    spurious = {"points": [(shape // 2).tolist(), (shape // 2 + [2, 0, 0]).tolist()], "direction": [1.0, 0.0, 0.0],
                "winding": 1, "type": "screw"}
    dirty = dv.score_result(case, result, {"vortices": [spurious]})
    assert dirty["false_lines"] == 1
    assert dv.summarise([clean, dirty])["pristine cases with a line or boundary"].startswith("1/2")


def test_a_small_case_runs_through_the_real_commands_and_is_scored(dv, tmp_path):
    case = _first(dv, "screw")
    timing = dv.run_case(case, tmp_path / case.name)
    assert timing["reconstruct_s"] > 0 and timing["analyze_s"] > 0
    score = dv.score_case(case, tmp_path / case.name)
    assert score["true_lines"] >= 1 and score["found_lines"] == len(score["matched"]) + score["false_lines"]
    assert 0.0 <= score["amplitude_correlation"] <= 1.0
