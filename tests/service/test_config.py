import pytest

from streamer.service.config import ServiceConfig
from streamer.settings import ConfigError, from_mapping, load_config


def test_nested_values_load_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('out_dir = "x"\n[phasing]\npopulation = 3\nrecipe = "50HIO, 10ER"\n[flags]\nbroadening_threshold = 0.5\n')
    cfg = load_config(path, ServiceConfig, overrides={"backend": "numpy"})
    assert cfg.out_dir == "x" and cfg.phasing.population == 3 and cfg.flags.broadening_threshold == 0.5
    assert cfg.bind_host == "127.0.0.1"


@pytest.mark.parametrize("data, match", [
    ({"phasing": {"populaton": 2}}, "unknown key.*populaton"),
    ({"frames_port": "5555"}, "frames_port must be int"),
    ({"frames_port": 70000}, "65535"),
    ({"phasing": {"recipe": "20ZZ"}}, "unknown operator"),
    ({"backend": "tpu"}, "backend"),
    ({"flags": 3}, "flags must be a table"),
    ({"exit_on_run_stop": 1}, "must be bool"),
])
def test_bad_config_names_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(ServiceConfig, data)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", ServiceConfig)
    bad = tmp_path / "bad.toml"
    bad.write_text("out_dir = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, ServiceConfig)


def test_shipped_service_config_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "ops/configs/service.toml", ServiceConfig)
    assert cfg.frames_port == 5555 and cfg.bind_host == "127.0.0.1"
