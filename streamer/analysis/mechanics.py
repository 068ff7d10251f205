"""Dislocation-pair mechanics for a transverse-isotropic layered crystal (estimates of SCIENCE.md).

All inputs and outputs are SI (Pa, m, J/m); the defaults are the reference material's
shear modulus G = 50 GPa, Burgers vector b = 0.5 nm and core radius r0 = 5 nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SHEAR_MODULUS_PA = 50e9
BURGERS_M = 0.5e-9
CORE_RADIUS_M = 5e-9


@dataclass(frozen=True)
class PairMechanics:
    separation_m: float
    critical_stress_pa: float  # shear stress that nucleates a pair this far apart: G b / (pi r)
    activation_energy_j_per_m: float  # G b^2 (2 ln(r / r0) - 1 + ln 2) / (2 pi)
    drift_stress_pa: float  # stress that pushes the pair apart: G b / (2 pi r)
    drift_stress_with_surface_pa: float | None  # minus the surface image force G b / (2 pi r_s)


def pair_mechanics(separation_m: float, *, surface_distance_m: float | None = None,
                   shear_modulus_pa: float = SHEAR_MODULUS_PA, burgers_m: float = BURGERS_M,
                   core_radius_m: float = CORE_RADIUS_M) -> PairMechanics:
    """Estimates for a pair of opposite dislocations ``separation_m`` apart.

    >>> round(pair_mechanics(100e-9).critical_stress_pa / 1e6)
    80
    """
    if not separation_m > core_radius_m:
        raise ValueError(f"separation_m must exceed the core radius {core_radius_m} m, got {separation_m}")
    if surface_distance_m is not None and not surface_distance_m > 0:
        raise ValueError(f"surface_distance_m must be > 0, got {surface_distance_m}")
    gb = shear_modulus_pa * burgers_m
    critical = gb / (math.pi * separation_m)
    energy = gb * burgers_m * (2 * math.log(separation_m / core_radius_m) - 1 + math.log(2)) / (2 * math.pi)
    drift = gb / (2 * math.pi * separation_m)
    with_surface = None if surface_distance_m is None else drift - gb / (2 * math.pi * surface_distance_m)
    return PairMechanics(separation_m, critical, energy, drift, with_surface)
