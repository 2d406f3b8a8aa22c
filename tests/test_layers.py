"""The layers stay apart: the UI reaches the models only through the service."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "model_utils"
BELOW_THE_SERVICE = ("model_utils.engine", "model_utils.store", "model_utils.core", "ctranslate2", "tokenizers",
                     "huggingface_hub")


def imported_modules(path: Path):
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = "model_utils." + ".".join(path.relative_to(PACKAGE).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rstrip(".").split(".")
                base = base[:len(base) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


@pytest.mark.parametrize("surface", ["ui", "openai_api"])
def test_each_surface_imports_only_the_service_and_its_own_helpers(surface):
    """The page and the OpenAI routes reach the models only through the service, and not through each other."""
    files = sorted((PACKAGE / surface).glob("*.py"))
    assert len(files) >= 4
    for path in files:
        for name in imported_modules(path):
            assert not name.startswith(BELOW_THE_SERVICE), f"{surface}/{path.name} imports {name}"
            if name.startswith("model_utils"):
                allowed = ("model_utils.service", f"model_utils.{surface}")
                assert name.startswith(allowed), f"{surface}/{path.name} imports {name}"


# Lowest first; the surfaces (the page, the OpenAI routes) share the top rank and never import each other.
ORDER = [("core",), ("store",), ("engine",), ("service",), ("ui", "openai_api")]


def test_every_package_has_its_place_in_the_order():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == {layer for rank in ORDER for layer in rank}, "add a new package to ORDER"


def test_no_layer_imports_one_above_it():
    for rank, layers in enumerate(ORDER):
        above = tuple(f"model_utils.{upper}" for higher in ORDER[rank + 1:] for upper in higher)
        for layer in layers:
            for path in (PACKAGE / layer).glob("*.py"):
                for name in imported_modules(path):
                    assert not name.startswith(above), f"{layer}/{path.name} imports {name}"


def test_settings_import_nothing_above_core():
    """The options are read before anything is built: settings.py depends on the shared vocabulary only."""
    for name in imported_modules(PACKAGE / "settings.py"):
        if name.startswith("model_utils"):
            assert name.startswith("model_utils.core"), f"settings.py imports {name}"
