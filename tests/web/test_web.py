"""The live page's parts without a browser: display helpers, progress, state, HTTP routes, decisions, topics."""

import base64
import http.client
import io
import json
import re
import threading
import urllib.error
import urllib.request
from importlib import resources

import numpy as np
import pytest

from streamer.geometry import OrthogonalGeometry
from streamer.messaging.decision import DecisionListener, load_token
from streamer.messaging.results import ResultsSubscriber, decode, encode
from streamer.messaging.transport import FrameSender
from streamer.phasing import PhasingConfig
from streamer.service.config import ServiceConfig, WebConfig
from streamer.service.pipeline import Pipeline
from streamer.service.progress import ScanProgress
from streamer.settings import ConfigError, from_mapping
from streamer.web import LiveState, WebServer


def test_progress_counts_frames_rate_and_gaps():
    p = ScanProgress()
    p.start("r", 0, 10, now=0.0)
    for i, t in ((0, 1.0), (1, 1.5), (4, 2.0), (5, 2.5)):
        p.frame("r", 0, i, now=t)
    snap = p.snapshot("r", 0, now=3.0)
    assert snap["received"] == 4 and snap["expected"] == 10 and snap["gaps"] == [2, 3] and snap["rate_hz"] == 2.0
    done = p.finish("r", 0, now=3.0, status="incomplete")
    assert done["gap_count"] == 6 and done["gaps"] == [2, 3, 6, 7, 8, 9] and done["status"] == "incomplete"
    assert p.open_scans == [] and p.snapshot("r", 0, now=4.0) is None
    p.frame("r", 1, 0, now=5.0, expected=3)  # a scan opened by its first frame (no start seen)
    assert p.snapshot("r", 1, now=5.0)["expected"] == 3


# -- state ------------------------------------------------------------------------------------
def _event(scan, run="r", **extra):
    return {"run": run, "scan": scan, "voltage_v": float("nan"), "flags": [], **extra}


def test_state_turns_packed_arrays_into_base64_float32_and_nan_into_null():
    state = LiveState()
    image = np.arange(6, dtype=np.float64).reshape(2, 3)
    result = decode(encode("peak_image", 1, {"run": "r", "scan": 0, "image": image}))  # as the page receives it
    state.add(result.topic, result.body)
    state.add("event", {"seq": 2, "event": _event(0)})
    snap = json.loads(state.snapshot()[1])
    packed = snap["latest"]["peak_image"]["image"]
    values = np.frombuffer(base64.b64decode(packed["f32"]), "<f4").reshape(packed["shape"])
    np.testing.assert_array_equal(values, image)
    assert snap["events"][0]["voltage_v"] is None and "seq" not in snap["latest"]["peak_image"]
    state.add("unknown_topic", {"run": "r"})  # ignored, not an error
    assert state.version == 2


def test_state_follows_the_newest_run_and_reports_what_changed():
    state = LiveState(history=3)
    state.add("event", {"event": _event(0)})
    state.add("slices", {"run": "r", "scan": 0})
    state.add("health", {"queue_depth": 0})
    assert [json.loads(u)["kind"] for _, u in state.wait_since(1, 0.01)] == ["slices", "health"]
    assert state.kept_of("slices", 0) is not None and state.kept_of("slices", 7) is None
    state.add("event", {"event": _event(0, run="r2")})  # a new run: its own timeline
    snap = json.loads(state.snapshot()[1])
    assert snap["run"] == "r2" and len(snap["events"]) == 1 and set(snap["latest"]) == {"health"}
    assert state.kept_of("slices", 0) is None
    assert state.wait_since(0, 0.01) is None  # older updates are gone: the caller must resend the whole state
    assert state.wait_since(state.version, 0.01) == []


# -- HTTP -------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    web = WebServer(port=0, decision_timeout_s=0.3, decision_token_file=tmp_path / "decision.token").start()
    yield web
    web.stop()


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def _get_error(url) -> int:
    with pytest.raises(urllib.error.HTTPError) as exc:
        _get(url)
    exc.value.close()
    return exc.value.code


def _page_token(url) -> str:
    """The per-page token, as the page's script finds it in the served page."""
    (token,) = re.findall(r'<meta name="bcdi-page-token" content="([^"]+)">', _get(url)[2].decode())
    return token


def _post(url, body, content_type="application/json", token: str | None = "page", origin: str | None = "own",
          **headers):
    """POST a decision as the page does: its own Origin and the page token (``None``: leave it out)."""
    headers = {"Content-Type": content_type, **headers}
    if token is not None:
        headers["X-BCDI-Token"] = _page_token(url) if token == "page" else token
    if origin is not None:
        headers["Origin"] = url.rstrip("/") if origin == "own" else origin
    req = urllib.request.Request(url + "api/decision", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_server_binds_localhost_and_serves_the_page_and_its_files(server):
    assert server.url.startswith("http://127.0.0.1:")
    status, kind, page = _get(server.url)
    assert status == 200 and kind.startswith("text/html") and b"/static/app.js" in page
    for name, kind_prefix in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, kind, _ = _get(server.url + "static/" + name)
        assert status == 200 and kind.startswith(kind_prefix)
    for bad in ("static/../server.py", "static/nothing.js", "nowhere"):
        assert _get_error(server.url + bad) == 404
    assert json.loads(_get(server.url + "api/state")[2])["events"] == []


def test_requests_for_another_host_are_refused(server):
    req = urllib.request.Request(server.url + "api/state", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    exc.value.close()
    assert exc.value.code == 403
    req = urllib.request.Request(server.url + "api/state", headers={"Host": "localhost"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def test_shipped_files_reach_nothing_beyond_localhost():
    static = resources.files("streamer.web").joinpath("static")
    names = sorted(p.name for p in static.iterdir())
    assert names == ["app.js", "index.html", "style.css", "view3d.js"]
    for name in names:
        text = static.joinpath(name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), f"{name} names a remote host"


def test_per_scan_routes(server):
    server.state.add("slices", {"run": "r", "scan": 4, "centre": [1, 2, 3]})
    server.state.add("peak_image", {"run": "r", "scan": 4, "baseline_scans": 1})
    assert json.loads(_get(server.url + "api/slices?scan=4")[2])["centre"] == [1, 2, 3]
    assert json.loads(_get(server.url + "api/peak_image?scan=4")[2])["baseline_scans"] == 1
    for query, code in (("scan=5", 404), ("scan=x", 400), ("", 400)):
        assert _get_error(server.url + "api/slices?" + query) == code
    assert _get_error(server.url + "api/peak_image?scan=3") == 404


def test_decision_reaches_the_listener_and_bad_ones_are_refused(tmp_path):
    listener = DecisionListener("tcp://127.0.0.1:*", token_file=tmp_path / "decision.token")
    web = WebServer(port=0, decision_endpoint=listener.endpoint, decision_token_file=tmp_path / "decision.token").start()
    try:
        status, reply = _post(web.url, json.dumps({"run": "r", "scan": 3, "action": "remeasure"}).encode())
        assert status == 200 and reply["sent"]["action"] == "remeasure"
        got = listener.wait(5, scan=3)
        assert got["run"] == "r" and got["source"] == "web"
        assert json.loads(web.state.snapshot()[1])["decisions"][0]["scan"] == 3
        status, reply = _post(web.url, b'{"run": "r", "scan": 3, "action": "explode"}')
        assert status == 400 and "decision: action must be 'remeasure'" in reply["error"]
        assert _post(web.url, b'{"run": "r"}')[0] == 400
        assert _post(web.url, b"not json")[0] == 400
        assert _post(web.url, b"run=r&scan=3", "application/x-www-form-urlencoded")[0] == 415  # no cross-site forms
        assert _post(web.url, b"x" * 5000)[0] == 400
    finally:
        web.stop()
        listener.close()


def test_decision_without_a_listener_is_a_timeout_error(server, tmp_path):
    server._http.decision_endpoint = f"ipc://{tmp_path}/nobody-listens"
    status, reply = _post(server.url, b'{"run": "r", "scan": 1, "action": "continue"}')
    assert status == 504 and "no decision listener" in reply["error"]


@pytest.fixture
def deciding(tmp_path):
    """A page and the plan's listener sharing a token file in tmp_path."""
    token_file = tmp_path / "decision.token"
    listener = DecisionListener("tcp://127.0.0.1:*", token_file=token_file)
    web = WebServer(port=0, decision_endpoint=listener.endpoint, decision_token_file=token_file).start()
    yield web, listener, load_token(token_file)
    web.stop()
    listener.close()


DECISION = json.dumps({"run": "r", "scan": 3, "action": "remeasure"}).encode()


@pytest.mark.parametrize("refused, match", [
    ({"origin": "http://evil.example"}, "origin 'http://evil.example' are refused"),
    ({"origin": "null"}, "origin 'null' are refused"),
    ({"origin": "http://127.0.0.1:1"}, "origin 'http://127.0.0.1:1' are refused"),  # another local server
    ({"origin": "https://127.0.0.1"}, "are refused"),
    ({"token": None}, "a decision needs the page's token in the X-BCDI-Token header"),
    ({"token": None, "origin": None}, "needs the page's token"),  # curl without the token
    ({"token": "guessed"}, "wrong page token"),
    ({"Sec-Fetch-Site": "cross-site"}, "'cross-site' requests are refused"),
])
def test_a_decision_not_from_the_page_is_403_and_not_forwarded(deciding, refused, match):
    web, listener, _ = deciding
    status, reply = _post(web.url, DECISION, **refused)
    assert status == 403 and re.search(match, reply["error"]), reply
    assert listener.wait(0.3) is None and not listener.rejected  # nothing reached the channel
    assert json.loads(web.state.snapshot()[1])["decisions"] == []


def test_a_decision_from_the_page_is_forwarded_with_the_channels_token_the_browser_never_sees(deciding):
    web, listener, decision_token = deciding
    port = web.url.rstrip("/").rsplit(":", 1)[1]
    for scan, extra in ((3, {}), (4, {"origin": f"http://localhost:{port}"}), (5, {"origin": None})):  # curl-style
        status, reply = _post(web.url, json.dumps({"run": "r", "scan": scan, "action": "continue"}).encode(), **extra)
        assert status == 200 and reply["sent"]["scan"] == scan, reply
        got = listener.wait(5, scan=scan)
        assert got is not None and got["source"] == "web" and "token" not in got
    assert not listener.rejected
    page = _get(web.url)[2].decode() + _get(web.url + "api/state")[2].decode()
    assert decision_token not in page and decision_token not in json.dumps(reply)
    assert decision_token not in web.state.snapshot()[1] and _page_token(web.url) != decision_token


def test_the_page_token_is_new_at_every_start_and_the_page_may_not_be_framed(server, tmp_path):
    other = WebServer(port=0, decision_token_file=tmp_path / "decision.token").start()
    try:
        assert _page_token(server.url) != _page_token(other.url)
        status, reply = _post(server.url, DECISION, token=_page_token(other.url))
        assert status == 403 and "reload the page" in reply["error"]
    finally:
        other.stop()
    with urllib.request.urlopen(server.url, timeout=5) as r:
        assert r.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert b"__BCDI_PAGE_TOKEN__" not in r.read()


def test_an_unsafe_decision_token_file_sends_nothing_and_names_the_file(tmp_path):
    token_file = tmp_path / "decision.token"
    listener = DecisionListener("tcp://127.0.0.1:*", token_file=token_file)
    token_file.chmod(0o644)
    web = WebServer(port=0, decision_endpoint=listener.endpoint, decision_token_file=token_file).start()
    try:
        status, reply = _post(web.url, DECISION)
        assert status == 500 and f"decision token file {token_file} has mode 0644" in reply["error"]
        assert listener.wait(0.3) is None
        token_file.chmod(0o600)  # mended: the next click goes through, no restart needed
        assert _post(web.url, DECISION)[0] == 200 and listener.wait(5, scan=3)["action"] == "remeasure"
    finally:
        web.stop()
        listener.close()


def test_stream_sends_the_state_then_each_update(server):
    server.state.add("event", {"event": _event(0)})
    host, port = server.url[len("http://"):].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/api/stream")
    resp = conn.getresponse()
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.readline() == b"event: snapshot\n"
    assert json.loads(resp.readline()[len("data: "):])["events"][0]["scan"] == 0
    resp.readline()
    server.state.add("progress", {"run": "r", "scan": 1, "received": 5})
    assert resp.readline() == b"event: update\n"
    update = json.loads(resp.readline()[len("data: "):])
    assert update == {"kind": "progress", "body": {"run": "r", "scan": 1, "received": 5}}
    conn.close()


def test_a_busy_port_is_a_clear_error(server):
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{port}.*\[web\] port"):
        WebServer(port=port)


def test_review_of_a_recorded_run(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(_event(s)) + "\n" for s in range(3)))
    web = WebServer(port=0, events_path=path)
    assert [e["scan"] for e in json.loads(web.state.snapshot()[1])["events"]] == [0, 1, 2]
    web.stop()  # never started: stopping is still clean


# -- config and service ------------------------------------------------------------------------
def test_web_config_defaults_to_off_on_localhost_and_validates():
    cfg = ServiceConfig()
    assert not cfg.web.enabled and cfg.web.host == "127.0.0.1" and cfg.decision_endpoint.startswith("tcp://127.0.0.1")
    assert cfg.web.decision_token_file == ""  # the default path, the plan's default too
    assert from_mapping(ServiceConfig, {"web": {"enabled": True, "port": 0}}).web.enabled
    with pytest.raises(ConfigError, match="web.port must be less than or equal to 65535"):
        ServiceConfig(web={"port": 80000})
    with pytest.raises(ConfigError, match="decision_endpoint"):
        ServiceConfig(decision_endpoint="localhost:5570")
    with pytest.raises(ConfigError, match="web.enabled must be a valid boolean"):
        from_mapping(ServiceConfig, {"web": {"enabled": "yes"}})


GEOM = OrthogonalGeometry(shape_zyx=(16, 16, 16), voxel_nm=30.0)


def test_pipeline_publishes_progress_health_peak_image_and_slices(tmp_path, rng):
    cfg = ServiceConfig(out_dir=str(tmp_path), phasing=PhasingConfig(recipe="20HIO, 10ER", population=1),
                        realtime_policy="all")
    p = Pipeline(cfg)
    sub = ResultsSubscriber(p.results_endpoint)
    ready = threading.Event()
    thread = threading.Thread(target=p.run, kwargs={"on_ready": lambda _: ready.set()}, daemon=True)
    thread.start()
    assert ready.wait(5)
    z, y, x = np.ogrid[-8:8, -8:8, -8:8]
    vol = rng.poisson(2000 * np.exp(-(z**2 + y**2 + x**2) / 6.0)).astype(np.uint32)
    sender = FrameSender(p.frames_endpoint)
    sender.scan_start("r", 0, 16, {"voltage_v": 3.5, "capacity_mah_g": 20.0, "geometry": GEOM.to_dict()})
    for k in range(16):
        if k != 5:  # one frame never arrives
            sender.frame("r", 0, k, 7.0 + k, np.ascontiguousarray(vol[:, :, k]), timestamp=1000.0 + k)
    sender.scan_end("r", 0, 16)
    sender.run_stop("r")
    sender.close()
    got: dict[str, list] = {}
    with sub:
        while (result := sub.receive(20)) is not None:
            got.setdefault(result.topic, []).append(result.body)
            if result.topic == "run_done":
                break
    assert sub.closed and not sub.rejected
    thread.join(10)
    final = [m for m in got["progress"] if m["status"] != "running"]
    assert len(final) == 1 and final[0]["received"] == 15 and final[0]["expected"] == 16
    assert final[0]["gaps"] == [5] and final[0]["status"] == "incomplete"
    health = got["health"][-1]
    assert health["queue_depth"] == 0 and health["skipped_reconstructions"] == 0
    assert health["rejected"].get("incomplete_scan") == 1
    (peak,) = got["peak_image"]
    image = peak["image"]
    measured = [k for k in range(16) if k != 5]  # the missing frame is left out of the average
    np.testing.assert_allclose(image, vol[:, :, measured].mean(axis=2), rtol=1e-5)
    np.testing.assert_array_equal(peak["baseline"], image)  # the first scan is its own baseline
    (sl,) = got["slices"]
    assert sl["scan"] == 0 and sl["run"] == "r" and "vortices" in sl and "domain_boundaries" in sl
    amp = sl["amplitude"]["yx"]
    assert amp.dtype == np.float32 and amp.shape == tuple(sl["shape"][1:]) and amp.max() == pytest.approx(1.0)


def test_serve_starts_the_page_when_configured(tmp_path):
    from streamer.cli.pipeline import EmbeddedPipeline

    cfg = ServiceConfig(out_dir=str(tmp_path),
                        web=WebConfig(enabled=True, port=0, decision_token_file=str(tmp_path / "decision.token")))
    pipeline = EmbeddedPipeline(cfg, out=io.StringIO())
    try:
        url = pipeline.endpoints["web"]
        assert url.startswith("http://127.0.0.1:") and b"bcdi-stream" in _get(url)[2]
    finally:
        sender = FrameSender(pipeline.endpoints["frames"])
        sender.run_stop("r")
        sender.close()
        assert pipeline.wait(30) == 0


def test_a_busy_web_port_leaves_the_pipeline_running_without_its_page(tmp_path, server):
    from streamer.cli.pipeline import EmbeddedPipeline

    busy = int(server.url.rstrip("/").rsplit(":", 1)[1])
    pipeline = EmbeddedPipeline(ServiceConfig(out_dir=str(tmp_path), web=WebConfig(enabled=True, port=busy)),
                                out=io.StringIO())
    assert "web" not in pipeline.endpoints and "frames" in pipeline.endpoints
    sender = FrameSender(pipeline.endpoints["frames"])
    sender.run_stop("r")
    sender.close()
    assert pipeline.wait(30) == 0
