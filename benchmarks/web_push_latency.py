"""Live page push latency: from a result published on the pipeline's PUB socket to its server-sent event.

A ResultsPublisher stands in for the pipeline; the page's server follows it; an HTTP client reads
/api/stream. Each published result carries its send time; the client notes when it arrives. The
slices message is a realistic size (three quantities x three 64x64 float32 planes).

    .venv/bin/python benchmarks/web_push_latency.py [--messages 200] [--period-s 0.02]
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time

import numpy as np

from streamer.messaging.results import ResultsPublisher
from streamer.web import WebServer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--period-s", type=float, default=0.02)
    args = ap.parse_args()

    pub = ResultsPublisher.bind("tcp://127.0.0.1:0")
    web = WebServer(port=0, results_endpoint=pub.endpoint).start()
    host, http_port = web.url[len("http://"):].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(http_port), timeout=10)
    conn.request("GET", "/api/stream")
    stream = conn.getresponse()
    delays: dict[str, list[float]] = {"event": [], "slices": []}

    def read():
        while True:
            line = stream.readline()
            if not line:
                return
            if line.startswith(b"data: ") and b'"kind"' in line[:20]:
                u = json.loads(line[6:])
                sent = u["body"].get("sent_at") or (u["body"].get("event") or {}).get("sent_at")
                if sent:
                    delays[u["kind"]].append(time.time() - sent)
                    if sum(map(len, delays.values())) == 2 * args.messages:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)  # the page's subscription reaches the PUB socket
    plane = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    slices = {q: {p: plane for p in ("yx", "zx", "zy")} for q in ("amplitude", "phase", "strain")}
    for scan in range(args.messages):
        event = {"run": "bench", "scan": scan, "flags": [], "sent_at": time.time()}
        pub.publish("event", {"event": event})
        pub.publish("slices", {"run": "bench", "scan": scan, "sent_at": time.time(), **slices})
        time.sleep(args.period_s)
    reader.join(30)
    conn.close()
    web.stop()
    pub.close()
    for kind, d in delays.items():
        d = np.array(d) * 1e3
        print(f"{kind:>7}: {len(d)}/{args.messages} received, latency median {np.median(d):.1f} ms, "
              f"p99 {np.percentile(d, 99):.1f} ms, max {d.max():.1f} ms")


if __name__ == "__main__":
    main()
