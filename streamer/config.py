"""The typed, validated configuration behind every subcommand, loadable from TOML.

Unknown keys and wrong types are errors that name the offending key, so a typo in a config file
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from streamer.analysis import AnalysisConfig
from streamer.backend import BACKENDS
from streamer.compare import FlagConfig
from streamer.decision import DEFAULT_ENDPOINT as DEFAULT_DECISION_ENDPOINT
from streamer.phasing import PhasingConfig


class ConfigError(ValueError):
    """A configuration value that is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class ServiceConfig:
    """The pipeline service: where it listens, where it writes, how it computes."""

    bind_host: str = "127.0.0.1"
    frames_port: int = 0  # 0: any free port (reported at start-up)
    results_port: int = 0
    out_dir: str = "bcdi-out"
    backend: str = "numpy"
    seed: int = 0
    receive_timeout_s: float = 0.2  # poll period of the receive loop
    scan_timeout_s: float = 30.0  # an open scan with no frame for this long is closed as timed out
    max_frames_per_scan: int = 2000
    realtime_policy: str = "latest"  # "latest": reconstruct the newest waiting scan; "all": every scan
    exit_on_run_stop: bool = True
    web_enabled: bool = False  # the operator's live page (docs/web.md)
    web_host: str = "127.0.0.1"  # localhost only unless asked otherwise
    web_port: int = 8765  # 0: any free port (reported at start-up)
    decision_endpoint: str = DEFAULT_DECISION_ENDPOINT  # the plan's decision listener, for the page's buttons
    cluster: str = ""  # "": reconstruct in-process; "tcp://host:8786": on that Dask scheduler (docs/cluster.md)
    cluster_backend: str = "auto"  # the array backend of the cluster's workers ("auto": their GPU if any)
    cluster_connect_timeout_s: float = 10.0
    cluster_scan_timeout_s: float = 600.0  # a scan not back by then is reconstructed in-process
    phasing: PhasingConfig = field(default_factory=PhasingConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    flags: FlagConfig = field(default_factory=FlagConfig)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.realtime_policy not in ("latest", "all"):
            raise ConfigError(f"realtime_policy must be 'latest' or 'all', got {self.realtime_policy!r}")
        if self.scan_timeout_s <= 0 or self.max_frames_per_scan < 1:
            raise ConfigError("scan_timeout_s must be > 0 and max_frames_per_scan >= 1")
        if not self.decision_endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise ConfigError(f"decision_endpoint must be a ZeroMQ endpoint (tcp://host:port), got {self.decision_endpoint!r}")
        if self.cluster and not self.cluster.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            raise ConfigError(f"cluster must be empty or a Dask scheduler address (tcp://host:8786), got {self.cluster!r}")
        if self.cluster_backend not in BACKENDS:
            raise ConfigError(f"cluster_backend must be one of {BACKENDS}, got {self.cluster_backend!r}")
        if self.cluster_connect_timeout_s <= 0 or self.cluster_scan_timeout_s <= 0:
            raise ConfigError("cluster_connect_timeout_s and cluster_scan_timeout_s must be > 0")
        for name in ("frames_port", "results_port", "web_port"):
            port = getattr(self, name)
            if not 0 <= port < 65536:
                raise ConfigError(f"{name} must be 0..65535, got {port}")

    def endpoint(self, port: int) -> str:
        return f"tcp://{self.bind_host}:{port if port else '*'}"


def from_mapping(cls, data: dict, path: str = ""):
    """Build dataclass ``cls`` from a nested mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in {path or 'config'}: {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_mapping(hint, value, key)
            continue
        base = {int: int, float: (int, float), str: str, bool: bool}.get(hint)
        if base is not None and (not isinstance(value, base) or (hint is not bool and isinstance(value, bool))):
            raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
        kwargs[name] = float(value) if hint is float else value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def load_config(path: Path | None, cls=ServiceConfig, overrides: dict | None = None):
    """Read a TOML file (or nothing) into ``cls``; ``overrides`` win over the file."""
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_mapping(cls, data)
