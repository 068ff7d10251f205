"""Importing TIFF and HDF5/NeXus frames with a geometry file into a recording: bit for bit, or a clear refusal."""

import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from streamer.geometry import DetectorGeometry, OrthogonalGeometry
from streamer.recording.frame_sources import (
    ImportInputError,
    expand_inputs,
    open_frames,
)
from streamer.recording.importer import (
    Orientation,
    ScanImport,
    import_scans,
    load_geometry_file,
    rocking_angles_deg,
)
from streamer.recording.recorder import list_scans, read_scan, run_of

ORTHO = OrthogonalGeometry(shape_zyx=(16, 12, 10), voxel_nm=10.0).to_dict()  # frames 16 x 12, 10 steps
# a 64 x 48 detector, rows 8..40 of it, binned 2 x 2: frames 16 x 24, 9 steps
DETECTOR = DetectorGeometry(detector_shape_px=(64, 48), roi_px=(8, 40, 0, 48), binning=2, num_rocking_steps=9,
                            rocking_step_deg=0.01).to_dict()


def _stack(shape, dtype, seed=0):
    """Counts over the dtype's whole range, so that every bit is checked."""
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def _import(out, path, geometry, scan=0, **kwargs):
    options = {k: kwargs.pop(k) for k in ("dataset", "monitor_dataset") if k in kwargs}
    return import_scans(out, [ScanImport(open_frames(path, **options), scan, **kwargs)], geometry)


def _folder(path, stack, name="frame_{}.tif"):
    path.mkdir()
    for k in np.random.default_rng(1).permutation(len(stack)):  # written out of order, found in natural order
        tifffile.imwrite(path / name.format(k), stack[k])
    return path


def _nexus(path, stack, monitor=None, chunks=True):
    """A NeXus file as a beamline writes one: the frames in the detector group, linked from NXdata."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        det = f.create_group("entry/instrument/detector")
        f["entry/instrument"].attrs["NX_class"] = "NXinstrument"
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=stack, chunks=(4, *stack.shape[1:]) if chunks else None,
                           compression="gzip" if chunks else None)
        data = f.create_group("entry/data")
        data.attrs.update(NX_class="NXdata", signal="data")
        data["data"] = det["data"]  # a hard link: the same frames, which must count once
        if monitor is not None:
            mon = f.create_group("entry/monitor")
            mon.attrs["NX_class"] = "NXmonitor"
            mon["data"] = monitor
    return path


@pytest.mark.parametrize("dtype", [np.dtype("<u2"), np.dtype(">u4"), np.dtype("<i4")])
def test_a_multipage_tiff_reads_back_bit_for_bit_with_its_geometry(tmp_path, dtype):
    stack = _stack((9, 16, 24), dtype.newbyteorder("="))
    tifffile.imwrite(tmp_path / "scan.tif", stack.astype(dtype), byteorder=dtype.byteorder if dtype.byteorder in "<>" else None)
    summary = _import(tmp_path / "run.h5", tmp_path / "scan.tif", DETECTOR, scan=5, voltage_v=3.55,
                      metadata={"sample": "P2 plate"})
    s = read_scan(tmp_path / "run.h5", 5)
    assert s["frames"].dtype == dtype.newbyteorder("=") and np.array_equal(s["frames"], stack)
    assert s["status"] == "complete" and s["missing"] == [] and list(s["frame_index"]) == list(range(9))
    assert s["metadata"]["geometry"] == DETECTOR and s["metadata"]["voltage_v"] == 3.55
    assert s["metadata"]["sample"] == "P2 plate" and s["metadata"]["source"]["format"] == "tiff-stack"
    assert np.allclose(s["theta_deg"], DetectorGeometry.from_dict(DETECTOR).rocking_angles_deg())
    assert run_of(tmp_path / "run.h5") == "run" and summary["frames"] == 9


def test_a_folder_of_tiffs_is_read_in_natural_order(tmp_path):
    stack = _stack((10, 16, 12), np.uint32)
    folder = _folder(tmp_path / "frames", stack)  # frame_2.tif sorts before frame_10.tif
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".frame_99.tif").write_bytes(b"hidden: left out")
    _import(tmp_path / "run.h5", folder, ORTHO)
    s = read_scan(tmp_path / "run.h5", 0)
    assert np.array_equal(s["frames"], stack)
    source = s["metadata"]["source"]
    assert (source["format"], source["first_file"], source["last_file"]) == ("tiff-folder", "frame_0.tif",
                                                                             "frame_9.tif")
    assert np.allclose(s["theta_deg"], rocking_angles_deg(ORTHO))
    assert np.allclose(np.diff(s["theta_deg"]), OrthogonalGeometry.from_dict(ORTHO).rocking_step_deg)


def test_nexus_frames_and_monitor_are_found(tmp_path):
    stack = _stack((9, 16, 24), np.uint16)
    monitor = np.linspace(1000, 900, 9)
    _import(tmp_path / "run.h5", _nexus(tmp_path / "scan.nxs", stack, monitor), DETECTOR)
    s = read_scan(tmp_path / "run.h5", 0)
    assert s["frames"].dtype == np.uint16 and np.array_equal(s["frames"], stack)
    assert s["metadata"]["source"]["dataset"] == "/entry/instrument/detector/data"  # NXdetector first
    assert s["metadata"]["monitor"] == monitor.tolist() and s["metadata"]["monitor_source"] == "/entry/monitor/data"


def test_an_nxdata_signal_is_found_and_a_named_dataset_is_used(tmp_path):
    stack = _stack((10, 16, 12), np.uint32)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_group("entry/data").attrs.update(NX_class="NXdata", signal="counts")
        f["entry/data/counts"] = stack
        f["entry/data/background"] = np.zeros_like(stack)
    _import(tmp_path / "a.out.h5", tmp_path / "a.h5", ORTHO)
    assert np.array_equal(read_scan(tmp_path / "a.out.h5", 0)["frames"], stack)
    with h5py.File(tmp_path / "b.h5", "w") as f:  # no NeXus classes: two candidates, one named
        f["scan/frames"] = stack
        f["scan/dark"] = np.zeros_like(stack)
    with pytest.raises(ImportInputError, match=r"/scan/dark, /scan/frames.*--dataset"):
        open_frames(tmp_path / "b.h5")
    _import(tmp_path / "b.out.h5", tmp_path / "b.h5", ORTHO, dataset="scan/frames")
    assert np.array_equal(read_scan(tmp_path / "b.out.h5", 0)["frames"], stack)
    with pytest.raises(ImportInputError, match="no dataset 'scan/nothing'"):
        open_frames(tmp_path / "b.h5", dataset="scan/nothing")


def test_two_detectors_are_ambiguous(tmp_path):
    with h5py.File(tmp_path / "two.nxs", "w") as f:
        for name in ("det1", "det2"):
            f.create_group(f"entry/instrument/{name}").attrs["NX_class"] = "NXdetector"
            f[f"entry/instrument/{name}/data"] = np.zeros((10, 16, 12), np.uint16)
    with pytest.raises(ImportInputError, match=r"det1/data, /entry/instrument/det2/data\): choose one with --dataset"):
        open_frames(tmp_path / "two.nxs")


@pytest.mark.parametrize(("geometry", "shape", "match"), [
    (DETECTOR, (9, 32, 48), (r"frames are 32x48 .* roi_px \[8, 40, 0, 48\] .* binning 2 makes 16x24 "
                             r"\(they are the ROI unbinned")),
    (DETECTOR, (9, 64, 48), r"detector_shape_px \[64, 48\].*they are the whole detector"),
    (DETECTOR, (9, 24, 16), r"rows and columns swapped: --transpose"),
    (DETECTOR, (8, 16, 24), r"8 frames but the geometry's num_rocking_steps is 9; --allow-missing"),
    (DETECTOR, (10, 16, 24), r"10 frames but the geometry's num_rocking_steps is 9$"),
    (ORTHO, (10, 16, 16), r"frames are 16x16 pixels but the geometry's shape_zyx \[16, 12, 10\] makes 16x12"),
    (ORTHO, (11, 16, 12), r"11 frames but the geometry's shape_zyx\[2\] \(the rocking steps\) is 10"),
])
def test_frames_the_geometry_does_not_describe_are_refused(tmp_path, geometry, shape, match):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros(shape, np.uint16))
    with pytest.raises(ImportInputError, match=match):
        _import(tmp_path / "run.h5", tmp_path / "s.tif", geometry)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.tif"]  # nothing written, no part file left


def test_a_short_scan_is_recorded_incomplete_when_allowed(tmp_path):
    stack = _stack((7, 16, 24), np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    import_scans(tmp_path / "run.h5", [ScanImport(open_frames(tmp_path / "s.tif"), 2)], DETECTOR, allow_missing=True)
    s = read_scan(tmp_path / "run.h5", 2)
    assert s["status"] == "incomplete" and s["missing"] == [7, 8] and np.array_equal(s["frames"], stack)
    assert s["metadata"]["frames_missing_in_source"] == 2


def test_geometry_files_toml_json_and_their_errors(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(DETECTOR))
    assert load_geometry_file(tmp_path / "g.json") == DETECTOR
    (tmp_path / "g.toml").write_text('[geometry]\nkind = "detector"\nenergy_kev = 8.0\nnum_rocking_steps = 9\n')
    loaded = load_geometry_file(tmp_path / "g.toml")
    assert loaded["energy_kev"] == 8.0 and loaded["num_rocking_steps"] == 9 and loaded["pixel_um"] == 55.0
    cases = {
        'energy_kev = 9.0\n': r"missing key kind",
        'kind = "detector"\nenergy_kv = 9.0\n': r"unknown key energy_kv",
        'kind = "detector"\nroi_px = [0, 300, 0, 256]\n': r"roi_px",
        'kind = "detector"\nbinning = 3\n': r"roi_px \(0, 256, 0, 256\) is not a whole number of 3x3 bins",
        'kind = "orthogonal"\nshape_zyx = [16, 12, 10]\nd_spacing_nm = 0.55\ntheta_bragg_deg = 7.0\n':
            r"missing key voxel_nm",
        'kind = "detector"\nenergy_kev = "nine"\n': r"energy_kev",
        'kind = "detector\n': r"not valid TOML",
    }
    for text, match in cases.items():
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(ImportInputError, match=match) as exc:
            load_geometry_file(tmp_path / "bad.toml")
        assert "bad.toml" in str(exc.value)
    (tmp_path / "g.txt").write_text(json.dumps(DETECTOR))
    with pytest.raises(ImportInputError, match="must be .toml or .json"):
        load_geometry_file(tmp_path / "g.txt")
    with pytest.raises(ImportInputError, match="cannot read geometry file .*nothing.toml"):
        load_geometry_file(tmp_path / "nothing.toml")


def test_truncated_and_unreadable_files_are_named(tmp_path):
    stack = _stack((10, 16, 12), np.uint16)
    tifffile.imwrite(tmp_path / "whole.tif", stack, metadata=None)
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:len(data) // 2])
    with pytest.raises(ImportInputError, match=r"cut\.tif is a truncated or damaged TIFF"):
        _import(tmp_path / "run.h5", tmp_path / "cut.tif", ORTHO)
    folder = _folder(tmp_path / "frames", stack)
    last = (folder / "frame_7.tif").read_bytes()
    (folder / "frame_7.tif").write_bytes(last[:len(last) - 100])  # its pixels cut short
    with pytest.raises(ImportInputError, match=r"frame_7\.tif is truncated: frame 0 needs"):
        _import(tmp_path / "run.h5", folder, ORTHO)
    (tmp_path / "noise.tif").write_bytes(b"not a tiff at all" * 20)
    with pytest.raises(ImportInputError, match=r"cannot read .*noise\.tif as TIFF"):
        _import(tmp_path / "run.h5", tmp_path / "noise.tif", ORTHO)
    _nexus(tmp_path / "scan.h5", stack)
    data = (tmp_path / "scan.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:len(data) // 2])
    with pytest.raises(ImportInputError, match=r"cannot read .*cut\.h5 as HDF5"):
        _import(tmp_path / "run.h5", tmp_path / "cut.h5", ORTHO)
    for bad in (9, 4):  # the last frame is decoded before anything is written, a middle one when its turn comes
        with h5py.File(tmp_path / f"gz{bad}.h5", "w") as f:
            f.create_dataset("entry/data/data", data=stack, chunks=(1, 16, 12), compression="gzip")
            chunk = f["entry/data/data"].id.get_chunk_info(bad)
        data = bytearray((tmp_path / f"gz{bad}.h5").read_bytes())
        data[chunk.byte_offset + 2:chunk.byte_offset + chunk.size] = b"U" * (chunk.size - 2)
        (tmp_path / f"gz{bad}.h5").write_bytes(bytes(data))
        with pytest.raises(ImportInputError, match=rf"cannot read frame {bad} of /entry/data/data in .*gz{bad}\.h5: .*filter"):
            _import(tmp_path / "run.h5", tmp_path / f"gz{bad}.h5", ORTHO)
    assert not (tmp_path / "run.h5").exists() and not list(tmp_path.glob(".*importing"))


def test_an_existing_recording_is_replaced_only_with_force_and_only_by_a_complete_import(tmp_path):
    stack = _stack((10, 16, 12), np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", stack)
    _import(tmp_path / "run.h5", tmp_path / "a.tif", ORTHO, scan=1)
    before = (tmp_path / "run.h5").read_bytes()
    with pytest.raises(ImportInputError, match=r"run\.h5 exists; it is not replaced without --force"):
        _import(tmp_path / "run.h5", tmp_path / "a.tif", ORTHO, scan=2)
    folder = _folder(tmp_path / "frames", stack)
    tifffile.imwrite(folder / "frame_9.tif", stack[9], compression="zlib")
    broken = bytearray((folder / "frame_9.tif").read_bytes())
    with tifffile.TiffFile(folder / "frame_9.tif") as tif:
        start, size = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    broken[start + 2:start + size - 4] = b"U" * (size - 6)  # sound header and sizes, pixels that do not decode
    (folder / "frame_9.tif").write_bytes(bytes(broken))
    with pytest.raises(ImportInputError, match=r"cannot read frame 0 of .*frame_9\.tif: Error -3"):
        import_scans(tmp_path / "run.h5", [ScanImport(open_frames(folder), 2)], ORTHO, force=True)
    assert (tmp_path / "run.h5").read_bytes() == before and not list(tmp_path.glob(".*importing"))
    import_scans(tmp_path / "run.h5", [ScanImport(open_frames(tmp_path / "a.tif"), 3)], ORTHO, force=True)
    assert [s["scan"] for s in list_scans(tmp_path / "run.h5")] == [3]


def test_the_output_is_never_an_input_and_is_an_hdf5_file(tmp_path):
    _nexus(tmp_path / "scan.h5", _stack((10, 16, 12), np.uint16))
    with pytest.raises(ImportInputError, match="is one of the input files"):
        import_scans(tmp_path / "scan.h5", [ScanImport(open_frames(tmp_path / "scan.h5"), 0)], ORTHO, force=True)
    with pytest.raises(ImportInputError, match="must be an HDF5 file"):
        _import(tmp_path / "run.tif", tmp_path / "scan.h5", ORTHO)
    _import(tmp_path / "run.h5", tmp_path / "scan.h5", ORTHO)
    with pytest.raises(ImportInputError, match="already a bcdi-stream recording"):
        open_frames(tmp_path / "run.h5")


def test_dtypes_and_shapes_a_recording_cannot_hold_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((10, 16, 12), np.float64))
    with pytest.raises(ImportInputError, match=r"frames are float64; a recording holds .*uint16, uint32"):
        _import(tmp_path / "run.h5", tmp_path / "f.tif", ORTHO)
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((10, 16, 12), np.uint16))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((10, 16, 12), np.uint32))
    with pytest.raises(ImportInputError, match=r"scan 1 .*16x12 uint32 but scan 0's are 16x12 uint16"):
        import_scans(tmp_path / "run.h5", [ScanImport(open_frames(tmp_path / n), k)
                                           for k, n in enumerate(("a.tif", "b.tif"))], ORTHO)
    stack = np.zeros((10, 16, 12), np.uint16)
    folder = _folder(tmp_path / "frames", stack)
    tifffile.imwrite(folder / "frame_4.tif", np.zeros((16, 13), np.uint16))
    with pytest.raises(ImportInputError, match=r"frame_4\.tif: a frame of \(16, 13\) uint16 among \(16, 12\)"):
        _import(tmp_path / "run.h5", folder, ORTHO)
    assert not (tmp_path / "run.h5").exists()


def test_frames_are_streamed_not_held(tmp_path):
    stack = np.random.default_rng(0).poisson(3.0, (300, 128, 128)).astype(np.uint32)  # 20 MB of frames
    tifffile.imwrite(tmp_path / "big.tif", stack)
    del stack
    source = open_frames(tmp_path / "big.tif")
    geometry = OrthogonalGeometry(shape_zyx=(128, 128, 300)).to_dict()
    tracemalloc.start()
    try:
        import_scans(tmp_path / "run.h5", [ScanImport(source, 0)], geometry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4e6  # a few frames (64 kB each) and the column buffers, never the 20 MB stack
    assert list_scans(tmp_path / "run.h5")[0]["frames_recorded"] == 300


def test_orientation_angles_monitor_and_several_scans(tmp_path):
    stack = _stack((10, 12, 16), np.uint16)  # stored transposed: columns along q_z
    tifffile.imwrite(tmp_path / "t.tif", stack)
    step = OrthogonalGeometry.from_dict(ORTHO).rocking_step_deg
    angles = 7.0 + step * (np.arange(10) - 5) + 1e-5
    scans = [ScanImport(open_frames(tmp_path / "t.tif"), 4, voltage_v=3.4, angles_deg=angles,
                        monitor=np.full(10, 1e5), monitor_source="i0.txt"),
             ScanImport(open_frames(tmp_path / "t.tif"), 5, voltage_v=3.6, capacity_mah_g=30.0)]
    summary = import_scans(tmp_path / "run.h5", scans, ORTHO, run="cell-7", orientation=Orientation(transpose=True,
                           flip_cols=True), frame_time_s=0.5, start_time=1000.0)
    assert [s["scan"] for s in summary["scans"]] == [4, 5] and summary["frames"] == 20
    s4, s5 = read_scan(tmp_path / "run.h5", 4), read_scan(tmp_path / "run.h5", 5)
    expected = stack.transpose(0, 2, 1)[:, :, ::-1]
    assert np.array_equal(s4["frames"], expected) and np.array_equal(s5["frames"], expected)
    assert s4["metadata"]["frame_orientation"] == {"transpose": True, "flip_rows": False, "flip_cols": True}
    assert np.array_equal(s4["theta_deg"], angles) and s4["metadata"]["angles"] == "measured"
    assert s4["metadata"]["monitor"] == [1e5] * 10 and "monitor" not in s5["metadata"]
    assert np.allclose(s4["timestamp"], 1000.0 + 0.5 * np.arange(10))
    assert [(s["scan"], s["voltage_v"]) for s in list_scans(tmp_path / "run.h5")] == [(4, 3.4), (5, 3.6)]
    assert run_of(tmp_path / "run.h5") == "cell-7"
    with pytest.raises(ImportInputError, match=r"step by 0\.63\d* deg but the geometry.s rocking_step_deg is 0\.315"):
        import_scans(tmp_path / "x.h5", [ScanImport(open_frames(tmp_path / "t.tif"), 0, angles_deg=angles * 2)],
                     ORTHO, orientation=Orientation(transpose=True))
    with pytest.raises(ImportInputError, match=r"I0 monitor \(i0.txt\) has 9 values for 10 frames"):
        import_scans(tmp_path / "x.h5", [ScanImport(open_frames(tmp_path / "t.tif"), 0, monitor=np.ones(9),
                                                    monitor_source="i0.txt")], ORTHO,
                     orientation=Orientation(transpose=True))


def test_folders_of_scans_expand_in_natural_order(tmp_path):
    stack = np.zeros((10, 16, 12), np.uint16)
    (tmp_path / "series").mkdir()
    for name in ("scan_10", "scan_9"):
        _folder(tmp_path / "series" / name, stack)
    assert [p.name for p in expand_inputs([tmp_path / "series"])] == ["scan_9", "scan_10"]
    (tmp_path / "h5s").mkdir()
    for name in ("b_2.h5", "b_11.h5"):
        _nexus(tmp_path / "h5s" / name, stack)
    assert [p.name for p in expand_inputs([tmp_path / "h5s"])] == ["b_2.h5", "b_11.h5"]
    tifffile.imwrite(tmp_path / "series" / "stray.tif", stack[0])
    with pytest.raises(ImportInputError, match="holds both TIFF frames and folders of them"):
        expand_inputs([tmp_path / "series"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportInputError, match="holds no TIFF frames"):
        expand_inputs([tmp_path / "empty"])


def test_the_documented_34idc_geometry_gives_cohere_s_q(tmp_path):
    """docs/import.md's geometry of cohere's scan 54 against q from xrayutilities 1.8.0, set up as cohere's
    aps_34idc/disp.py does (beam frame: x downstream, y up, z = x cross y; nm^-1; forward differences)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text()
    block = doc.split("```toml\n# APS 34-ID-C", 1)[1].split("```", 1)[0]
    (tmp_path / "g.toml").write_text("# APS 34-ID-C" + block)
    geometry = DetectorGeometry.from_dict(load_geometry_file(tmp_path / "g.toml"))
    beam = geometry.lab_from_beam.T  # lab (z, y, x) components -> beam frame
    steps = beam @ geometry.q_basis_inv_nm  # columns: one rocking step, one row, one column
    assert np.allclose(beam @ geometry.q_center_inv_nm, [-7.93887843, 9.9762986, -23.69863796], atol=1e-6)
    xu = {0: [2.06812653e-03, 0.0, -6.92707599e-04], 1: [0.00092864, -0.00489563, -0.00058421]}
    for axis, expected in xu.items():
        assert np.allclose(steps[:, axis], expected, atol=5e-7)  # 1e-4 of a step
    # a TIFF column of 34-ID-C runs the other way: the frames are imported with --flip-cols
    assert np.allclose(steps[:, 2], -np.array([-2.67176985e-03, -6.03566064e-08, -4.24646565e-03]), atol=5e-7)
