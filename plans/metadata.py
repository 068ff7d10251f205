"""What every start document says about the experiment: sample, cell, beam, detector, reflection, particle."""

from __future__ import annotations

import numbers

#: experiment keys a plan accepts in ``md``, with the type each must have
EXPERIMENT_KEYS = {
    "sample": str, "composition": str, "cell": str, "c_rate": float, "energy_kev": float, "distance_m": float,
    "pixel_size_um": float, "hkl": list, "particle_id": str,
}


def experiment_md(*, sample: str, composition: str, cell: str, c_rate: float, energy_kev: float,
                  distance_m: float, pixel_size_um: float, hkl=(0, 0, 2), particle_id: str = "") -> dict:
    """The experiment metadata of a beamtime, validated (units in the names)."""
    return check_experiment_md({
        "sample": sample, "composition": composition, "cell": cell, "c_rate": c_rate, "energy_kev": energy_kev,
        "distance_m": distance_m, "pixel_size_um": pixel_size_um, "hkl": list(hkl), "particle_id": particle_id,
    })


def check_experiment_md(md: dict | None) -> dict:
    """``md`` unchanged if its experiment keys have the right types and values; ValueError naming the key."""
    md = dict(md or {})
    for key, kind in EXPERIMENT_KEYS.items():
        if key not in md:
            continue
        value = md[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"md[{key!r}] must be a positive number, got {value!r}")
        elif kind is list:
            if (not isinstance(value, (list, tuple)) or len(value) != 3
                    or not all(isinstance(h, int) and not isinstance(h, bool) for h in value)):
                raise ValueError(f"md[{key!r}] must be three integers (h, k, l), got {value!r}")
            md[key] = list(value)
        elif not isinstance(value, str):
            raise ValueError(f"md[{key!r}] must be a string, got {value!r}")
    return md
