"""The house has floors: imports only go down, and only the CLI may wire in the simulator."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSITION_ROOT = "streamer/cli"
# pure array code: no sockets, files, clocks or processes
PURE = ["streamer/phasing", "streamer/analysis", "streamer/geometry", "streamer/backend.py",
        "streamer/service/progress.py"]
IMPURE_MODULES = {"zmq", "h5py", "socket", "time", "threading", "multiprocessing", "subprocess", "bluesky",
                  "ophyd", "asyncio"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(*parts):
    out = []
    for part in parts:
        p = ROOT / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def _top(name):
    return name.split(".")[0]


@pytest.mark.parametrize("path", _files("streamer", "plans"), ids=lambda p: str(p.relative_to(ROOT)))
def test_streamer_and_plans_never_import_sim(path):
    if path.relative_to(ROOT).as_posix().startswith(COMPOSITION_ROOT + "/"):
        return
    assert "sim" not in {_top(n) for n in _imports(path)}, f"{path} imports sim/"


def test_wire_format_imports_no_project_module():
    assert not {_top(n) for n in _imports(ROOT / "streamer/messaging/wire.py")} & {"streamer", "plans", "sim"}


@pytest.mark.parametrize("path", _files(*PURE), ids=lambda p: str(p.relative_to(ROOT)))
def test_phasing_and_analysis_are_pure(path):
    bad = {_top(n) for n in _imports(path)} & IMPURE_MODULES
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", _files("plans"), ids=lambda p: str(p.relative_to(ROOT)))
def test_plans_only_yield(path):
    bad = {_top(n) for n in _imports(path)} & {"numpy", "zmq", "time", "socket", "streamer"}
    assert not bad, f"{path} imports {bad}"


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sim.devices import SimTimepix\nimport zmq\n")
    assert {"sim.devices", "zmq"} <= _imports(bad)
