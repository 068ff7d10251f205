"""The service as a process: ``serve`` runs a ``Pipeline`` until run stop, SIGINT or SIGTERM, with its log (stderr
and a rotated file) and, when a command started it (demo, replay), a watch that stops it once that command is gone."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from streamer.service.config import ServiceConfig
from streamer.service.pipeline import Pipeline

log = logging.getLogger(__name__)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def rotating_log(path: str, max_bytes: int = 10 << 20, keep: int = 5) -> logging.Handler:
    """The service log's file besides stderr: rotated at ``max_bytes``, the ``keep`` newest kept."""
    from logging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=keep)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def _stop_when_orphaned(pipeline: Pipeline, poll_s: float = 1.0) -> None:
    """Stop ``pipeline`` (flushing what it received; scans still waiting are not reconstructed) once the process
    that started it is gone: a command killed by a signal runs no clean-up, and its pipeline would otherwise go on
    alone, reconstructing a replay's whole queue."""
    parent = os.getppid()

    def watch():
        while not pipeline.wait_for_stop(poll_s):
            if os.getppid() != parent:
                log.warning("the command that started this pipeline has gone: stopping")
                pipeline.stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(config: ServiceConfig, ready_conn=None, on_ready: Callable[[dict], None] | None = None) -> dict:
    """Run a pipeline until run stop, SIGINT or SIGTERM (then flush and exit cleanly: on a signal the scan being
    reconstructed finishes, the waiting ones are recorded and said not reconstructed).

    The endpoints it bound are sent on ``ready_conn`` (a multiprocessing Pipe end) and/or given to
    ``on_ready``. Returns the rejection counters.
    """
    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger().setLevel(logging.INFO)
    if config.log_file:
        logging.getLogger().addHandler(rotating_log(config.log_file))
    pipeline = Pipeline(config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: pipeline.stop())
    if ready_conn is not None:  # started by a command (demo, replay): it stops, flushed, when that command dies
        _stop_when_orphaned(pipeline)
    web = None
    if config.web.enabled:
        from streamer.web import WebServer

        try:
            web = WebServer(host=config.web.host, port=config.web.port, results_endpoint=pipeline.results_endpoint,
                            decision_endpoint=config.decision_endpoint,
                            decision_token_file=config.web.decision_token_file or None).start()
            log.info("operator page on %s", web.url)
        except OSError as exc:  # the page is a side path: the stream is recorded and analysed without it
            log.error("%s; running without the live page", exc)

    def ready(endpoints):
        if web is not None:
            endpoints = {**endpoints, "web": web.url}
        if ready_conn is not None:
            ready_conn.send(endpoints)
            ready_conn.close()
        if on_ready is not None:
            on_ready(endpoints)

    try:
        return pipeline.run(on_ready=ready)
    finally:
        if web is not None:
            web.stop()
