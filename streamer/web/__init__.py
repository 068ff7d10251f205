"""The operator's live page: an HTTP server on localhost fed by the pipeline's results (docs/web.md)."""

from streamer.web.server import WebServer
from streamer.web.state import LiveState

__all__ = ["LiveState", "WebServer"]
