"""The plan side of a beamline session: pipeline verdict, operator decision, document forwarding, and the
detector geometry every rocking scan's start document carries."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bluesky.plan_stubs as bps
from bluesky.preprocessors import plan_mutator

from streamer.beamline.bluesky_bridge import FrameStreamer
from streamer.beamline.forwarding import SafeForwarder
from streamer.beamline.hardware.config import BeamlineConfig
from streamer.beamline.hardware.epics import frame_layout
from streamer.beamline.verdict import OperatorDecision, PipelineVerdict
from streamer.messaging.transport import FrameSender
from streamer.settings import ConfigError

log = logging.getLogger(__name__)


@dataclass
class PipelineLink:
    """What a session opens towards the pipeline and the operator; ``close()`` releases the sockets."""

    verdict: PipelineVerdict
    decision: OperatorDecision
    sender: FrameSender
    forwarder: SafeForwarder

    def close(self) -> None:
        self.verdict.close()
        self.decision.close()
        self.sender.close(linger_s=1.0)


def link_pipeline(config: BeamlineConfig, *, image_field: str) -> PipelineLink:
    """Connect to the pipeline (frames, results) and bind the decision channel, as ``config.pipeline`` says."""
    p = config.pipeline
    sender = FrameSender(p.frames_endpoint, timeout_s=p.send_timeout_s)
    return PipelineLink(
        verdict=PipelineVerdict(p.results_endpoint, timeout_s=p.verdict_timeout_s),
        decision=OperatorDecision(p.decision_endpoint, timeout_s=p.decision_timeout_s,
                                  default_action=p.default_action, token_file=p.decision_token_file),
        sender=sender,
        forwarder=SafeForwarder(FrameStreamer(sender, image_field=image_field)),
    )


class GeometryInStart:
    """A RunEngine preprocessor (``RE.preprocessors.append``): the start document of every run for the
    pipeline gets ``geometry``, a detector geometry (``DetectorGeometry.to_dict``) from the configuration,
    the scan's own step, frame count and centre (``rocking_step_deg``, ``num_points``, ``center_deg``) and
    the detector's sensor size, region and binning read just before the run opens (when it has
    ``layout_signals``; they win over ``[detector]``).

    A start document that already has ``geometry`` keeps it; a run marked ``pipeline: False`` gets none.
    A scan whose geometry cannot be made (another motor than ``[rocking] motor``, an inconsistent
    detector) is still measured: its start document says why under ``geometry_error`` (logged too).
    The configuration is checked when this is made: ConfigError naming the key.
    """

    def __init__(self, config: BeamlineConfig, detector=None):
        self.config = config
        self.detector = detector
        # what the configuration alone fixes must make a geometry (the scan's values are stand-ins here)
        try:
            if config.detector.shape_px is None and not hasattr(detector, "layout_signals"):
                raise ConfigError("detector.shape_px: the raw detector size is needed (the detector does not say)")
            if config.detector.shape_px is not None:
                config.beamline_geometry(rocking_step_deg=0.01, num_frames=2).geometry()
            else:
                config.beamline_geometry().two_theta_bragg_deg()
        except ConfigError as exc:
            raise ConfigError(f"beamline configuration ([experiment] reflection, [detector], [rocking]): "
                              f"{exc}") from None

    def __call__(self, plan):
        return plan_mutator(plan, self._mutate)

    def _mutate(self, msg):
        md = msg.kwargs
        if msg.command != "open_run" or md.get("pipeline") is False or "geometry" in md or "geometry_error" in md:
            return None, None  # (the open_run _open_run yields comes back here, with one of the last two)
        return self._open_run(msg), None

    def _open_run(self, msg):
        readings = {}
        for key, signal in getattr(self.detector, "layout_signals", {}).items():
            readings[key] = yield from bps.rd(signal)
        md = dict(msg.kwargs)
        try:
            md["geometry"] = self.geometry(md, readings)
        except (ConfigError, ValueError) as exc:
            md["geometry_error"] = str(exc)
            log.warning("run %s (%s) has no detector geometry: %s", md.get("scan_index", ""),
                        md.get("plan_name", "?"), exc)
        return (yield msg._replace(kwargs=md))

    def geometry(self, start: dict, readings: dict | None = None) -> dict:
        """The geometry dict of a run with this start document (and these ``layout_signals`` values)."""
        missing = [k for k in ("rocking_step_deg", "num_points", "motors") if k not in start]
        if missing:
            raise ValueError(f"not a rocking scan: its start document lacks {', '.join(missing)}")
        motor = (start["motors"] or [None])[0]
        if motor != self.config.rocking.motor:
            raise ValueError(f"the scan rocks {motor!r} but [rocking] motor is {self.config.rocking.motor!r}: "
                             f"its axis is not known")
        placement = self.config.detector
        if readings:
            placement = placement.replace(**frame_layout(readings))
        setup = self.config.beamline_geometry(
            detector=placement, rocking_step_deg=start["rocking_step_deg"], num_frames=start["num_points"],
            rocking_center_deg=start.get("center_deg"))
        return setup.geometry().to_dict()
