"""Failures leave nothing half-written and no stuck lock; the next attempt succeeds."""

import errno
import shutil

import pytest

from model_utils.core.errors import ModelUnavailable
from model_utils.core.sampling import SamplingParams
from model_utils.engine.generation import generate, stream
from model_utils.store import install as store_module
from model_utils.store.local_dirs import describe_local_dir

from ct2_hooks import hooked_steps, load_hookable_ct2_model

GREEDY = SamplingParams(greedy=True, max_new_tokens=10, repetition_penalty=1.0)


def no_leftovers(store_root):
    models = store_root / "models"
    return not models.exists() or not [p for p in models.iterdir() if p.name.startswith(".tmp-")]


def test_disk_full_during_conversion_then_retry(engine, monkeypatch):
    real = store_module.convert_checkpoint

    def disk_full(source, output, **kwargs):
        output.mkdir(parents=True)
        (output / "model.bin").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "convert_checkpoint", disk_full)
    with pytest.raises(ModelUnavailable, match="No space left on device"):
        with engine.open("tiny-pythia"):
            pass
    assert engine.store.list() == [] and no_leftovers(engine.store.root)
    monkeypatch.setattr(store_module, "convert_checkpoint", real)
    with engine.open("tiny-pythia") as model:
        assert generate(model, "Hello", GREEDY).num_tokens > 0


def test_exception_inside_conversion_then_retry(engine, monkeypatch):
    real = store_module.convert_checkpoint

    def broken(source, output, **kwargs):
        output.mkdir(parents=True)
        raise ValueError("a bug in the converter")

    monkeypatch.setattr(store_module, "convert_checkpoint", broken)
    with pytest.raises(ModelUnavailable) as info:
        with engine.open("tiny-pythia"):
            pass
    assert "a bug" not in str(info.value) and "Traceback" not in str(info.value)  # the visitor reads no internals
    assert "Converting tiny-pythia" in str(info.value)
    assert engine.store.list() == [] and no_leftovers(engine.store.root)
    monkeypatch.setattr(store_module, "convert_checkpoint", real)
    with engine.open("tiny-pythia") as model:  # the lock was released
        assert model.generator.model_is_loaded


@pytest.fixture
def hookable_engine(tiny_hf_dir, tmp_path, cpu_device):
    """The ``engine`` fixture's engine, whose models let the test inside CT2's steps (ct2_hooks)."""
    from model_utils.core.catalog import Catalog
    from model_utils.engine.engine import Engine
    from model_utils.store.disk import ModelStore

    catalog = Catalog()
    catalog.add(describe_local_dir(tiny_hf_dir, name="tiny-pythia", random_weights=True))
    engine = Engine(cpu_device, catalog=catalog, store=ModelStore(tmp_path / "store"), memory_budget_bytes=4 * 2**30,
                    loader=load_hookable_ct2_model)
    yield engine
    engine.close()


def test_ct2_raising_mid_stream_then_next_request(hookable_engine):
    engine = hookable_engine

    def explode(step, prompt):
        if step.step == 3:
            raise RuntimeError("simulated CT2 failure")

    with engine.open("tiny-pythia") as model:
        with hooked_steps(model, explode), pytest.raises(RuntimeError, match="simulated"):
            for _ in stream(model, "Once upon a time", SamplingParams(max_new_tokens=50)):
                pass
        assert generate(model, "Once upon a time", GREEDY).num_tokens > 0
    assert engine.cache.loaded()  # still loaded, not pinned: the next visitor can use or evict it
    assert engine.cache.evict(engine.cache.loaded()[0])


def test_model_that_fails_to_load_then_retry(engine, tmp_path):
    broken = tmp_path / "broken-ct2"
    with engine.open("tiny-pythia") as model:
        shutil.copytree(model.path, broken)
    good = (broken / "model.bin").read_bytes()
    engine.catalog.add(describe_local_dir(broken, name="broken"))
    (broken / "model.bin").write_bytes(good[: len(good) // 3])  # the weights get truncated
    with pytest.raises(ModelUnavailable) as info:
        with engine.open("broken"):
            pass
    assert str(tmp_path) not in str(info.value), "no server paths in messages"
    assert not engine.cache.is_loaded(("broken", "main", "cpu", engine.device.compute_type))
    (broken / "model.bin").write_bytes(good)
    with engine.open("broken") as model:
        assert generate(model, "Hi", GREEDY).num_tokens > 0


def test_streaming_model_is_never_evicted(engine):
    with engine.open("tiny-pythia") as model:
        steps = stream(model, "Once upon a time", SamplingParams(max_new_tokens=30))
        next(steps)
        engine.cache.budget_bytes = 1  # pressure: everything idle would go
        assert not engine.cache.evict(engine.cache.loaded()[0])
        rest = list(steps)
        assert rest[-1].finish_reason in ("stop", "length")
        assert model.generator is not None, "the model was unloaded while it generated"
    assert engine.cache.evict(engine.cache.loaded()[0]), "once idle, it may go"
