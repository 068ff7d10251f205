"""The beamline configuration (ops/configs/beamline.toml): PV prefixes, pipeline endpoints, experiment,
detector placement and rocking motor (what the start documents' detector geometry is made from).

Typed and validated like the service configuration: unknown keys and wrong types name the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from streamer.geometry.beamline import (
    BeamlineGeometry,
    DetectorPlacement,
    Lattice,
    Reflection,
    Rocking,
)
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
    """What every start document says about the beam, the detector and the reflection.

    The reflection's d spacing for the geometry: ``d_spacing_nm``, or ``lattice`` with ``hkl``.
    """

    energy_kev: Positive = 9.0
    distance_m: Positive = 1.2
    pixel_size_um: Positive = 55.0
    hkl: tuple[int, int, int] = Field((0, 0, 2), strict=False)  # a TOML list; its items stay strict integers
    d_spacing_nm: Positive | None = None
    lattice: Lattice | None = None

    @model_validator(mode="after")
    def _one_reflection(self):
        self.reflection()  # d_spacing_nm and lattice not both, hkl not (0, 0, 0)
        return self

    def reflection(self) -> Reflection:
        return Reflection(hkl=self.hkl, d_spacing_nm=self.d_spacing_nm, lattice=self.lattice)

    def as_md(self) -> dict:
        return {"energy_kev": self.energy_kev, "distance_m": self.distance_m, "pixel_size_um": self.pixel_size_um,
                "hkl": list(self.hkl)}


class BeamlineConfig(Settings):
    """Everything the beamline session needs."""

    epics: EpicsConfig = Field(default_factory=EpicsConfig)
    pipeline: PipelineLinkConfig = Field(default_factory=PipelineLinkConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    detector: DetectorPlacement = Field(default_factory=DetectorPlacement)  # raw size, arm, direct beam, ROI, binning
    rocking: Rocking = Field(default_factory=Rocking)  # the rocking motor and its axis

    def beamline_geometry(self, **scan) -> BeamlineGeometry:
        """What the configuration knows of the geometry, with a scan's ``rocking_step_deg``, ``num_frames``,
        ``rocking_center_deg`` (and a ``detector`` placement read from the detector) added."""
        e = self.experiment
        return BeamlineGeometry(**{"energy_kev": e.energy_kev, "distance_m": e.distance_m, "pixel_um": e.pixel_size_um,
                                   "detector": self.detector, "reflection": e.reflection(), "rocking": self.rocking,
                                   **scan})


def load_beamline_config(path: Path | str | None) -> BeamlineConfig:
    """Read a beamline TOML (or the defaults); ConfigError naming the key on a bad value."""
    return load_config(None if path is None else Path(path), BeamlineConfig)
