"""``bcdi-stream watch``: the operator's terminal view, per-scan lines and flags in words as they arrive."""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.text import Text

from streamer.analysis.labels import describe_event, is_severe
from streamer.cli.common import add_subcommand
from streamer.cli.pipeline import LINE_HEADER, format_event_line
from streamer.messaging.results import ResultsSubscriber

STYLES = {"alert": "bold red", "warn": "yellow", "info": "cyan"}


def render_event(ev: dict, *, evidence: bool = False) -> Text:
    """One scan's line, red when it is flagged, then one indented sentence per thing worth saying
    (``streamer.analysis.labels.describe_event``); with ``evidence`` each sentence's raw record under it."""
    flags = ev.get("flags") or []
    style = "bold red" if any(is_severe(f) for f in flags) else "yellow" if flags else ""
    text = Text(format_event_line(ev), style=style)
    if ev.get("error"):
        text.stylize("magenta")
    for sentence in describe_event(ev):
        text.append("\n       " + sentence.text, style=STYLES[sentence.severity])
        if evidence:
            raw = ", ".join(f"{k}={v}" for k, v in sentence.evidence.items() if k != "kind")
            text.append(f"\n         [{sentence.kind}] {raw}", style="dim")
    return text


def render_progress(p: dict) -> Text:
    gaps = f", {p['gap_count']} gap(s)" if p.get("gap_count") else ""
    return Text(f"  scan {p['scan']}: {p['received']}/{p.get('expected') or '?'} frames, {p.get('rate_hz', 0):.1f}/s"
                f"{gaps} ({p.get('status')})", style="dim" if not gaps else "yellow")


def render_health(h: dict) -> Text:
    rejected = h.get("rejected") or {}
    return Text(f"  health: queue {h.get('queue_depth')}, skipped {h.get('skipped_reconstructions')}, "
                f"rejected {sum(rejected.values())} {rejected if rejected else ''}".rstrip(),
                style="yellow" if rejected or h.get("skipped_reconstructions") else "dim")


def watch(endpoint: str, console: Console, *, stop: threading.Event | None = None, progress: bool = False,
          until_run_done: bool = True, poll_ms: int = 200, evidence: bool = False) -> int:
    """Print the results published on ``endpoint`` until run_done (or ``stop``); the number of events shown."""
    stop = stop or threading.Event()
    topics = ("event", "run_done", "health") + (("progress",) if progress else ())
    console.print(Text(f"watching {endpoint}", style="bold"))
    console.print(Text(LINE_HEADER, style="bold"))
    shown, last_health = 0, None
    with ResultsSubscriber(endpoint, topics=topics) as sub:  # unreadable messages are skipped (and counted) there
        while not stop.is_set():
            result = sub.receive(poll_ms / 1000)
            if result is None:
                continue
            topic, msg = result.topic, result.body
            if topic == "event":
                console.print(render_event(msg["event"], evidence=evidence))
                shown += 1
            elif topic == "progress" and msg.get("status") != "running":
                console.print(render_progress(msg))
            elif topic == "health":
                key = (msg.get("queue_depth"), msg.get("skipped_reconstructions"), sum((msg.get("rejected") or {}).values()))
                if key != last_health and (key[1] or key[2]):  # only news, and only when something is wrong
                    console.print(render_health(msg))
                last_health = key
            elif topic == "run_done":
                rejected = msg.get("rejected") or {}
                console.print(Text(f"run done; pipeline rejected: {rejected or 'nothing'}", style="bold"))
                if until_run_done:
                    break
    return shown


def print_events(path: Path, console: Console, *, evidence: bool = False) -> int:
    """A recorded run's events.jsonl, as watch would have shown it."""
    from streamer.recording.event_log import read_events

    events = read_events(path)
    console.print(Text(LINE_HEADER, style="bold"))
    for ev in events:
        console.print(render_event(ev, evidence=evidence))
    return len(events)


def _cmd_watch(args) -> int:
    console = Console(highlight=False)
    console.soft_wrap = not console.is_terminal  # into a file or a pipe: whole lines, for grep and logs
    if args.events is not None:
        if not args.events.is_file():
            raise ValueError(f"events file {args.events} does not exist")
        print_events(args.events, console, evidence=args.evidence)
        return 0
    if not args.results.startswith(("tcp://", "ipc://")):
        raise ValueError(f"--results must be a ZeroMQ endpoint like tcp://127.0.0.1:5556, got {args.results!r}")
    try:
        watch(args.results, console, progress=args.progress, until_run_done=not args.keep, evidence=args.evidence)
    except KeyboardInterrupt:
        pass
    return 0


def register(sub) -> None:
    """Add the ``watch`` subcommand to the parser."""
    w = add_subcommand(
        sub, "watch", _cmd_watch, help="print per-scan lines and flags as they arrive (for a terminal)",
        description="Subscribes to a running pipeline's results and prints one line per scan, "
                    "then its flags in words (what, where, how sure, what it means: red for a "
                    "defect, yellow for the beam or the data), skipped and failed reconstructions "
                    "too; or prints a recorded events.jsonl. --evidence adds each flag's raw record.",
        epilog="examples:\n  bcdi-stream watch --results tcp://127.0.0.1:5556 --progress\n"
               "  bcdi-stream watch --events demo-out/events.jsonl --evidence")
    w.add_argument("--results", default="tcp://127.0.0.1:5556", help="results endpoint of the pipeline (PUB)")
    w.add_argument("--events", type=Path, default=None, help="print this events.jsonl instead of subscribing")
    w.add_argument("--progress", action="store_true", help="also print each scan's frame count when it ends")
    w.add_argument("--keep", action="store_true", help="keep watching after the run is done")
    w.add_argument("--evidence", action="store_true", help="print each flag's raw record under its sentence")
