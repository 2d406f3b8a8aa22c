"""The server's log is all an operator of a Space reads: every failure a visitor sees as "failed on the
server" leaves its traceback there, model_utils logs through one logger per layer, and app.py sets the
levels once (ours at --log-level, other libraries' at WARNING)."""

import ast
import logging
from pathlib import Path

import pytest

from model_utils.core.catalog import Catalog
from model_utils.engine.engine import Engine
from model_utils.service import CompareRequest, PythiaService
from model_utils.store.disk import ModelStore
from model_utils.store.local_dirs import describe_local_dir

PACKAGE = Path(__file__).resolve().parent.parent / "model_utils"
# Helpers that log every unexpected failure with its traceback (ui/common.py: user_message; ui/handlers.py:
# notice calls it), so a handler that turns a failure into a visitor's message through them logs it.
LOGGING_HELPERS = {"user_message", "notice"}


def broad_handlers(tree: ast.AST):
    """``except Exception``, ``except BaseException`` and bare ``except`` clauses."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            if node.type is None or any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException")
                                        for n in names):
                yield node


def logs_or_raises(handler: ast.ExceptHandler) -> bool:
    """The handler raises, logs, or hands the exception itself on (to the thread that raises it: a worker thread's
    failure travels through a queue to the request that waits for it)."""
    for node in ast.walk(ast.Module(body=handler.body, type_ignores=[])):
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Call) and handler.name and any(
                isinstance(arg, ast.Name) and arg.id == handler.name for arg in node.args):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in (
                    "log", "logger", "logging"):
                return True
            if isinstance(func, ast.Name) and func.id in LOGGING_HELPERS:
                return True
    return False


def test_no_broad_except_swallows_a_failure_without_a_log_line():
    silent = [f"{path.relative_to(PACKAGE)}:{handler.lineno}" for path in sorted(PACKAGE.rglob("*.py"))
              for handler in broad_handlers(ast.parse(path.read_text())) if not logs_or_raises(handler)]
    assert silent == []


def test_the_logging_helpers_do_log():
    common = ast.parse((PACKAGE / "ui" / "common.py").read_text())
    user_message = next(n for n in ast.walk(common) if isinstance(n, ast.FunctionDef) and n.name == "user_message")
    assert "log.error" in ast.unparse(user_message) and "exc_info" in ast.unparse(user_message)
    handlers = ast.parse((PACKAGE / "ui" / "handlers.py").read_text())
    notice = next(n for n in ast.walk(handlers) if isinstance(n, ast.FunctionDef) and n.name == "notice")
    assert "user_message(" in ast.unparse(notice)


def test_one_logger_per_layer():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "logging.getLogger":
                assert ast.unparse(node) == "logging.getLogger(__package__)", f"{path.relative_to(PACKAGE)}"


def test_a_compare_column_that_fails_on_the_server_leaves_its_traceback_in_the_log(tiny_ct2_dir, tmp_path,
                                                                                    cpu_device, caplog):
    def broken_loader(*args, **kwargs):
        raise RuntimeError("the runtime refused")

    catalog = Catalog()
    catalog.add(describe_local_dir(tiny_ct2_dir, name="tiny"))
    engine = Engine(cpu_device, catalog=catalog, store=ModelStore(tmp_path / "store"), memory_budget_bytes=2**30,
                    loader=broken_loader)
    try:
        service = PythiaService(engine, catalog, "tiny")
        final = list(service.compare(service.parse(CompareRequest, prompt="Hello", pairs=[["tiny", "main"]],
                                                   max_new_tokens=4)))
    finally:
        engine.close()
    assert final[-1][0].error == "Generation failed on the server."
    assert [r for r in caplog.records if r.exc_info and "the runtime refused" in str(r.exc_info[1])]


@pytest.fixture
def restore_levels():
    names = ("", "app", "model_utils", "httpx", "gradio")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["info", "debug", "warning"])
def test_log_level_sets_ours_and_leaves_other_libraries_at_warnings(level, restore_levels):
    import app

    app.configure_logging(level)
    assert logging.getLogger("model_utils.store").getEffectiveLevel() == getattr(logging, level.upper())
    assert logging.getLogger("app").getEffectiveLevel() == getattr(logging, level.upper())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING, "a request costs no log line"
