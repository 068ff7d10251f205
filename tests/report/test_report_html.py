"""The HTML report of a run folder (streamer/report): flags in words with their records, and each result's 3D
scene drawn by the page's own script, all inside the one file."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamer.geometry import OrthogonalGeometry
from streamer.recording.result_file import write_result
from streamer.report import build_report, write_report

GOLDEN = Path(__file__).parents[1] / "cli" / "golden" / "demo_reference_fast_events.jsonl"
GEO = OrthogonalGeometry(shape_zyx=(32, 32, 32), voxel_nm=12.0)


def pair_plate(x_nm=48.0):
    """A plate 8 layers thick holding two screw lines along z (windings -1 at x = -x_nm, +1 at +x_nm)."""
    z, y, x = (np.ogrid[0:32, 0:32, 0:32][k] - 16.0 for k in range(3))
    amp = ((np.abs(z) <= 4) & ((x / 13) ** 2 + (y / 12) ** 2 <= 1)).astype(float)
    d = x_nm / GEO.voxel_nm
    phase = np.arctan2(y + 0.5, x - d + 0.5) - np.arctan2(y + 0.5, x + d + 0.5) + 0 * z
    return amp * np.exp(-1j * phase)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    shutil.copy(GOLDEN, folder / "events.jsonl")
    for scan, rho in ((2, np.abs(pair_plate()).astype(complex)), (3, pair_plate())):
        write_result(folder / f"scan-{scan:04d}.h5", obj=rho, support=np.abs(rho) > 0, recipe="5ER",
                     metadata={"run": "r", "scan": scan, "voltage_v": 3.5 + 0.1 * scan, "geometry": GEO.to_dict()})
    return folder


def test_the_report_says_the_flags_in_words_with_their_records(run_dir):
    text = build_report(run_dir)
    assert ("New screw dislocation pair, 107 nm apart, 91 nm below the surface (confidence 1.0): a nucleation "
            "stress of about 74 MPa") in text
    assert "<td>9.7e-18 &plusmn; 1.6e-18<br><small title=" in text  # scan 0's strain energy with its error bar
    assert "energy is all noise'>noise: 1.3e-18</small><br>" in text  # the noise's part of it
    assert "a scan&#x27;s reconstructions disagree on it'>odd part: 3.6e-18</small></td>" in text
    assert "it left through the surface (confidence 1.0)" in text
    record = re.search(r"<summary>evidence</summary><pre>(.*?)</pre>", text, re.DOTALL).group(1)
    assert "&quot;kind&quot;: &quot;domain_boundary&quot;" in record  # the raw record, escaped


def test_the_report_holds_each_results_3d_scene_and_the_pages_renderer(run_dir):
    text = build_report(run_dir)
    scenes = json.loads(re.search(r"<script type='application/json' id='scenes3d'>(.*?)</script>", text,
                                  re.DOTALL).group(1).replace("<\\/", "</"))
    assert len(scenes) == 2
    lines = {k.split(":")[1].strip(): v["lines"] for k, v in scenes.items()}
    assert [len(v) for v in lines.values()] == [0, 2]
    assert sorted(line["winding"] for line in lines["scan 3, 3.80 V, 2 vortex line(s), 0 boundary(ies)"]) == [-1, 1]
    assert "const BcdiView3D" in text and "<canvas id='view3d'" in text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)  # nothing from the network


@pytest.fixture
def report_file(run_dir, tmp_path):
    return write_report(run_dir, tmp_path / "report.html")
