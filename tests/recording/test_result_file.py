"""Result files round-trip, and a file that is not one gets a clear error."""

import numpy as np
import pytest

from streamer.recording.result_file import read_result, write_result


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    obj = (rng.random((8, 9, 10)) * np.exp(1j * rng.random((8, 9, 10)))).astype(np.complex64)
    path = write_result(tmp_path / "r.h5", obj=obj, support=np.abs(obj) > 0.5, recipe="20ER", members=obj[None],
                        metadata={"scan": 3, "geometry": {"kind": "orthogonal"}}, peak={"width_parallel": np.float32(0.1)},
                        error_curve=np.linspace(1, 0, 20), replicas=np.stack([obj, 2 * obj]))
    r = read_result(path)
    assert np.array_equal(r["replicas"][1], 2 * obj) and r["replicas"].dtype == np.complex64
    assert np.array_equal(r["object"], obj) and r["support"].dtype == bool and r["members"].shape == (1, 8, 9, 10)
    assert r["recipe"] == "20ER" and r["metadata"]["scan"] == 3 and r["peak"]["width_parallel"] == pytest.approx(0.1)
    assert r["error_curve"].shape == (20,) and not r["phase_error"].any()
    bare = read_result(write_result(tmp_path / "bare.h5", obj=obj, support=np.abs(obj) > 0.5, recipe="20ER",
                                    metadata={}))
    assert bare["members"] is None and bare["replicas"] is None  # kept only when asked for


def test_not_a_result(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_result(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="cannot read"):
        read_result(tmp_path / "junk.h5")
