"""The reference demo's events, field by field, against those written before the restructure (tests/cli/golden)."""

import io
import json
import math
from pathlib import Path

from streamer.cli import run_demo
from streamer.service.config import ServiceConfig

GOLDEN = Path(__file__).parent / "golden" / "demo_reference_fast_events.jsonl"
IGNORED = {"run", "latency_s"}  # names with a clock in them, and times
# The stated change of the strain values (issue 15: one strain definition, the mean of the wrapped forward
# and backward steps with the ramp removed once over the particle, instead of forward steps with the mean
# removed cut by cut). Measured on this demo: energy and rms strain within 23%, the 20% cut's energy (the
# low end of the range) up to 2.4x. Every other field is unchanged.
STRAIN_RTOL = {"energy_j": 0.25, "energy_density_j_per_m3": 0.25, "rms_strain": 0.25, "energy_j_range": 1.5}


def _compare(old, new, path, problems):
    if isinstance(old, dict) and isinstance(new, dict):
        if set(old) != set(new):
            problems.append(f"{path}: keys {sorted(set(old) ^ set(new))} differ")
        for key in set(old) & set(new):
            if key not in IGNORED:
                _compare(old[key], new[key], f"{path}.{key}", problems)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            problems.append(f"{path}: {len(old)} items before, {len(new)} now")
        for k, (a, b) in enumerate(zip(old, new)):
            _compare(a, b, f"{path}[{k}]", problems)
    elif isinstance(old, float) and isinstance(new, (int, float)) and ".strain." in path:
        key = path.split(".strain.")[1].split("[")[0]
        if not math.isclose(old, new, rel_tol=STRAIN_RTOL.get(key, 0.0), abs_tol=0):
            problems.append(f"{path}: {old} before, {new} now")
    elif old != new and not (isinstance(old, float) and math.isnan(old) and math.isnan(new)):
        problems.append(f"{path}: {old!r} before, {new!r} now")


def test_the_reference_demo_reports_what_it_reported_before_the_restructure(tmp_path):
    code = run_demo(out_dir=tmp_path, scenario="reference", realtime=False, seed=0,
                    service=ServiceConfig(realtime_policy="all"), out=io.StringIO())
    assert code == 0
    old = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    new = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines() if line.strip()]
    problems = []
    _compare(old, new, "events", problems)
    assert not problems, "\n".join(problems[:40])


def test_the_comparison_sees_a_changed_field():
    problems = []
    _compare([{"scan": 1, "flags": [{"kind": "new_vortex"}]}], [{"scan": 1, "flags": [{"kind": "vortex_lost"}]}],
             "events", problems)
    assert problems == ["events[0].flags[0].kind: 'new_vortex' before, 'vortex_lost' now"]
    problems = []
    _compare([{"strain": {"rms_strain": 1e-3, "energy_j": 1e-16}}], [{"strain": {"rms_strain": 1.2e-3, "energy_j": 2e-16}}],
             "events", problems)
    assert problems == ["events[0].strain.energy_j: 1e-16 before, 2e-16 now"]  # beyond the stated change
