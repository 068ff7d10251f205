"""Room on the disk before HDF5 writes: HDF5 crashed the process that wrote a file when the disk filled under it."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


def check_room(folder: Path, nbytes: int, headroom_bytes: int = 2**20) -> None:
    """OSError (ENOSPC) naming ``folder``, its free space and the need, when its disk has less than ``nbytes``
    and ``headroom_bytes`` free."""
    need = int(nbytes) + int(headroom_bytes)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{folder} has {free / 2**20:.1f} MB free; the write needs up to "
                                    f"{need / 2**20:.1f} MB")
