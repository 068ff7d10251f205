"""bcdi-stream: real-time processing of operando BCDI rocking scans."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads (numba's kernels, bitshuffle) that spin after their work steal the cores FFTW's
# threads need next: on 2 cores this doubled an iteration. They sleep instead unless told otherwise.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
