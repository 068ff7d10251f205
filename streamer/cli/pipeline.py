"""What demo and replay share: the embedded pipeline process and the operator's per-scan lines."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from pathlib import Path

from streamer.analysis.labels import flag_label, pair_label
from streamer.messaging.results import ResultsSubscriber
from streamer.service.config import ServiceConfig

LINE_HEADER = f"{'scan':>4} {'voltage':>8} {'capacity':>9} {'w_par':>8} {'w_perp':>8} {'vortices':>8} {'latency':>8}  flags"


def format_event_line(ev: dict) -> str:
    """One operator line per scan: scan, voltage, peak widths (nm^-1), vortex count, latency, flags."""
    peak = ev.get("peak") or {}
    flags = ev.get("flags") or []
    names = [flag_label(f) for f in flags] + [pair_label(p) for p in ev.get("dislocation_pairs") or []]
    recon = ev.get("reconstruction") or {}
    if recon.get("status") == "skipped":
        names.append("(not reconstructed: the service stopped first)" if recon.get("reason") == "stopped"
                     else f"(not reconstructed: scan {recon.get('superseded_by')} was newer)")
    if ev.get("error"):
        names.append(f"ERROR: {ev['error']}")
    wpar = peak.get("width_parallel", float("nan"))
    wperp = peak.get("width_perpendicular", float("nan"))
    return (f"{ev['scan']:>4} {ev['voltage_v']:>7.3f}V {ev['capacity_mah_g']:>5.1f}mAh/g {wpar:>8.4f} {wperp:>8.4f} "
            f"{len(ev.get('vortices') or []):>8} {ev['latency_s']:>7.2f}s  {', '.join(names) or '-'}")


def _print_results(endpoint: str, done: threading.Event, out=sys.stdout, heard=lambda: None) -> None:
    """Subscribe to the pipeline's results and print one line per scan until the run is done (``heard`` is called
    on every message)."""
    last_seq = 0
    with ResultsSubscriber(endpoint) as sub:  # unreadable messages are skipped (and counted) there
        while True:
            result = sub.receive(0.5)
            if result is None:
                if done.is_set():
                    return
                continue
            heard()
            if result.seq != last_seq + 1:
                print(f"  (missed {result.seq - last_seq - 1} result message(s))", file=out, flush=True)
            last_seq = result.seq
            if result.topic == "event":
                print(format_event_line(result.body["event"]), file=out, flush=True)
            elif result.topic == "run_done":
                rejected = result.body.get("rejected") or {}
                if rejected:
                    print(f"  pipeline rejected: {rejected}", file=out, flush=True)
                return


class EmbeddedPipeline:
    """The pipeline service in a second process, with a printer of its results in this one."""

    def __init__(self, service: ServiceConfig, out=sys.stdout):
        from streamer.service.launch import serve

        Path(service.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(service.out_dir) / "events.jsonl").unlink(missing_ok=True)
        service = service.replace(exit_on_run_stop=True)
        mp = multiprocessing.get_context("spawn")
        parent, child = mp.Pipe()
        self.proc = mp.Process(target=serve, args=(service, child), name="bcdi-pipeline", daemon=True)
        self.proc.start()
        if not parent.poll(60):
            self.proc.kill()
            raise RuntimeError("the pipeline process did not start within 60 s")
        self.endpoints = parent.recv()
        if "web" in self.endpoints:
            print(f"live page: {self.endpoints['web']}", file=out, flush=True)
        self.out = out
        self._heard = time.monotonic()  # the last result message's arrival
        self._done = threading.Event()
        self._printer = threading.Thread(target=_print_results, args=(self.endpoints["results"], self._done, out,
                                                                      self._hear), daemon=True)
        self._printer.start()
        time.sleep(0.3)  # let the subscription reach the publisher before the first result

    def _hear(self) -> None:
        self._heard = time.monotonic()

    def wait(self, idle_s: float = 600) -> int:
        """Wait for the pipeline to finish the run, for as long as it keeps publishing: a replay sends its frames
        faster than they are reconstructed, and its last scans come minutes after its last frame. Its exit code;
        1 if it published nothing for ``idle_s`` and was stopped (said on ``out``)."""
        self._heard = max(self._heard, time.monotonic())
        while self.proc.is_alive() and time.monotonic() - self._heard < idle_s:
            self.proc.join(timeout=min(1.0, idle_s))
        self._done.set()
        self._printer.join(timeout=5)
        if self.proc.exitcode is None:
            self.proc.kill()
            print(f"the pipeline published nothing for {idle_s:g} s and was stopped: scans still in it are lost",
                  file=self.out, flush=True)
            return 1
        return 0 if self.proc.exitcode == 0 else 1
