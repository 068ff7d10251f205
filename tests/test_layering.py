"""The house has floors: imports only go down, and only the CLI may wire in the simulator.

The floors are import-linter contracts in pyproject.toml ([tool.importlinter]); the first test runs
them on the tree, the second shows that each of them breaks on a throwaway tree that breaks it. The
AST checks below say the same about the pure floors and plans/ without import-linter's graph.
"""

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSITION_ROOT = "streamer/cli"
# pure array code: no sockets, HDF5, clocks, threads or processes (the "pure" contract)
PURE = ["streamer/phasing", "streamer/analysis", "streamer/geometry", "streamer/backend.py",
        "streamer/settings.py", "streamer/service/progress.py"]
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
def test_pure_floors_are_pure(path):
    bad = {_top(n) for n in _imports(path)} & IMPURE_MODULES
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", _files("plans"), ids=lambda p: str(p.relative_to(ROOT)))
def test_plans_only_yield(path):
    bad = {_top(n) for n in _imports(path)} & {"numpy", "zmq", "time", "socket", "streamer", "sim"}
    assert not bad, f"{path} imports {bad}"


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sim.devices import SimTimepix\nimport zmq\n")
    assert {"sim.devices", "zmq"} <= _imports(bad)


# -- import-linter -------------------------------------------------------------------------------
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint_imports(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports on ``config`` with ``cwd`` first on the path (wide lines: one per contract)."""
    try:
        import importlinter  # noqa: F401
    except ImportError:
        pytest.fail("import-linter is a test dependency: pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(config)], check=False,
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _contracts(config: Path) -> list[dict]:
    return tomllib.loads(config.read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    run = _lint_imports(ROOT / "pyproject.toml", ROOT)
    assert run.returncode == 0, f"import-linter: contracts broken\n{run.stdout}\n{run.stderr}"
    assert " kept, 0 broken." in run.stdout, run.stdout


def _project_modules(contracts: list[dict]) -> set[str]:
    """Every streamer / plans / sim module the contracts name (layers under their containers)."""
    names = set()
    for c in contracts:
        for layer in c.get("layers", []):
            for room in layer.replace(":", "|").split("|"):
                names.update(f"{container}.{room.strip()}" for container in c.get("containers", [""]))
        names.update(c.get("source_modules", []))
        names.update(m for m in c.get("forbidden_modules", []) if "*" not in m)
    return {n.strip(".") for n in names if n.strip(".").split(".")[0] in {"streamer", "plans", "sim"}}


def _package_tree(root: Path, modules: set[str]) -> None:
    """Empty packages for ``modules`` and their parents under ``root``."""
    for name in modules:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            pkg = root.joinpath(*parts[:i])
            pkg.mkdir(exist_ok=True)
            (pkg / "__init__.py").touch()


# one import that breaks each contract (by id), and the line import-linter reports it with
BREAKS = {
    "floors": ("streamer/analysis/__init__.py", "import streamer.recording\n",
               "streamer.analysis is not allowed to import streamer.recording"),
    "composition-root": ("streamer/service/__init__.py", "import sim\n",
                         "streamer.service is not allowed to import sim"),
    "plans": ("plans/__init__.py", "import numpy\n", "plans is not allowed to import numpy"),
    "sim": ("sim/__init__.py", "import streamer.messaging\n", "sim is not allowed to import streamer.messaging"),
    "wire": ("streamer/messaging/wire/__init__.py", "from streamer import settings\n",
             "streamer.messaging.wire is not allowed to import streamer.settings"),
    "pure": ("streamer/geometry/__init__.py", "def lazy():\n    import time\n",  # lazy imports count
             "streamer.geometry is not allowed to import time"),
}


def test_each_contract_can_break(tmp_path):
    """A throwaway tree with the contracts' modules passes them; one bad import per contract breaks each."""
    config = tmp_path / "pyproject.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    contracts = _contracts(config)
    assert {c["id"] for c in contracts} == set(BREAKS), "a contract without a breaking case here"
    _package_tree(tmp_path, _project_modules(contracts))

    clean = _lint_imports(config, tmp_path)
    assert clean.returncode == 0, f"the empty tree should keep every contract\n{clean.stdout}\n{clean.stderr}"

    for path, line, _ in BREAKS.values():
        with open(tmp_path / path, "a") as f:
            f.write(line)
    _package_tree(tmp_path, {"streamer.attic"})  # a room on no floor (the floors are exhaustive)
    broken = _lint_imports(config, tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    for c in contracts:
        assert f"{c['name']} BROKEN" in broken.stdout, f"{c['id']} kept\n{broken.stdout}"
    for _, _, report in BREAKS.values():
        assert report in broken.stdout, f"{report!r} not reported\n{broken.stdout}"
    assert "- streamer.attic" in broken.stdout, broken.stdout
    assert f"Contracts: 0 kept, {len(contracts)} broken." in broken.stdout


def test_the_readme_names_every_room_and_each_room_says_its_job():
    """README's "How it is built" matches the tree: every room of streamer/ is listed, nothing else is."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## How it is built"):]
    section = section[: section.index("```", section.index("```") + 3)]
    rooms = {d.name for d in (ROOT / "streamer").iterdir() if (d / "__init__.py").exists()}
    listed = {line.split()[0].rstrip("/") for line in section.splitlines()
              if line.startswith("  ") and not line.startswith("   ") and line.split()[0].endswith("/")}
    assert listed == rooms
    for room in rooms:
        text = (ROOT / "streamer" / room / "README.md").read_text()
        assert len(text.split("\n\n", 1)[1].strip()) > 20, f"streamer/{room}/README.md does not say its job"
    modules = {p.name for p in (ROOT / "streamer").glob("*.py") if p.name != "__init__.py"}
    assert all(f"  {m}" in section for m in modules), f"top-level modules not in the README: {modules}"
