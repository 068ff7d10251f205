"""Well-formed messages with hostile metadata and geometry, interleaved with a valid run: nothing stops the
service, the valid run is recorded bit for bit and gets the events of a clean run (issue 20)."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamer.geometry import OrthogonalGeometry
from streamer.messaging import wire
from streamer.phasing import PhasingConfig
from streamer.recording.event_log import read_events
from streamer.recording.recorder import list_scans, read_scan
from streamer.service.config import ServiceConfig
from streamer.service.metadata import check_metadata
from streamer.service.pipeline import Pipeline

GEO = OrthogonalGeometry(shape_zyx=(8, 8, 8), voxel_nm=12.0)
RUN = "valid-run"
SCANS = 3
PHASING = PhasingConfig(population=1, average=1, recipe="10ER", warm_recipe="10ER")
HOSTILE_RUNS = ("h0", "h1", "h2")  # few runs: one recording file each
EXAMPLES = int(__import__("os").environ.get("HOSTILE_EXAMPLES", 100))
MESSAGES_PER_EXAMPLE = 100  # 10,000 hostile messages in all

_junk = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8),
                  st.binary(max_size=8), st.lists(st.floats(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                           st.integers(-9, 9), max_size=2))
_geometry = st.one_of(
    _junk,
    st.fixed_dictionaries({"kind": st.sampled_from(["orthogonal", "detector", "other", 3]),
                           "shape_zyx": st.one_of(_junk, st.lists(st.integers(-3, 10**9), max_size=4)),
                           "voxel_nm": st.one_of(_junk, st.floats()), "d_spacing_nm": _junk,
                           "theta_bragg_deg": st.one_of(_junk, st.floats())}),
    st.just({**GEO.to_dict(), "voxel_nm": math.inf}),
    st.just({**GEO.to_dict(), "shape_zyx": [8, 8, 8, 8]}),
    st.just(GEO.to_dict()),  # a valid geometry: the scan is reconstructed, its other fields hostile
)
_metadata = st.fixed_dictionaries({}, optional={"voltage_v": st.one_of(_junk, st.floats()),
                                                "capacity_mah_g": st.one_of(_junk, st.floats()),
                                                "geometry": _geometry, "sample": _junk})


@st.composite
def hostile(draw):
    """A protocol-valid message of a hostile run: metadata of any type, frames of any shape, scan ends."""
    run = draw(st.sampled_from(HOSTILE_RUNS))
    scan = draw(st.integers(0, 2**40))
    kind = draw(st.sampled_from(["run_start", "scan_start", "scan_start", "frame", "scan_end", "document"]))
    if kind == "run_start":
        return wire.encode("run_start", run=run, metadata=draw(_metadata))
    if kind == "scan_start":
        return wire.encode("scan_start", run=run, scan=scan % 4, num_frames=draw(st.integers(1, 8)),
                           metadata=draw(_metadata))
    if kind == "frame":
        shape = draw(st.sampled_from([(8, 8), (8, 8), (4, 9), (1, 1)]))
        array = np.full(shape, draw(st.integers(0, 2**31)), np.uint32)
        return wire.encode_frame(run=run, scan=scan % 4, frame=draw(st.integers(0, 9)), seq=draw(st.integers(0, 9)),
                                 theta_deg=draw(st.floats(allow_nan=True)), timestamp=1.0, array=array)
    if kind == "scan_end":
        return wire.encode("scan_end", run=run, scan=scan % 4, num_frames=draw(st.integers(0, 8)))
    return wire.encode("document", run=run, name=draw(st.text(max_size=5)), doc=draw(_metadata))


def _valid_run(seed=7):
    """The valid run's messages: frames of an 8^3 plate's diffraction, in order."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:8, :8, :8] - 4
    obj = ((np.abs(z) < 2) & (y**2 + x**2 < 9)).astype(complex)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(obj))) ** 2
    messages, frames = [wire.encode("run_start", run=RUN, metadata={"geometry": GEO.to_dict()})], {}
    for s in range(SCANS):
        counts = rng.poisson(intensity * 100).astype(np.uint32)  # lab order (z, y, x); frames at each x
        meta = {"voltage_v": 3.5 + 0.1 * s, "capacity_mah_g": 10.0 * s, "geometry": GEO.to_dict()}
        messages.append(wire.encode("scan_start", run=RUN, scan=s, num_frames=8, metadata=meta))
        for k in range(8):
            frames[s, k] = np.ascontiguousarray(counts[:, :, k])
            messages.append(wire.encode_frame(run=RUN, scan=s, frame=k, seq=0, theta_deg=7.0 + 0.01 * k,
                                              timestamp=1.0, array=frames[s, k]))
        messages.append(wire.encode("scan_end", run=RUN, scan=s, num_frames=8))
    return messages, frames


def _start(out_dir):
    # no time budget: what it chooses depends on how busy the machine is, and the two runs must compare
    config = ServiceConfig(out_dir=str(out_dir), realtime_policy="all", phasing=PHASING, exit_on_run_stop=False,
                           budget={"mode": "off"})
    pipeline = Pipeline(config)
    pipeline._worker.start()
    return pipeline


def _valid_events(out_dir):
    return [e for e in read_events(Path(out_dir) / "events.jsonl") if e["run"] == RUN]


def _comparable(event):
    ignored = {"latency_s", "ingest"}  # ingest holds the counters of everything else received
    return {k: v for k, v in event.items() if k not in ignored}


@pytest.fixture(scope="module")
def clean_run():
    with tempfile.TemporaryDirectory() as tmp:
        messages, _ = _valid_run()
        p = _start(tmp)
        for m in messages:
            p.ingest(m)
        p.shutdown()
        yield _valid_events(tmp)


def test_ten_thousand_hostile_messages_leave_the_valid_run_as_in_a_clean_run(clean_run):
    messages, frames = _valid_run()
    sent = {"hostile": 0}
    with tempfile.TemporaryDirectory() as tmp:
        p = _start(tmp)
        queue = list(messages)

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(hostile(), min_size=MESSAGES_PER_EXAMPLE, max_size=MESSAGES_PER_EXAMPLE))
        def interleave(batch):
            if queue:  # the valid run's messages go in between the hostile batches
                p.ingest(queue.pop(0))
            for m in batch:
                assert p.ingest(m) is False  # nothing ends the loop (exit_on_run_stop is off anyway)
                sent["hostile"] += 1

        interleave()
        for m in queue:
            p.ingest(m)
        assert p._worker.is_alive()  # the analysis worker survived every scan it was given
        p.shutdown()
        assert sent["hostile"] >= 10_000
        assert p.counters["invalid_metadata"] > 100 and p.counters["internal_error"] == 0
        events = _valid_events(tmp)
        assert [_comparable(e) for e in events] == [_comparable(e) for e in clean_run]
        (recording,) = [f for f in Path(tmp).glob("*.h5") if RUN in f.name]
        assert [s["complete"] for s in list_scans(recording)] == [True] * SCANS
        for s in range(SCANS):
            stack = read_scan(recording, s)["frames"]
            for k in range(8):
                np.testing.assert_array_equal(stack[k], frames[s, k])
        hostile_events = [e for e in read_events(Path(tmp) / "events.jsonl") if e["run"] != RUN]
        assert hostile_events and all(isinstance(e["voltage_v"], float) for e in hostile_events)


@pytest.mark.parametrize("voltage", ["3.5", [3.5], None, math.inf, {"v": 1}, True, 10**400])
def test_a_hostile_voltage_is_named_and_left_out(voltage):
    metadata, problems = check_metadata({"voltage_v": voltage, "capacity_mah_g": 12.0, "sample": "x"})
    if voltage is None:
        assert problems == [] and metadata["voltage_v"] is None
        return
    assert "voltage_v" not in metadata and metadata["capacity_mah_g"] == 12.0 and metadata["sample"] == "x"
    assert len(problems) == 1 and "voltage_v" in problems[0]
    assert metadata["rejected_metadata"]["voltage_v"][:100] == repr(voltage)[:100]  # kept as text, at most 200 long
    assert len(metadata["rejected_metadata"]["voltage_v"]) <= 200


@pytest.mark.parametrize("geometry", [[1, 2], "orthogonal", {"kind": "orthogonal", "voxel_nm": math.inf},
                                      {**GEO.to_dict(), "voxel_nm": math.inf}, 3])
def test_a_hostile_geometry_is_named_and_left_out(geometry):
    metadata, problems = check_metadata({"geometry": geometry, "voltage_v": 3.6})
    assert "geometry" not in metadata and metadata["voltage_v"] == 3.6
    assert problems and "geometry" in problems[0]


def test_a_queued_scan_with_a_string_voltage_is_skipped_without_stopping_the_loop(tmp_path):
    """The failure of issue 20: a scan still queued when the next one ends, its voltage a string."""
    config = ServiceConfig(out_dir=str(tmp_path), realtime_policy="latest", phasing=PHASING)
    p = Pipeline(config)  # no worker: the first scan stays queued when the second ends
    messages, _ = _valid_run()
    for m in messages:
        msg = wire.decode(m)
        if msg.type == "scan_start" and msg.header["scan"] == 0:
            m = wire.encode("scan_start", run=RUN, scan=0, num_frames=8,
                            metadata={"voltage_v": "3.5", "geometry": GEO.to_dict()})
        assert p.ingest(m) is False
    p.shutdown()
    events = read_events(tmp_path / "events.jsonl")
    skipped = [e for e in events if e["reconstruction"]["status"] == "skipped"]
    assert skipped and skipped[0]["scan"] == 0 and math.isnan(skipped[0]["voltage_v"])
    assert "voltage_v" in skipped[0]["ingest"]["metadata_problems"][0]
    assert p.counters["invalid_metadata"] == 1 and p.counters.get("internal_error", 0) == 0
