"""The beamline configuration (ops/configs/beamline.toml): PV prefixes, pipeline endpoints, experiment.

Typed and validated like the service configuration: unknown keys and wrong types name the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from streamer.messaging.decision import ACTIONS
from streamer.settings import ConfigError, load_config

_PV = re.compile(r"^[A-Za-z0-9_:.\-\[\]<>;{}$]+$")


@dataclass(frozen=True)
class EpicsConfig:
    """Where the hardware lives in EPICS."""

    theta_motor_pv: str = "34idc:m1"  # motor record of the sample rotation (theta, degrees)
    detector_prefix: str = "34idcTPX1:"  # areaDetector IOC: cam1:, image1:, Stats1:
    potentiostat_prefix: str = "34idc:pstat:"  # Voltage, Capacity, Current
    connection_timeout_s: float = 5.0

    def __post_init__(self):
        for name in ("theta_motor_pv", "detector_prefix", "potentiostat_prefix"):
            value = getattr(self, name)
            if not _PV.match(value):
                raise ConfigError(f"epics.{name} must be a PV name or prefix without spaces, got {value!r}")
        if not self.connection_timeout_s > 0:
            raise ConfigError(f"epics.connection_timeout_s must be > 0, got {self.connection_timeout_s}")


@dataclass(frozen=True)
class PipelineLinkConfig:
    """How the plan side reaches the pipeline and the operator."""

    frames_endpoint: str = "tcp://127.0.0.1:5555"
    results_endpoint: str = "tcp://127.0.0.1:5556"
    decision_endpoint: str = "tcp://127.0.0.1:5570"
    send_timeout_s: float = 2.0  # a frame the pipeline does not take in this time stops forwarding for the run
    verdict_timeout_s: float = 120.0
    decision_timeout_s: float = 120.0
    default_action: str = "continue"

    def __post_init__(self):
        for name in ("frames_endpoint", "results_endpoint", "decision_endpoint"):
            value = getattr(self, name)
            if not re.match(r"^(tcp|ipc|inproc)://\S+$", value):
                raise ConfigError(f"pipeline.{name} must be a ZeroMQ endpoint like tcp://host:port, got {value!r}")
        for name in ("send_timeout_s", "verdict_timeout_s", "decision_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"pipeline.{name} must be > 0, got {getattr(self, name)}")
        if self.default_action not in ACTIONS:
            raise ConfigError(f"pipeline.default_action must be one of {ACTIONS}, got {self.default_action!r}")


@dataclass(frozen=True)
class ExperimentConfig:
    """What every start document says about the beam, the detector and the reflection."""

    energy_kev: float = 9.0
    distance_m: float = 1.2
    pixel_size_um: float = 55.0
    hkl: tuple = (0, 0, 2)

    def __post_init__(self):
        for name in ("energy_kev", "distance_m", "pixel_size_um"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"experiment.{name} must be > 0, got {getattr(self, name)}")
        hkl = self.hkl
        if (not isinstance(hkl, (list, tuple)) or len(hkl) != 3
                or not all(isinstance(h, int) and not isinstance(h, bool) for h in hkl)):
            raise ConfigError(f"experiment.hkl must be three integers, got {hkl!r}")
        object.__setattr__(self, "hkl", tuple(hkl))

    def as_md(self) -> dict:
        return {"energy_kev": self.energy_kev, "distance_m": self.distance_m, "pixel_size_um": self.pixel_size_um,
                "hkl": list(self.hkl)}


@dataclass(frozen=True)
class BeamlineConfig:
    """Everything the beamline session needs."""

    epics: EpicsConfig = field(default_factory=EpicsConfig)
    pipeline: PipelineLinkConfig = field(default_factory=PipelineLinkConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)


def load_beamline_config(path: Path | str | None) -> BeamlineConfig:
    """Read a beamline TOML (or the defaults); ConfigError naming the key on a bad value."""
    return load_config(None if path is None else Path(path), BeamlineConfig)
