"""``bcdi-stream demo``: the simulated beamtime, plans and sim devices here, the pipeline in a second process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from streamer.cli.common import add_backend, add_subcommand
from streamer.cli.pipeline import LINE_HEADER, EmbeddedPipeline
from streamer.geometry import DetectorGeometry, OrthogonalGeometry
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


def realistic_detector(out_dir: Path, service: ServiceConfig) -> tuple[DetectorGeometry, object, ServiceConfig]:
    """The demo's real detector: a Timepix quad (four chips, the gap cross between them) read out on a
    256 x 256 region that crosses the gaps, 64 rocking steps, binned 2 x 2 before phasing. Its dead pixels
    are the beamline's bad-pixel map (written to ``out_dir``); hot pixels are found in each scan."""
    import numpy as np

    from sim.detector import CHIP_PX, TimepixSpec

    spec = TimepixSpec(chips=4)
    corner = CHIP_PX - 106  # the region's centre sits 22 raw pixels from the gap cross
    geometry = DetectorGeometry(energy_kev=9.0, distance_m=1.0, pixel_um=spec.pixel_um, detector_shape_px=spec.shape_px,
                                roi_px=(corner, corner + 256, corner, corner + 256),
                                center_px=(corner + 128, corner + 128), rocking_step_deg=0.02, num_rocking_steps=64)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    bad_map = Path(out_dir) / "timepix-quad-dead-pixels.npy"
    np.save(bad_map, spec.defect_maps()[1])
    gap = [[CHIP_PX, CHIP_PX + spec.gap_px]]
    detector = service.detector.replace(binning=2, gap_rows_px=gap, gap_cols_px=gap, bad_pixel_map_file=str(bad_map),
                                        count_ceiling=float(spec.count_ceiling),
                                        max_frame_bytes=spec.shape_px[0] * spec.shape_px[1] * 4)
    return geometry, spec, service.replace(detector=detector)


def run_demo(*, out_dir: Path, scenario: str = "reference", exposure_s: float = 0.2, realtime: bool = True,
             seed: int = 0, service: ServiceConfig | None = None,
             geometry: OrthogonalGeometry | DetectorGeometry | None = None, timepix=None, out=sys.stdout) -> int:
    """The simulated beamtime: RunEngine and sim devices here, the pipeline in a second process.

    ``geometry`` None: the toy orthogonal 48^3 grid with Poisson frames; a ``DetectorGeometry`` with a
    ``timepix`` (``realistic_detector``): real detector frames on the sheared grid."""
    from bluesky import RunEngine

    from plans import operando_series
    from sim.devices import make_beamline
    from sim.scenario import load_scenario
    from streamer.beamline.bluesky_bridge import FrameStreamer
    from streamer.messaging.transport import FrameSender

    t0 = time.monotonic()
    scen = load_scenario(scenario)
    geometry = geometry or OrthogonalGeometry()
    service = (service or ServiceConfig()).replace(out_dir=str(out_dir))
    if not realtime:  # nothing keeps up with an acquisition: every scan is reconstructed in full
        service = service.replace(budget=service.budget.replace(mode="off"))
    pipeline = EmbeddedPipeline(service, out)
    endpoints = pipeline.endpoints

    series = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    lo, hi = geometry.rocking_range_deg()
    frames = (f"{geometry.num_rocking_steps} frames x {exposure_s} s" if timepix is None else
              f"{geometry.num_rocking_steps} Timepix quad frames ({geometry.frame_shape[0]}x{geometry.frame_shape[1]} "
              f"region across the chip gaps, binned 2x2 for phasing) x {exposure_s} s")
    print(f"bcdi-stream demo: scenario '{scen.name}' ({scen.description}), {len(scen.stages)} scans of "
          f"{frames}, theta {lo:.3f}..{hi:.3f} deg; run {series}", file=out, flush=True)
    print(f"pipeline: frames {endpoints['frames']}, results {endpoints['results']}; widths in nm^-1", file=out)
    print(LINE_HEADER, file=out, flush=True)

    _, stage, detector, potentiostat = make_beamline(scen, geometry, seed=seed, fast=not realtime, timepix=timepix)
    sender = FrameSender(endpoints["frames"])
    RE = RunEngine({})
    RE.subscribe(FrameStreamer(sender, image_field=detector.image.name))
    step = geometry.rocking_step_deg
    RE(operando_series(detector, stage, potentiostat, geometry.theta_bragg_deg, step * geometry.num_rocking_steps,
                       geometry.num_rocking_steps, exposure_s, num_scans=len(scen.stages), series=series,
                       md={"geometry": geometry.to_dict(), "sample": "simulated P2-Na0.78Ni0.23Mn0.69O2 plate"}))
    sender.run_stop(series)
    sender.close()
    code = pipeline.wait()
    if code:
        print("the pipeline did not finish cleanly", file=out)
    print(f"events: {Path(out_dir) / 'events.jsonl'}   recording: {Path(out_dir) / (series + '.h5')}   "
          f"total {time.monotonic() - t0:.1f} s", file=out, flush=True)
    return code


def _cmd_demo(args) -> int:
    # without real exposure times every scan arrives at once: reconstruct them all, not the newest, and
    # fully (no time budget: nothing has to keep up with an acquisition)
    service = load_config(args.config, ServiceConfig, {"backend": args.backend,
                                                       "realtime_policy": "all" if args.fast else None,
                                                       "budget.mode": "off" if args.fast else None,
                                                       "phasing.population": args.population or None})
    geometry = timepix = None
    if args.geometry == "detector":
        geometry, timepix, service = realistic_detector(args.out, service)
    return run_demo(out_dir=args.out, scenario=args.scenario, exposure_s=args.exposure_s,
                    realtime=not args.fast, seed=args.seed, service=service, geometry=geometry, timepix=timepix)


def register(sub) -> None:
    """Add the ``demo`` subcommand to the parser."""
    d = add_subcommand(
        sub, "demo", _cmd_demo, help="run a simulated operando beamtime end to end",
        description="The simulated beamtime: Bluesky plans drive simulated devices, frames go "
                    "over ZeroMQ to the pipeline (a second process), which records, reconstructs "
                    "and flags each scan.",
        epilog="example:\n  bcdi-stream demo --out demo-out --scenario reference")
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (events.jsonl, HDF5 recording)")
    d.add_argument("--scenario", default="reference", help="scenario name in sim/scenarios or a TOML path")
    d.add_argument("--exposure-s", type=float, default=0.2, help="exposure per frame, seconds (default 0.2)")
    d.add_argument("--fast", action="store_true", help="do not wait for the simulated exposures (and reconstruct "
                   "every scan in full, each from a cold start: no time budget; minutes a scan on the detector grid)")
    d.add_argument("--geometry", choices=["detector", "orthogonal"], default="detector",
                   help="detector (default): Timepix quad frames on the sheared detector grid, analysed in the lab "
                        "frame; orthogonal: the toy 48^3 grid with plain Poisson frames")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulated detector noise")
    d.add_argument("--population", type=int, default=0, help="random starts per reconstruction (default: config)")
    add_backend(d)
    d.add_argument("--config", type=Path, default=None, help="service config TOML (see ops/configs)")
