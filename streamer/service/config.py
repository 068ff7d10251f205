"""The service's configuration: where it listens and writes, and the phasing, analysis and flag settings it uses.

Every key is documented in ops/configs/service.toml; the loader is ``streamer.settings.load_config``.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.backend import BACKENDS
from streamer.messaging.decision import DEFAULT_ENDPOINT as DEFAULT_DECISION_ENDPOINT
from streamer.phasing import PhasingConfig
from streamer.phasing.fft import Planner, configure_fft
from streamer.settings import Settings

Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (reported at start-up)
Backend = Literal[BACKENDS]

#: flat keys of earlier versions -> where they live now
MOVED = {"web_enabled": "[web] enabled", "web_host": "[web] host", "web_port": "[web] port",
         "cluster_backend": "[cluster] backend", "cluster_connect_timeout_s": "[cluster] connect_timeout_s",
         "cluster_scan_timeout_s": "[cluster] scan_timeout_s"}


class WebConfig(Settings):
    """The operator's live page (docs/web.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # localhost only unless asked otherwise
    port: Port = 8765
    decision_token_file: str = ""  # "": $BCDI_DECISION_TOKEN_FILE or ~/.config/bcdi-stream/decision.token (mode 0600)


class ClusterConfig(Settings):
    """Where scans are reconstructed: in-process, or on a Dask scheduler (docs/cluster.md)."""

    scheduler: str = ""  # "": in-process; "tcp://host:8786": on that Dask scheduler
    backend: Backend = "auto"  # the array backend of the cluster's workers ("auto": their GPU if any)
    connect_timeout_s: float = Field(10.0, gt=0)
    scan_timeout_s: float = Field(600.0, gt=0)  # a scan not back by then is reconstructed in-process

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not value.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            raise ValueError(f"must be empty or a Dask scheduler address (tcp://host:8786), got {value!r}")
        return value


def _env(name: str, default: str) -> str:
    """The documented environment fallback of a default (read when a config is built, never at import)."""
    return os.environ.get(name, default)


class FftConfig(Settings):
    """FFTW planning of this process: the planner's effort and the folder of the wisdom it keeps.

    Defaults fall back on $BCDI_STREAM_FFTW_PLANNER and $BCDI_STREAM_CACHE (how the tests ask for
    the deterministic "estimate" planner in every process they start).
    """

    planner: Planner = Field(default_factory=lambda: _env("BCDI_STREAM_FFTW_PLANNER", "measure").lower(),
                             validate_default=True)
    cache_dir: str = Field(default_factory=lambda: _env("BCDI_STREAM_CACHE", ""))  # "": ~/.cache/bcdi-stream
    # a shape with no remembered plan: "scipy" runs it with scipy.fft at once while the service plans it in the
    # background (when its scan starts); "plan": plan it first (2.3 s for a 256x256x200 member on 2 cores).
    # `reconstruct` plans first unless a config file sets this (docs/phasing.md)
    unplanned: Literal["plan", "scipy"] = "scipy"

    def apply(self) -> None:
        """Make these the settings of this process (``configure_fft``)."""
        configure_fft(planner=self.planner, cache_dir=self.cache_dir, unplanned=self.unplanned)


class RecordingConfig(Settings):
    """How the recordings are kept: durability and the budget of open files (docs/recording.md)."""

    flush_every_s: float = Field(1.0, gt=0)  # frames reach readers (and survive a kill) at least this often
    idle_close_s: float = Field(60.0, gt=0)  # a run's file is closed after this long without a write
    max_open_runs: int = Field(16, ge=1)  # more runs than this: the least recently written is closed
    min_free_mb: float = Field(256.0, ge=0)  # frames are not recorded while the disk has less free (an alarm)
    keep_results: bool = True  # every live reconstruction also written as a result file (results/<run>/)
    results_budget_gb: float = Field(50.0, gt=0)  # result files beyond this are not written (an alarm)
    # the result files also hold the averaged members and the noise replicas (K + R times the object's disk): an
    # offline analysis of the run then gives the live error bars (the members' jackknife, the replicas' noise) and
    # the live member checks of vortex lines
    keep_members: bool = False


PixelRange = Annotated[tuple[int, int], Field(strict=False)]  # [start, stop) raw pixels; a TOML list
Pixel = Annotated[tuple[int, int], Field(strict=False)]  # [row, col] raw pixel


class BudgetConfig(Settings):
    """How long a scan's reconstruction may take, and so what is reconstructed (streamer/phasing/budget.py).

    ``acquisition``: the scan's own acquisition time (frames x ``exposure_s`` from its metadata; else
    ``budget_s``), so its result lands before the next scan of the same length ends; ``fixed``:
    ``budget_s``; ``off``: the configured phasing as it is, however long it takes.
    """

    mode: Literal["acquisition", "fixed", "off"] = "acquisition"
    budget_s: float = Field(60.0, gt=0)
    share: float = Field(0.8, gt=0, le=1)  # of the budget for phasing and analysis; the rest: ingest, writing
    min_population: int = Field(2, ge=1)  # members kept however short the budget (they must agree on lines)
    fixed_s: float = Field(2.0, ge=0)  # what a scan costs besides phasing, until measured on this run
    max_memory_gb: float = Field(0.0, ge=0)  # phasing memory the choice may use (estimated); 0: no limit


class DetectorConfig(Settings):
    """How detector-geometry scans are prepared before phasing (docs/lab-frame.md): the detector's own
    defects, the count ceiling, dark and flat field, binning, and the lab grid the object is resampled onto.

    Pixel positions are raw detector pixels (the geometry's ``detector_shape_px``); the files are .npy
    arrays of that shape (or of the frames' shape, when frames arrive cropped to the ROI).
    """

    binning: int = Field(2, ge=1)  # frames as they arrive are binned this many x this many before phasing
    gap_rows_px: list[PixelRange] = Field(default_factory=list)  # rows that never count (chip gaps), e.g. [[256, 260]]
    gap_cols_px: list[PixelRange] = Field(default_factory=list)  # columns that never count
    bad_pixels_px: list[Pixel] = Field(default_factory=list)  # known dead or hot pixels [row, col]
    bad_pixel_map_file: str = ""  # .npy, True (or non-zero) = bad; "": none
    dark_file: str = ""  # .npy, counts per frame subtracted before anything else; "": none
    flat_file: str = ""  # .npy, relative efficiency per pixel (frames are divided by it); "": none
    count_ceiling: float = Field(11810.0, ge=0)  # pixels at or above are saturated and masked (Timepix); 0: none
    hot_pixel_factor: float = Field(10.0, ge=0)  # hot: median over frames > factor x its neighbours'; 0: off
    lab_voxel_nm: float = Field(0.0, ge=0)  # cubic voxel of the lab grid; 0: the finest resolution of the scan
    lab_shape_zyx: Annotated[tuple[int, int, int], Field(strict=False)] | None = None  # None: sized to the particle
    # a frame whose header declares more bytes than this is refused before it is decoded (a 516 x 516
    # uint32 quad is 1.07 MB); the default allows any frame up to 128 MiB
    max_frame_bytes: int = Field(2**27, ge=1024, le=2**31)

    @field_validator("gap_rows_px", "gap_cols_px")
    @classmethod
    def _ranges(cls, value: list) -> list:
        for start, stop in value:
            if not 0 <= start < stop:
                raise ValueError(f"each range must be [start, stop) with 0 <= start < stop, got [{start}, {stop}]")
        return value

    @field_validator("bad_pixels_px")
    @classmethod
    def _pixels(cls, value: list) -> list:
        for row, col in value:
            if row < 0 or col < 0:
                raise ValueError(f"pixels must be [row, col] >= 0, got [{row}, {col}]")
        return value

    @field_validator("lab_shape_zyx")
    @classmethod
    def _shape(cls, value):
        if value is not None and min(value) < 8:
            raise ValueError(f"every size must be >= 8, got {list(value)}")
        return value


class ServiceConfig(Settings):
    """The pipeline service: where it listens, where it writes, how it computes."""

    bind_host: str = "127.0.0.1"
    frames_port: Port = 0
    results_port: Port = 0
    out_dir: str = "bcdi-out"
    backend: Backend = "numpy"
    seed: int = 0
    receive_timeout_s: float = Field(0.2, gt=0)  # poll period of the receive loop
    scan_timeout_s: float = Field(30.0, gt=0)  # an open scan with no frame for this long is closed as timed out
    max_frames_per_scan: int = Field(2000, ge=1)
    max_open_scans: int = Field(64, ge=1)  # more open scans: the least recently active is closed as incomplete
    max_held_frame_bytes: int = Field(4 << 30, ge=1 << 20)  # frames held by open scans; beyond, the stalest closes
    realtime_policy: Literal["latest", "all"] = "latest"  # "latest": the newest waiting scan; "all": every scan
    exit_on_run_stop: bool = True
    decision_endpoint: str = DEFAULT_DECISION_ENDPOINT  # the plan's decision listener, for the page's buttons
    max_documents: int = Field(1000, ge=0)  # bluesky documents kept (the newest); older ones are counted out
    drain_timeout_s: float = Field(2.0, ge=0)  # at SIGTERM, messages already received are handled this long
    log_file: str = ""  # "": the log goes to stderr only (journald rotates it); a path: also there, rotating
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    fft: FftConfig = Field(default_factory=FftConfig)
    phasing: PhasingConfig = Field(default_factory=PhasingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    flags: FlagConfig = Field(default_factory=FlagConfig)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data):
        if isinstance(data, dict):
            moved = [f"{key} moved to {MOVED[key]}" for key in MOVED if key in data]
            if isinstance(data.get("cluster"), str):
                moved.append("cluster (the scheduler address) moved to [cluster] scheduler")
            if moved:
                raise ValueError("; ".join(moved))
        return data

    @field_validator("decision_endpoint")
    @classmethod
    def _zmq_endpoint(cls, value: str) -> str:
        if not value.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"must be a ZeroMQ endpoint (tcp://host:port), got {value!r}")
        return value

    def endpoint(self, port: int) -> str:
        return f"tcp://{self.bind_host}:{port if port else '*'}"
