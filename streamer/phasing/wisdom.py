"""FFTW wisdom kept across runs: planning a new shape with FFTW_MEASURE takes seconds, loading it milliseconds.

Stored as msgpack (never pickle) in the ``[fft] cache_dir`` folder (``configure_fft``; default
``~/.cache/bcdi-stream``), file ``fftw-wisdom.msgpack``. Every function is a no-op without pyFFTW.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import msgpack

log = logging.getLogger(__name__)


_wisdom_dir: Path | None = None  # set_wisdom_dir (from the [fft] settings); None: ~/.cache/bcdi-stream


def set_wisdom_dir(folder: str | Path = "") -> None:
    """Keep this process's wisdom in ``folder`` ("": ~/.cache/bcdi-stream); ``configure_fft`` calls it."""
    global _wisdom_dir
    _wisdom_dir = Path(folder).expanduser() if str(folder) else None


def wisdom_path() -> Path:
    """Where this process loads and saves its wisdom."""
    return (_wisdom_dir or Path.home() / ".cache" / "bcdi-stream") / "fftw-wisdom.msgpack"


def import_pyfftw():
    """pyfftw (ImportError when absent), without the dask and scipy.fftpack interfaces it loads whenever those
    are installed: they cost a fifth and a seventh of a second of every command's start-up, and no FFT here
    goes through them (a module already imported is left as it is)."""
    if "pyfftw" in sys.modules:
        import pyfftw

        return pyfftw
    hidden = [name for name in ("dask", "scipy.fftpack") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # pyfftw's optional `from dask.array.fft import ...` sees no such module
    try:
        import pyfftw
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return pyfftw


def load_wisdom(path: Path | None = None) -> bool:
    """Import saved wisdom; False (and a log line) when there is none or it is unreadable."""
    try:
        pyfftw = import_pyfftw()
    except ImportError:
        return False
    path = path or wisdom_path()
    try:
        parts = msgpack.unpackb(path.read_bytes())
        ok = pyfftw.import_wisdom(tuple(bytes(p) for p in parts))
    except FileNotFoundError:
        return False
    except Exception as exc:  # noqa: BLE001 - a damaged cache only costs planning time
        log.warning("ignoring unreadable FFTW wisdom %s: %s", path, exc)
        return False
    return bool(all(ok))


def save_wisdom(path: Path | None = None) -> bool:
    """Export the wisdom gathered so far (atomically); False if it cannot be written."""
    try:
        pyfftw = import_pyfftw()
    except ImportError:
        return False
    path = path or wisdom_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(msgpack.packb(list(pyfftw.export_wisdom())))
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not save FFTW wisdom to %s: %s", path, exc)
        return False
    return True
