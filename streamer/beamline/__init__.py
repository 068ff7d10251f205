"""The beamline side: bluesky documents into the frame stream, safe forwarding, the verdict and decision devices plans trigger, EPICS hardware."""
