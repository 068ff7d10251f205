"""Run and scan metadata checked at the door: the fields the pipeline uses become typed values.

A field that fails its check is left out of what the pipeline uses, kept as text under
``rejected_metadata`` for the record, and named in the problems; the frames of the scan are still
recorded and analysed as far as the rest allows. Other fields pass as they are (the beamline's own).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, ValidationError, field_validator

from streamer.geometry import from_dict
from streamer.settings import ConfigError, Settings, config_error

VOLTAGE_LIMIT_V = 100.0  # a cell voltage beyond this is a unit or wiring error, not a measurement


class Metadata(Settings):
    """The fields of a run_start or scan_start that the pipeline reads; any other key passes."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    voltage_v: float | None = Field(None, ge=-VOLTAGE_LIMIT_V, le=VOLTAGE_LIMIT_V, allow_inf_nan=False)
    capacity_mah_g: float | None = Field(None, allow_inf_nan=False)
    geometry: dict | None = None
    # one incident-intensity (I0) reading per frame, in frame order: frames are scaled to its mean
    monitor: list[float] | None = Field(None, max_length=1_000_000)
    exposure_s: float | None = Field(None, gt=0, le=86400.0, allow_inf_nan=False)

    @field_validator("monitor")
    @classmethod
    def _monitor(cls, value):
        if value is not None and not all(v == v and abs(v) != float("inf") for v in value):
            raise ValueError("monitor readings must be finite numbers")
        return value

    @field_validator("geometry")
    @classmethod
    def _geometry(cls, value):
        if value is not None:
            try:
                from_dict(value)
            except (ConfigError, TypeError, ValueError) as exc:
                raise ValueError(str(exc)) from None
        return value


def check_metadata(raw) -> tuple[dict, list[str]]:
    """(the metadata to use, the problems found); never raises."""
    if not isinstance(raw, dict):
        return {}, [f"metadata must be a map, got {type(raw).__name__}"]
    data = {str(k): v for k, v in raw.items()}
    problems: list[str] = []
    rejected: dict[str, str] = {}
    for _ in range(len(Metadata.model_fields) + 1):  # each pass drops the fields that failed
        try:
            Metadata.model_validate(data)
            break
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors(include_url=False) if e["loc"]}
            problems.append(str(config_error(exc, "metadata")))
            if not bad:
                return {}, problems
            for key in bad:
                rejected[key] = _text(data.pop(key, None))
    if rejected:
        data["rejected_metadata"] = rejected
    return data, problems


def _text(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
