"""A caproto IOC standing in for the beamline's EPICS hardware in tests (loopback only).

Run as ``python tests/beamline/epics_ioc.py PREFIX``; the port comes from EPICS_CA_SERVER_PORT. It serves a
motor record ``{PREFIX}m1`` (readback, done-moving, velocity), an areaDetector-like Timepix
``{PREFIX}TPX1:`` (cam1:Acquire completes its put after AcquireTime; image1:ArrayData and Stats1:
follow a Bragg peak at theta = 7 deg; the sensor size, region and binning PVs say which raw pixels a
frame is) and a potentiostat ``{PREFIX}PSTAT:`` (Voltage, Capacity, Current).
"""

from __future__ import annotations

import sys

import numpy as np
from caproto import ChannelType
from caproto.ioc_examples.fake_motor_record import FakeMotor
from caproto.server import PVGroup, SubGroup, pvproperty, run

ROWS, COLS = 32, 32  # a frame: rows 4..68, columns 8..72 of a 72 x 80 sensor, binned 2 x 2
SENSOR_ROWS, SENSOR_COLS, ROW0, COL0, BINNING = 72, 80, 4, 8, 2
PEAK_THETA_DEG, PEAK_WIDTH_DEG = 7.0, 0.05


def _with_rbv(name: str, value, **kwargs):
    """A setpoint PV and its read-back, as areaDetector drivers have."""
    return (pvproperty(name=name, value=value, **kwargs),
            pvproperty(name=name + "_RBV", value=value, read_only=True, **kwargs))


class Timepix(PVGroup):
    acquire, acquire_rbv = _with_rbv("cam1:Acquire", 0)
    acquire_time, acquire_time_rbv = _with_rbv("cam1:AcquireTime", 0.1)
    image_mode, image_mode_rbv = _with_rbv("cam1:ImageMode", 0)
    num_images, num_images_rbv = _with_rbv("cam1:NumImages", 1)
    array_counter, array_counter_rbv = _with_rbv("cam1:ArrayCounter", 0)
    size_x = pvproperty(name="cam1:ArraySizeX_RBV", value=COLS, read_only=True)
    size_y = pvproperty(name="cam1:ArraySizeY_RBV", value=ROWS, read_only=True)
    max_size_x = pvproperty(name="cam1:MaxSizeX_RBV", value=SENSOR_COLS, read_only=True)
    max_size_y = pvproperty(name="cam1:MaxSizeY_RBV", value=SENSOR_ROWS, read_only=True)
    min_x = pvproperty(name="cam1:MinX_RBV", value=COL0, read_only=True)
    min_y = pvproperty(name="cam1:MinY_RBV", value=ROW0, read_only=True)
    roi_size_x = pvproperty(name="cam1:SizeX_RBV", value=COLS * BINNING, read_only=True)
    roi_size_y = pvproperty(name="cam1:SizeY_RBV", value=ROWS * BINNING, read_only=True)
    bin_x = pvproperty(name="cam1:BinX_RBV", value=BINNING, read_only=True)
    bin_y = pvproperty(name="cam1:BinY_RBV", value=BINNING, read_only=True)
    array_data = pvproperty(name="image1:ArrayData", value=[0] * (ROWS * COLS), dtype=ChannelType.LONG,
                            max_length=ROWS * COLS, read_only=True)
    total = pvproperty(name="Stats1:Total_RBV", value=0.0, read_only=True)
    centroid_x = pvproperty(name="Stats1:CentroidX_RBV", value=0.0, read_only=True)
    centroid_y = pvproperty(name="Stats1:CentroidY_RBV", value=0.0, read_only=True)

    def __init__(self, *args, theta=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.theta = theta

    @acquire_time.putter
    async def acquire_time(self, instance, value):
        await self.acquire_time_rbv.write(value)

    @image_mode.putter
    async def image_mode(self, instance, value):
        await self.image_mode_rbv.write(value)

    @num_images.putter
    async def num_images(self, instance, value):
        await self.num_images_rbv.write(value)

    @array_counter.putter
    async def array_counter(self, instance, value):
        await self.array_counter_rbv.write(value)

    @acquire.putter
    async def acquire(self, instance, value):
        """Acquire = 1 exposes for AcquireTime, publishes the frame, then completes the put with 0."""
        if not value:
            await self.acquire_rbv.write(0)
            return 0
        await self.acquire_rbv.write(1)
        exposure = self.acquire_time_rbv.value
        await self.async_lib.library.sleep(exposure)
        theta = self.theta.field_inst.user_readback_value.value
        rows, cols = np.mgrid[:ROWS, :COLS]
        spot = np.exp(-((rows - 15.0) ** 2 + (cols - 17.0) ** 2) / 8.0)
        rocking = np.exp(-0.5 * ((theta - PEAK_THETA_DEG) / PEAK_WIDTH_DEG) ** 2)
        frame = np.round(1e5 * exposure * rocking * spot).astype(int)
        await self.array_data.write(frame.ravel().tolist())
        await self.total.write(float(frame.sum()))
        if frame.sum():
            await self.centroid_y.write(float((frame.sum(axis=1) * np.arange(ROWS)).sum() / frame.sum()))
            await self.centroid_x.write(float((frame.sum(axis=0) * np.arange(COLS)).sum() / frame.sum()))
        await self.array_counter_rbv.write(self.array_counter_rbv.value + 1)
        await self.acquire_rbv.write(0)
        return 0

    @acquire.startup
    async def acquire(self, instance, async_lib):
        self.async_lib = async_lib


class Potentiostat(PVGroup):
    voltage = pvproperty(name="Voltage", value=3.40)
    capacity = pvproperty(name="Capacity", value=12.0)
    current = pvproperty(name="Current", value=0.05)


class BeamlineIOC(PVGroup):
    theta = SubGroup(FakeMotor, velocity=5.0, precision=4, user_limits=(-10.0, 30.0), tick_rate_hz=50.0,
                     prefix="m1")
    potentiostat = SubGroup(Potentiostat, prefix="PSTAT:")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timepix = Timepix(prefix=self.prefix + "TPX1:", theta=self.theta.motor)
        self.pvdb.update(self.timepix.pvdb)


if __name__ == "__main__":
    ioc = BeamlineIOC(prefix=sys.argv[1])
    run(ioc.pvdb, interfaces=["127.0.0.1"], log_pv_names=False)
