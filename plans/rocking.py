"""The rocking scan, composed from bluesky plan stubs.

Plans only yield messages: no sleeping, sockets or arrays beyond the angle list.
"""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from plans.metadata import check_experiment_md


def rocking_angles(center_deg: float, width_deg: float, num: int) -> list[float]:
    """``num`` angles spanning ``width_deg`` in equal steps, step ``num // 2`` at the centre."""
    if num < 2:
        raise ValueError(f"a rocking scan needs num >= 2 steps, got {num}")
    if width_deg <= 0:
        raise ValueError(f"width_deg must be > 0, got {width_deg}")
    step = width_deg / num
    return [center_deg + (k - num // 2) * step for k in range(num)]


def rocking_scan(detector, stage, center_deg: float, width_deg: float = 1.0, num: int = 60,
                 exposure_s: float = 1.0, *, md: dict | None = None):
    """Rock ``stage`` through the Bragg condition, one detector frame per step (one run)."""
    if exposure_s <= 0:
        raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
    angles = rocking_angles(center_deg, width_deg, num)
    _md = {
        "plan_name": "rocking_scan",
        "detectors": [detector.name],
        "motors": [stage.name],
        "num_points": num,
        "num_intervals": num - 1,
        "center_deg": center_deg,
        "width_deg": width_deg,
        "exposure_s": exposure_s,
        "plan_args": {"center_deg": center_deg, "width_deg": width_deg, "num": num, "exposure_s": exposure_s},
        "hints": {"dimensions": [([stage.name], "primary")]},
        **check_experiment_md(md),
    }

    @bpp.stage_decorator([detector, stage])
    @bpp.run_decorator(md=_md)
    def inner():
        for theta in angles:
            yield from bps.mv(stage, theta)
            yield from bps.trigger_and_read([detector, stage])

    yield from bps.mv(detector.acquire_time, exposure_s)
    return (yield from inner())
