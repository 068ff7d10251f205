"""A photon-counting Timepix: Poisson counts, dark counts, hot and dead pixels, chip gaps, a ceiling.

A single chip is 256 x 256 pixels of 55 um. A quad is 2 x 2 chips read as one 516 x 516 frame:
512 x 512 active pixels and a ``gap_px`` wide cross between the chips that never counts (the
geometry treats the frame as a uniform pixel grid, so the gap keeps its physical width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHIP_PX = 256
FAINT_COUNTS = 0.5  # pixels expecting fewer counts than this are drawn together (see Timepix.read)
TIMEPIX_CEILING = 11810  # Timepix counter: 14-bit pseudo-random, saturates at 11810 counts


@dataclass(frozen=True)
class TimepixSpec:
    """What the detector is: ``chips`` 1 or 4 (quad), its noise and its defect map."""

    chips: int = 1
    pixel_um: float = 55.0
    gap_px: int = 4
    dark_counts_per_s: float = 0.01  # per pixel
    hot_pixel_fraction: float = 2e-4
    hot_counts_per_s: float = 200.0
    dead_pixel_fraction: float = 5e-4
    count_ceiling: int = TIMEPIX_CEILING
    defect_seed: int = 7  # the defect map belongs to the detector, not to the run

    def __post_init__(self) -> None:
        if self.chips not in (1, 4):
            raise ValueError(f"chips must be 1 (256x256) or 4 (quad, 512x512 + gaps), got {self.chips!r}")
        for name in ("dark_counts_per_s", "hot_counts_per_s", "hot_pixel_fraction", "dead_pixel_fraction"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.hot_pixel_fraction + self.dead_pixel_fraction > 0.5:
            raise ValueError("hot_pixel_fraction + dead_pixel_fraction must stay below 0.5")
        if not (1 <= int(self.count_ceiling) <= np.iinfo(np.uint32).max):
            raise ValueError(f"count_ceiling must be a positive 32-bit count, got {self.count_ceiling!r}")
        if self.gap_px < 0:
            raise ValueError(f"gap_px must be >= 0, got {self.gap_px}")

    @property
    def shape_px(self) -> tuple[int, int]:
        n = CHIP_PX if self.chips == 1 else 2 * CHIP_PX + self.gap_px
        return (n, n)

    def gap_mask(self) -> np.ndarray:
        """True on pixels between chips (never count)."""
        gap = np.zeros(self.shape_px, bool)
        if self.chips == 4:
            gap[CHIP_PX:CHIP_PX + self.gap_px, :] = True
            gap[:, CHIP_PX:CHIP_PX + self.gap_px] = True
        return gap

    def defect_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(hot, dead) boolean maps, fixed by ``defect_seed``; gap pixels are neither."""
        rng = np.random.default_rng(self.defect_seed)
        u = rng.random(self.shape_px)
        gap = self.gap_mask()
        dead = (u < self.dead_pixel_fraction) & ~gap
        hot = (u >= self.dead_pixel_fraction) & (u < self.dead_pixel_fraction + self.hot_pixel_fraction) & ~gap
        return hot, dead

    def live_mask(self) -> np.ndarray:
        """True on pixels that report photons (not dead, not in a gap)."""
        _, dead = self.defect_maps()
        return ~(dead | self.gap_mask())


class Timepix:
    """Turns mean signal counts into the integer frames the detector sends (seeded, reproducible)."""

    def __init__(self, spec: TimepixSpec = TimepixSpec(), *, seed: int = 0):
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        hot, dead = spec.defect_maps()
        off = dead | spec.gap_mask()
        self._background_per_s = np.where(hot, spec.hot_counts_per_s, spec.dark_counts_per_s).astype(np.float32)
        self._background_per_s[off] = 0.0
        self._off = np.flatnonzero(off)
        self._ceiling = np.uint32(spec.count_ceiling)

    def read(self, signal_counts: np.ndarray, exposure_s: float) -> np.ndarray:
        """One frame (uint32): Poisson(signal + background * exposure), dead and gap pixels 0, clipped."""
        if signal_counts.shape != self.spec.shape_px:
            raise ValueError(f"signal frame {signal_counts.shape} does not match the detector's {self.spec.shape_px}")
        if not exposure_s > 0:
            raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
        lam = (signal_counts + self._background_per_s * np.float32(exposure_s)).ravel()
        lam[self._off] = 0.0
        frame = np.zeros(lam.size, np.uint32)
        # Bright pixels are drawn one by one; the faint rest (most of the frame) as one Poisson total
        # shared out in proportion to each pixel's mean: the same distribution, several times faster.
        bright = np.flatnonzero(lam > FAINT_COUNTS)
        frame[bright] = self.rng.poisson(lam[bright])
        faint = lam.astype(np.float64)
        faint[bright] = 0.0
        cumulative = np.cumsum(faint)
        hits = self.rng.poisson(cumulative[-1])
        if hits:
            where = np.sort(self.rng.random(hits)) * cumulative[-1]  # sorted: a cache-friendly search
            np.add.at(frame, np.searchsorted(cumulative, where, side="right"), 1)
        frame = frame.reshape(self.spec.shape_px)
        np.minimum(frame, self._ceiling, out=frame)
        return frame
