"""``bcdi-stream replay``: send a recording through a pipeline again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from streamer.cli.common import add_backend, add_subcommand, recorded_preparation
from streamer.cli.pipeline import LINE_HEADER, EmbeddedPipeline
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


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
    from streamer.messaging.transport import FrameSender
    from streamer.recording.recorder import list_scans, read_scan, run_of

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
        service = (service or ServiceConfig(realtime_policy="all", budget={"mode": "off"} if speed == float("inf")
                                            else {})).replace(out_dir=str(out_dir))
        pipeline = EmbeddedPipeline(service, out)
        to = pipeline.endpoints["frames"]
    print(f"bcdi-stream replay: {len(chosen)} scans of {recording} as run {run} to {to} "
          f"({'as fast as possible' if speed == float('inf') else f'x{speed:g}'})", file=out, flush=True)
    print(LINE_HEADER, file=out, flush=True)
    sender = FrameSender(to)
    t_wall, t_rec = time.monotonic(), None
    for info in chosen:
        s = read_scan(recording, info["scan"])
        if s.get("metadata_error"):
            print(f"  scan {info['scan']}: {s['metadata_error']}; its frames are replayed without it", file=out,
                  flush=True)
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


def _cmd_replay(args) -> int:
    # as fast as possible nothing keeps up with an acquisition: every scan is reconstructed fully
    overrides = {"backend": args.backend, "realtime_policy": args.policy,
                 "budget.mode": "off" if args.speed is None else None}
    if args.to is None:
        overrides["detector"] = recorded_preparation(args.recording, args.config)
    service = load_config(args.config, ServiceConfig, overrides)
    speed = float("inf") if args.speed is None else args.speed
    return run_replay(args.recording, to=args.to, out_dir=args.out, speed=speed,
                      scans=parse_scan_range(args.scans), service=service)


def register(sub) -> None:
    """Add the ``replay`` subcommand to the parser."""
    r = add_subcommand(
        sub, "replay", _cmd_replay, help="send a recording through the pipeline again",
        description="Replays an HDF5 recording of ours frame by frame, through an embedded "
                    "pipeline (writing OUT/events.jsonl) or to a running one (--to).",
        epilog="examples:\n  bcdi-stream replay demo-out/demo-20261125-150137.h5 --out replay-out\n"
               "  bcdi-stream replay run.h5 --speed 1 --scans 2:5 --to tcp://127.0.0.1:5555")
    r.add_argument("recording", type=Path, help="HDF5 recording written by bcdi-stream")
    r.add_argument("--to", default=None, help="frames endpoint of a running pipeline (default: embedded)")
    r.add_argument("--out", type=Path, default=Path("replay-out"), help="output folder of the embedded pipeline")
    r.add_argument("--speed", type=float, default=None,
                   help="1 = original timing, N = N times faster (default: as fast as possible, every scan "
                        "reconstructed in full, each from a cold start: no time budget)")
    r.add_argument("--scans", default=None, help="scan range: 3, 2:5 or 4:")
    r.add_argument("--policy", choices=["all", "latest"], default="all",
                   help="reconstruct every scan (default) or only the newest waiting one")
    add_backend(r)
    r.add_argument("--config", type=Path, default=None,
                   help="service config TOML (without a [detector] table: the preparation the recording was made with)")
