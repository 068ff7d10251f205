"""The live result files' writer: a disk kept from filling, and a write that fails inside HDF5 (which
crashed the process that wrote the file) is an alarm, never the end of the service."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np

from streamer.recording.result_file import read_result
from streamer.recording.result_writer import ResultWriter


def _fields(n=24):
    rng = np.random.default_rng(0)
    obj = (rng.random((n, n, n)) * np.exp(1j * rng.random((n, n, n)))).astype(np.complex64)
    return {"obj": obj, "support": np.abs(obj) > 0.5, "metadata": {"scan": 0}, "recipe": "20ER"}


def test_results_are_written_by_the_recording_process_and_read_back(tmp_path):
    writer = ResultWriter(tmp_path, Counter(), budget_bytes=1e9, min_free_bytes=0)
    writer.submit("r", 3, **_fields())
    writer.close()
    result = read_result(writer.path("r", 3))
    np.testing.assert_array_equal(result["object"], _fields()["obj"])
    assert not writer.alarms


def test_a_disk_under_its_reserve_keeps_no_result_and_says_so(tmp_path):
    counters = Counter()
    writer = ResultWriter(tmp_path, counters, budget_bytes=1e9, min_free_bytes=2**60)  # more than any disk has
    writer.submit("r", 0, **_fields())
    writer.close()
    assert counters["result_not_written"] == 1 and "MB free" in writer.alarms[0]
    assert not list(tmp_path.rglob("*.h5*"))


CHILD = """
import json, resource, signal, sys
from collections import Counter
import numpy as np
from streamer.recording.result_writer import ResultWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))  # the disk fills mid-file
counters = Counter()
writer = ResultWriter(sys.argv[1], counters, budget_bytes=1e9, min_free_bytes=0)
rng = np.random.default_rng(0)
obj = (rng.random((24, 24, 24)) * np.exp(1j * rng.random((24, 24, 24)))).astype(np.complex64)
writer.submit("r", 0, obj=obj, support=np.abs(obj) > 0.5, metadata={}, recipe="20ER")
writer.close()
print(json.dumps({"alarms": list(writer.alarms), "counters": dict(counters)}))
"""


def test_a_result_file_that_fills_the_disk_is_an_alarm_not_a_crash(tmp_path):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]  # the service's process lives and exits cleanly
    report = json.loads(done.stdout)
    assert report["counters"] == {"result_not_written": 1} and len(report["alarms"]) == 1, report
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob("*.h5"))
