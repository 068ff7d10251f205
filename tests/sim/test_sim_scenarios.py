"""Scenario files: what ships, the timeline and its events, errors that name the file and the field."""

from dataclasses import replace

import numpy as np
import pytest

from sim.detector import Timepix
from sim.scenario import ScenarioError, available_scenarios, load_scenario
from sim.series import scan_frames, scan_states, scenario_geometry
from streamer.analysis.peak import peak_metrics


def test_shipped_scenarios_load_and_the_reference_keeps_the_demo_script():
    assert {"reference", "quick", "pristine", "broadening"} <= set(available_scenarios())
    for name in available_scenarios():
        scen = load_scenario(name)
        scenario_geometry(scen)  # each one's geometry fits its detector
        volts = [s.voltage_v for s in scen.stages]
        assert all(2.0 <= v <= 4.5 for v in volts) and volts == sorted(volts)
    ref = load_scenario("reference").stages
    assert [s.label for s in ref] == ["pristine", "pristine", "domain boundary", "screw pair", "pair apart", "healed"]
    assert not ref[1].boundaries and len(ref[2].boundaries) == 1 and not ref[2].dislocations
    assert [d.winding for d in ref[3].dislocations] == [1, -1]
    gap = [abs(ref[k].dislocations[0].point_nm[2] - ref[k].dislocations[1].point_nm[2]) for k in (3, 4)]
    assert gap[0] == pytest.approx(108) and gap[1] > gap[0]
    assert not ref[5].dislocations and not ref[5].boundaries


def test_timeline_events_fire_at_their_voltage_and_hold(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('''
[timeline]
num_scans = 10
scan_period_s = 1800.0
c_rate = 0.1
voltage_curve = [[0.0, 3.0], [60.0, 4.2]]
lattice_c_curve = [[0.0, 1.100], [60.0, 1.106]]
tilt_drift_mrad_per_scan = [0.0, 0.01]

[[event]]
at_voltage_v = 3.5
label = "pair"
screw_pairs = [{ separation_nm = 100.0 }]

[[event]]
at_capacity_mah_g = 42.0
label = "healed"
screw_pairs = []
''')
    stages = load_scenario(str(path)).stages
    caps = [s.capacity_mah_g for s in stages]
    assert caps[1] - caps[0] == pytest.approx(0.1 * 120.0 * 0.5)  # C/10 of 120 mAh/g for 30 min
    labels = [s.label for s in stages]
    first_pair = next(i for i, s in enumerate(stages) if s.voltage_v >= 3.5)
    assert labels[:first_pair] == ["pristine"] * first_pair and labels[first_pair] == "pair"
    assert [len(s.dislocations) for s in stages] == [2 if lab == "pair" else 0 for lab in labels]
    assert labels[-1] == "healed" and stages[7].capacity_mah_g == 42.0
    c = [s.lattice_c_nm for s in stages]
    assert c[0] == pytest.approx(1.100) and np.all(np.diff(c) > 0)
    assert stages[4].tilt_mrad == pytest.approx((0.0, 0.04))


ONE_STAGE = "[[stage]]\nvoltage_v = 3.0\ncapacity_mah_g = 1\n"
TIMELINE = "[timeline]\nnum_scans = 3\nscan_period_s = 60\nc_rate = 0.1\nvoltage_curve = [[0, 3.0], [100, 4.0]]\n"


@pytest.mark.parametrize("text, message", [
    (ONE_STAGE + "dislocatons = []\n", r"bad.toml: unknown key stage\[0\].dislocatons$"),
    ("[[stage]]\nvoltage_v = 'high'\ncapacity_mah_g = 1\n", r"bad.toml: stage\[0\].voltage_v must be a valid number"),
    ("[[stage]]\nvoltage_v = 5.0\ncapacity_mah_g = 1\n", r"bad.toml: stage\[0\].voltage_v must be less than or equal to 4.5"),
    ("[particle]\nshape = 'cube'\n" + ONE_STAGE, "bad.toml: particle.shape must be 'ellipse' or 'hexagon', got 'cube'"),
    ("[particle]\nthickness_nm = 20\nrounding_nm = 10\n" + ONE_STAGE, "bad.toml: particle: rounding_nm must stay below"),
    ("[detector]\nchips = 3\n" + ONE_STAGE, "bad.toml: detector.chips must be 1 or 4, got 3"),
    ("[geometry]\nkind = 'detector'\nenergy_kev = -9\n" + ONE_STAGE, "bad.toml: geometry: detector geometry: energy_kev"),
    (ONE_STAGE + "mosaic = { blocks = 0 }\n", r"bad.toml: stage\[0\].mosaic.blocks must be greater than or equal to 1"),
    (ONE_STAGE + "boundaries = [{ step = 1.0 }]\n", r"bad.toml: unknown key stage\[0\].boundaries\[0\].step$"),
    (ONE_STAGE + "walls = [{ normal = [0, 0, 0] }]\n", r"stage\[0\].walls\[0\].normal: must be a non-zero"),
    (ONE_STAGE + "dislocations = [{ y_nm = 1.0, x_nm = 2.0, direction = [1, 0, 0] }]\n",
     r"bad.toml: stage\[0\].dislocations\[0\]: give either y_nm, x_nm, winding .* or point_nm"),
    (TIMELINE + "[[event]]\nat_voltage_v = 4.4\nlabel = 'late'\n",
     r"bad.toml: event\[0\].at_voltage_v = 4.4 is never reached in 3 scans"),
    (TIMELINE + "[[event]]\nat_voltage_v = 3.1\nat_capacity_mah_g = 1.0\n",
     r"bad.toml: event\[0\]: give exactly one of at_voltage_v, at_capacity_mah_g"),
    ("[timeline]\nnum_scans = 3\nscan_period_s = 60\nc_rate = 0.1\nvoltage_curve = [[0, 1.0], [100, 4.0]]\n",
     "bad.toml: timeline.voltage_curve: leaves the 2.0-4.5 V window"),
    ("[timeline]\nnum_scans = 3\nscan_period_s = 60\nc_rate = 0.1\nvoltage_curve = [[0, 3.0], [0, 4.0]]\n",
     r"bad.toml: timeline.voltage_curve: must be >= 2 \[capacity_mah_g, value\] pairs in increasing capacity"),
    ("[timeline]\nnum_scans = 3\nscan_period_s = 60\nc_rate = 0.1\n", "bad.toml: missing key timeline.voltage_curve"),
    ("[timeline]\nnum_scans = 3\nscan_period_s = 60\nc_rate = 'C/10'\nvoltage_curve = [[0, 3.0], [100, 4.0]]\n",
     "bad.toml: timeline.c_rate must be a valid number, got 'C/10'"),
    (ONE_STAGE + TIMELINE, r"bad.toml: give either \[\[stage\]\] tables or a \[timeline\] with \[\[event\]\]s, not both"),
    ("[[event]]\nat_voltage_v = 3.0\n", r"bad.toml: \[\[event\]\] needs a \[timeline\]"),
    ("colour = 'red'\n" + ONE_STAGE, "bad.toml: unknown key colour$"),
    ("[[stage]]\nvoltage_v = 3.0\n", r"bad.toml: missing key stage\[0\].capacity_mah_g$"),
    ("name = 'x'\n", "bad.toml: a scenario needs at least one"),
    ("[[stage\n", "bad.toml: not valid TOML"),
])
def test_a_bad_scenario_file_gets_an_error_naming_the_file_and_the_field(tmp_path, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(str(bad))


def test_an_unknown_key_deep_in_a_stage_is_refused_by_its_dotted_path(tmp_path):
    bad = tmp_path / "deep.toml"
    bad.write_text(ONE_STAGE + ONE_STAGE + "walls = [{ width_nm = 8.0 }, { widht_nm = 8.0 }]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(bad))
    assert str(info.value) == f"{bad}: unknown key stage[1].walls[1].widht_nm"


def test_a_bound_violated_in_the_timeline_names_its_key(tmp_path):
    bad = tmp_path / "slow.toml"
    bad.write_text(TIMELINE.replace("scan_period_s = 60", "scan_period_s = -60"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(bad))
    assert str(info.value) == f"{bad}: timeline.scan_period_s must be greater than 0, got -60"


def _measured_widths(scen, stage_index, seed):
    """Peak widths measured on the simulated (noisy) frames of one scan, hot and dead pixels masked."""
    geometry = scenario_geometry(scen)
    one = replace(scen, stages=(scen.stages[stage_index],))
    (state,) = scan_states(one, geometry)
    detector = Timepix(scen.detector, seed=seed)
    frames = np.array([f for _, _, f in scan_frames(state.model, geometry, detector, scen.acquisition.exposure_s)])
    hot, dead = scen.detector.defect_maps()
    frames[:, hot | dead] = 0
    dq = float(min(np.linalg.norm(geometry.q_basis_inv_nm, axis=0)))
    vol = geometry.intensity_to_orthogonal(frames.astype(float), dq_inv_nm=dq, shape_zyx=(96, 96, 96))
    return peak_metrics(vol, pixel_inv_nm=(dq, dq, dq))


def test_mosaic_broadening_widens_the_peak_across_q_and_hardly_along_it():
    scen = load_scenario("broadening")
    assert all(not (s.dislocations or s.boundaries) for s in scen.stages)  # broadening only
    before, after = _measured_widths(scen, 0, seed=1), _measured_widths(scen, len(scen.stages) - 1, seed=2)
    assert after["width_perpendicular"] >= 2 * before["width_perpendicular"]
    assert after["width_parallel"] < 1.2 * before["width_parallel"]
    assert after["max_count"] < before["max_count"]
