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


def test_pyfftw_comes_without_dask_or_scipy_fft_and_both_still_import_after():
    loaded = _imports_after("from streamer.phasing.wisdom import import_pyfftw\nimport_pyfftw()")
    assert "pyfftw" in loaded and not {"dask", "dask.array", "scipy.fftpack", "scipy.fft"} & loaded
    loaded = _imports_after("from streamer.phasing.wisdom import import_pyfftw\nimport_pyfftw()\nimport dask.array\n"
                            "import scipy.fftpack")
    assert {"dask.array", "scipy.fftpack"} <= loaded


def test_a_cold_start_on_fftw_imports_no_scipy_fft_nor_a_numpy_wrapper(tmp_path):
    """The start's transforms go through FFTW (its wisdom), not scipy.fft: a seventh of a second of start-up; numpy 2
    is its own array-API namespace, so array_api_compat's numpy wrapper (0.09 s to import) is not loaded."""
    code = (f"import os; os.environ['BCDI_STREAM_CACHE'] = {str(tmp_path)!r}\n"
            "import numpy as np\nfrom streamer.backend import get_namespace\n"
            "from streamer.phasing.engine import PhasingConfig, reconstruct\n"
            "i = np.zeros((16, 16, 16), np.float32); i[6:10, 6:10, 6:10] = 100\n"
            "reconstruct(i, xp=get_namespace('numpy'), config=PhasingConfig(recipe='2ER', population=1, average=1),"
            " rng=0)")
    loaded = _imports_after(code)
    assert "pyfftw" in loaded and "scipy.fft" not in loaded
    assert "array_api_compat.numpy" not in loaded


def test_quick_exit_ends_the_process_once_its_output_is_out(tmp_path):
    code = ("import sys\nfrom streamer.cli import quick_exit\n"
            "print('result line', end='')\nprint('a warning', file=sys.stderr, end='')\nquick_exit(3)\n"
            "print('never')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 3
    assert run.stdout == "result line" and run.stderr == "a warning"


def test_quick_exit_leaves_a_process_with_work_on_another_thread_to_end_as_usual(tmp_path):
    done = tmp_path / "written-by-a-thread"
    code = ("import threading, time, sys\nfrom pathlib import Path\nfrom streamer.cli import quick_exit\n"
            f"threading.Thread(target=lambda: (time.sleep(0.3), Path({str(done)!r}).write_text('ok'))).start()\n"
            "quick_exit(3)\nprint('returned')\nsys.exit(4)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 4 and run.stdout == "returned\n"
    assert done.read_text() == "ok"


def test_only_the_console_script_quick_exits(monkeypatch):
    """``main(argv)`` called in a process (tests, other tools) returns; the console script's one-shot commands
    (``main()``) end the process through ``quick_exit``."""
    from streamer import cli

    exits = []
    monkeypatch.setattr(cli, "quick_exit", exits.append)
    monkeypatch.setattr(sys, "argv", ["bcdi-stream", "reconstruct", "/no/such/input.npy", "--out", "/no/such/r.h5"])
    assert cli.main(["reconstruct", "/no/such/input.npy", "--out", "/no/such/r.h5"]) == 2 and exits == []
    assert cli.main() == 2 and exits == [2]
    monkeypatch.setattr(sys, "argv", ["bcdi-stream", "export", "/no/such/result.h5", "--format", "npz"])
    assert cli.main() == 2 and exits == [2]  # not a one-shot command of QUICK_EXIT_COMMANDS


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
