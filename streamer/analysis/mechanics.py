"""Mechanics of a pair of screw dislocations of opposite handedness (SCIENCE.md; the paper's Supplementary Note 2).

Assumptions, stated wherever the figures are shown: both lines are screws with Burgers vector b
along the line (b = 0.5 nm, one layer of the reference material), an isotropic shear modulus G =
50 GPa for the shear in the layers' normal plane and a core radius r0 = 5 nm. All inputs and outputs
are SI (Pa, m, J/m). docs/mechanics.md derives every formula.

- Energy of a pair r apart under a shear stress s (the paper's eq. 5):
  E(r) = G b^2 (2 ln(r / r0) + ln 2) / (2 pi) - s b r.
- dE/dr = 0 gives the critical separation r_c = G b / (pi s), so the stress that nucleates a pair
  r apart is s = G b / (pi r) (80 MPa at 100 nm, as the paper).
- The activation energy is E(r_c) = G b^2 (2 ln(r_c / r0) + ln 2 - 2) / (2 pi): 9.3e-9 J/m at 100 nm.
  The paper prints "- 1" in place of "- 2" (its eq. 6) and 1.1e-8 J/m; that does not follow from
  its eq. 5 (s b r_c = G b^2 / pi, i.e. 2 in units of G b^2 / (2 pi)), so the derived value is used.
- The pair attracts itself with G b^2 / (2 pi r) per length: the shear stress that keeps it drifting
  apart is G b / (2 pi r).
- A screw line d from a free surface is pulled towards it by its image (an opposite line at 2 d):
  G b^2 / (4 pi d) per length, the stress G b / (4 pi d). It helps the pair apart, so the stress
  still needed is G b / (2 pi r) - G b / (4 pi d); where the image force is the larger, no stress is
  needed ("the image force dominates") and none is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SHEAR_MODULUS_PA = 50e9
BURGERS_M = 0.5e-9
CORE_RADIUS_M = 5e-9
ASSUMPTION = ("pair of screw lines of opposite handedness, Burgers vector b = {b_nm:g} nm along the line, "
              "isotropic shear modulus G = {g_gpa:g} GPa, core radius r0 = {r0_nm:g} nm")


@dataclass(frozen=True)
class PairMechanics:
    separation_m: float
    critical_stress_pa: float  # shear stress that nucleates a pair this far apart: G b / (pi r)
    activation_energy_j_per_m: float  # E(r_c) = G b^2 (2 ln(r / r0) + ln 2 - 2) / (2 pi)
    drift_stress_pa: float  # stress that holds the pair against its own attraction: G b / (2 pi r)
    image_stress_pa: float | None  # the surface's image force per b: G b / (4 pi d)
    drift_stress_with_surface_pa: float | None  # drift - image; None without a surface or where it is <= 0
    image_force_dominates: bool  # the surface's pull exceeds the pair's attraction: no stress needed
    assumption: str


def pair_energy_j_per_m(separation_m: float, stress_pa: float, *, shear_modulus_pa: float = SHEAR_MODULUS_PA,
                        burgers_m: float = BURGERS_M, core_radius_m: float = CORE_RADIUS_M) -> float:
    """E(r) of a screw pair ``separation_m`` apart under ``stress_pa`` (the paper's eq. 5), J/m."""
    g_b2 = shear_modulus_pa * burgers_m**2
    return g_b2 * (2 * math.log(separation_m / core_radius_m) + math.log(2)) / (2 * math.pi) \
        - stress_pa * burgers_m * separation_m


def pair_mechanics(separation_m: float, *, surface_distance_m: float | None = None,
                   shear_modulus_pa: float = SHEAR_MODULUS_PA, burgers_m: float = BURGERS_M,
                   core_radius_m: float = CORE_RADIUS_M) -> PairMechanics:
    """Estimates for a pair of opposite screw lines ``separation_m`` apart, ``surface_distance_m`` from a surface.

    >>> round(pair_mechanics(100e-9).critical_stress_pa / 1e6)
    80
    """
    if not separation_m > core_radius_m:
        raise ValueError(f"separation_m must exceed the core radius {core_radius_m} m, got {separation_m}")
    if surface_distance_m is not None and not surface_distance_m > 0:
        raise ValueError(f"surface_distance_m must be > 0, got {surface_distance_m}")
    gb = shear_modulus_pa * burgers_m
    critical = gb / (math.pi * separation_m)
    energy = pair_energy_j_per_m(separation_m, critical, shear_modulus_pa=shear_modulus_pa, burgers_m=burgers_m,
                                 core_radius_m=core_radius_m)
    drift = gb / (2 * math.pi * separation_m)
    image = None if surface_distance_m is None else gb / (4 * math.pi * surface_distance_m)
    net = None if image is None else drift - image
    dominates = net is not None and net <= 0
    assumption = ASSUMPTION.format(b_nm=burgers_m * 1e9, g_gpa=shear_modulus_pa / 1e9, r0_nm=core_radius_m * 1e9)
    return PairMechanics(separation_m, critical, energy, drift, image, None if dominates else net, dominates, assumption)
