"""The real beamline's hardware as ophyd devices (EPICS), and the configuration that names its PVs."""

from streamer.beamline.hardware.config import BeamlineConfig, load_beamline_config
from streamer.beamline.hardware.epics import (
           EpicsPotentiostat,
           EpicsTimepix,
           ThetaStage,
           make_epics_beamline,
)

__all__ = ["BeamlineConfig", "EpicsPotentiostat", "EpicsTimepix", "ThetaStage", "load_beamline_config",
           "make_epics_beamline"]
