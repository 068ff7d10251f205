"""``bcdi-stream serve``: the pipeline service, until interrupted."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from streamer.config import ServiceConfig, load_config


def _cmd_serve(args) -> int:
    from streamer.service import serve

    service = load_config(args.config, ServiceConfig, {"out_dir": args.out, "backend": args.backend,
                                                       "frames_port": args.frames_port,
                                                       "results_port": args.results_port})
    service = replace(service, exit_on_run_stop=False)
    serve(service, on_ready=lambda ep: print(f"frames: {ep['frames']}\nresults: {ep['results']}", flush=True))
    return 0


def register(sub) -> None:
    """Add the ``serve`` subcommand to the parser."""
    s = sub.add_parser("serve", help="run the pipeline service until interrupted",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  bcdi-stream serve --config ops/configs/service.toml --frames-port 5555")
    s.add_argument("--config", type=Path, default=None, help="service config TOML")
    s.add_argument("--out", default=None, help="output folder (overrides the config)")
    s.add_argument("--frames-port", type=int, default=None)
    s.add_argument("--results-port", type=int, default=None)
    s.add_argument("--backend", choices=["numpy", "cupy", "auto"], default=None)
    s.set_defaults(func=_cmd_serve)
