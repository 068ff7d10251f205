"""The beamline configuration (ops/configs/beamline.toml): PV prefixes, pipeline endpoints, experiment.

Typed and validated like the service configuration: unknown keys and wrong types name the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from streamer.messaging.decision import ACTIONS
from streamer.settings import Settings, load_config


def _matching(pattern: str, what: str):
    """A validator of strings that match ``pattern``, whose error says what the string must be."""
    def check(value: str) -> str:
        if not re.match(pattern, value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value
    return AfterValidator(check)


PV = Annotated[str, _matching(r"^[A-Za-z0-9_:.\-\[\]<>;{}$]+$", "a PV name or prefix without spaces")]
Endpoint = Annotated[str, _matching(r"^(tcp|ipc|inproc)://\S+$", "a ZeroMQ endpoint like tcp://host:port")]
Positive = Annotated[float, Field(gt=0)]

class EpicsConfig(Settings):
    """Where the hardware lives in EPICS."""

    theta_motor_pv: PV = "34idc:m1"  # motor record of the sample rotation (theta, degrees)
    detector_prefix: PV = "34idcTPX1:"  # areaDetector IOC: cam1:, image1:, Stats1:
    potentiostat_prefix: PV = "34idc:pstat:"  # Voltage, Capacity, Current
    connection_timeout_s: Positive = 5.0


class PipelineLinkConfig(Settings):
    """How the plan side reaches the pipeline and the operator."""

    frames_endpoint: Endpoint = "tcp://127.0.0.1:5555"
    results_endpoint: Endpoint = "tcp://127.0.0.1:5556"
    decision_endpoint: Endpoint = "tcp://127.0.0.1:5570"
    send_timeout_s: Positive = 2.0  # a frame the pipeline does not take in this time stops forwarding for the run
    verdict_timeout_s: Positive = 120.0
    decision_timeout_s: Positive = 120.0
    default_action: Literal[ACTIONS] = "continue"
    # the decision channel's shared token, mode 0600, made when missing;
    # "": $BCDI_DECISION_TOKEN_FILE or ~/.config/bcdi-stream/decision.token (the page's default too)
    decision_token_file: str = ""


class ExperimentConfig(Settings):
    """What every start document says about the beam, the detector and the reflection."""

    energy_kev: Positive = 9.0
    distance_m: Positive = 1.2
    pixel_size_um: Positive = 55.0
    hkl: tuple[int, int, int] = Field((0, 0, 2), strict=False)  # a TOML list; its items stay strict integers

    def as_md(self) -> dict:
        return {"energy_kev": self.energy_kev, "distance_m": self.distance_m, "pixel_size_um": self.pixel_size_um,
                "hkl": list(self.hkl)}


class BeamlineConfig(Settings):
    """Everything the beamline session needs."""

    epics: EpicsConfig = Field(default_factory=EpicsConfig)
    pipeline: PipelineLinkConfig = Field(default_factory=PipelineLinkConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)


def load_beamline_config(path: Path | str | None) -> BeamlineConfig:
    """Read a beamline TOML (or the defaults); ConfigError naming the key on a bad value."""
    return load_config(None if path is None else Path(path), BeamlineConfig)
