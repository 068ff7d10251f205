"""Bragg geometry: which q each (rocking step, detector row, column) samples, and its real-space twin.

Two geometries share one interface (``frame_shape``, ``num_rocking_steps``, ``rocking_step_deg``,
``theta_bragg_deg``, ``rocking_index``, ``rocking_range_deg``, ``real_space_points_nm``, ``to_dict``):

- ``OrthogonalGeometry``: the rocking angle samples q_x, detector rows q_z (along q) and columns q_y
  on one cubic grid (identity transform); the demo and the unit tests use it, and it describes the
  lab grid every analysis works on.
- ``DetectorGeometry``: a real diffractometer (energy, distance, pixels, binning, detector-arm
  angles, rocking axis and step). Its (step, row, col) grid is sheared in q and in real space;
  ``to_orthogonal`` resamples arrays on it onto an orthogonal lab grid, ``lab_geometry`` describes
  that grid (docs/geometry.md, docs/lab-frame.md); ``from_measured`` reads a geometry file.

``from_dict`` rebuilds either from its ``to_dict`` (dispatch on ``"kind"``), the dict checked key by key
(a Settings model of the dataclass' fields): errors are ``ConfigError`` naming the key.
"""


from __future__ import annotations

from streamer.geometry.detector import HC_KEV_NM, MEASURED_KEYS, DetectorGeometry
from streamer.geometry.orthogonal import STACK_TO_LAB_AXES, OrthogonalGeometry
from streamer.settings import ConfigError

GEOMETRY_KINDS = {"orthogonal": OrthogonalGeometry, "detector": DetectorGeometry}


def from_dict(d: dict) -> OrthogonalGeometry | DetectorGeometry:
    """Rebuild a geometry from its ``to_dict``; ``"kind"`` picks the class (default orthogonal)."""
    if not isinstance(d, dict):
        raise ConfigError(f"geometry must be a table (dict), got {type(d).__name__}")
    kind = d.get("kind", "orthogonal")
    if kind not in GEOMETRY_KINDS:
        raise ConfigError(f"unknown geometry kind {kind!r}; known: {', '.join(GEOMETRY_KINDS)}")
    return GEOMETRY_KINDS[kind].from_dict(d)


__all__ = ["GEOMETRY_KINDS", "HC_KEV_NM", "MEASURED_KEYS", "STACK_TO_LAB_AXES", "DetectorGeometry", "OrthogonalGeometry", "from_dict"]
