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


def scan_geometry(geometry, center_deg: float, step_deg: float, num: int):
    """A detector geometry (``kind: detector`` dict) with this scan's frame count, step and centre, which
    are the frames' truth; any other geometry as it is."""
    if not (isinstance(geometry, dict) and geometry.get("kind") == "detector"):
        return geometry
    return {**geometry, "num_rocking_steps": num, "rocking_step_deg": step_deg, "theta_bragg_deg": center_deg}


def rocking_scan(detector, stage, center_deg: float, width_deg: float = 1.0, num: int = 60,
                 exposure_s: float = 1.0, *, md: dict | None = None):
    """Rock ``stage`` through the Bragg condition, one detector frame per step (one run).

    The start document says the step (``rocking_step_deg``); a detector geometry given in ``md`` takes
    the scan's frame count, step and centre (``num_rocking_steps``, ``rocking_step_deg``, ``theta_bragg_deg``).
    """
    if exposure_s <= 0:
        raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
    angles = rocking_angles(center_deg, width_deg, num)
    md = check_experiment_md(md)
    if "geometry" in md:
        md["geometry"] = scan_geometry(md["geometry"], center_deg, width_deg / num, num)
    _md = {
        "plan_name": "rocking_scan",
        "detectors": [detector.name],
        "motors": [stage.name],
        "num_points": num,
        "num_intervals": num - 1,
        "center_deg": center_deg,
        "width_deg": width_deg,
        "rocking_step_deg": width_deg / num,
        "exposure_s": exposure_s,
        "plan_args": {"center_deg": center_deg, "width_deg": width_deg, "num": num, "exposure_s": exposure_s},
        "hints": {"dimensions": [([stage.name], "primary")]},
        **md,
    }

    @bpp.stage_decorator([detector, stage])
    @bpp.run_decorator(md=_md)
    def inner():
        for theta in angles:
            yield from bps.mv(stage, theta)
            yield from bps.trigger_and_read([detector, stage])

    yield from bps.mv(detector.acquire_time, exposure_s)
    return (yield from inner())
