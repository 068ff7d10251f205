"""EPICS devices of the beamline, with the interface of the sim devices so a plan never knows which it drives.

- ``ThetaStage``: the sample rotation, a motor record (``EpicsMotor``: readback, done-moving, stop).
- ``EpicsTimepix``: the Timepix through its areaDetector IOC (``cam1:`` driver, ``image1:`` NDStdArrays,
  ``Stats1:`` statistics). A trigger puts ``cam1:Acquire`` = 1 and completes when the IOC finishes the put
  (as areaDetector does at the end of the exposure); the frame is then read from ``image1:ArrayData`` into
  ``image``, which ``streamer.beamline.bluesky_bridge.FrameStreamer`` sends into our ZeroMQ stream with every event.
- ``EpicsPotentiostat``: cell voltage, capacity and current PVs.
"""

from __future__ import annotations

import threading

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor, EpicsSignalRO, Signal
from ophyd.areadetector.base import EpicsSignalWithRBV
from ophyd.status import DeviceStatus, StatusBase


class ThetaStage(EpicsMotor):
    """The sample rotation theta (degrees), a motor record."""


class TimepixCam(Device):
    """The areaDetector driver PVs we use (``cam1:``)."""

    acquire = Cpt(EpicsSignalWithRBV, "Acquire", kind="omitted")
    acquire_time = Cpt(EpicsSignalWithRBV, "AcquireTime", kind="config")
    image_mode = Cpt(EpicsSignalWithRBV, "ImageMode", kind="config")  # 0: Single
    num_images = Cpt(EpicsSignalWithRBV, "NumImages", kind="config")
    array_counter = Cpt(EpicsSignalWithRBV, "ArrayCounter", kind="omitted")
    size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="config")  # frame columns (binned)
    size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="config")  # frame rows (binned)
    # the sensor and the region read out, in raw pixels (ADBase), and the binning: the geometry's ROI
    max_size_x = Cpt(EpicsSignalRO, "MaxSizeX_RBV", kind="config")
    max_size_y = Cpt(EpicsSignalRO, "MaxSizeY_RBV", kind="config")
    min_x = Cpt(EpicsSignalRO, "MinX_RBV", kind="config")
    min_y = Cpt(EpicsSignalRO, "MinY_RBV", kind="config")
    bin_x = Cpt(EpicsSignalRO, "BinX_RBV", kind="config")
    bin_y = Cpt(EpicsSignalRO, "BinY_RBV", kind="config")


class EpicsTimepix(Device):
    """The Timepix (areaDetector): one frame per trigger, read back as ``image`` for the ZeroMQ stream."""

    cam = Cpt(TimepixCam, "cam1:")
    array_data = Cpt(EpicsSignalRO, "image1:ArrayData", kind="omitted")
    total_counts = Cpt(EpicsSignalRO, "Stats1:Total_RBV", kind="hinted")
    centroid_row_px = Cpt(EpicsSignalRO, "Stats1:CentroidY_RBV", kind="normal")
    centroid_col_px = Cpt(EpicsSignalRO, "Stats1:CentroidX_RBV", kind="normal")
    image = Cpt(Signal, value=np.zeros((1, 1), np.uint32), kind="normal")

    def __init__(self, prefix: str, *, name: str = "timepix", acquire_timeout_s: float = 10.0, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s
        self.stage_sigs.update([("cam.acquire", 0), ("cam.image_mode", 0), ("cam.num_images", 1)])

    @property
    def acquire_time(self):
        """The exposure per frame (s): the driver's AcquireTime, as on the sim detector."""
        return self.cam.acquire_time

    @property
    def layout_signals(self) -> dict:
        """The signals that say which raw pixels a frame is (``frame_layout`` turns their values into
        the geometry's ``shape_px``, ``roi_px`` and ``binning``)."""
        c = self.cam
        return {"max_rows": c.max_size_y, "max_cols": c.max_size_x, "row0": c.min_y, "col0": c.min_x,
                "bin_rows": c.bin_y, "bin_cols": c.bin_x, "rows": c.size_y, "cols": c.size_x}

    def trigger(self) -> DeviceStatus:
        status = DeviceStatus(self)
        exposure = float(self.cam.acquire_time.get())
        done = threading.Event()

        def acquire():
            try:
                self.cam.acquire.put(1, use_complete=True, callback=lambda *a, **k: done.set())
                if not done.wait(exposure + self.acquire_timeout_s):
                    raise TimeoutError(f"{self.prefix}cam1:Acquire did not complete within "
                                       f"{exposure + self.acquire_timeout_s:.1f} s")
                rows, cols = int(self.cam.size_y.get()), int(self.cam.size_x.get())
                data = np.asarray(self.array_data.get())
                if data.size < rows * cols:
                    raise ValueError(f"{self.prefix}image1:ArrayData holds {data.size} values for a "
                                     f"{rows} x {cols} frame")
                self.image.put(data[: rows * cols].reshape(rows, cols).astype(np.uint32))
            except Exception as exc:  # noqa: BLE001 - the failure goes to the plan through the status
                status.set_exception(exc)
            else:
                status.set_finished()

        threading.Thread(target=acquire, name=f"{self.name}-acquire", daemon=True).start()
        return status


class EpicsPotentiostat(Device):
    """The cell's voltage (V), specific capacity (mAh/g) and current (mA), read continuously."""

    voltage = Cpt(EpicsSignalRO, "Voltage", kind="hinted")
    capacity = Cpt(EpicsSignalRO, "Capacity", kind="hinted")
    current = Cpt(EpicsSignalRO, "Current", kind="normal")

    def trigger(self) -> StatusBase:
        status = StatusBase()
        status.set_finished()  # the potentiostat reads all the time: a trigger only marks the moment
        return status


def frame_layout(values: dict) -> dict:
    """Detector placement fields from the ``layout_signals`` values: the sensor's ``shape_px``, the
    ``roi_px`` the frames cover (ArraySize x Bin raw pixels from MinY / MinX) and the ``binning``."""
    v = {k: int(values[k]) for k in ("max_rows", "max_cols", "row0", "col0", "bin_rows", "bin_cols", "rows", "cols")}
    if v["bin_rows"] != v["bin_cols"]:
        raise ValueError(f"the detector bins {v['bin_rows']} x {v['bin_cols']} (BinY x BinX): the geometry needs "
                         f"square bins")
    b = v["bin_rows"]
    return {"shape_px": (v["max_rows"], v["max_cols"]), "binning": b,
            "roi_px": (v["row0"], v["row0"] + v["rows"] * b, v["col0"], v["col0"] + v["cols"] * b)}


def make_epics_beamline(epics, *, connect: bool = True):
    """Stage, detector and potentiostat from an ``EpicsConfig``, connected within its timeout."""
    stage = ThetaStage(epics.theta_motor_pv, name="theta")
    detector = EpicsTimepix(epics.detector_prefix, name="timepix")
    potentiostat = EpicsPotentiostat(epics.potentiostat_prefix, name="potentiostat")
    if connect:
        for device in (stage, detector, potentiostat):
            device.wait_for_connection(timeout=epics.connection_timeout_s)
    return stage, detector, potentiostat

