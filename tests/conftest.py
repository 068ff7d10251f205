import os
import tempfile

import numpy as np
import pytest

from streamer.backend import get_namespace

# FFTW wisdom of this test session stays in a temporary folder, never in the user's cache
os.environ.setdefault("BCDI_STREAM_CACHE", tempfile.mkdtemp(prefix="bcdi-stream-test-cache-"))
# deterministic FFTW plans: MEASURE chooses by timing, and HIO would amplify the different rounding
os.environ.setdefault("BCDI_STREAM_FFTW_PLANNER", "estimate")


@pytest.fixture(params=["numpy", "strict"])
def xp(request):
    """Both the numpy namespace and the strict array-API namespace."""
    return get_namespace(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
