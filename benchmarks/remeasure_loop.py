"""The re-measure loop timed (issue 19): from a scan's last frame to its flag on the live page, the
operator's click, and the plan starting the re-measurement.

The demo's beamtime (the `reference` scenario on the 48^3 grid, 0.2 s frames, simulated devices) runs
`operando_series` with ``policy="ask"``: after each scan the plan waits for the pipeline's verdict and, on a
flag, for the operator's decision. The pipeline service and its live page run here on loopback as
`bcdi-stream serve --web` runs them. A scripted operator follows the page's server-sent events and, as soon
as a scan's flag appears there, clicks "re-measure" through the page's own endpoint (POST /api/decision
with the page token, as the button does): human reaction time is left out, and stated so. Times are wall
clock on this machine: the documents' times for frames and runs, arrival times for the page.

    .venv/bin/python benchmarks/remeasure_loop.py
    .venv/bin/python benchmarks/remeasure_loop.py --scenario reference --seed 1
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bluesky import RunEngine

from plans import operando_series
from plans.operando import REMEASURE_FLAGS
from sim.devices import make_beamline
from sim.scenario import load_scenario
from streamer.beamline.bluesky_bridge import FrameStreamer
from streamer.beamline.verdict import OperatorDecision, PipelineVerdict
from streamer.cli import process_settings
from streamer.geometry import OrthogonalGeometry
from streamer.messaging.transport import FrameSender
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline
from streamer.web import WebServer


class Operator:
    """Follows the live page's stream; clicks "re-measure" on the page as soon as a scan shows a flag that asks
    for one (scans that are themselves re-measurements excluded: the plan does not ask about them)."""

    def __init__(self, url: str, remeasures: set[int]):
        self.url, self.remeasures = url, remeasures
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        self.token = re.search(r'name="bcdi-page-token" content="([^"]+)"', page).group(1)
        self.seen: dict[int, float] = {}  # scan -> when its flag reached the page's stream
        self.clicked: dict[int, tuple[float, float]] = {}  # scan -> (click sent, page's answer)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        with urllib.request.urlopen(self.url + "api/stream", timeout=300) as stream:
            kind = None
            for raw in stream:
                if self._stop.is_set():
                    return
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "update":
                    update = json.loads(line[6:])
                    if update["kind"] == "event":
                        self._on_event(update["body"]["event"], time.time())

    def _on_event(self, event: dict, now: float) -> None:
        scan = int(event["scan"])
        if scan in self.seen or scan in self.remeasures:
            return
        if not {f.get("kind") for f in event.get("flags", [])} & set(REMEASURE_FLAGS):
            return
        self.seen[scan] = now
        body = json.dumps({"run": event["run"], "scan": scan, "action": "remeasure"}).encode()
        request = urllib.request.Request(self.url + "api/decision", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "X-BCDI-Token": self.token})
        sent = time.time()
        urllib.request.urlopen(request, timeout=10).read()
        self.clicked[scan] = (sent, time.time())

    def stop(self) -> None:
        self._stop.set()


class Documents:
    """Per run: its start document and time, and the time of its first and last frame (event documents)."""

    def __init__(self, remeasures: set[int]):
        self.runs: dict[int, dict] = {}
        self.remeasures = remeasures
        self._current = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._current = doc["scan_index"]
            self.runs[self._current] = {"start": doc["time"], "md": doc, "frames": []}
            if "remeasure_of" in doc:
                self.remeasures.add(doc["scan_index"])
        elif name == "event" and self._current is not None:
            self.runs[self._current]["frames"].append(doc["time"])


def main(argv=None) -> int:
    process_settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exposure-s", type=float, default=0.2)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="remeasure-loop-"))
    token_file = tmp / "decision.token"
    geometry = OrthogonalGeometry()
    scenario = load_scenario(args.scenario)
    pipeline = Pipeline(ServiceConfig(out_dir=str(tmp / "out"), realtime_policy="all", frames_port=0, results_port=0))
    worker = threading.Thread(target=pipeline.run, daemon=True)
    worker.start()
    decision = OperatorDecision("tcp://127.0.0.1:0", timeout_s=120.0, token_file=token_file)
    web = WebServer(results_endpoint=pipeline.results_endpoint, decision_endpoint=decision.endpoint,
                    decision_token_file=token_file).start()
    remeasures: set[int] = set()
    operator = Operator(web.url, remeasures)
    docs = Documents(remeasures)
    verdict = PipelineVerdict(pipeline.results_endpoint, timeout_s=120.0)
    _, stage, detector, potentiostat = make_beamline(scenario, geometry, seed=args.seed, fast=False)  # real time
    sender = FrameSender(pipeline.frames_endpoint)
    RE = RunEngine({})
    RE.subscribe(FrameStreamer(sender, image_field=detector.image.name))
    RE.subscribe(docs)
    t0 = time.time()
    try:
        RE(operando_series(detector, stage, potentiostat, geometry.theta_bragg_deg,
                                    geometry.rocking_step_deg * geometry.num_rocking_steps, geometry.num_rocking_steps,
                                    args.exposure_s, num_scans=len(scenario.stages), series="remeasure-loop",
                                    verdict=verdict, decision=decision, policy="ask",
                                    md={"geometry": geometry.to_dict(), "sample": "simulated plate"}))
        sender.run_stop("remeasure-loop")
    finally:
        sender.close()
        verdict.close()
        operator.stop()
        pipeline.stop()
        worker.join(30)
        web.stop()
    print(f"scenario {args.scenario!r} seed {args.seed}: {len(docs.runs)} runs in {time.time() - t0:.0f} s; "
          f"48^3 grid, {geometry.num_rocking_steps} frames x {args.exposure_s} s; the operator's reaction left out")
    print("| flagged scan | last frame -> flag on the page (s) | flag -> click sent (s) | click -> page's answer (s) "
          "| click -> re-measure run starts (s) | -> its first frame (s) | last frame -> re-measure's first frame (s) |")
    print("|---|---|---|---|---|---|---|")
    rows = 0
    for scan, seen in sorted(operator.seen.items()):
        again = next((k for k, r in docs.runs.items() if r["md"].get("remeasure_of") == scan), None)
        last = docs.runs[scan]["frames"][-1]
        sent, answered = operator.clicked.get(scan, (float("nan"), float("nan")))
        if again is None:
            print(f"| {scan} | {seen - last:.2f} | {sent - seen:.3f} | {answered - sent:.3f} | no re-measure | - | - |")
            continue
        start, first = docs.runs[again]["start"], docs.runs[again]["frames"][0]
        print(f"| {scan} | {seen - last:.2f} | {sent - seen:.3f} | {answered - sent:.3f} | {start - sent:.3f} | "
              f"{first - start:.2f} | {first - last:.2f} |")
        rows += 1
    print(f"re-measured: {rows} of {len(operator.seen)} flagged scans; re-measure runs {sorted(remeasures)}")
    return 0 if rows == len(operator.seen) and rows > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
