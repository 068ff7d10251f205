"""Six real-size scans replayed at their original speed through `bcdi-stream serve` (issue 17).

The `real-size` scenario (benchmarks/scenarios/real-size.toml: the reference charge on a Timepix of 256 x 256
pixels, 200 frames of 0.25 s, so 50 s a scan) is simulated once, then `bcdi-stream serve` runs as a user
starts it (its default configuration, every scan reconstructed: realtime_policy "all") and `bcdi-stream
replay --speed 1` sends the recording to it. A subscriber on the results channel notes when each scan's
last frame was taken in (the scan's final progress message) and when its event arrived. A scan's result
is on time when its event arrives before the next scan's last frame (the last scan: within one scan's
duration); a skipped or failed reconstruction is a miss.

    .venv/bin/python benchmarks/replay_real_size.py --workdir /tmp/replay-real-size
    .venv/bin/python benchmarks/replay_real_size.py --scans 2        # a shorter check
    .venv/bin/python benchmarks/replay_real_size.py --scans 3 --cluster 2   # on a LocalCluster of 2 workers

``--cluster N`` reconstructs on a Dask LocalCluster of N worker processes on loopback (started here, one
thread each, FFT threads = cores / N), the service's `[cluster] scheduler` pointing at it: the time budget
then comes from the workers' FFT costs (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from streamer.messaging.results import ResultsSubscriber

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "benchmarks" / "scenarios" / "real-size.toml"
SCAN_S = 50.0  # 200 frames x 0.25 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen(endpoint: str, seen: dict, stop: threading.Event) -> None:
    """Arrival times of each scan's final progress message and of its event."""
    with ResultsSubscriber(endpoint, topics=("progress", "event")) as sub:
        while not stop.is_set():
            r = sub.receive(0.2)
            if r is None:
                continue
            now = time.monotonic()
            if r.topic == "progress" and r.body.get("status") != "running":
                seen.setdefault(r.body["scan"], {})["last_frame"] = now
            elif r.topic == "event":
                ev = r.body["event"]
                seen.setdefault(ev["scan"], {}).update(
                    event=now, status=ev.get("reconstruction", {}).get("status"), budget=(ev.get("phasing") or {}).get("budget"),
                    latency_s=ev.get("latency_s"), lines=len(ev.get("vortices", [])),
                    flags=[f.get("kind") for f in ev.get("flags", [])],
                    where=_where(ev.get("reconstruction", {}).get("cluster")))


def _where(report: dict | None) -> str:
    """Where the event says the scan was reconstructed: in-process, or the cluster's shards."""
    if not report:
        return "in-process"
    if "shards" in report:
        return f"{report['workers']} workers, shards {report['shards']}"
    return str(report.get("ran", "?"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/replay-real-size"))
    ap.add_argument("--scans", type=int, default=6, help="scans to simulate and replay")
    ap.add_argument("--json", type=Path, default=None, help="also write the per-scan figures here")
    ap.add_argument("--cluster", type=int, default=0, metavar="WORKERS",
                    help="reconstruct on a LocalCluster of this many worker processes (0: in-process)")
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        return _run(args, stack)


def _local_cluster(workers: int, stack: contextlib.ExitStack) -> str:
    """A LocalCluster of ``workers`` processes on loopback, closed with ``stack``: the service config's lines."""
    import distributed

    cluster = stack.enter_context(distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                           host="127.0.0.1", dashboard_address=":0"))
    threads = max(1, (os.cpu_count() or 1) // workers)
    return (f'[cluster]\nscheduler = "{cluster.scheduler_address}"\nbackend = "numpy"\n'
            f"[phasing]\nthreads = {threads}\n")


def _run(args, stack: contextlib.ExitStack) -> int:
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    bcdi = [sys.executable, "-m", "streamer.cli"]
    recording = work / "sim" / "sim-real-size-seed0.h5"
    if not recording.exists():
        subprocess.run(bcdi + ["simulate", str(SCENARIO), "--out", str(work / "sim"), "--scans", str(args.scans)],
                       check=True, cwd=ROOT)
    fp, rp = free_port(), free_port()
    config = work / "serve.toml"
    cluster = _local_cluster(args.cluster, stack) if args.cluster else ""
    config.write_text('realtime_policy = "all"\n[web]\nenabled = false\n' + cluster)
    out = work / f"serve-out-{int(time.time())}"
    log = (work / "serve.log").open("w")
    serve = subprocess.Popen(bcdi + ["serve", "--config", str(config), "--out", str(out), "--frames-port", str(fp),
                                     "--results-port", str(rp)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=log, text=True)
    seen: dict[int, dict] = {}
    stop = threading.Event()
    try:
        serve.stdout.readline()  # "frames: ..." once it listens
        listener = threading.Thread(target=listen, args=(f"tcp://127.0.0.1:{rp}", seen, stop), daemon=True)
        listener.start()
        time.sleep(1.0)  # the subscription reaches the publisher
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        subprocess.run(bcdi + ["replay", str(recording), "--to", f"tcp://127.0.0.1:{fp}", "--speed", "1"],
                       check=True, cwd=ROOT, capture_output=True)
        deadline = time.monotonic() + 3 * SCAN_S
        while time.monotonic() < deadline and sum("event" in s for s in seen.values()) < args.scans:
            time.sleep(0.5)
    finally:
        stop.set()
        serve.terminate()
        serve.wait(30)
        log.close()
    print(f"{args.scans} scans of 200 frames 256x256 (50 s each) replayed at speed 1 into serve "
          f"({f'on a LocalCluster of {args.cluster} workers' if args.cluster else 'in-process'}); load average "
          f"{load0:.1f} at the start, replay took {time.monotonic() - t0:.0f} s with the wait")
    print("| scan | last frame (s) | result (s) | result after last frame (s) | next scan's last frame (s) | on time "
          "| status | chosen | where | lines | flags |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    on_time = 0
    rows = []
    for k in range(args.scans):
        s = seen.get(k, {})
        end, ev = s.get("last_frame"), s.get("event")
        nxt = seen.get(k + 1, {}).get("last_frame") if k + 1 < args.scans else (end + SCAN_S if end else None)
        ok = bool(end and ev and nxt and ev < nxt and s.get("status") == "done")
        on_time += ok
        b = s.get("budget") or {}
        chosen = f"{b.get('population', '?')} x {b.get('iterations', '?')} on {'x'.join(map(str, b.get('shape', [])))}"
        rows.append({"scan": k, **{key: s.get(key) for key in ("status", "latency_s", "lines", "flags", "where")},
                     "after_last_frame_s": (ev - end) if end and ev else None, "on_time": ok})
        def fmt(t):
            return f"{t - t0:.1f}" if t else "-"

        print(f"| {k} | {fmt(end)} | {fmt(ev)} | {(ev - end) if end and ev else float('nan'):.1f} | {fmt(nxt)} | "
              f"{'yes' if ok else 'NO'} | {s.get('status')} | {chosen} | {s.get('where')} | {s.get('lines')} | "
              f"{s.get('flags')} |")
    print(f"on time: {on_time} of {args.scans}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if on_time == args.scans else 1


if __name__ == "__main__":
    raise SystemExit(main())
