"""What every start document says about the experiment: sample, cell, beam, detector, reflection, particle.

Validated by a pydantic model (plans/ imports no streamer module, so its error type is its own
ValueError, ``MetadataError``, which names the key as ``md['key']``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Positive = Annotated[float, Field(gt=0)]


class MetadataError(ValueError):
    """Experiment metadata of the wrong type or out of bounds."""


class ExperimentMetadata(BaseModel):
    """The experiment keys a plan accepts in ``md`` (units in the names); ``md`` may give any of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sample: str
    composition: str
    cell: str
    c_rate: Positive
    energy_kev: Positive
    distance_m: Positive
    pixel_size_um: Positive
    hkl: tuple[int, int, int] = Field(strict=False)  # a list or tuple; its items strict integers
    particle_id: str


#: experiment keys a plan accepts in ``md``
EXPERIMENT_KEYS = tuple(ExperimentMetadata.model_fields)
_HINTS = {"hkl": "must be three integers (h, k, l)"}  # clearer than pydantic's words for a tuple


def experiment_md(*, sample: str, composition: str, cell: str, c_rate: float, energy_kev: float,
                  distance_m: float, pixel_size_um: float, hkl=(0, 0, 2), particle_id: str = "") -> dict:
    """The experiment metadata of a beamtime, validated (units in the names)."""
    return check_experiment_md({
        "sample": sample, "composition": composition, "cell": cell, "c_rate": c_rate, "energy_kev": energy_kev,
        "distance_m": distance_m, "pixel_size_um": pixel_size_um, "hkl": list(hkl), "particle_id": particle_id,
    })


def check_experiment_md(md: dict | None) -> dict:
    """``md`` with its experiment keys checked (``hkl`` as a list); MetadataError naming the key otherwise."""
    md = dict(md or {})
    try:
        ExperimentMetadata.model_validate({k: md[k] for k in EXPERIMENT_KEYS if k in md})
    except ValidationError as exc:
        problems = {}
        for e in exc.errors(include_url=False):
            key = e["loc"][0]
            if key in md and key not in problems:  # a key not given is not missing: each one is optional
                text = _HINTS.get(key) or e["msg"].replace("Input should be", "must be")
                problems[key] = f"md[{key!r}] {text}, got {md[key]!r}"
        if problems:
            raise MetadataError("; ".join(problems.values())) from None
    if "hkl" in md:
        md["hkl"] = list(md["hkl"])
    return md
