"""Simulated twins of the beamline hardware, as ophyd devices.

The Timepix frame depends on the rotation stage's angle and on the particle's current state; the
potentiostat's trigger advances the simulated cell to its next state of charge (one scenario stage).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal, SoftPositioner
from ophyd.status import DeviceStatus, StatusBase

from sim.diffraction import DiffractionModel
from sim.particle import Particle, complex_image
from sim.scenario import Scenario
from streamer.geometry import OrthogonalGeometry

log = logging.getLogger(__name__)


class SimulatedSample:
    """The particle in the beam: its current scenario stage and the diffraction it gives."""

    def __init__(self, scenario: Scenario, geometry: OrthogonalGeometry, *, particle: Particle | None = None,
                 peak_counts_per_s: float = 1e5):
        self.scenario = scenario
        self.geometry = geometry
        self.base = particle or Particle()
        self.peak_counts_per_s = peak_counts_per_s
        self.stage_index = -1
        self.model: DiffractionModel | None = None

    def go_to_stage(self, index: int) -> None:
        index = min(index, len(self.scenario.stages) - 1)
        if index != self.stage_index:
            self.stage_index = index
            rho = complex_image(self.stage.particle(self.base), self.geometry)
            self.model = DiffractionModel(rho, self.geometry, peak_counts=self.peak_counts_per_s)

    @property
    def stage(self):
        return self.scenario.stages[max(self.stage_index, 0)]

    def truth(self) -> np.ndarray:
        """The complex image of the current state (ground truth for tests)."""
        return complex_image(self.stage.particle(self.base), self.geometry)


class RotationStage(SoftPositioner):
    """The sample rotation (theta, degrees); moves instantly."""

    def __init__(self, *, name: str = "theta", init_pos: float = 0.0, **kwargs):
        super().__init__(name=name, init_pos=init_pos, egu="deg", **kwargs)


class SimTimepix(Device):
    """A photon-counting detector: the frame at the stage's angle, with Poisson noise."""

    image = Cpt(Signal, value=np.zeros((1, 1), np.uint32), kind="normal")
    acquire_time = Cpt(Signal, value=1.0, kind="config")

    def __init__(self, *args, stage: RotationStage, sample: SimulatedSample, seed: int = 0,
                 realtime: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._stage = stage
        self._sample = sample
        self._rng = np.random.default_rng(seed)
        self._realtime = realtime
        self.image.put(np.zeros(sample.geometry.frame_shape, np.uint32))

    def trigger(self):
        status = DeviceStatus(self)
        exposure = float(self.acquire_time.get())
        if exposure <= 0:
            raise ValueError(f"acquire_time must be > 0 s, got {exposure}")
        theta = float(self._stage.position)
        if self._sample.model is None:
            self._sample.go_to_stage(0)
        expected = self._sample.model.expected_frame(theta, exposure)

        def acquire():
            t0 = time.monotonic()
            frame = self._rng.poisson(expected).astype(np.uint32)
            if self._realtime:
                time.sleep(max(0.0, exposure - (time.monotonic() - t0)))
            self.image.put(frame)
            status.set_finished()

        threading.Thread(target=acquire, name="timepix-acquire", daemon=True).start()
        return status


class SimPotentiostat(Device):
    """Cell voltage and specific capacity; a trigger moves the cell to its next state of charge."""

    voltage = Cpt(Signal, value=float("nan"), kind="hinted")
    capacity = Cpt(Signal, value=float("nan"), kind="hinted")

    def __init__(self, *args, sample: SimulatedSample, **kwargs):
        super().__init__(*args, **kwargs)
        self._sample = sample

    def trigger(self):
        self._sample.go_to_stage(self._sample.stage_index + 1)
        stage = self._sample.stage
        self.voltage.put(stage.voltage_v)
        self.capacity.put(stage.capacity_mah_g)
        status = StatusBase()
        status.set_finished()
        return status


def make_beamline(scenario: Scenario, geometry: OrthogonalGeometry, *, seed: int = 0, realtime: bool = False,
                  peak_counts_per_s: float = 1e5):
    """Stage, detector and potentiostat sharing one simulated sample."""
    sample = SimulatedSample(scenario, geometry, peak_counts_per_s=peak_counts_per_s)
    stage = RotationStage(init_pos=geometry.theta_bragg_deg)
    detector = SimTimepix(name="timepix", stage=stage, sample=sample, seed=seed, realtime=realtime)
    potentiostat = SimPotentiostat(name="potentiostat", sample=sample)
    return sample, stage, detector, potentiostat
