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


# Whole-system tests: they start servers, processes or clusters on loopback, or run a command end to end.
# `pytest -m "not system"` is the quick unit run.
SYSTEM = {"cli", "plans/test_plans_profile.py", "plans/test_plans_pipeline.py", "web", "recording/test_recording_crash.py",
          "messaging/test_protocol_doc.py", "service/test_service.py", "service/test_cluster.py",
          "service/test_ingest_fuzz.py", "beamline"}


def pytest_collection_modifyitems(config, items):
    root = config.rootpath / "tests"
    for item in items:
        rel = item.path.relative_to(root).as_posix()
        if rel.split("/")[0] in SYSTEM or rel in SYSTEM:
            item.add_marker(pytest.mark.system)
