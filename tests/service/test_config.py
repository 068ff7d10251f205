"""The typed settings: one loader, one error type naming the key (dotted) and the file; keyword construction."""

from pathlib import Path

import pytest

from streamer.phasing import PhasingConfig
from streamer.service.config import ServiceConfig
from streamer.settings import ConfigError, from_mapping, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_nested_values_load_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('out_dir = "x"\n[phasing]\npopulation = 3\nrecipe = "50HIO, 10ER"\n[flags]\nbroadening_threshold = 0.5\n'
                    '[web]\nport = 0\n[cluster]\nscheduler = "tcp://10.0.0.5:8786"\n[fft]\nplanner = "patient"\n')
    cfg = load_config(path, ServiceConfig, overrides={"backend": "numpy", "web.enabled": True, "cluster.backend": None})
    assert cfg.out_dir == "x" and cfg.phasing.population == 3 and cfg.flags.broadening_threshold == 0.5
    assert cfg.bind_host == "127.0.0.1" and cfg.web.enabled and cfg.web.port == 0
    assert cfg.cluster.scheduler == "tcp://10.0.0.5:8786" and cfg.cluster.backend == "auto"
    assert cfg.fft.planner == "patient"


@pytest.mark.parametrize("data, match", [
    ({"phasing": {"populaton": 2}}, "unknown key phasing.populaton"),
    ({"frames_port": "5555"}, "frames_port must be a valid integer, got '5555'"),
    ({"frames_port": 70000}, "frames_port must be less than or equal to 65535"),
    ({"phasing": {"recipe": "20ZZ"}}, "phasing.recipe: .*unknown operator"),
    ({"phasing": {"population": 0}}, "phasing.population must be greater than or equal to 1, got 0"),
    ({"phasing": {"shrinkwrap": {"threshold": 1.5}}}, "phasing.shrinkwrap.threshold must be less than 1"),
    ({"backend": "tpu"}, "backend must be 'auto', 'numpy', 'cupy' or 'strict', got 'tpu'"),
    ({"flags": 3}, "flags must be a table"),
    ({"exit_on_run_stop": 1}, "exit_on_run_stop must be a valid boolean"),
    ({"seed": True}, "seed must be a valid integer"),  # a bool is not an int
    ({"analysis": {"surplus": 1}}, "unknown key analysis.surplus"),
    ({"analysis": {"support_threshold": 2.0}}, "analysis.support_threshold must be less than 1"),
    ({"fft": {"planner": "fast"}}, "fft.planner must be 'estimate', 'measure', 'patient' or 'exhaustive'"),
    ({"web": {"port": -1}}, "web.port must be greater than or equal to 0"),
    ({"cluster": {"scheduler": "http://host:8786"}}, "cluster.scheduler: must be empty or a Dask scheduler address"),
])
def test_bad_config_names_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(ServiceConfig, data)


def test_an_int_stands_for_a_float_but_not_the_other_way():
    assert from_mapping(ServiceConfig, {"scan_timeout_s": 5}).scan_timeout_s == 5.0
    with pytest.raises(ConfigError, match="max_frames_per_scan must be a valid integer"):
        from_mapping(ServiceConfig, {"max_frames_per_scan": 10.0})


def test_errors_name_the_file_and_the_dotted_key(tmp_path):
    path = tmp_path / "service.toml"
    path.write_text("[phasing]\npopulation = 0\n")
    with pytest.raises(ConfigError, match=f"^{path}: phasing.population must be greater than or equal to 1, got 0$"):
        load_config(path, ServiceConfig)
    path.write_text("[phasing]\npopulaton = 2\n")
    with pytest.raises(ConfigError, match=f"^{path}: unknown key phasing.populaton$"):
        load_config(path, ServiceConfig)


@pytest.mark.parametrize("line, new_place", [
    ("web_port = 8765", r"web_port moved to \[web\] port"),
    ("web_enabled = true", r"web_enabled moved to \[web\] enabled"),
    ("web_host = '127.0.0.1'", r"web_host moved to \[web\] host"),
    ("cluster_backend = 'numpy'", r"cluster_backend moved to \[cluster\] backend"),
    ("cluster_connect_timeout_s = 1.0", r"cluster_connect_timeout_s moved to \[cluster\] connect_timeout_s"),
    ("cluster_scan_timeout_s = 1.0", r"cluster_scan_timeout_s moved to \[cluster\] scan_timeout_s"),
    ("cluster = 'tcp://10.0.0.5:8786'", r"moved to \[cluster\] scheduler"),
])
def test_an_old_prefixed_key_is_refused_naming_its_new_place(tmp_path, line, new_place):
    path = tmp_path / "old.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"{path}: .*{new_place}"):
        load_config(path, ServiceConfig, overrides={"cluster.scheduler": "tcp://1.2.3.4:8786"})


def test_keyword_construction_and_validated_copies():
    cfg = ServiceConfig(phasing=PhasingConfig(population=2), realtime_policy="all")
    assert cfg.phasing.population == 2 and cfg.realtime_policy == "all"
    copy = cfg.replace(out_dir="elsewhere")
    assert copy.out_dir == "elsewhere" and copy.phasing == cfg.phasing and cfg.out_dir == "bcdi-out"
    with pytest.raises(ConfigError, match="population must be greater than or equal to 1"):
        cfg.phasing.replace(population=0)  # a copy is checked again (model_copy(update=...) would not)
    with pytest.raises(ConfigError, match="web_port moved to"):
        ServiceConfig(web_port=8765)
    with pytest.raises(ValueError):  # frozen
        cfg.seed = 3


def test_fft_defaults_fall_back_on_the_environment(monkeypatch):
    monkeypatch.setenv("BCDI_STREAM_FFTW_PLANNER", "Patient")
    monkeypatch.setenv("BCDI_STREAM_CACHE", "/tmp/wisdom-here")
    fft = ServiceConfig().fft
    assert fft.planner == "patient" and fft.cache_dir == "/tmp/wisdom-here"
    monkeypatch.setenv("BCDI_STREAM_FFTW_PLANNER", "fast")
    with pytest.raises(ConfigError, match="planner must be"):
        ServiceConfig()
    monkeypatch.delenv("BCDI_STREAM_FFTW_PLANNER")
    monkeypatch.delenv("BCDI_STREAM_CACHE")
    assert ServiceConfig().fft.planner == "measure" and ServiceConfig().fft.cache_dir == ""


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", ServiceConfig)
    bad = tmp_path / "bad.toml"
    bad.write_text("out_dir = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, ServiceConfig)


def test_shipped_service_config_is_valid():
    cfg = load_config(ROOT / "ops/configs/service.toml", ServiceConfig)
    assert cfg.frames_port == 5555 and cfg.bind_host == "127.0.0.1" and cfg.web.enabled and not cfg.cluster.scheduler
