import numpy as np
import pytest

from streamer.backend import get_namespace


@pytest.fixture(params=["numpy", "strict"])
def xp(request):
    """Both the numpy namespace and the strict array-API namespace."""
    return get_namespace(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
