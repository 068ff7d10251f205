"""The service's configuration: where it listens and writes, and the phasing, analysis and flag settings it uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.backend import BACKENDS
from streamer.messaging.decision import DEFAULT_ENDPOINT as DEFAULT_DECISION_ENDPOINT
from streamer.phasing import PhasingConfig
from streamer.settings import ConfigError


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
