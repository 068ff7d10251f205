"""A detector-geometry scan's frames made ready for phasing: the [detector] table's pixel maps, the
ceiling, dark, flat, gaps, bad and hot pixels, binning; and its peak metrics in the lab frame.

Used by the service (streamer/service/processing.py) and ``bcdi-stream reconstruct``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.analysis.peak import peak_metrics
from streamer.analysis.scan import amplitude_centre
from streamer.analysis.preprocess import (
    PreprocessConfig,
    bin_frames,
    fill_masked,
    fill_peak_top,
    frames_on_roi,
    map_on_roi,
    prepare_frames,
)
from streamer.geometry import DetectorGeometry
from streamer.service.config import DetectorConfig
from streamer.settings import ConfigError


class DetectorMaps:
    """The [detector] table's pixel maps, read once: gaps, listed and mapped bad pixels, dark, flat field.

    A file that is missing or not an array is a ConfigError naming its key; a map that does not fit
    a scan's detector is that scan's error."""

    def __init__(self, config: DetectorConfig):
        self.config = config
        self.bad_map = self._load("bad_pixel_map_file")
        self.dark = self._load("dark_file")
        self.flat = self._load("flat_file")
        for key in ("bad_pixel_map_file", "dark_file", "flat_file"):
            arr = getattr(self, {"bad_pixel_map_file": "bad_map", "dark_file": "dark", "flat_file": "flat"}[key])
            if arr is not None and arr.ndim != 2:
                raise ConfigError(f"detector.{key}: {getattr(config, key)} must hold a 2D (row, col) array, "
                                  f"got shape {arr.shape}")

    def _load(self, key: str) -> np.ndarray | None:
        path = getattr(self.config, key)
        if not path:
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"detector.{key}: cannot read {path!r} as a .npy array ({exc})") from None

    def bad_pixels(self, geometry: DetectorGeometry, level: int) -> np.ndarray | None:
        """True on pixels that never count, on the ROI at ``level`` raw pixels per pixel (None: none known)."""
        cfg = self.config
        if not (cfg.gap_rows_px or cfg.gap_cols_px or cfg.bad_pixels_px or self.bad_map is not None):
            return None
        bad = np.zeros(geometry.detector_shape_px, bool)
        for a, b in cfg.gap_rows_px:
            bad[a:b, :] = True
        for a, b in cfg.gap_cols_px:
            bad[:, a:b] = True
        for row, col in cfg.bad_pixels_px:
            if row >= bad.shape[0] or col >= bad.shape[1]:
                raise ValueError(f"detector.bad_pixels_px [{row}, {col}] is outside the detector "
                                 f"{list(geometry.detector_shape_px)} (detector_shape_px)")
            bad[row, col] = True
        if self.bad_map is not None:
            if self.bad_map.shape != bad.shape:
                raise ValueError(f"detector.bad_pixel_map_file has shape {self.bad_map.shape}; the detector is "
                                 f"{tuple(bad.shape)} (detector_shape_px)")
            bad |= self.bad_map.astype(bool)
        return map_on_roi(bad, geometry, level, what="the bad-pixel map", reduce="any")

    def dark_and_flat(self, geometry: DetectorGeometry, level: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        dark = None if self.dark is None else map_on_roi(self.dark.astype(np.float32), geometry, level,
                                                        what="detector.dark_file", reduce="sum")
        flat = None if self.flat is None else map_on_roi(self.flat.astype(np.float32), geometry, level,
                                                        what="detector.flat_file", reduce="mean")
        return dark, flat


@dataclass
class DetectorScan:
    """A detector-geometry scan ready for phasing (stack order: step, row, col)."""

    stack: np.ndarray  # binned counts, masked voxels 0
    mask: np.ndarray  # True where unmeasured
    geometry: DetectorGeometry  # of the binned frames
    info: dict  # what preprocessing did (JSON-able, for the event and the result file)
    saturated: np.ndarray  # True on bins with a pixel at the count ceiling (the peak's top)


def prepare_detector_scan(frames: np.ndarray, geometry: DetectorGeometry, config: DetectorConfig, maps: DetectorMaps,
                          *, unmeasured_frames=(), extra_bad: np.ndarray | None = None, monitor=None) -> DetectorScan:
    """A detector-geometry scan's frames -> binned counts, mask and geometry, stack order (``DetectorScan``).

    Frames are cut to the ROI; the ceiling (raw frames only), dark, flat, gaps, bad and hot pixels and
    binning are applied (``prepare_frames``); nothing is cropped to centre the peak. ``extra_bad``: a
    (row, col) mask of the frames as given, True = unmeasured; ``monitor``: one I0 reading per frame (the
    scan metadata's ``monitor``), each frame scaled to the mean. ValueError naming the field when the
    frames do not fit the geometry or the maps the detector.
    """
    stack, level = frames_on_roi(frames, geometry)
    target, left = geometry.rebinned(config.binning)
    if min(target.frame_shape) < 8:
        r0, r1, c0, c1 = geometry.roi_px
        raise ValueError(f"binning {config.binning} (detector.binning) leaves frames of {target.frame_shape[0]}x"
                         f"{target.frame_shape[1]} pixels of the {r1 - r0}x{c1 - c0} roi_px; phasing needs >= 8")
    factor = target.binning // level
    bad = maps.bad_pixels(geometry, level)
    if extra_bad is not None:
        if np.shape(extra_bad) != np.shape(frames)[1:]:
            raise ValueError(f"mask has shape {np.shape(extra_bad)}, the frames {np.shape(frames)[1:]}")
        extra = frames_on_roi(np.broadcast_to(np.asarray(extra_bad, bool), np.shape(frames)), geometry)[0][0]
        bad = extra if bad is None else (bad | extra)
    dark, flat = maps.dark_and_flat(geometry, level)
    ceiling = config.count_ceiling if level == 1 else 0.0  # a binned pixel's ceiling is not known
    pre = PreprocessConfig(bin_rows=factor, bin_cols=factor, centre=False, fft_friendly=False,
                           saturation_counts=ceiling, hot_pixel_factor=config.hot_pixel_factor)
    binned, mask, info = prepare_frames(stack, config=pre, dark=dark, flat=flat, bad_pixels=bad,
                                        unmeasured_frames=unmeasured_frames, monitor=monitor)
    if binned.shape != target.stack_shape:  # bin_frames and rebinned drop the same edge pixels
        raise ValueError(f"binned frames {binned.shape} do not match the binned geometry {target.stack_shape}")
    info.update({"frames_binning_px": level, "binning_px": target.binning, "roi_px": list(target.roi_px)})
    if any(left):
        info["edge_px_not_binned"] = list(left)
    saturated = np.zeros(binned.shape, bool)
    if ceiling > 0 and info.get("saturated_pixels"):
        saturated = bin_frames((np.asarray(stack) >= ceiling).astype(np.float32), factor, factor) > 0
    return DetectorScan(binned, mask, target, info, saturated)


MAX_PEAK_GRID_VOXELS = 8_000_000  # the lab-q grid of the peak metrics (32 MB of float32)


def peak_grid_step(geometry: DetectorGeometry) -> float:
    """The lab-q spacing of the peak metrics: the geometry's finest q step, coarsened where the grid holding
    every measured q would pass ``MAX_PEAK_GRID_VOXELS`` (a fine rocking step: 200 steps of 0.005 deg gave
    6e8 voxels at that step)."""
    dq = float(min(np.linalg.norm(geometry.q_basis_inv_nm, axis=0)))
    voxels = float(np.prod(geometry.q_grid_shape(dq)))
    while voxels > MAX_PEAK_GRID_VOXELS:
        dq *= (voxels / MAX_PEAK_GRID_VOXELS) ** (1 / 3) * 1.01
        voxels = float(np.prod(geometry.q_grid_shape(dq)))
    return dq


def detector_peak(scan: DetectorScan) -> tuple[dict, np.ndarray, float]:
    """Peak metrics of a detector scan in the lab frame: (peak, lab-q volume, |q| at the peak's centre).

    Widths are FWHM (nm^-1) along lab q_z, q_y, q_x of the intensity resampled onto an orthogonal q grid
    (finest q step of the geometry); masked pixels are filled first, from their neighbours, and a
    saturated top from a Gaussian fitted around it. ``center_of_mass_px`` is (row, col, step) on the
    binned frames, what re-centring the detector needs.
    """
    stack, mask, geometry = scan.stack, scan.mask, scan.geometry
    dq = peak_grid_step(geometry)
    filled = fill_peak_top(fill_masked(stack, mask), mask, scan.saturated)
    volume = np.clip(geometry.intensity_to_orthogonal(filled, dq_inv_nm=dq, shape_zyx=geometry.q_grid_shape(dq)),
                     0, None).astype(np.float32)
    peak = peak_metrics(volume, pixel_inv_nm=(dq, dq, dq))
    measured = np.where(mask, 0, stack)
    total = float(measured.sum())
    if not total > 0:
        raise ValueError("no counts left after masking")
    com_stack = amplitude_centre(measured)
    q = float(np.linalg.norm(geometry.q_lab(*com_stack)))
    peak.update({"center_of_mass_px": [com_stack[1], com_stack[2], com_stack[0]], "integrated_counts": total,
                 "max_count": float(measured.max()), "frame": "lab", "dq_inv_nm": dq, "q_inv_nm": q})
    return peak, volume, q
