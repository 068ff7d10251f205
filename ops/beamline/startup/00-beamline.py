"""bcdi-stream at the beamline: devices, plans and document forwarding for an IPython bluesky session
(``ipython --profile-dir=ops/beamline``) or bluesky-queueserver (``start-re-manager --startup-dir
ops/beamline/startup``).

Environment: BCDI_BEAMLINE_CONFIG (default ops/configs/beamline.toml); BCDI_BEAMLINE=epics (default:
the real hardware named in that file) or sim (the simulated twins, for training and tests).
With the EPICS hardware every rocking scan's start document carries its detector geometry, made from
the file's [experiment], [detector] and [rocking] tables, the scan and the detector's region and
binning (docs/beamline.md); in sim mode plans pass the simulator's geometry in ``md``.
"""

import atexit
import os
from pathlib import Path

from bluesky import RunEngine

from plans import (  # noqa: F401
    ParticleTarget,
    Remeasure,
    align_peak,
    experiment_md,
    operando_series,
    rocking_scan,
)
from streamer.beamline.hardware import load_beamline_config, make_epics_beamline
from streamer.beamline.hardware.session import GeometryInStart, link_pipeline

_config = load_beamline_config(os.environ.get("BCDI_BEAMLINE_CONFIG")
                               or Path(__file__).resolve().parents[2] / "configs" / "beamline.toml")
_mode = os.environ.get("BCDI_BEAMLINE", "epics")
if _mode == "sim":
    from sim.devices import make_beamline as _make_sim
    from sim.scenario import load_scenario as _load_scenario
    from streamer.geometry import OrthogonalGeometry as _Geometry

    _sample, theta, timepix, potentiostat = _make_sim(_load_scenario("reference"), _Geometry(), fast=False)
elif _mode == "epics":
    theta, timepix, potentiostat = make_epics_beamline(_config.epics)
    _geometry = GeometryInStart(_config, timepix)  # checks [experiment], [detector], [rocking] now
else:
    raise ValueError(f"BCDI_BEAMLINE must be 'epics' or 'sim', got {_mode!r}")

_link = link_pipeline(_config, image_field=timepix.image.name)
atexit.register(_link.close)
verdict = _link.verdict  # the pipeline's verdict on a scan (operando_series(..., verdict=verdict))
decision = _link.decision  # the operator's decision (policy="ask"): only decisions carrying the channel's token
# ([pipeline] decision_token_file, mode 0600) are taken; from a terminal:
# send_decision(endpoint, run, scan, action, token_file=<that file>) (streamer.messaging.decision)

RE = RunEngine({})
RE.md.update(_config.experiment.as_md())  # energy, distance, pixel size, hkl in every start document
RE.subscribe(_link.forwarder)  # every rocking scan's frames and documents to the pipeline
if _mode == "epics":  # each rocking scan's start document gets its detector geometry (docs/beamline.md)
    RE.preprocessors.append(_geometry)
