"""The live page in a real headless Chromium (Debian's, driven by Selenium): a replay of the reference
scenario, the per-scan timeline with its new_vortex flag, and a "re-measure" click reaching the plan.

The browser is the system's (/usr/bin/chromium + chromedriver, installed by ``make test``); nothing
is downloaded. Without it the test is skipped on a workstation and FAILS under CI=true.
The screenshots go to tests/artifacts/ (or $BCDI_ARTIFACTS).
"""

import io
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streamer.messaging.decision import DecisionListener
from streamer.phasing import PhasingConfig
from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline
from streamer.web import WebServer

CHROMIUM = os.environ.get("BCDI_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("BCDI_ARTIFACTS") or Path(__file__).parents[1] / "artifacts")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,2300", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # no host but this one resolves


def _browser_missing() -> list[str]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return missing


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = _browser_missing()
    if missing:
        message = f"the browser test needs {', '.join(missing)} (make test installs Debian's chromium and chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The reference scenario recorded by the demo (a token reconstruction: only the frames matter here)."""
    from streamer.cli import run_demo

    out_dir = tmp_path_factory.mktemp("reference")
    service = ServiceConfig(phasing=PhasingConfig(recipe="5ER", population=1), realtime_policy="all")
    assert run_demo(out_dir=out_dir, scenario="reference", exposure_s=0.5, realtime=False, seed=1,
                    service=service, out=io.StringIO()) == 0
    (path,) = out_dir.glob("*.h5")
    return path


@pytest.fixture
def live(tmp_path):
    """A pipeline on loopback, the page following its results, and the plan's decision listener."""
    # the live default (8 members, the best 4 averaged): a single member flagged a spurious vortex pair on
    # the boundary scan in one CI run, as one random start in a few can
    cfg = ServiceConfig(out_dir=str(tmp_path), phasing=PhasingConfig(), realtime_policy="all",
                        exit_on_run_stop=False)
    pipeline = Pipeline(cfg)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    token_file = tmp_path / "decision.token"  # the channel's token: never the user's own
    listener = DecisionListener("tcp://127.0.0.1:*", token_file=token_file)
    web = WebServer(port=0, results_endpoint=pipeline.results_endpoint, decision_endpoint=listener.endpoint,
                    decision_token_file=token_file).start()
    yield pipeline, web, listener
    web.stop()
    listener.close()
    pipeline.stop()
    thread.join(30)


def test_without_its_browser_the_browser_test_fails_under_ci(tmp_path):
    env = {**os.environ, "CI": "true", "BCDI_TEST_CHROMIUM": str(tmp_path / "no-chromium")}
    test = f"{__file__}::test_replay_on_the_live_page_flags_the_pair_and_sends_the_decision"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], check=False, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "1 error" in run.stdout and "skipped" not in run.stdout, run.stdout
    assert "no-chromium" in run.stdout


def _wait(driver, what, timeout_s=90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: d.execute_script(what))


def test_replay_on_the_live_page_flags_the_pair_and_sends_the_decision(browser, recording, live):
    from selenium.webdriver.common.by import By

    from streamer.cli import run_replay

    pipeline, web, listener = live
    browser.get(web.url)
    _wait(browser, "return document.body.dataset.ready === '1'", 20)
    assert run_replay(recording, to=pipeline.frames_endpoint, out=io.StringIO()) == 0
    # six reconstructions at the live default: well within a minute alone, minutes on a host shared with other runs
    _wait(browser, "return document.querySelectorAll('#timeline tbody tr').length === 6 && "
                   "document.getElementById('slices-title').textContent.includes('scan 5')", 300)

    rows = {int(r.get_attribute("data-scan")): r.find_element(By.CSS_SELECTOR, "td.flags").text
            for r in browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    assert [s for s, text in rows.items() if "new_vortex" in text] == [3]  # the pair appears at 3.73 V
    assert "domain_boundary" in rows[2] and "vortex_lost" in rows[5] and rows[0] == rows[1] == "-"
    for chart in ("voltage", "widths", "energy"):
        assert browser.find_element(By.ID, f"chart-{chart}").get_attribute("data-points") == "6"
    assert browser.find_element(By.ID, "health-queue").text == "0"
    assert browser.find_element(By.ID, "progress-text").text.startswith("scan 5: 48 of 48 frames")

    flagged = browser.find_element(By.CSS_SELECTOR, "#flags tbody tr[data-scan='3']")
    said = flagged.find_element(By.CSS_SELECTOR, ".sentence .said").text  # the pair in words: kind, place, confidence
    assert re.fullmatch(r"New screw dislocation pair, \d+ nm apart, \d+ nm below the surface \(confidence [01]\.\d+\): "
                        r"a nucleation stress of about \d+ MPa; .*", said), said
    flagged.find_element(By.CSS_SELECTOR, "button.remeasure").click()
    decision = listener.wait(10, scan=3)
    assert decision is not None and decision["action"] == "remeasure" and decision["source"] == "web"
    assert decision["run"] == f"{recording.stem}-replay"
    _wait(browser, "return document.getElementById('status-3').textContent.includes('sent: remeasure')", 10)
    assert not listener.rejected

    # a request from the page's own origin but without the page token is refused all the same
    refused = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/decision', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({run: 'x', scan: 3, action: 'continue'})})"
        ".then(async (r) => done([r.status, (await r.json()).error]), (e) => done([0, String(e)]));")
    assert refused[0] == 403 and "page's token" in refused[1], refused
    assert listener.wait(0.3) is None

    # no request left localhost: every resource the page loaded came from the page's own server
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(web.url) for r in resources), resources

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web-reference-latest.png"))
    # the flagged scan's reconstruction, its pair marked (the table was redrawn with the decision)
    browser.find_element(By.CSS_SELECTOR, "#flags tbody tr[data-scan='3'] td").click()
    _wait(browser, "return document.getElementById('slices-title').textContent.startsWith('selected scan 3')", 10)
    assert "2 vortex line(s)" in browser.find_element(By.ID, "slices-title").text
    assert browser.find_element(By.ID, "peak-now-cap").text == "scan 3"  # its projected peak beside the baseline
    assert browser.save_screenshot(str(ARTIFACTS / "web-reference-scan3.png"))

    browser.find_element(By.CSS_SELECTOR, "#timeline tbody tr[data-scan='2'] td").click()  # the domain boundary
    _wait(browser, "return document.getElementById('slices-title').textContent.startsWith('selected scan 2')", 10)
    assert "1 boundary" in browser.find_element(By.ID, "slices-title").text
    assert browser.save_screenshot(str(ARTIFACTS / "web-reference-scan2.png"))

    # the reconstruction's error bars (spread of the averaged members) on request
    browser.find_element(By.ID, "slice-errors").click()
    _wait(browser, "return document.getElementById('range-phase_error').style.display === '' && "
                   "document.getElementById('range-phase_error').textContent.includes('rad')", 10)
    assert browser.save_screenshot(str(ARTIFACTS / "web-reference-errors.png"))


GOLDEN = Path(__file__).parents[1] / "cli" / "golden" / "demo_reference_fast_events.jsonl"


def _scan_view(event, boundaries=()):
    """The slices body the service publishes for a golden scan, with its 3D scene: the demo's plate (48^3 grid of
    12 nm voxels, 288 x 264 x 96 nm) holding the event's lines and boundaries."""
    import numpy as np
    from scipy import ndimage

    from streamer.analysis.displacement import particle_fields
    from streamer.analysis.views import central_slices, scene_3d

    z, y, x = (np.arange(48)[:, None, None] - 24) * 12.0, (np.arange(48)[None, :, None] - 24) * 12.0, \
        (np.arange(48)[None, None, :] - 24) * 12.0
    plate = ndimage.gaussian_filter(((x / 144) ** 2 + (y / 132) ** 2 <= 1) & (np.abs(z) < 48), 0.7).astype(complex)
    particle = particle_fields(plate, voxel_nm=12.0, q_inv_nm=11.42)
    boundaries = list(boundaries) or event["domain_boundaries"]
    return {"run": event["run"], "scan": event["scan"], "voxel_nm": 12.0, **central_slices(particle),
            "vortices": event["vortices"], "domain_boundaries": boundaries,
            "scene": scene_3d(particle, event["vortices"], boundaries, voxel_nm=12.0)}


@pytest.fixture
def reviewed(tmp_path):
    """The page reviewing the golden reference run's scans 2 and 3, with their pictures and 3D scenes; scan 3
    also carries a flag whose kind is markup (it must reach the page as text)."""
    import json

    events = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    web = WebServer(port=0, decision_token_file=tmp_path / "decision.token").start()
    hostile = {"kind": "<img src=x onerror=\"document.body.dataset.pwned=1\">", "note": "<b>bold</b>"}
    for event in events:
        if event["scan"] == 3:
            event = {**event, "flags": event["flags"] + [hostile]}
        web.state.add("event", {"event": event})
    web.state.add("slices", _scan_view(events[2], events[2]["flags"][0]["boundaries"]))
    web.state.add("slices", _scan_view(events[3]))
    yield web, events
    web.stop()


def test_the_3d_view_draws_the_lines_of_the_scan_it_shows_and_flags_read_as_sentences(browser, reviewed):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    web, events = reviewed
    browser.get(web.url)
    _wait(browser, "return document.body.dataset.ready === '1' && document.getElementById('view3d').dataset.lines", 20)
    canvas = browser.find_element(By.ID, "view3d")
    # the latest scan (3): its two lines, each in its winding's colour as read back from the canvas's own pixels
    windings = ["+1" if v["winding"] > 0 else "-1" for v in events[3]["vortices"]]
    assert canvas.get_attribute("data-lines") == str(len(events[3]["vortices"])) == "2"
    assert canvas.get_attribute("data-windings") == ",".join(windings)
    assert canvas.get_attribute("data-line-colours") == ",".join("red" if w == "+1" else "blue" for w in windings)
    assert int(canvas.get_attribute("data-faces")) > 500 and canvas.get_attribute("data-scale-bar-nm") in ("50", "100")
    assert "scan 3; 2 vortex line(s), 0 boundary plane(s)" in browser.find_element(By.ID, "view3d-title").text

    # the flag in words: kind, place and confidence, with the mechanics; the raw record one click away
    row = browser.find_element(By.CSS_SELECTOR, "#flags tbody tr[data-scan='3']")
    said = [e.text for e in row.find_elements(By.CSS_SELECTOR, ".sentence .said")]
    assert said[0] == ("New screw dislocation pair, 107 nm apart, 91 nm below the surface (confidence 1.0): a "
                       "nucleation stress of about 74 MPa; about 15 MPa keeps them drifting apart")
    evidence = row.find_element(By.CSS_SELECTOR, ".sentence pre.evidence")
    assert not evidence.is_displayed()
    row.find_element(By.CSS_SELECTOR, ".sentence summary").click()
    assert evidence.is_displayed() and '"kind": "new_vortex"' in evidence.text and '"winding": -1' in evidence.text
    lost = browser.find_element(By.CSS_SELECTOR, "#flags tbody tr[data-scan='5'] .sentence .said").text
    assert lost.startswith("Screw dislocation (winding -1) gone, last seen at z 0, y 0, x -89 nm, 65 nm below the "
                           "surface: it left through the surface (confidence 1.0)")
    # markup from the wire is shown as text, never run
    assert browser.execute_script("return document.body.dataset.pwned") is None
    assert "<img src=x" in row.text and not row.find_elements(By.CSS_SELECTOR, "img")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before = browser.execute_script("return document.getElementById('view3d').toDataURL()")
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(80, 30).release().perform()
    assert browser.execute_script("return document.getElementById('view3d').toDataURL()") != before  # it turned
    assert canvas.get_attribute("data-line-colours") == ",".join("red" if w == "+1" else "blue" for w in windings)
    canvas.screenshot(str(ARTIFACTS / "web-3d-scan3.png"))
    browser.find_element(By.CSS_SELECTOR, "button[data-look='z']").click()  # down q, onto the layers
    canvas.screenshot(str(ARTIFACTS / "web-3d-scan3-along-z.png"))

    # an earlier scan: the boundary's plane, no lines
    browser.find_element(By.CSS_SELECTOR, "#timeline tbody tr[data-scan='2'] td").click()
    _wait(browser, "return document.getElementById('view3d-title').textContent.startsWith('selected scan 2')", 10)
    assert canvas.get_attribute("data-lines") == "0" and canvas.get_attribute("data-planes") == "1"
    canvas.screenshot(str(ARTIFACTS / "web-3d-scan2.png"))
    browser.save_screenshot(str(ARTIFACTS / "web-3d-page.png"))


def test_the_report_draws_the_3d_view_of_its_results(browser, tmp_path):
    """``bcdi-stream report``'s file: the latest result's 3D view, drawn by the page's script from inside the file."""
    import shutil

    import numpy as np

    from streamer.recording.result_file import write_result
    from streamer.report import write_report

    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from test_report_html import GEO, pair_plate

    shutil.copy(GOLDEN, tmp_path / "events.jsonl")
    rho = pair_plate()
    write_result(tmp_path / "scan-0003.h5", obj=rho, support=np.abs(rho) > 0, recipe="5ER",
                 metadata={"run": "r", "scan": 3, "voltage_v": 3.73, "geometry": GEO.to_dict()})
    report = write_report(tmp_path)
    browser.get(report.as_uri())
    _wait(browser, "return document.getElementById('view3d') && document.getElementById('view3d').dataset.lines", 20)
    canvas = browser.find_element("id", "view3d")
    assert canvas.get_attribute("data-lines") == "2" and canvas.get_attribute("data-windings") == "-1,+1"
    assert canvas.get_attribute("data-line-colours") == "blue,red"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    canvas.screenshot(str(ARTIFACTS / "report-3d-scan3.png"))
