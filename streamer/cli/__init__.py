"""``bcdi-stream``: the one composition root, the only package that may wire ``sim/`` to the rest.

Each subcommand lives in its own module with a ``register(subparsers)`` function. The modules are
imported when the parser is built, so that ``main`` makes the process-wide settings first.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from streamer.settings import ConfigError

SUBCOMMANDS = ["demo", "replay", "serve", "simulate", "reconstruct", "analyze", "report", "watch", "import_frames",
               "export"]
_EXPORTS = {"run_demo": "demo", "format_event_line": "pipeline", "parse_scan_range": "replay", "run_replay": "replay"}

__all__ = ["build_parser", "format_event_line", "main", "parse_scan_range", "run_demo", "run_replay"]


def __getattr__(name: str):
    """The helpers of ``__all__``, imported from their subcommand module on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"streamer.cli.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every subcommand, or ``only`` that one (a module of SUBCOMMANDS), so that a
    command imports what it needs and not the other nine (a third of a second of start-up)."""
    p = argparse.ArgumentParser(prog="bcdi-stream", description="Real-time processing of operando BCDI rocking scans.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        if only is None or name == only:
            importlib.import_module(f"streamer.cli.{name}").register(sub)
    return p


def _module_of(argv: list[str]) -> str | None:
    """The subcommand module ``argv`` asks for (its first word), None when it names none (then all are built)."""
    if not argv or argv[0].startswith("-"):
        return None
    if argv[0] == "import_frames":  # a module's name, not a command's
        return None
    name = "import_frames" if argv[0] == "import" else argv[0]
    return name if name in SUBCOMMANDS else None


def process_settings() -> None:
    """The process-wide settings only the command line makes, before any library that reads them loads.

    OpenMP threads (numba's kernels, bitshuffle) that spin after their work steal the cores FFTW's
    threads need next: on 2 cores this doubled an iteration. They sleep instead unless told
    otherwise. OpenMP reads the variable when its library loads; child processes inherit it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    process_settings()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_module_of(argv)).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"bcdi-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
