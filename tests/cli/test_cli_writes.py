"""Files that the one-shot commands write when the disk refuses them: HDF5 crashed the process whose write failed
(a segmentation fault at close or exit), so ``reconstruct`` and ``export`` write through a recording process and
say what happened instead."""

import resource
import subprocess
import sys

import numpy as np
import pytest

from streamer.geometry import OrthogonalGeometry
from streamer.recording.result_file import read_result, write_result

FAST = ["--recipe", "20HIO, 10ER", "--population", "2", "--average", "2"]


def _limited(limit_bytes: int):
    """A file-size limit for the command and its children: writes past it fail (EFBIG), as on a full disk."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def _command(args, limit_bytes, cwd):
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args], capture_output=True, text=True,
                          timeout=300, preexec_fn=_limited(limit_bytes), cwd=cwd)


@pytest.mark.parametrize("limit_bytes", [200_000, 4_000], ids=["fills-mid-file", "fills-at-once"])
def test_reconstruct_says_the_result_was_not_written_instead_of_crashing(tmp_path, limit_bytes):
    rng = np.random.default_rng(0)
    intensity = rng.poisson(50 * np.exp(-((np.indices((32, 32, 32)) - 16) ** 2).sum(0) / 20.0)).astype(np.float32)
    np.save(tmp_path / "i.npy", intensity)  # written before the limit
    done = _command(["reconstruct", "i.npy", "--out", "r.h5", *FAST], limit_bytes, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]  # an error said, not a signal (-11)
    assert "bcdi-stream reconstruct: error:" in done.stderr and "too large" in done.stderr.lower()
    assert not list(tmp_path.glob("r.h5*"))  # neither the file nor its .partial
    ok = _command(["reconstruct", "i.npy", "--out", "r.h5", *FAST], 2**30, tmp_path)  # and with room it works
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert read_result(tmp_path / "r.h5")["object"].shape == (32, 32, 32)


def test_export_says_the_file_was_not_written_instead_of_crashing(tmp_path):
    rng = np.random.default_rng(0)
    obj = (rng.random((40, 40, 40)) * np.exp(0.3j * rng.random((40, 40, 40)))).astype(np.complex64)
    geometry = OrthogonalGeometry(shape_zyx=(40, 40, 40), voxel_nm=10.0).to_dict()
    write_result(tmp_path / "r.h5", obj=obj, support=np.abs(obj) > 0.1, recipe="20ER",
                 metadata={"scan": 0, "geometry": geometry})
    done = _command(["export", "r.h5", "--format", "cxi"], 100_000, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "bcdi-stream export: error:" in done.stderr and "too large" in done.stderr.lower()
    assert not list(tmp_path.glob("r.cxi*"))
    ok = _command(["export", "r.h5", "--format", "cxi"], 2**30, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "r.cxi").is_file()



@pytest.mark.parametrize("limit_bytes", [20_000, 60_000])
def test_import_says_the_recording_was_not_written_instead_of_crashing(tmp_path, limit_bytes):
    import json

    import tifffile

    from streamer.recording.recorder import read_scan

    geometry = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=16.0)
    frames = np.random.default_rng(3).integers(0, 2**16, (16, 16, 16), dtype=np.uint32)
    (tmp_path / "scan").mkdir()
    for k, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / "scan" / f"img_{k}.tif", frame)
    (tmp_path / "geometry.toml").write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in geometry.to_dict().items()))
    args = ["import", "scan", "--geometry", "geometry.toml", "--out", "out/rec.h5"]
    (tmp_path / "out").mkdir()
    done = _command(args, limit_bytes, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "bcdi-stream import: error:" in done.stderr and "too large" in done.stderr.lower()
    assert not list((tmp_path / "out").iterdir())  # neither the recording nor its hidden part
    ok = _command(args, 2**30, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert np.array_equal(read_scan(tmp_path / "out" / "rec.h5", 0)["frames"], frames)
