"""``bcdi-stream serve``: the pipeline service, until interrupted."""

from __future__ import annotations

from pathlib import Path

from streamer.cli.common import add_backend, add_subcommand
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


def _cmd_serve(args) -> int:
    from streamer.service.launch import serve

    service = load_config(args.config, ServiceConfig, {"out_dir": args.out, "backend": args.backend,
                                                       "frames_port": args.frames_port,
                                                       "results_port": args.results_port,
                                                       "web.enabled": True if args.web else None,
                                                       "web.port": args.web_port, "cluster.scheduler": args.cluster,
                                                       "exit_on_run_stop": False})
    serve(service, on_ready=lambda ep: print(f"frames: {ep['frames']}\nresults: {ep['results']}"
                                             + (f"\nweb: {ep['web']}" if "web" in ep else ""), flush=True))
    return 0


def register(sub) -> None:
    """Add the ``serve`` subcommand to the parser."""
    s = add_subcommand(
        sub, "serve", _cmd_serve, help="run the pipeline service until interrupted",
        epilog="examples:\n  bcdi-stream serve --config ops/configs/service.toml --frames-port 5555\n"
               "  bcdi-stream serve --web --web-port 8765   # live page on http://127.0.0.1:8765/\n"
               "  bcdi-stream serve --cluster tcp://10.0.0.5:8786   # reconstruct on a Dask cluster "
               "(docs/cluster.md)")
    s.add_argument("--config", type=Path, default=None, help="service config TOML")
    s.add_argument("--out", default=None, help="output folder (overrides the config)")
    s.add_argument("--frames-port", type=int, default=None)
    s.add_argument("--results-port", type=int, default=None)
    add_backend(s)
    s.add_argument("--web", action="store_true", help="serve the operator's live page (docs/web.md)")
    s.add_argument("--web-port", type=int, default=None, help="port of the live page (default: config, 8765)")
    s.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="Dask scheduler to reconstruct on, tcp://host:8786 (default: config, in-process)")
