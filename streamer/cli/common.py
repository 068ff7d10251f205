"""What the subcommands' parsers share: a subparser whose description and examples keep their line breaks,
and the arguments several subcommands take alike."""

from __future__ import annotations

import argparse
import sys
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


def recorded_preparation(recording: Path, config: Path | None = None) -> dict | None:
    """The ``[detector]`` table the recording service prepared ``recording``'s frames with (gaps, bad-pixel map,
    count ceiling, binning), for a command that prepares them again (replay, reconstruct); None when ``config``
    has a ``[detector]`` table of its own (a recorded bad-pixel map it drops is said on stderr) or the recording
    holds none. A file it names that has moved is looked for beside the recording (a demo's run folder holds its
    bad-pixel map); one found nowhere is refused by name."""
    from streamer.recording.recorder import recorded_detector
    from streamer.settings import read_toml

    detector = recorded_detector(recording)
    if config is not None and "detector" in (table := read_toml(config)):
        kept = (detector or {}).get("bad_pixel_map_file")
        if kept and not table["detector"].get("bad_pixel_map_file"):
            print(f"the recording's bad-pixel map {kept} is not used: the [detector] table of {config} replaces the "
                  "recorded one (name bad_pixel_map_file there to keep it)", file=sys.stderr, flush=True)
        return None
    if detector is None:
        return None
    for key in ("bad_pixel_map_file", "dark_file", "flat_file"):
        name = detector.get(key) or ""
        if name and not Path(name).is_file():
            beside = Path(recording).parent / Path(name).name
            if not beside.is_file():
                raise ValueError(f"the recording's detector preparation names {key} = {name!r}, which is not "
                                 f"there (nor beside the recording): give --config with a [detector] table")
            detector[key] = str(beside)
    print("detector preparation as recorded (gaps, bad pixels, count ceiling, binning); a [detector] table in "
          "--config replaces it", file=sys.stderr, flush=True)
    return detector
