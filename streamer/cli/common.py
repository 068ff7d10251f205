"""What the subcommands' parsers share: a subparser whose description and examples keep their line breaks,
and the arguments several subcommands take alike."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

BACKENDS = ["numpy", "cupy", "auto"]


def add_subcommand(sub, name: str, func: Callable[[argparse.Namespace], int], *, help: str,
                   description: str | None = None, epilog: str | None = None) -> argparse.ArgumentParser:
    """The ``name`` subcommand of ``sub``, run as ``func(args)``; ``description`` and ``epilog`` (the examples)
    are printed as written."""
    p = sub.add_parser(name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=description, epilog=epilog)
    p.set_defaults(func=func)
    return p


def add_result_files(p: argparse.ArgumentParser) -> None:
    """The positional ``results``: one or more result files of ``bcdi-stream reconstruct``, or folders of them."""
    p.add_argument("results", type=Path, nargs="+",
                   help="result files (HDF5) of bcdi-stream reconstruct, or a folder of them (a live run's "
                        "results/RUN/)")


def result_paths(paths: list[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the result files (*.h5) it holds, in name order (scan order for a
    live run's ``scan-00003.h5``); a folder without any is refused by name."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.h5"))
            if not found:
                raise ValueError(f"folder {path} holds no result files (*.h5)")
            out += found
        else:
            out.append(path)
    return out


def add_backend(p: argparse.ArgumentParser, *extra: str) -> None:
    """``--backend``: the array backend (default: the config's), one of BACKENDS and ``extra``."""
    p.add_argument("--backend", choices=[*BACKENDS, *extra], default=None)
