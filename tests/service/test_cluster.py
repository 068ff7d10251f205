"""Reconstructions on a real Dask LocalCluster (two worker processes on loopback) equal the in-process ones."""

import logging
import os
import signal
import socket
import time

import distributed
import numpy as np
import pytest

from streamer.backend import get_namespace
from streamer.phasing import PhasingConfig, reconstruct
from streamer.service.cluster import (
    ClusterCosts,
    ClusterReconstructor,
    reconstruct_on_cluster,
    submit_scan,
)
from streamer.service.config import ClusterConfig, ServiceConfig
from streamer.service.processing import reconstructor_for
from streamer.settings import ConfigError

NP = get_namespace("numpy")
# ER only: no HIO chaos to amplify the last-bit differences of FFTW plans of another batch size
CONFIG = PhasingConfig(recipe="20ER", population=4, generations=3, average=2, metric="sharpness")


def _intensity(n=32, seed=0):
    """Poisson counts of a small plate with a phase winding (a vortex), centred."""
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    plate = (np.abs(z) < n // 8) & (y**2 + x**2 < (n // 4) ** 2)
    obj = plate * np.exp(1j * np.arctan2(y, x + 0.5))
    expected = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2
    return np.random.default_rng(seed).poisson(expected * 2e4 / expected.max()).astype(np.float32)


def _cluster():
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=":0")


@pytest.fixture(scope="module")
def intensity():
    return _intensity()


@pytest.fixture(scope="module")
def in_process(intensity):
    return reconstruct(intensity, xp=NP, config=CONFIG, rng=7)


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


def _assert_same(got, want):
    assert got.best == want.best
    np.testing.assert_allclose(got.chi_square, want.chi_square, rtol=1e-4)
    np.testing.assert_allclose(got.error_curve, want.error_curve, rtol=1e-4)
    assert np.abs(got.rho - want.rho).max() <= 1e-4 * np.abs(want.rho).max()


def test_sharded_guided_reconstruction_equals_in_process(client, intensity, in_process):
    seen = []
    result, report = reconstruct_on_cluster(client, intensity, config=CONFIG, rng=7, backend="numpy", members=True,
                                            progress=seen.append)
    _assert_same(result, in_process)
    np.testing.assert_allclose(result.members, in_process.members, rtol=0, atol=1e-4 * np.abs(in_process.rho).max())
    assert result.generations == 3 and result.error_curve.shape == (60,)
    assert [s["generation"] for s in seen] == [1, 2, 3]
    assert report["workers"] == 2 and report["shards"] == [2, 2] and not report["workers_lost"]
    assert report["scatter_bytes"] == 2 * intensity.size * 4  # sqrt(I) as float32, once per worker
    # moved: the best member (complex64 + bool) once per breeding, the other shard of the last generation
    # to the worker that averages, the result (object, support, two error maps, the averaged members);
    # and the scattered data, which Dask's broadcast copies from the first worker to the second;
    # gathering the population every generation would be 4 x 9 bytes per voxel per generation.
    # Dask's work stealing may run a small task on the other worker and move one more map or support
    # (seen once in CI: 1.1 bytes per voxel over the count above), so 4 bytes per voxel are allowed for it
    voxels = intensity.size
    most = voxels * (9 * (CONFIG.generations - 1) + 9 * 2 + 17 + 8 * CONFIG.average + 4 + 4) + 100_000
    gathering = voxels * 4 * 9 * CONFIG.generations + report["scatter_bytes"]
    assert 8 * voxels < report["moved_bytes"] <= most < gathering


def test_one_task_per_scan_equals_in_process(client, intensity, in_process):
    other = _intensity(seed=1)
    futures = [submit_scan(client, intensity, config=CONFIG, rng=7, backend="numpy"),
               submit_scan(client, other, config=CONFIG, rng=8, backend="numpy")]
    first, second = client.gather(futures)
    _assert_same(first, in_process)
    _assert_same(second, reconstruct(other, xp=NP, config=CONFIG, rng=8))


def test_service_reconstructor_reports_the_cluster(client, intensity, in_process):
    address = client.scheduler.address
    rec = reconstructor_for(ServiceConfig(cluster=ClusterConfig(scheduler=address, backend="numpy")))
    try:
        result = rec(intensity, xp=NP, config=CONFIG, rng=7)
    finally:
        rec.close()
    _assert_same(result, in_process)
    # the service's reconstructor brings the averaged members back (in-process it has them): its analysis reads them
    np.testing.assert_allclose(result.members, in_process.members, rtol=0, atol=1e-4 * np.abs(in_process.rho).max())
    assert rec.last_report["address"] == address and rec.last_report["shards"] == [2, 2]
    assert reconstructor_for(ServiceConfig()) is reconstruct


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_cluster_falls_back_in_process_loudly(intensity, in_process, caplog):
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    rec = ClusterReconstructor(address, backend="numpy", connect_timeout_s=1.0)
    with caplog.at_level(logging.WARNING, logger="streamer.service.cluster"):
        result = rec(intensity, xp=NP, config=CONFIG, rng=np.random.default_rng(3))
    want = reconstruct(intensity, xp=NP, config=CONFIG, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(result.rho, want.rho)
    assert rec.last_report["status"] == "unreachable" and rec.last_report["ran"] == "in-process"
    assert address in rec.last_report["error"]
    assert any("CLUSTER NOT USED" in r.getMessage() and address in r.getMessage() for r in caplog.records)
    rec.close()


@pytest.mark.parametrize("cluster, match", [("http://host:8786", "Dask scheduler address"),
                                            ("localhost:8786", "Dask scheduler address")])
def test_bad_cluster_address_is_a_config_error(cluster, match):
    with pytest.raises(ConfigError, match=match):
        ServiceConfig(cluster=ClusterConfig(scheduler=cluster))
    with pytest.raises(ConfigError, match="cluster.backend must be"):
        ServiceConfig(cluster={"backend": "tpu"})
    with pytest.raises(ConfigError, match=r"cluster \(the scheduler address\) moved to \[cluster\] scheduler"):
        ServiceConfig(cluster="tcp://127.0.0.1:8786")


def test_killing_a_worker_mid_run_still_completes(intensity, in_process):
    """SIGKILL the worker that is running a shard of generation 2: Dask recomputes its shards."""
    killed = []
    with _cluster() as cluster, distributed.Client(cluster, set_as_default=False) as client:
        def kill_a_busy_worker(generation):
            if generation != 1 or killed:
                return
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # poll until a shard task is on a worker
                busy = [w for w, keys in client.processing().items() if any("_run_shard" in str(k) for k in keys)]
                if busy:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("no shard of generation 2 ever started")
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(busy[0])

        result, report = reconstruct_on_cluster(client, intensity, config=CONFIG, rng=7, backend="numpy",
                                                timeout_s=120, on_submitted=kill_a_busy_worker)
    assert killed and report["workers_lost"] == killed and report["recomputed"]
    _assert_same(result, in_process)


@pytest.mark.parametrize("where", ["cluster", "unreachable"])
def test_service_event_says_where_the_scan_was_reconstructed(client, where):
    from streamer.geometry import OrthogonalGeometry
    from streamer.service.assembly import AssembledScan
    from streamer.service.processing import ScanProcessor

    geometry = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=30.0)
    address = client.scheduler.address if where == "cluster" else f"tcp://127.0.0.1:{_free_port()}"
    cluster = ClusterConfig(scheduler=address, backend="numpy", connect_timeout_s=1.0)
    processor = ScanProcessor(ServiceConfig(cluster=cluster, phasing=PhasingConfig(recipe="20ER", population=2, average=2)))
    vol = _intensity(16)  # lab order (q_z, q_y, q_x); frames are (q_z, q_y) at each q_x
    scan = AssembledScan("r", 0, {"geometry": geometry.to_dict()}, {k: np.ascontiguousarray(vol[:, :, k])
                                                                    for k in range(16)},
                         (16, 16, 16), np.arange(16.0), np.arange(16.0), [])
    try:
        event = processor.process(processor.prepare(scan, {"complete": True}))
    finally:
        processor.reconstructor.close()
    assert event["reconstruction"]["status"] == "done" and event["phasing"]["population"] == 2
    assert event["phasing"]["averaged"] >= 1  # the averaged members come back from the cluster too (0 when they did not)
    report = event["reconstruction"]["cluster"]
    assert report["address"] == address
    budget = event["phasing"]["budget"]  # the time budget holds on the cluster too, from its workers' costs
    assert budget["population"] == 2 and budget["predicted_s"] > 0 and budget["actual_s"] > 0
    if where == "cluster":
        assert report["shards"] == [1, 1] and report["workers_lost"] == []
    else:
        assert report["status"] == "unreachable" and report["ran"] == "in-process"


def test_the_budget_on_a_cluster_times_ffts_on_a_worker_and_shards_the_population(client):
    rec = ClusterReconstructor(client.scheduler.address, backend="numpy")
    costs = ClusterCosts(rec, NP, threads=1)
    try:
        one = costs((32, 32, 32), 1)
        assert one > 0 and set(costs._timed) == {(32, 32, 32)} and not costs.local._timed  # timed on a worker
        assert costs((32, 32, 32), 2) == one  # two workers: a member each, at once
        assert costs((32, 32, 32), 3) == costs((32, 32, 32), 4) == 2 * one
        futures = costs.plan_ahead((32, 32, 32), 4)
        assert len(futures) == 2 and all(f.result(timeout=60) is None for f in futures)  # each worker its shard
        assert costs.plan_ahead((32, 32, 32), 4) is futures  # once per shape
    finally:
        costs.close()
        rec.close()


def test_the_budget_of_an_unreachable_cluster_is_this_hosts():
    rec = ClusterReconstructor(f"tcp://127.0.0.1:{_free_port()}", backend="numpy", connect_timeout_s=1.0)
    costs = ClusterCosts(rec, NP, threads=1)
    try:
        assert costs((16, 16, 16), 4) == costs.local((16, 16, 16), 4) > 0  # the scan will run here
        assert not costs._timed
    finally:
        costs.close()
        rec.close()


def test_shipped_cluster_service_config_is_valid():
    from pathlib import Path

    from streamer.settings import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "ops/cluster/service-cluster.toml", ServiceConfig)
    assert cfg.cluster.scheduler.startswith("tcp://") and cfg.phasing.population == 40 and cfg.phasing.generations == 8
