"""Simulated twins of the beamline hardware, as ophyd devices.

The Timepix frame depends on the rotation stage's angle and on the particle's current state; the
potentiostat's trigger advances the simulated cell to its next state of charge (one scenario stage),
and may shift the Bragg peak in theta as the lattice constant changes (``theta_drift_deg_per_step``).
With ``fast=False`` the devices take real time: exposures last ``acquire_time`` and the stage moves at
``velocity_deg_s`` then settles for ``settle_time_s``; ``fast=True`` (tests) does all of it at once.
The interface (``image``, ``total_counts``, ``acquire_time``, ``voltage``, ``capacity``) is the one the
EPICS devices in ``streamer/hardware`` have, so a plan never knows which it drives.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal, SoftPositioner
from ophyd.status import DeviceStatus, StatusBase

from sim.detector import Timepix, TimepixSpec
from sim.diffraction import DiffractionModel
from sim.particle import Particle, complex_image
from sim.scenario import Scenario

log = logging.getLogger(__name__)


class SimulatedSample:
    """The particle in the beam: its current scenario stage, the diffraction it gives and its peak drift.

    ``charge_step`` counts potentiostat triggers (it goes on past the scenario's last stage, which then
    holds); the Bragg peak sits ``theta_offset_deg = theta_drift_deg_per_step * charge_step`` away from
    the geometry's Bragg angle.
    """

    def __init__(self, scenario: Scenario, geometry, *, particle: Particle | None = None,
                 peak_counts_per_s: float = 1e5, theta_drift_deg_per_step: float = 0.0):
        self.scenario = scenario
        self.geometry = geometry
        self.base = particle or Particle()
        self.peak_counts_per_s = peak_counts_per_s
        self.theta_drift_deg_per_step = float(theta_drift_deg_per_step)
        self.stage_index = -1
        self.charge_step = -1
        self.model: DiffractionModel | None = None

    def go_to_stage(self, index: int) -> None:
        index = min(index, len(self.scenario.stages) - 1)
        if index != self.stage_index:
            self.stage_index = index
            rho = complex_image(self.stage.particle(self.base), self.geometry)
            self.model = DiffractionModel(rho, self.geometry, peak_counts=self.peak_counts_per_s)

    def advance(self) -> None:
        """The cell moves on by one state of charge."""
        self.charge_step += 1
        self.go_to_stage(self.charge_step)

    @property
    def stage(self):
        return self.scenario.stages[max(self.stage_index, 0)]

    @property
    def theta_offset_deg(self) -> float:
        """How far the Bragg peak has drifted in theta from the geometry's Bragg angle."""
        return self.theta_drift_deg_per_step * max(self.charge_step, 0)

    @property
    def peak_theta_deg(self) -> float:
        """Where the Bragg peak is now (theta, degrees)."""
        return self.geometry.theta_bragg_deg + self.theta_offset_deg

    def expected_frame(self, theta_deg: float, exposure_s: float) -> np.ndarray:
        """Mean counts of the frame at ``theta_deg``: dark outside the sampled q_x window around the peak."""
        if self.model is None:
            self.go_to_stage(0)
        shifted = theta_deg - self.theta_offset_deg
        nx = self.geometry.num_rocking_steps
        if abs(self.geometry.rocking_index(shifted) - nx / 2) > nx / 2:  # the transform would alias back
            return np.zeros(self.geometry.frame_shape)
        return self.model.expected_frame(shifted, exposure_s)

    def truth(self) -> np.ndarray:
        """The complex image of the current state (ground truth for tests)."""
        return complex_image(self.stage.particle(self.base), self.geometry)


class RotationStage(SoftPositioner):
    """The sample rotation (theta, degrees): moves at ``velocity_deg_s``, then settles (instant when ``fast``)."""

    def __init__(self, *, name: str = "theta", init_pos: float = 0.0, velocity_deg_s: float = 2.0,
                 settle_time_s: float = 0.02, fast: bool = True, **kwargs):
        if velocity_deg_s <= 0 or settle_time_s < 0:
            raise ValueError(f"velocity_deg_s must be > 0 and settle_time_s >= 0, got {velocity_deg_s}, "
                             f"{settle_time_s}")
        self.velocity_deg_s = float(velocity_deg_s)
        self.settle_time_s = float(settle_time_s)
        self.fast = fast
        self.moves = 0
        super().__init__(name=name, init_pos=init_pos, egu="deg", **kwargs)

    def move_time_s(self, target_deg: float) -> float:
        """Seconds a move from here to ``target_deg`` takes, settling included (0 when fast)."""
        if self.fast or self.position is None:
            return 0.0
        return abs(target_deg - self.position) / self.velocity_deg_s + self.settle_time_s

    def _setup_move(self, position, status):
        self.moves += 1
        delay = self.move_time_s(position)
        if delay == 0:
            return super()._setup_move(position, status)
        self._run_subs(sub_type=self.SUB_START, timestamp=time.time())
        self._started_moving = True
        self._moving = True

        def arrive():
            time.sleep(delay)
            self._set_position(position)
            self._done_moving()

        threading.Thread(target=arrive, name=f"{self.name}-move", daemon=True).start()


class SimTimepix(Device):
    """A photon-counting detector: the frame at the stage's angle, with Poisson noise.

    Staging arms it (``armed``) and counts frames from zero (``frames_acquired``); an exposure lasts
    ``acquire_time`` unless ``fast``.
    """

    image = Cpt(Signal, value=np.zeros((1, 1), np.uint32), kind="normal")
    total_counts = Cpt(Signal, value=0, kind="hinted")
    centroid_row_px = Cpt(Signal, value=0.0, kind="normal")  # intensity centroid on the frame
    centroid_col_px = Cpt(Signal, value=0.0, kind="normal")
    acquire_time = Cpt(Signal, value=1.0, kind="config")
    armed = Cpt(Signal, value=0, kind="omitted")
    frames_acquired = Cpt(Signal, value=0, kind="omitted")

    def __init__(self, *args, stage: RotationStage, sample: SimulatedSample, seed: int = 0, fast: bool = True,
                 readout: Timepix | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._stage = stage
        self._sample = sample
        self._rng = np.random.default_rng(seed)
        self.fast = fast
        self._readout = readout  # a real chip's read-out (gaps, hot and dead pixels, ceiling); None: Poisson only
        self.image.put(np.zeros(sample.geometry.frame_shape, np.uint32))

    def stage(self):
        staged = super().stage()
        self.frames_acquired.put(0)
        self.armed.put(1)
        return staged

    def unstage(self):
        self.armed.put(0)
        return super().unstage()

    def _read(self, expected: np.ndarray, exposure_s: float) -> np.ndarray:
        """The frame the detector sends: its region of interest (the geometry's ``roi_px``) as read out."""
        if self._readout is None:
            return self._rng.poisson(expected).astype(np.uint32)
        r0, r1, c0, c1 = self._sample.geometry.roi_px
        signal = np.zeros(self._readout.spec.shape_px, np.float32)
        signal[r0:r1, c0:c1] = expected
        return self._readout.read(signal, exposure_s)[r0:r1, c0:c1]

    def trigger(self):
        status = DeviceStatus(self)
        exposure = float(self.acquire_time.get())
        if exposure <= 0:
            raise ValueError(f"acquire_time must be > 0 s, got {exposure}")
        expected = self._sample.expected_frame(float(self._stage.position), exposure)

        def acquire():
            t0 = time.monotonic()
            frame = self._read(expected, exposure)
            if not self.fast:
                time.sleep(max(0.0, exposure - (time.monotonic() - t0)))
            self.image.put(frame)
            total = int(frame.sum())
            self.total_counts.put(total)
            if total:
                self.centroid_row_px.put(float(frame.sum(axis=1) @ np.arange(frame.shape[0]) / total))
                self.centroid_col_px.put(float(frame.sum(axis=0) @ np.arange(frame.shape[1]) / total))
            self.frames_acquired.put(self.frames_acquired.get() + 1)
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
        self._sample.advance()
        stage = self._sample.stage
        self.voltage.put(stage.voltage_v)
        self.capacity.put(stage.capacity_mah_g)
        status = StatusBase()
        status.set_finished()
        return status


def make_beamline(scenario: Scenario, geometry, *, seed: int = 0, fast: bool = True,
                  realtime: bool | None = None, peak_counts_per_s: float = 1e5,
                  theta_drift_deg_per_step: float = 0.0, timepix: TimepixSpec | None = None):
    """Stage, detector and potentiostat sharing one simulated sample (``realtime=True`` means ``fast=False``).

    ``geometry``: orthogonal (plain Poisson frames) or a detector geometry, whose frames are its ``roi_px``
    of a ``timepix`` (gaps, hot and dead pixels, count ceiling) when one is given."""
    if realtime is not None:
        fast = not realtime
    sample = SimulatedSample(scenario, geometry, particle=scenario.particle, peak_counts_per_s=peak_counts_per_s,
                             theta_drift_deg_per_step=theta_drift_deg_per_step)
    stage = RotationStage(init_pos=geometry.theta_bragg_deg, fast=fast)
    readout = None
    if timepix is not None:
        if tuple(geometry.detector_shape_px) != timepix.shape_px:
            raise ValueError(f"geometry detector_shape_px {geometry.detector_shape_px} is not the Timepix's "
                             f"{timepix.shape_px}")
        readout = Timepix(timepix, seed=seed)
    detector = SimTimepix(name="timepix", stage=stage, sample=sample, seed=seed, fast=fast, readout=readout)
    potentiostat = SimPotentiostat(name="potentiostat", sample=sample)
    return sample, stage, detector, potentiostat
