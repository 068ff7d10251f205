"""A command's start-up imports what that command needs: its own subcommand, pyfftw without dask."""

import os
import subprocess
import sys

from streamer.cli import SUBCOMMANDS, _module_of, build_parser


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_a_command_builds_only_its_own_parser():
    loaded = _imports_after("from streamer.cli import build_parser, _module_of\n"
                            "build_parser(_module_of(['analyze', 'r.h5'])).parse_args(['analyze', 'r.h5'])")
    assert "streamer.cli.analyze" in loaded
    assert not {f"streamer.cli.{name}" for name in SUBCOMMANDS if name != "analyze"} & loaded
    assert _module_of(["import", "a.tif"]) == "import_frames" and _module_of(["import_frames"]) is None
    assert _module_of(["--help"]) is None and _module_of(["reconstrct"]) is None  # then every subcommand
    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "command")
    assert set(sub.choices) == {"import" if n == "import_frames" else n for n in SUBCOMMANDS}


def test_pyfftw_comes_without_dask_and_dask_still_imports_after():
    loaded = _imports_after("from streamer.phasing.wisdom import import_pyfftw\nimport_pyfftw()")
    assert "pyfftw" in loaded and "dask" not in loaded and "dask.array" not in loaded
    loaded = _imports_after("from streamer.phasing.wisdom import import_pyfftw\nimport_pyfftw()\nimport dask.array")
    assert "dask.array" in loaded


def test_openmp_threads_spin_briefly_unless_the_user_says_otherwise(monkeypatch):
    from streamer.cli import OMP_SPIN_COUNT, process_settings

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    process_settings()
    assert os.environ["GOMP_SPINCOUNT"] == str(OMP_SPIN_COUNT) and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    process_settings()
    assert os.environ["GOMP_SPINCOUNT"] == "5"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    process_settings()
    assert "GOMP_SPINCOUNT" not in os.environ
