"""One configuration mechanism: every settings table refuses unknown keys and bad values with an error naming the field."""

import pytest

from plans.metadata import MetadataError, check_experiment_md
from sim.scenario import Acquisition, ScenarioError, parse_scenario
from streamer.beamline.hardware.config import BeamlineConfig
from streamer.geometry import DetectorGeometry, OrthogonalGeometry, from_dict
from streamer.messaging.decision import make_decision, parse_decision
from streamer.phasing import PhasingConfig, ShrinkWrap
from streamer.settings import ConfigError, Settings, from_mapping, load_settings

STAGE = [{"voltage_v": 3.0, "capacity_mah_g": 1}]


def test_loader_reads_any_settings_model_and_names_the_file(tmp_path):
    path = tmp_path / "beamline.toml"
    path.write_text('[experiment]\nhkl = [1, 1, 1]\n[pipeline]\ndefault_action = "remeasure"\n')
    cfg = load_settings(path, BeamlineConfig, {"experiment.energy_kev": 12})
    assert cfg.experiment.hkl == (1, 1, 1) and cfg.experiment.energy_kev == 12.0
    assert cfg.pipeline.default_action == "remeasure"
    path.write_text("[epics]\nconnection_timeout_s = 0\n")
    with pytest.raises(ConfigError, match=f"^{path}: epics.connection_timeout_s must be greater than 0, got 0$"):
        load_settings(path, BeamlineConfig)
    path.write_text("[epic]\n")
    with pytest.raises(ConfigError, match=f"^{path}: unknown key epic$"):
        load_settings(path, BeamlineConfig)


def test_settings_are_frozen_strict_models():
    class Tiny(Settings):
        n: int = 1
        x: float = 0.5

    assert Tiny(x=2).x == 2.0  # an int stands for a float
    for bad in ({"n": True}, {"n": "1"}, {"x": "0.5"}, {"m": 1}):
        with pytest.raises(ConfigError):
            Tiny(**bad)
    assert Tiny(n=2) == Tiny(n=2) and hash(Tiny(n=2)) == hash(Tiny(n=2))


def test_phasing_settings_name_the_field():
    with pytest.raises(ConfigError, match="metric must be 'chi', 'sharpness' or 'area', got 'beauty'"):
        PhasingConfig(metric="beauty")
    with pytest.raises(ConfigError, match="shrinkwrap.every must be greater than or equal to 0"):
        PhasingConfig(shrinkwrap={"every": -1})
    with pytest.raises(ConfigError, match="threshold must be less than 1"):
        ShrinkWrap(threshold=1.0)
    warm = PhasingConfig().shrinkwrap.replace(sigma_start=1.0)
    assert warm.sigma_start == 1.0 and isinstance(warm, ShrinkWrap)


@pytest.mark.parametrize("md, match", [
    ({"energy_kev": "nine"}, r"md\['energy_kev'\] must be a valid number, got 'nine'"),
    ({"c_rate": 0}, r"md\['c_rate'\] must be greater than 0"),
    ({"hkl": [0, 0, True]}, r"md\['hkl'\] must be three integers"),
    ({"sample": 3}, r"md\['sample'\] must be a valid string"),
])
def test_plan_metadata_errors_name_the_key(md, match):
    with pytest.raises(MetadataError, match=match):
        check_experiment_md(md)
    assert issubclass(MetadataError, ValueError)


def test_plan_metadata_keeps_other_keys_and_gives_hkl_as_a_list():
    md = check_experiment_md({"hkl": (0, 0, 2), "geometry": {"kind": "orthogonal"}, "energy_kev": 9})
    assert md == {"hkl": [0, 0, 2], "geometry": {"kind": "orthogonal"}, "energy_kev": 9}


@pytest.mark.parametrize("table, match", [
    ({"acquisition": {"exposure_s": 0}}, "s.toml: acquisition.exposure_s must be greater than 0"),
    ({"acquisition": {"exposure_s": "long"}}, "s.toml: acquisition.exposure_s must be a valid number"),
    ({"geometry": {"kind": "detector", "energy_kev": "9"}}, "s.toml: geometry: detector geometry: energy_kev"),
    ({"geometry": {"kind": "orthogonal", "voxel": 1}}, "s.toml: geometry: orthogonal geometry: .*unknown key voxel"),
])
def test_scenario_errors_are_config_errors_naming_file_and_field(table, match):
    with pytest.raises(ScenarioError, match=match) as info:
        parse_scenario({**table, "stage": STAGE}, source="s.toml")
    assert isinstance(info.value, ConfigError)
    assert Acquisition(readout_s=0).readout_s == 0.0


def test_decision_errors_are_config_errors_naming_the_field():
    import msgpack

    with pytest.raises(ConfigError, match="^decision: action must be 'remeasure', 'continue' or 'acknowledge'"):
        make_decision("r", 1, "maybe")
    with pytest.raises(ConfigError, match="^decision: scan must be a valid integer, got True"):
        make_decision("r", True, "continue")
    with pytest.raises(ConfigError, match="^decision: time must be a valid number"):
        parse_decision(msgpack.packb({"type": "decision", "run": "r", "scan": 1, "action": "continue", "time": "now"}))
    msg = parse_decision(msgpack.packb({"type": "decision", "run": "r", "scan": 1, "action": "continue", "time": 5}))
    assert msg == {"type": "decision", "run": "r", "scan": 1, "action": "continue", "source": "operator", "time": 5.0}


@pytest.mark.parametrize("table, match", [
    ({"kind": "orthogonal", "shape_zyx": [48, 48, 48], "voxel_nm": "12", "d_spacing_nm": 0.55, "theta_bragg_deg": 7.0},
     "orthogonal geometry: voxel_nm must be a valid number, got '12'"),
    ({"kind": "orthogonal", "shape_zyx": [48, 48, 48], "voxel_nm": 12.0}, "orthogonal geometry: missing key d_spacing_nm"),
    ({"kind": "detector", "binning": 1.5}, "detector geometry: binning must be a valid integer"),
    ({"kind": "detector", "roi_px": [0, 8, 0]}, r"detector geometry: missing item roi_px\[3\]"),
    ({"kind": "detector", "energy_kev": -9}, "detector geometry: energy_kev must be > 0"),
    ({"kind": "conical"}, "unknown geometry kind 'conical'"),
])
def test_geometry_dict_errors_are_config_errors_naming_the_field(table, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(table)


def test_geometry_from_json_like_dicts_round_trips():
    det = DetectorGeometry(binning=2, roi_px=(0, 128, 0, 256))
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in det.to_dict().items()}
    assert from_dict(as_json) == det
    assert from_dict({**OrthogonalGeometry().to_dict(), "voxel_nm": 12}) == OrthogonalGeometry()  # an int for a float
    with pytest.raises(ConfigError, match="must be a table"):
        from_mapping(BeamlineConfig, [1, 2])
