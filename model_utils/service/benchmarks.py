"""Benchmarks across training: EleutherAI's lm-evaluation-harness, as a library in this process, evaluating served
models (through :class:`~.benchmark_lm.ServiceLM`) at each checkpoint, results kept in the results store.

The harness owns the task registry, prompts, few-shot sampling and metrics; nothing here defines any of them.
A job is (models x checkpoints x tasks); each (model, checkpoint, task) is one *unit*, looked up in the store first
(a curve already computed comes back at once), otherwise evaluated once however many visitors ask (single-flight:
the others follow its progress), at most ``--benchmark-jobs`` units evaluating at a time on this server (the rest
are told their place). Stop ends the job at its next scoring batch; finished units are kept.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..core.catalog import PythiaModel
from ..core.errors import InvalidParameter, PythiaError
from ..engine.interface import ModelEngine
from .benchmark_lm import EvaluationStopped, ServiceLM
from .benchmark_store import Flight, Metric, ResultKey, ResultsStore, SingleFlight, StoredResult, run_once
from .lm_eval_server import lm_eval_for_a_server, visitors_first
from .published import PUBLISHED_STEPS
from .task_index import task_manager

log = logging.getLogger(__package__)

# lm-eval bootstraps the standard error of non-mean metrics (perplexity); its default 100,000 draws run in a
# process pool, which a server must not fork. 1,000 draws in this process give the error bars to two digits.
os.environ.setdefault("DISABLE_MULTIPROC", "1")
BOOTSTRAP_ITERS = 1000
SHIPPED_TASKS_DIR = Path(__file__).resolve().parent.parent / "store" / "data" / "demo" / "tasks"
QUICK_STEPS = ("step0", "step16", "step128", "step512", "step1000", "step13000", "step63000", "main")
POLL_S = 0.5  # how often a follower re-reads the progress of a unit another visitor evaluates


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


# -- the task registry -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskInfo:
    name: str
    version: str
    local: bool  # from the shipped folder or --tasks-dir


# lm-eval's TaskManager per set of local folders, built once per process (task_index.py keeps the index of lm-eval's
# own tasks on disk), and a process that builds several apps (scripts, tests: app.running) shares it.
_MANAGERS: dict[tuple[Path, ...], Any] = {}
_MANAGERS_LOCK = threading.Lock()


class TaskRegistry:
    """lm-eval's TaskManager over its own tasks plus the local folders; built once per process, on first use or
    by :meth:`warm` (the first time on a machine it reads ~15,000 YAML files: seconds of CPU)."""

    def __init__(self, tasks_dirs: tuple[Path, ...]):
        self.tasks_dirs = tasks_dirs

    def warm(self) -> None:
        """Build the registry in the background, so that the first job does not wait for it."""
        threading.Thread(target=self.manager, name="lm-eval-tasks", daemon=True).start()

    def manager(self):
        with _MANAGERS_LOCK:
            if self.tasks_dirs not in _MANAGERS:
                _MANAGERS[self.tasks_dirs] = task_manager([str(p) for p in self.tasks_dirs])
            return _MANAGERS[self.tasks_dirs]

    def local_tasks(self) -> list[str]:
        """Tasks the local folders define (what the page offers next to the published list), read from their
        YAML files' ``task:`` lines without building the registry."""
        names = set()
        for folder in self.tasks_dirs:
            for path in sorted(folder.rglob("*.yaml")) if folder.is_dir() else ():
                try:
                    match = re.search(r"^task:\s*['\"]?([\w.-]+)", path.read_text(errors="replace"), re.MULTILINE)
                except OSError:
                    continue
                if match:
                    names.add(match.group(1))
        return sorted(names)

    def check(self, names: tuple[str, ...]) -> tuple[TaskInfo, ...]:
        """The tasks named, with their versions; a readable refusal for a name lm-eval does not know, or a group."""
        manager = self.manager()
        index = manager.task_index
        infos = []
        for name in names:
            entry = index.get(name)
            if entry is None:
                close = difflib.get_close_matches(name, manager.all_subtasks, n=3, cutoff=0.6)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise InvalidParameter(f"lm-eval has no task named {name!r:.80}.{hint}").naming("tasks")
            if entry.cfg is None or "task" not in entry.cfg or name in manager.all_groups or name in manager.all_tags:
                raise InvalidParameter(f"{name} is a group of lm-eval tasks; name its tasks one by one "
                                       f"(e.g. {_members(manager, name)}).").naming("tasks")
            version = (entry.cfg.get("metadata") or {}).get("version")
            local = entry.yaml_path is not None and any(Path(entry.yaml_path).is_relative_to(d)
                                                        for d in self.tasks_dirs)
            infos.append(TaskInfo(name, "unversioned" if version is None else str(version), local))
        return tuple(infos)


def _members(manager, group: str) -> str:
    cfg = manager.task_index[group].cfg or {}
    members = cfg.get("task") if isinstance(cfg.get("task"), list) else []
    names = [m if isinstance(m, str) else m.get("task", "") for m in members]
    names += [n for n, entry in manager.task_index.items() if group in (entry.tags or ())]  # a tag's tasks
    return ", ".join(n for n in names[:3] if n) or "its member tasks"


# -- what a job reports --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkRow:
    """One metric of one task at one checkpoint: the shape of the /benchmark rows."""

    model: str
    revision: str
    step: int
    task: str
    metric: str
    value: float
    stderr: float | None

    def as_dict(self) -> dict:
        return {"model": self.model, "revision": self.revision, "step": self.step, "task": self.task,
                "metric": self.metric, "value": self.value, "stderr": self.stderr}


@dataclass(frozen=True)
class UnitResult:
    """One (model, checkpoint, task): its metrics and lm-eval's results JSON, or why it failed."""

    model: str
    revision: str
    step: int
    task: str
    status: str  # "ok", "failed" or "stopped"
    metrics: tuple[Metric, ...] = ()
    results: dict | None = field(default=None, repr=False)
    error: str | None = None
    cached: bool = False  # it came from the store

    @property
    def notes(self) -> tuple[str, ...]:
        """What the numbers do not say (requests cut to fit the context, answers that were empty or never ended),
        kept with the result."""
        return tuple((self.results or {}).get("notes") or ())


@dataclass(frozen=True)
class BenchmarkUpdate:
    """A job as it stands: finished units (in request order), how far it got, what it does now."""

    units: tuple[UnitResult, ...]
    total: int
    message: str = ""
    done: bool = False
    stopped: bool = False

    @property
    def rows(self) -> list[BenchmarkRow]:
        return [BenchmarkRow(u.model, u.revision, u.step, u.task, m.name, m.value, m.stderr)
                for u in self.units if u.status == "ok" for m in u.metrics]


def metrics_of(task_results: dict[str, Any]) -> tuple[Metric, ...]:
    """lm-eval's 'acc,none' / 'acc_stderr,none' pairs as metrics named without the filter suffix."""
    metrics = []
    for key, value in task_results.items():
        name, _, filt = key.partition(",")
        if not filt or "_stderr" in name or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        stderr = task_results.get(f"{name}_stderr,{filt}")
        stderr = float(stderr) if isinstance(stderr, (int, float)) and not isinstance(stderr, bool) else None
        shown = name if filt == "none" else f"{name},{filt}"
        metrics.append(Metric(shown, float(value), stderr))
    return tuple(metrics)


def default_revisions(model: PythiaModel) -> tuple[str, ...]:
    """The checkpoints EleutherAI published results for that the model has (a model of its own schedule, such
    as the demo: all of its checkpoints), oldest first."""
    if model.own_revisions is not None:
        return tuple(sorted(model.revisions, key=model.step_of))
    wanted = {f"step{s}" for s in PUBLISHED_STEPS} - {f"step{model.step_of('main')}"}  # that one is main
    chosen = [r for r in model.revisions if r in wanted or r == "main"]
    return tuple(sorted(dict.fromkeys(chosen), key=model.step_of))


def quick_revisions(model: PythiaModel) -> tuple[str, ...]:
    """About eight checkpoints from the start of training to its end."""
    if model.own_revisions is not None:
        return default_revisions(model)
    return tuple(r for r in QUICK_STEPS if r in model.revisions)


# -- the jobs -------------------------------------------------------------------------------------------------
class _Slots:
    """At most ``size`` evaluations at once, first come first served; a waiter can read its place."""

    def __init__(self, size: int):
        self.size = size
        self._cond = threading.Condition()
        self._queue: list[object] = []

    def acquire(self, ticket: object, cancel: threading.Event, waiting) -> None:
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue.index(ticket) >= self.size:
                    if cancel.is_set():
                        raise EvaluationStopped("Stopped while waiting for its turn.")
                    waiting(self._queue.index(ticket) - self.size + 1)
                    self._cond.wait(POLL_S)
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise

    def release(self, ticket: object) -> None:
        with self._cond:
            self._queue.remove(ticket)
            self._cond.notify_all()


class Benchmarks:
    """Runs benchmark jobs for every surface: the store, the single-flight table and the task registry."""

    def __init__(self, engine: ModelEngine, store_path: Path, tasks_dirs: tuple[Path, ...] = (SHIPPED_TASKS_DIR,),
                 jobs_at_once: int = 1):
        self.engine = engine
        self.store = ResultsStore(store_path)
        self.flights = SingleFlight()
        self.tasks = TaskRegistry(tuple(Path(d).resolve() for d in tasks_dirs))
        self.slots = _Slots(jobs_at_once)  # each evaluation uses every core it is given: one at a time by default

    def warm(self) -> None:
        """Start building lm-eval's task registry now (the server calls this at start)."""
        self.tasks.warm()

    def run(self, models: tuple[PythiaModel, ...], revisions: tuple[str, ...] | None, tasks: tuple[str, ...],
            limit: int | None, num_fewshot: int, cancel: threading.Event | None = None) -> Iterator[BenchmarkUpdate]:
        """Evaluate every (model, checkpoint, task); yield the job as it stands after every change (and while a
        unit runs, its progress). Units already stored come first, at once."""
        cancel = cancel or threading.Event()
        infos = self.tasks.check(tasks)
        version = lm_eval_version()
        plan = [(m, r, t) for m in models for r in (revisions or default_revisions(m)) for t in infos]
        keys = [ResultKey(m.name, r, t.name, t.version, num_fewshot, limit,
                          self.engine.capabilities(m, r).served_by, version) for m, r, t in plan]
        results: dict[int, UnitResult] = {}
        for i, key in enumerate(keys):  # the curve already computed: at once
            stored = self.store.get(key)
            if stored is not None:
                results[i] = _unit(plan[i], stored, cached=True)
        state = _JobState(len(plan), results)
        worker = threading.Thread(target=self._work, args=(plan, keys, state, cancel), daemon=True,
                                  name="benchmark-job")
        worker.start()
        try:
            update = state.snapshot()
            yield update
            # the snapshot yielded decides, never ``state.finished`` read after it: a job whose last units and end
            # came while the consumer held the previous snapshot would otherwise end on that one (not done, its last
            # results missing; seen as a page stuck on "step1: loading the checkpoint" after Stop)
            while not update.done:
                state.wait_for_change(POLL_S)
                update = state.snapshot()
                yield update
        finally:
            cancel.set()  # the consumer left (Stop, a closed page): the job ends at its next batch
            worker.join(timeout=30)

    def _work(self, plan, keys, state: "_JobState", cancel: threading.Event) -> None:
        try:
            by_checkpoint: dict[tuple[str, str], list[int]] = {}
            for i, (m, r, _) in enumerate(plan):
                by_checkpoint.setdefault((m.name, r), []).append(i)
            for indices in by_checkpoint.values():
                missing = [i for i in indices if i not in state.results]
                if not missing:
                    continue
                with ExitStack() as opened:  # the checkpoint is loaded once, for its first unit that needs it
                    loaded: list = []
                    for i in missing:
                        if cancel.is_set():
                            state.add(i, _failed(plan[i], "stopped", "Stopped before this checkpoint."))
                            continue
                        state.add(i, self._unit(plan[i], keys[i], state, cancel, opened, loaded))
        except Exception:  # never leave a visitor waiting on a dead thread
            log.exception("a benchmark job failed")
        finally:
            state.finish(cancel.is_set())

    def _unit(self, unit, key: ResultKey, state: "_JobState", cancel, opened: ExitStack, loaded: list) -> UnitResult:
        model, revision, task = unit
        label = f"{task.name} · {model.name} {revision}"

        def evaluate(flight: Flight) -> StoredResult:
            ticket = object()
            self.slots.acquire(ticket, cancel, lambda ahead: state.say(
                f"{label}: waiting for {ahead} other evaluation{'s' if ahead > 1 else ''} on this server"))
            try:
                if not loaded:
                    state.say(f"{label}: loading the checkpoint")
                    loaded.append(opened.enter_context(self.engine.open(model, revision)))

                def say(words: str) -> None:
                    flight.progress = words  # what a visitor following this unit reads
                    state.say(f"{label}: {words}")

                return self._evaluate(loaded[0], key, model.step_of(revision), cancel, say)
            finally:
                self.slots.release(ticket)

        def follow(flight: Flight) -> None:
            while not flight.done.wait(POLL_S):
                if cancel.is_set():
                    raise EvaluationStopped("Stopped.")
                state.say(f"{label}: evaluated for another visitor, {flight.progress or 'starting'}")

        try:
            stored, _ = run_once(self.store, self.flights, key, evaluate, follow)
        except EvaluationStopped as exc:
            return _failed(unit, "stopped", str(exc))
        except PythiaError as exc:
            return _failed(unit, "failed", str(exc))
        except Exception as exc:  # a dataset the Hub does not have, a task lm-eval cannot build ...
            log.exception("benchmark %s failed", label)
            return _failed(unit, "failed", _readable(exc))
        return _unit(unit, stored, cached=False)

    def _evaluate(self, loaded, key: ResultKey, step: int, cancel, say) -> StoredResult:
        import lm_eval

        lm_eval_for_a_server()

        def progress(done: int, total: int) -> None:
            say(f"{done:,} of {total:,} requests")

        lm = ServiceLM(loaded, cancel, progress, task=key.task)
        started = time.monotonic()
        log.info("benchmark %s %s %s: evaluating (%s documents, %d-shot)", key.model, key.revision, key.task,
                 "all" if key.limit is None else f"{key.limit:,}", key.num_fewshot)
        with visitors_first(loaded.give_way):
            out = lm_eval.simple_evaluate(model=lm, tasks=[key.task], num_fewshot=key.num_fewshot, limit=key.limit,
                                          task_manager=self.tasks.manager(), bootstrap_iters=BOOTSTRAP_ITERS,
                                          log_samples=False, torch_random_seed=None)
        if out is None or key.task not in out.get("results", {}):
            raise RuntimeError(f"lm-eval returned no results for {key.task}")
        task_results = {k: v for k, v in out["results"][key.task].items()}
        notes = lm.notes()
        log.info("benchmark %s %s %s: %s in %.1f s%s", key.model, key.revision, key.task,
                 {k: v for k, v in task_results.items() if "," in k}, time.monotonic() - started,
                 "".join(f"\n  note: {n}" for n in notes))
        results = {"model": key.model, "revision": key.revision, "step": step, "task": key.task,
                   "compute_type": key.compute_type, "lm_eval_version": key.lm_eval_version,
                   "num_fewshot": key.num_fewshot, "limit": key.limit, "results": task_results,
                   "versions": out.get("versions", {}), "n-shot": out.get("n-shot", {}),
                   "n-samples": out.get("n-samples", {}), "config": out.get("configs", {}).get(key.task),
                   "notes": notes}
        return StoredResult(key, step, metrics_of(task_results), results)


def _readable(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return f"lm-eval could not run this task: {text}"


def _unit(unit, stored: StoredResult, cached: bool) -> UnitResult:
    model, revision, task = unit
    return UnitResult(model.name, revision, stored.step, task.name, "ok", stored.metrics, stored.results,
                      cached=cached)


def _failed(unit, status: str, error: str) -> UnitResult:
    model, revision, task = unit
    return UnitResult(model.name, revision, model.step_of(revision), task.name, status, error=error)


class _JobState:
    """What the worker thread found so far, read by the streaming generator."""

    def __init__(self, total: int, results: dict[int, UnitResult]):
        self.total = total
        self.results = dict(results)
        self.message = ""
        self.finished = False
        self.stopped = False
        self._cond = threading.Condition()
        self._version = 0
        self._seen = -1

    def _changed(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def add(self, index: int, unit: UnitResult) -> None:
        with self._cond:
            self.results[index] = unit
            self._changed()

    def say(self, message: str) -> None:
        with self._cond:
            if message != self.message:
                self.message = message
                self._changed()

    def finish(self, stopped: bool) -> None:
        with self._cond:
            self.finished, self.stopped, self.message = True, stopped, ""
            self._changed()

    def wait_for_change(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._version != self._seen, timeout)

    def snapshot(self) -> BenchmarkUpdate:
        with self._cond:
            self._seen = self._version
            units = tuple(self.results[i] for i in sorted(self.results))
            return BenchmarkUpdate(units, self.total, self.message, self.finished, self.stopped)


__all__ = ["BenchmarkRow", "BenchmarkUpdate", "Benchmarks", "UnitResult", "default_revisions", "quick_revisions"]
