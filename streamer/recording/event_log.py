"""events.jsonl: one event per line, flushed at once so a reader sees each scan as it is written."""

from __future__ import annotations

import json
import os
from pathlib import Path


class EventLog:
    """Appends one JSON object per line and flushes it, so a reader sees each scan at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # never through a link: the output folder's files stay in the output folder
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise OSError(f"cannot append to {self.path} ({exc.strerror}; a link is never followed)") from None
        self._f = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, event: dict) -> None:
        self._f.write(json.dumps(event, allow_nan=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_events(path: Path) -> list[dict]:
    """All events of an events.jsonl file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
