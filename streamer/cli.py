"""``bcdi-stream``: the one composition root, the only module that may wire ``sim/`` to the rest."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import threading
import time
from pathlib import Path

import msgpack
import zmq

from streamer.config import ConfigError, ServiceConfig, load_config
from streamer.geometry import OrthogonalGeometry

log = logging.getLogger("bcdi-stream")

LINE_HEADER = f"{'scan':>4} {'voltage':>8} {'capacity':>9} {'w_par':>8} {'w_perp':>8} {'vortices':>8} {'latency':>8}  flags"


def format_event_line(ev: dict) -> str:
    """One operator line per scan: scan, voltage, peak widths (nm^-1), vortex count, latency, flags."""
    peak = ev.get("peak") or {}
    flags = ev.get("flags") or []
    names = []
    for f in flags:
        name = f["kind"]
        if f["kind"] == "domain_boundary":
            name += f"({f.get('state')})"
        elif f["kind"] == "peak_broadening":
            name += f"({f.get('direction')} +{100 * f.get('relative_change', 0):.0f}%)"
        names.append(name)
    if ev.get("error"):
        names.append(f"ERROR: {ev['error']}")
    wpar = peak.get("width_parallel", float("nan"))
    wperp = peak.get("width_perpendicular", float("nan"))
    return (f"{ev['scan']:>4} {ev['voltage_v']:>7.3f}V {ev['capacity_mah_g']:>5.1f}mAh/g {wpar:>8.4f} {wperp:>8.4f} "
            f"{len(ev.get('vortices') or []):>8} {ev['latency_s']:>7.2f}s  {', '.join(names) or '-'}")


def _print_results(endpoint: str, expected: int, done: threading.Event, out=sys.stdout) -> None:
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    seen, last_seq = 0, 0
    try:
        while True:
            if not sub.poll(500):
                if done.is_set():
                    return
                continue
            topic, body = sub.recv_multipart()
            msg = msgpack.unpackb(body)
            if msg["seq"] != last_seq + 1:
                print(f"  (missed {msg['seq'] - last_seq - 1} result message(s))", file=out, flush=True)
            last_seq = msg["seq"]
            if topic == b"event":
                print(format_event_line(msg["event"]), file=out, flush=True)
                seen += 1
            elif topic == b"run_done":
                rejected = msg.get("rejected") or {}
                if rejected:
                    print(f"  pipeline rejected: {rejected}", file=out, flush=True)
                return
    finally:
        sub.close()


def run_demo(*, out_dir: Path, scenario: str = "reference", exposure_s: float = 0.2, realtime: bool = True,
             seed: int = 0, service: ServiceConfig | None = None, geometry: OrthogonalGeometry | None = None,
             out=sys.stdout) -> int:
    """The simulated beamtime: RunEngine and sim devices here, the pipeline in a second process."""
    from bluesky import RunEngine

    from plans import operando_series
    from sim.devices import make_beamline
    from sim.scenario import load_scenario
    from streamer.bluesky_bridge import FrameStreamer
    from streamer.service import serve
    from streamer.transport import FrameSender

    t0 = time.monotonic()
    scen = load_scenario(scenario)
    geometry = geometry or OrthogonalGeometry()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "events.jsonl").unlink(missing_ok=True)
    service = service or ServiceConfig()
    service = ServiceConfig(**{**service.__dict__, "out_dir": str(out_dir), "exit_on_run_stop": True})

    mp = multiprocessing.get_context("spawn")
    parent, child = mp.Pipe()
    proc = mp.Process(target=serve, args=(service, child), name="bcdi-pipeline", daemon=True)
    proc.start()
    if not parent.poll(60):
        proc.kill()
        raise RuntimeError("the pipeline process did not start within 60 s")
    endpoints = parent.recv()

    done = threading.Event()
    printer = threading.Thread(target=_print_results, args=(endpoints["results"], len(scen.stages), done, out),
                               daemon=True)
    printer.start()
    time.sleep(0.3)  # let the subscription reach the publisher before the first result

    series = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    lo, hi = geometry.rocking_range_deg()
    print(f"bcdi-stream demo: scenario '{scen.name}' ({scen.description}), {len(scen.stages)} scans of "
          f"{geometry.num_rocking_steps} frames x {exposure_s} s, theta {lo:.3f}..{hi:.3f} deg; run {series}",
          file=out, flush=True)
    print(f"pipeline: frames {endpoints['frames']}, results {endpoints['results']}; widths in nm^-1", file=out)
    print(LINE_HEADER, file=out, flush=True)

    _, stage, detector, potentiostat = make_beamline(scen, geometry, seed=seed, realtime=realtime)
    sender = FrameSender(endpoints["frames"])
    RE = RunEngine({})
    RE.subscribe(FrameStreamer(sender, image_field=detector.image.name))
    step = geometry.rocking_step_deg
    RE(operando_series(detector, stage, potentiostat, geometry.theta_bragg_deg, step * geometry.num_rocking_steps,
                       geometry.num_rocking_steps, exposure_s, num_scans=len(scen.stages), series=series,
                       md={"geometry": geometry.to_dict(), "sample": "simulated P2-Na0.78Ni0.23Mn0.69O2 plate"}))
    sender.run_stop(series)
    sender.close()
    proc.join(timeout=600)
    done.set()
    printer.join(timeout=5)
    if proc.exitcode is None:
        proc.kill()
        print("pipeline did not finish in time", file=out)
        return 1
    print(f"events: {out_dir / 'events.jsonl'}   recording: {out_dir / (series + '.h5')}   "
          f"total {time.monotonic() - t0:.1f} s", file=out, flush=True)
    return 0 if proc.exitcode == 0 else 1


def _cmd_demo(args) -> int:
    service = load_config(args.config, ServiceConfig, {"backend": args.backend})
    if args.population:
        from streamer.phasing import PhasingConfig

        service = ServiceConfig(**{**service.__dict__,
                                   "phasing": PhasingConfig(**{**service.phasing.__dict__, "population": args.population})})
    return run_demo(out_dir=args.out, scenario=args.scenario, exposure_s=args.exposure_s,
                    realtime=not args.fast, seed=args.seed, service=service)


def _cmd_serve(args) -> int:
    from streamer.service import Pipeline

    service = load_config(args.config, ServiceConfig, {"out_dir": args.out, "backend": args.backend,
                                                       "frames_port": args.frames_port,
                                                       "results_port": args.results_port})
    service = ServiceConfig(**{**service.__dict__, "exit_on_run_stop": False})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import signal

    pipeline = Pipeline(service)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: pipeline.stop())
    pipeline.run(on_ready=lambda ep: print(f"frames: {ep['frames']}\nresults: {ep['results']}", flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bcdi-stream", description="Real-time processing of operando BCDI rocking scans.")
    sub = p.add_subparsers(dest="command", required=True)

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

    s = sub.add_parser("serve", help="run the pipeline service until interrupted",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  bcdi-stream serve --config ops/configs/service.toml --frames-port 5555")
    s.add_argument("--config", type=Path, default=None, help="service config TOML")
    s.add_argument("--out", default=None, help="output folder (overrides the config)")
    s.add_argument("--frames-port", type=int, default=None)
    s.add_argument("--results-port", type=int, default=None)
    s.add_argument("--backend", choices=["numpy", "cupy", "auto"], default=None)
    s.set_defaults(func=_cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"bcdi-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
