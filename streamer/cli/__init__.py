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


# spins an idle OpenMP thread waits before sleeping (libgomp's default: 300000, about a millisecond)
OMP_SPIN_COUNT = 10_000


def process_settings() -> None:
    """The process-wide settings only the command line makes, before any library that reads them loads.

    OpenMP threads (numba's kernels, FFTW's threads, bitshuffle) wait for their next work by spinning,
    then sleeping. Spinning long after a kernel steals the cores FFTW's threads need next (on 2 cores
    libgomp's default spin doubled an iteration); never spinning (OMP_WAIT_POLICY=PASSIVE) makes every
    parallel region wake its threads, which slowed FFTW's planning of a 128^3 pair from 1.2 s to 2.8 s.
    A short spin costs neither. OpenMP reads these when its library loads; child processes inherit them,
    and a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(OMP_SPIN_COUNT))


# one-shot commands whose process ends at once when run as the console script (``quick_exit``)
QUICK_EXIT_COMMANDS = frozenset({"reconstruct"})


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; ``argv`` None: the process's own command line (the console script), whose
    one-shot commands then end the process at once (``quick_exit``)."""
    process_settings()
    console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_module_of(argv)).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = args.func(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"bcdi-stream {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    if console and args.command in QUICK_EXIT_COMMANDS:
        quick_exit(code)
    return code


def quick_exit(code: int) -> None:
    """End the process now, once its output is out; return instead while another non-daemon thread still runs
    (the interpreter's own shutdown then waits for it, as usual).

    A command that ran the numba kernels spends 0.2-0.4 s of interpreter shutdown releasing their machine code
    (llvmlite), a tenth of a 128^3 reconstruction. Every file the command writes is closed by then and the FFT
    wisdom saved, so the interpreter's clean-up has nothing left to keep; the exit handlers of the standard
    library that matter here (logging, stdio) are run by hand first."""
    import threading

    if any(t is not threading.current_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)
