"""The plan side of a beamline session: pipeline verdict, operator decision and document forwarding."""

from __future__ import annotations

from dataclasses import dataclass

from streamer.beamline.bluesky_bridge import FrameStreamer
from streamer.beamline.forwarding import SafeForwarder
from streamer.beamline.hardware.config import BeamlineConfig
from streamer.beamline.verdict import OperatorDecision, PipelineVerdict
from streamer.messaging.transport import FrameSender


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
