"""``bcdi-stream demo``: the simulated beamtime, plans and sim devices here, the pipeline in a second process."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from streamer.cli.pipeline import LINE_HEADER, EmbeddedPipeline
from streamer.geometry import OrthogonalGeometry
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


def run_demo(*, out_dir: Path, scenario: str = "reference", exposure_s: float = 0.2, realtime: bool = True,
             seed: int = 0, service: ServiceConfig | None = None, geometry: OrthogonalGeometry | None = None,
             out=sys.stdout) -> int:
    """The simulated beamtime: RunEngine and sim devices here, the pipeline in a second process."""
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
    pipeline = EmbeddedPipeline(service, out)
    endpoints = pipeline.endpoints

    series = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    lo, hi = geometry.rocking_range_deg()
    print(f"bcdi-stream demo: scenario '{scen.name}' ({scen.description}), {len(scen.stages)} scans of "
          f"{geometry.num_rocking_steps} frames x {exposure_s} s, theta {lo:.3f}..{hi:.3f} deg; run {series}",
          file=out, flush=True)
    print(f"pipeline: frames {endpoints['frames']}, results {endpoints['results']}; widths in nm^-1", file=out)
    print(LINE_HEADER, file=out, flush=True)

    _, stage, detector, potentiostat = make_beamline(scen, geometry, seed=seed, fast=not realtime)
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
    return run_demo(out_dir=args.out, scenario=args.scenario, exposure_s=args.exposure_s,
                    realtime=not args.fast, seed=args.seed, service=service)


def register(sub) -> None:
    """Add the ``demo`` subcommand to the parser."""
    d = sub.add_parser("demo", help="run a simulated operando beamtime end to end",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="The simulated beamtime: Bluesky plans drive simulated devices, frames go "
                                   "over ZeroMQ to the pipeline (a second process), which records, reconstructs "
                                   "and flags each scan.",
                       epilog="example:\n  bcdi-stream demo --out demo-out --scenario reference")
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (events.jsonl, HDF5 recording)")
    d.add_argument("--scenario", default="reference", help="scenario name in sim/scenarios or a TOML path")
    d.add_argument("--exposure-s", type=float, default=0.2, help="exposure per frame, seconds (default 0.2)")
    d.add_argument("--fast", action="store_true", help="do not wait for the simulated exposures")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulated detector noise")
    d.add_argument("--population", type=int, default=0, help="random starts per reconstruction (default: config)")
    d.add_argument("--backend", choices=["numpy", "cupy", "auto"], default=None)
    d.add_argument("--config", type=Path, default=None, help="service config TOML (see ops/configs)")
    d.set_defaults(func=_cmd_demo)
