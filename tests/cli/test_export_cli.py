"""``bcdi-stream export``: one result beside itself, several into a folder, errors as messages, --help's example."""

import numpy as np
import pytest

from streamer.cli import build_parser, main
from streamer.geometry import OrthogonalGeometry
from streamer.recording.result_file import write_result


def _result(path, scan):
    geo = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=10.0)
    amp = np.zeros(geo.shape_zyx)
    amp[4:12, 3:13, 3:13] = 1.0
    return write_result(path, obj=amp.astype(complex), support=amp > 0, recipe="5ER",
                        metadata={"run": "r", "scan": scan, "geometry": geo.to_dict()})


def test_export_one_result_beside_it_and_several_into_a_folder(tmp_path, capsys):
    one = _result(tmp_path / "scan-0001.h5", 1)
    assert main(["export", str(one), "--format", "vti"]) == 0
    assert (tmp_path / "scan-0001.vti").read_bytes().startswith(b'<?xml version="1.0"?>')
    assert f"{one} -> {tmp_path / 'scan-0001.vti'}" in capsys.readouterr().out
    two = _result(tmp_path / "scan-0002.h5", 2)
    assert main(["export", str(one), str(two), "--format", "cxi", "--out", str(tmp_path / "cxi")]) == 0
    assert sorted(p.name for p in (tmp_path / "cxi").iterdir()) == ["scan-0001.cxi", "scan-0002.cxi"]
    assert main(["export", str(two), "--format", "npz", "--out", str(tmp_path / "two.npz")]) == 0
    assert np.load(tmp_path / "two.npz")["amplitude"].shape == (16, 16, 16)


def test_export_errors_are_messages(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.h5"), "--format", "cxi"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "plain.h5").write_bytes(b"not hdf5")
    assert main(["export", str(tmp_path / "plain.h5"), "--format", "vti"]) == 2
    assert "cannot read result file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "x.h5", "--format", "vtk"])


def test_export_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["export", "--help"])
    assert exc.value.code == 0 and "example" in capsys.readouterr().out
