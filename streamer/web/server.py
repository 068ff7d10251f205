"""The operator's live page: a small HTTP server that pushes the pipeline's results by server-sent events.

Routes: ``/`` the page, ``/static/<file>`` its script and style (shipped in the package),
``/api/state`` the whole state as JSON, ``/api/slices?scan=N`` and ``/api/peak_image?scan=N``
one recent scan's pictures, ``/api/stream`` server-sent events (a ``snapshot`` then
one ``update`` per published result), ``POST /api/decision`` ``{"run", "scan", "action"}`` sent on to
the plan's decision channel. It binds 127.0.0.1 unless told otherwise and fetches nothing from anywhere.

A decision is forwarded only from the page itself: a POST must carry the page's token (made at start,
in the served page's ``<meta name="bcdi-page-token">``, sent back as the ``X-BCDI-Token`` header) and,
when it has an ``Origin``, this server's own origin; anything else is 403 and nothing is sent. The
server adds the decision channel's own token (``streamer.messaging.decision.load_token``), which the
browser never sees.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs

from streamer.messaging.decision import DEFAULT_ENDPOINT, load_token, send_decision
from streamer.messaging.results import ResultsSubscriber
from streamer.recording.event_log import read_events
from streamer.settings import ConfigError
from streamer.web.state import LiveState

log = logging.getLogger(__name__)
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
MAX_BODY_BYTES = 4096
KEEPALIVE_S = 10.0
PAGE_TOKEN_HEADER = "X-BCDI-Token"
PAGE_TOKEN_SLOT = b"__BCDI_PAGE_TOKEN__"  # in index.html, replaced by the page token when served


def _static(name: str) -> bytes | None:
    if "/" in name or name.startswith(".") or Path(name).suffix not in STATIC_TYPES:
        return None
    res = resources.files("streamer.web").joinpath("static", name)
    return res.read_bytes() if res.is_file() else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the access log goes to debug, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")  # no other site may frame the page's buttons
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _host_refused(self) -> bool:
        """Answer 403 unless the request names this server by a local name (no DNS rebinding)."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host in {"127.0.0.1", "localhost", "::1", self.server.server_address[0]}:
            return False
        self._json(403, {"error": f"requests for host {host!r} are not served here"})
        return True

    def do_GET(self):
        if self._host_refused():
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = _static("index.html").replace(PAGE_TOKEN_SLOT, self.server.page_token.encode())
            self._send(200, page, STATIC_TYPES[".html"])
        elif path.startswith("/static/") and (data := _static(path[len("/static/"):])) is not None:
            self._send(200, data, STATIC_TYPES[Path(path).suffix])
        elif path == "/api/state":
            self._send(200, self.server.state.snapshot()[1].encode(), "application/json")
        elif path in ("/api/slices", "/api/peak_image"):
            self._per_scan(path[len("/api/"):])
        elif path == "/api/stream":
            self._stream()
        else:
            self._json(404, {"error": f"no such page: {path}"})

    def _per_scan(self, topic: str) -> None:
        query = parse_qs(self.path.partition("?")[2])
        try:
            scan = int(query["scan"][0])
        except (KeyError, ValueError):
            return self._json(400, {"error": f"ask for /api/{topic}?scan=<integer>"})
        text = self.server.state.kept_of(topic, scan)
        if text is None:
            return self._json(404, {"error": f"no {topic} kept for scan {scan}"})
        self._send(200, text.encode(), "application/json")

    def _stream(self) -> None:
        state = self.server.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            version, text = state.snapshot()
            self.wfile.write(f"event: snapshot\ndata: {text}\n\n".encode())
            self.wfile.flush()
            while not state.closed:
                updates = state.wait_since(version, KEEPALIVE_S)
                if updates is None:
                    version, text = state.snapshot()
                    chunk = f"event: snapshot\ndata: {text}\n\n"
                elif updates:
                    version = updates[-1][0]
                    chunk = "".join(f"event: update\ndata: {u}\n\n" for _, u in updates)
                else:
                    chunk = ": keep-alive\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _not_from_the_page(self) -> str | None:
        """Why this POST is refused (403), or None: a foreign Origin or Sec-Fetch-Site, no or a wrong page token."""
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.own_origins():
            return f"requests from origin {origin[:100]!r} are refused: only this server's own page may decide"
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return f"{site[:40]!r} requests are refused: only this server's own page may decide"
        sent = self.headers.get(PAGE_TOKEN_HEADER)
        if not sent:
            return f"a decision needs the page's token in the {PAGE_TOKEN_HEADER} header (reload the page)"
        if not hmac.compare_digest(sent.encode(errors="replace"), self.server.page_token.encode()):
            return "wrong page token: the server restarted since the page was loaded? reload the page"
        return None

    def do_POST(self):
        if self._host_refused():
            return
        if self.path != "/api/decision":
            return self._json(404, {"error": f"no such endpoint: {self.path}"})
        self.close_connection = True  # a refused request's body may be left unread: no next request on this one
        if (refusal := self._not_from_the_page()) is not None:
            log.warning("live page: refused a decision from %s: %s", self.address_string(), refusal)
            return self._json(403, {"error": refusal})
        # a JSON content type cannot be sent cross-site without a preflight, which this server refuses
        if self.headers.get_content_type() != "application/json":
            return self._json(415, {"error": "a decision must be sent as application/json"})
        declared = self.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isascii() and declared.isdigit() else -1
        if not 0 < length <= MAX_BODY_BYTES:
            return self._json(400, {"error": f"a decision body must be 1..{MAX_BODY_BYTES} bytes, got {length}"})
        try:
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict) or not {"run", "scan", "action"} <= set(body):
                raise ValueError("a decision needs run, scan and action")
            token = self.server.decision_token()
        except ConfigError as exc:  # an unsafe or unreadable token file: nothing is sent
            log.error("live page: no decision sent: %s", exc)
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
        except (ValueError, TypeError) as exc:
            return self._json(400, {"error": str(exc)})
        try:
            msg = send_decision(self.server.decision_endpoint, body["run"], body["scan"], body["action"],
                                source="web", timeout_s=self.server.decision_timeout_s, token=token)
        except (ValueError, TypeError) as exc:
            return self._json(400, {"error": str(exc)})
        except TimeoutError as exc:
            return self._json(HTTPStatus.GATEWAY_TIMEOUT, {"error": str(exc)})
        self.server.state.add_decision(msg)
        self._json(200, {"sent": msg})

    def do_OPTIONS(self):
        self._json(405, {"error": "cross-origin requests are not served"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: LiveState
    decision_endpoint: str
    decision_timeout_s: float
    decision_token_file: str | Path | None
    page_token: str
    _decision_token: str | None = None
    _token_lock: threading.Lock

    def own_origins(self) -> set[str]:
        """The origins of this server's page: every local name it answers to, with its port."""
        host, port = self.server_address[:2]
        names = {"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host}
        return {f"http://{n}:{port}" for n in names} | ({f"http://{n}" for n in names} if port == 80 else set())

    def decision_token(self) -> str:
        """The decision channel's token, read (or made) at the first decision; ConfigError on an unsafe file."""
        with self._token_lock:
            if self._decision_token is None:
                self._decision_token = load_token(self.decision_token_file)
            return self._decision_token


def _follow(endpoint: str, state: LiveState, stop: threading.Event) -> None:
    """Subscribe to the pipeline's results and keep ``state`` up to date until ``stop``."""
    with ResultsSubscriber(endpoint) as sub:  # unreadable messages are skipped (and counted) there
        while not stop.is_set():
            result = sub.receive(0.2)
            if result is None:
                continue
            try:
                state.add(result.topic, result.body)
            except Exception:  # a side path: a bad result is logged, the page goes on
                log.exception("live page: could not take a %r result", result.topic[:32])


class WebServer:
    """The live page on ``host:port`` (port 0: any free one), fed by ``results_endpoint`` if given."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, results_endpoint: str | None = None,
                 decision_endpoint: str = DEFAULT_ENDPOINT, events_path: Path | None = None,
                 decision_timeout_s: float = 2.0, state: LiveState | None = None,
                 decision_token_file: str | Path | None = None):
        self.state = state or LiveState()
        if events_path is not None:  # a recorded run to review
            for event in read_events(events_path):
                self.state.add("event", {"event": event})
        try:
            self._http = _Server((host, port), _Handler)
        except OSError as exc:
            raise OSError(f"live page: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                          f"choose another [web] port") from None
        self._http.state = self.state
        self._http.decision_endpoint = decision_endpoint
        self._http.decision_timeout_s = decision_timeout_s
        self._http.decision_token_file = decision_token_file  # None or "": the default (load_token)
        self._http.page_token = secrets.token_urlsafe(32)  # new at every start: a reloaded page gets it
        self._http._token_lock = threading.Lock()
        self.results_endpoint = results_endpoint
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> Self:
        self._threads.append(threading.Thread(target=self._http.serve_forever, name="web-http", daemon=True))
        if self.results_endpoint:
            self._threads.append(threading.Thread(target=_follow, args=(self.results_endpoint, self.state, self._stop),
                                                  name="web-feed", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.state.close()
        if self._threads:  # shutdown() waits for serve_forever, so only once it was started
            self._http.shutdown()
        self._http.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
