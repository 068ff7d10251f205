"""Every script under benchmarks/ and ops/ imports cleanly, and runs its main only as a script.

Each is imported from its file under a name other than "__main__", with its own folder on the path
as when it is run (benchmarks/batch_vs_singles.py imports its neighbour peer_cohere). The beamline
startup profile has no main by design (IPython and the queueserver execute it whole); it is loaded
with the simulated hardware, since its default, the EPICS hardware, waits for the IOCs to connect.
"""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTUP = ROOT / "ops" / "beamline" / "startup"
SCRIPTS = sorted(p for folder in ("benchmarks", "ops") for p in (ROOT / folder).rglob("*.py")
                 if STARTUP not in p.parents)


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _main_guarded(path: Path) -> bool:
    """A module-level ``if __name__ == "__main__":``."""
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.If) and isinstance(t := node.test, ast.Compare) and len(t.ops) == 1 \
                and isinstance(t.ops[0], ast.Eq):
            sides = [t.left, t.comparators[0]]
            if any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and \
                    any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides):
                return True
    return False


def test_there_are_scripts():
    assert len(SCRIPTS) >= 10 and list(STARTUP.glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=_id)
def test_script_guards_its_main(path):
    assert _main_guarded(path), f"{_id(path)} has no `if __name__ == \"__main__\":` (importing it would run it)"


@pytest.mark.parametrize("path", SCRIPTS, ids=_id)
def test_script_imports(path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(path.parent), *sys.path])  # as run; restored with what it inserts
    monkeypatch.setattr(sys, "argv", [str(path)])
    name = "_script_" + _id(path).removesuffix(".py").replace("/", "_").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{_id(path)} has no main()"


@pytest.mark.parametrize("path", sorted(STARTUP.glob("*.py")), ids=_id)
def test_startup_profile_loads_with_simulated_hardware(path, tmp_path, monkeypatch):
    config = tmp_path / "beamline.toml"  # loopback endpoints nobody listens on: nothing is sent here
    config.write_text('[pipeline]\nframes_endpoint = "tcp://127.0.0.1:1"\nresults_endpoint = "tcp://127.0.0.1:2"\n'
                      'decision_endpoint = "tcp://127.0.0.1:0"\n')
    monkeypatch.setenv("BCDI_BEAMLINE", "sim")
    monkeypatch.setenv("BCDI_BEAMLINE_CONFIG", str(config))
    spec = importlib.util.spec_from_file_location("_startup_profile", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        for name in ("RE", "theta", "timepix", "potentiostat", "verdict", "decision", "rocking_scan",
                     "operando_series"):
            assert hasattr(module, name), f"{_id(path)} defines no {name}"
    finally:
        link = getattr(module, "_link", None)
        if link is not None:
            link.close()
