"""``bcdi-stream``: the one composition root, the only module that may wire ``sim/`` to the rest."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import msgpack
import numpy as np
import zmq

from streamer.config import ConfigError, ServiceConfig, load_config
from streamer.geometry import OrthogonalGeometry

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
        elif f["kind"] == "vortex_lost" and f.get("left_through_surface"):
            name += "(through the surface)"
        elif f["kind"] == "peak_drift":
            name += f"(re-centre theta by {f.get('recentre_theta_by_deg', 0):+.3f} deg)"
        elif f["kind"] == "peak_broadening":
            name += f"({f.get('direction')} +{100 * f.get('relative_change', 0):.0f}%)"
        names.append(name)
    for pair in ev.get("dislocation_pairs") or []:
        names.append(f"[pair {pair['separation_nm']:.0f} nm apart: nucleation {pair['critical_stress_mpa']:.0f} MPa, "
                     f"{pair['surface_distance_nm']:.0f} nm from the surface]")
    recon = ev.get("reconstruction") or {}
    if recon.get("status") == "skipped":
        names.append(f"(not reconstructed: scan {recon.get('superseded_by')} was newer)")
    if ev.get("error"):
        names.append(f"ERROR: {ev['error']}")
    wpar = peak.get("width_parallel", float("nan"))
    wperp = peak.get("width_perpendicular", float("nan"))
    return (f"{ev['scan']:>4} {ev['voltage_v']:>7.3f}V {ev['capacity_mah_g']:>5.1f}mAh/g {wpar:>8.4f} {wperp:>8.4f} "
            f"{len(ev.get('vortices') or []):>8} {ev['latency_s']:>7.2f}s  {', '.join(names) or '-'}")


def _print_results(endpoint: str, done: threading.Event, out=sys.stdout) -> None:
    """Subscribe to the pipeline's results and print one line per scan until the run is done."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    last_seq = 0
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
            elif topic == b"run_done":
                rejected = msg.get("rejected") or {}
                if rejected:
                    print(f"  pipeline rejected: {rejected}", file=out, flush=True)
                return
    finally:
        sub.close()


class EmbeddedPipeline:
    """The pipeline service in a second process, with a printer of its results in this one."""

    def __init__(self, service: ServiceConfig, out=sys.stdout):
        from streamer.service import serve

        Path(service.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(service.out_dir) / "events.jsonl").unlink(missing_ok=True)
        service = replace(service, exit_on_run_stop=True)
        mp = multiprocessing.get_context("spawn")
        parent, child = mp.Pipe()
        self.proc = mp.Process(target=serve, args=(service, child), name="bcdi-pipeline", daemon=True)
        self.proc.start()
        if not parent.poll(60):
            self.proc.kill()
            raise RuntimeError("the pipeline process did not start within 60 s")
        self.endpoints = parent.recv()
        self._done = threading.Event()
        self._printer = threading.Thread(target=_print_results, args=(self.endpoints["results"], self._done, out),
                                         daemon=True)
        self._printer.start()
        time.sleep(0.3)  # let the subscription reach the publisher before the first result

    def wait(self, timeout_s: float = 600) -> int:
        """Wait for the pipeline to finish the run; its exit code (1 if it had to be killed)."""
        self.proc.join(timeout=timeout_s)
        self._done.set()
        self._printer.join(timeout=5)
        if self.proc.exitcode is None:
            self.proc.kill()
            return 1
        return 0 if self.proc.exitcode == 0 else 1


def run_demo(*, out_dir: Path, scenario: str = "reference", exposure_s: float = 0.2, realtime: bool = True,
             seed: int = 0, service: ServiceConfig | None = None, geometry: OrthogonalGeometry | None = None,
             out=sys.stdout) -> int:
    """The simulated beamtime: RunEngine and sim devices here, the pipeline in a second process."""
    from bluesky import RunEngine

    from plans import operando_series
    from sim.devices import make_beamline
    from sim.scenario import load_scenario
    from streamer.bluesky_bridge import FrameStreamer
    from streamer.transport import FrameSender

    t0 = time.monotonic()
    scen = load_scenario(scenario)
    geometry = geometry or OrthogonalGeometry()
    service = replace(service or ServiceConfig(), out_dir=str(out_dir))
    pipeline = EmbeddedPipeline(service, out)
    endpoints = pipeline.endpoints

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
    code = pipeline.wait()
    if code:
        print("the pipeline did not finish cleanly", file=out)
    print(f"events: {Path(out_dir) / 'events.jsonl'}   recording: {Path(out_dir) / (series + '.h5')}   "
          f"total {time.monotonic() - t0:.1f} s", file=out, flush=True)
    return code


def parse_scan_range(text: str | None) -> range | None:
    """``"3"`` -> scan 3 only, ``"2:5"`` -> 2, 3, 4, ``"4:"`` -> 4 onwards."""
    if not text:
        return None
    try:
        if ":" not in text:
            return range(int(text), int(text) + 1)
        lo, hi = text.split(":", 1)
        return range(int(lo or 0), int(hi) if hi else 10**9)
    except ValueError:
        raise ValueError(f"--scans must look like 3, 2:5 or 4:, got {text!r}") from None


def run_replay(recording: Path, *, to: str | None = None, out_dir: Path = Path("replay-out"),
               speed: float = float("inf"), scans: range | None = None, service: ServiceConfig | None = None,
               out=sys.stdout) -> int:
    """Send a recording through a pipeline (an embedded one unless ``to`` names an endpoint).

    ``speed`` 1 keeps the original frame timing, N is N times faster, inf as fast as possible.
    """
    from streamer.recording import list_scans, read_scan, run_of
    from streamer.transport import FrameSender

    recording = Path(recording)
    if not recording.is_file():
        raise ValueError(f"recording {recording} does not exist")
    if not speed > 0:
        raise ValueError(f"--speed must be > 0, got {speed}")
    run = f"{run_of(recording)}-replay"
    chosen = [s for s in list_scans(recording) if s["frames_recorded"] > 0 and (scans is None or s["scan"] in scans)]
    if not chosen:
        raise ValueError(f"no recorded scans of {recording} in the range asked for")
    pipeline = None
    if to is None:
        service = replace(service or ServiceConfig(realtime_policy="all"), out_dir=str(out_dir))
        pipeline = EmbeddedPipeline(service, out)
        to = pipeline.endpoints["frames"]
    print(f"bcdi-stream replay: {len(chosen)} scans of {recording} as run {run} to {to} "
          f"({'as fast as possible' if speed == float('inf') else f'x{speed:g}'})", file=out, flush=True)
    print(LINE_HEADER, file=out, flush=True)
    sender = FrameSender(to)
    t_wall, t_rec = time.monotonic(), None
    for info in chosen:
        s = read_scan(recording, info["scan"])
        sender.scan_start(run, info["scan"], info["num_frames"], s["metadata"])
        for frame, index, theta, stamp in zip(s["frames"], s["frame_index"], s["theta_deg"], s["timestamp"]):
            if speed != float("inf") and np.isfinite(stamp):
                t_rec = stamp if t_rec is None else t_rec
                delay = (stamp - t_rec) / speed - (time.monotonic() - t_wall)
                if delay > 0:
                    time.sleep(delay)
            sender.frame(run, info["scan"], int(index), float(theta), np.ascontiguousarray(frame),
                         num_frames=info["num_frames"])
        sender.scan_end(run, info["scan"], len(s["frame_index"]))
    sender.run_stop(run)
    sender.close()
    code = pipeline.wait() if pipeline is not None else 0
    if pipeline is not None:
        print(f"events: {Path(out_dir) / 'events.jsonl'}", file=out, flush=True)
    return code


def _cmd_demo(args) -> int:
    # without real exposure times every scan arrives at once: reconstruct them all, not the newest
    service = load_config(args.config, ServiceConfig, {"backend": args.backend,
                                                       "realtime_policy": "all" if args.fast else None})
    if args.population:
        service = replace(service, phasing=replace(service.phasing, population=args.population))
    return run_demo(out_dir=args.out, scenario=args.scenario, exposure_s=args.exposure_s,
                    realtime=not args.fast, seed=args.seed, service=service)


def _cmd_serve(args) -> int:
    from streamer.service import serve

    service = load_config(args.config, ServiceConfig, {"out_dir": args.out, "backend": args.backend,
                                                       "frames_port": args.frames_port,
                                                       "results_port": args.results_port})
    service = replace(service, exit_on_run_stop=False)
    serve(service, on_ready=lambda ep: print(f"frames: {ep['frames']}\nresults: {ep['results']}", flush=True))
    return 0


def _cmd_replay(args) -> int:
    service = load_config(args.config, ServiceConfig,
                          {"backend": args.backend, "realtime_policy": args.policy})
    speed = float("inf") if args.speed is None else args.speed
    return run_replay(args.recording, to=args.to, out_dir=args.out, speed=speed,
                      scans=parse_scan_range(args.scans), service=service)


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

    r = sub.add_parser("replay", help="send a recording through the pipeline again",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Replays an HDF5 recording of ours frame by frame, through an embedded "
                                   "pipeline (writing OUT/events.jsonl) or to a running one (--to).",
                       epilog="examples:\n  bcdi-stream replay demo-out/demo-20261125-150137.h5 --out replay-out\n"
                              "  bcdi-stream replay run.h5 --speed 1 --scans 2:5 --to tcp://127.0.0.1:5555")
    r.add_argument("recording", type=Path, help="HDF5 recording written by bcdi-stream")
    r.add_argument("--to", default=None, help="frames endpoint of a running pipeline (default: embedded)")
    r.add_argument("--out", type=Path, default=Path("replay-out"), help="output folder of the embedded pipeline")
    r.add_argument("--speed", type=float, default=None,
                   help="1 = original timing, N = N times faster (default: as fast as possible)")
    r.add_argument("--scans", default=None, help="scan range: 3, 2:5 or 4:")
    r.add_argument("--policy", choices=["all", "latest"], default="all",
                   help="reconstruct every scan (default) or only the newest waiting one")
    r.add_argument("--backend", choices=["numpy", "cupy", "auto"], default=None)
    r.add_argument("--config", type=Path, default=None, help="service config TOML")
    r.set_defaults(func=_cmd_replay)

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
