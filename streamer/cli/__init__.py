"""``bcdi-stream``: the one composition root, the only package that may wire ``sim/`` to the rest.

Each subcommand lives in its own module with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import logging
import sys

from streamer.cli import (
    analyze,
    demo,
    reconstruct,
    replay,
    report,
    serve,
    simulate,
    watch,
)
from streamer.cli.demo import run_demo
from streamer.cli.pipeline import format_event_line
from streamer.cli.replay import parse_scan_range, run_replay
from streamer.settings import ConfigError

SUBCOMMANDS = [demo, replay, serve, simulate, reconstruct, analyze, report, watch]

__all__ = ["build_parser", "format_event_line", "main", "parse_scan_range", "run_demo", "run_replay"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bcdi-stream", description="Real-time processing of operando BCDI rocking scans.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"bcdi-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2

