import atexit
import os
import shutil
import tempfile


def _temporary_folder(prefix: str) -> str:
    """A folder for this test session, removed when the process that made it exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# the process-wide settings the command line makes (streamer.cli.process_settings), made here for the tests
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
# FFTW wisdom of this test session stays in a temporary folder, never in the user's cache
if "BCDI_STREAM_CACHE" not in os.environ:
    os.environ["BCDI_STREAM_CACHE"] = _temporary_folder("bcdi-stream-test-cache-")
# deterministic FFTW plans: MEASURE chooses by timing, and HIO would amplify the different rounding
os.environ.setdefault("BCDI_STREAM_FFTW_PLANNER", "estimate")
# the decision token of this test session: never the user's ~/.config/bcdi-stream/decision.token
if "BCDI_DECISION_TOKEN_FILE" not in os.environ:
    os.environ["BCDI_DECISION_TOKEN_FILE"] = os.path.join(_temporary_folder("bcdi-stream-test-token-"), "decision.token")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from streamer.backend import get_namespace  # noqa: E402
from streamer.service.config import FftConfig  # noqa: E402

# in this process from the environment above through the [fft] defaults, as a service config does;
# processes the tests start (the demo's pipeline) get it the same way, from their ServiceConfig
FftConfig().apply()


@pytest.fixture(params=["numpy", "strict"])
def xp(request):
    """Both the numpy namespace and the strict array-API namespace."""
    return get_namespace(request.param)


@pytest.fixture(autouse=True)
def _no_remembered_slowness():
    """Every test starts with no phasing slowness remembered in the session's cache: a budgeted `reconstruct` of
    one test must not change what a later test's budget chooses (the order of the tests would then matter)."""
    from streamer.phasing.wisdom import wisdom_path
    from streamer.service.costs import SLOWNESS_FILE

    (wisdom_path().parent / SLOWNESS_FILE).unlink(missing_ok=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Whole-system tests: they start servers, processes or clusters on loopback, or run a command end to end.
# `pytest -m "not system"` is the quick unit run.
SYSTEM = {"cli", "plans/test_plans_profile.py", "plans/test_plans_pipeline.py", "web", "recording/test_recording_crash.py",
          "messaging/test_protocol_doc.py", "service/test_service.py", "service/test_cluster.py",
          "service/test_ingest_fuzz.py", "service/test_floods.py", "service/test_detector_strain.py", "beamline"}


def pytest_collection_modifyitems(config, items):
    root = config.rootpath / "tests"
    for item in items:
        rel = item.path.relative_to(root).as_posix()
        if rel.split("/")[0] in SYSTEM or rel in SYSTEM:
            item.add_marker(pytest.mark.system)
