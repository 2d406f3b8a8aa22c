"""Every script under bench/ and tools/ runs from the dev requirements, or says in one line what to install.

A script's imports, wherever they are in it, come from the standard library, from this repository, or from
a package that ``requirements-dev.txt`` installs (with everything those packages need); an import of
anything else sits in a ``try`` whose ``except ImportError`` says what to ``pip install``. And each script
imports cleanly (its ``main`` is not run)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "tools").glob("*.py"))
FIRST_PARTY = {"model_utils", "app"} | {p.stem for d in ("bench", "tools", "tests") for p in (ROOT / d).glob("*.py")}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    """The requirement specifiers of a pip requirements file, following ``-r`` includes."""
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            lines += requirement_lines(path.parent / line[2:].strip())
        elif line:
            lines.append(line)
    return lines


def dev_distributions() -> set[str]:
    """What ``pip install -r requirements-dev.txt`` installs: the pins and, recursively, what they require."""
    seen: set[str] = set()
    todo = [Requirement(line) for line in requirement_lines(ROOT / "requirements-dev.txt")]
    while todo:
        requirement = todo.pop()
        extras = requirement.extras or {""}
        key = _normal(requirement.name)
        if (key, tuple(sorted(extras))) in seen:
            continue
        seen.add((key, tuple(sorted(extras))))
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:  # a requirement for another platform or Python
            continue
        for line in requires:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return {name for name, _ in seen}


def imports(script: Path) -> list[tuple[str, bool]]:
    """Each top-level module the script imports, and whether the import is guarded by an
    ``except ImportError`` that tells what to pip install."""
    source = script.read_text()
    tree = ast.parse(source)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            hints = [h for h in node.handlers if "ImportError" in ast.dump(h.type or ast.Pass())
                     and "pip install" in (ast.get_source_segment(source, h) or "")]
            if hints:
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], id(node) in guarded))
    return found


@pytest.fixture(scope="module")
def installed_by_dev() -> set[str]:
    return dev_distributions()


@pytest.fixture(scope="module")
def providers() -> dict[str, list[str]]:
    """Importable top-level module -> the installed distributions that provide it."""
    return metadata.packages_distributions()


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_a_scripts_imports_come_from_the_dev_requirements_or_say_what_to_install(script, installed_by_dev, providers):
    missing = sorted({module for module, guarded in imports(script)
                      if not guarded and module not in sys.stdlib_module_names and module not in FIRST_PARTY
                      and not {_normal(d) for d in providers.get(module, [])} & installed_by_dev})
    assert not missing, (f"{script.relative_to(ROOT)} imports {', '.join(missing)}, which requirements-dev.txt "
                         "does not install: add a pin there, or guard the import and print what to pip install")


def test_the_check_sees_an_unlisted_package_and_accepts_a_guarded_one(tmp_path, installed_by_dev):
    """The check above can fail: matplotlib is not a dev requirement."""
    assert "matplotlib" not in installed_by_dev and "numpy" in installed_by_dev
    script = tmp_path / "plot.py"
    script.write_text("def plot():\n    import matplotlib\n")
    assert imports(script) == [("matplotlib", False)]
    script.write_text("try:\n    import matplotlib\nexcept ImportError:\n"
                      "    print('no plot (pip install -r bench/requirements.txt)')\n")
    assert imports(script) == [("matplotlib", True)]


def test_every_script_imports_cleanly():
    code = ("import importlib.util, json, sys, traceback\n"
            "failed = {}\n"
            "for path in sys.argv[1:]:\n"
            "    spec = importlib.util.spec_from_file_location('script_under_test', path)\n"
            "    module = sys.modules['script_under_test'] = importlib.util.module_from_spec(spec)\n"
            "    try:\n"  # registered first, as Python registers an imported module (dataclasses look it up)
            "        spec.loader.exec_module(module)\n"
            "    except BaseException:\n"
            "        failed[path] = traceback.format_exc(limit=3)\n"
            "print(json.dumps(failed))\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, SCRIPTS)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    failed = json.loads(out.stdout.strip().splitlines()[-1])
    assert not failed, failed
