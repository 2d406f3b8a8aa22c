"""The in-memory model cache: LRU under a budget, pins, single loads, real unloading."""

import threading

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import ModelUnavailable, ServerBusy
from model_utils.engine.loaded_model import load_ct2_model
from model_utils.engine.model_cache import ModelCache
from model_utils.store.local_dirs import describe_local_dir

from concurrency import wait_until_blocked


@pytest.fixture
def loader(tiny_ct2_dir, cpu_device):
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    made = []

    def load():
        model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device)
        made.append(model)
        return model

    yield load, made
    for model in made:
        model.close()


def test_lru_evicts_least_recently_used_and_frees_it(loader):
    load, made = loader
    cache = ModelCache(budget_bytes=200)
    with cache.use("a", 100, load) as a:
        assert a.generator.model_is_loaded
    with cache.use("b", 100, load):
        pass
    with cache.use("a", 100, load):  # a is now the most recently used
        pass
    with cache.use("c", 100, load):
        pass
    assert cache.loaded() == ["a", "c"]
    evicted = made[1]  # b
    assert evicted.generator is None  # close() dropped the CT2 generator after unloading it
    assert made[0].generator.model_is_loaded
    cache.close()
    assert all(m.generator is None for m in made)


def test_model_in_use_is_never_evicted(loader):
    load, made = loader
    cache = ModelCache(budget_bytes=150)
    with cache.use("a", 100, load) as a:
        with pytest.raises(ServerBusy):
            with cache.use("b", 100, load):
                pass
        assert a.generator.model_is_loaded
    with cache.use("b", 100, load):  # a is idle now, so it can go
        pass
    assert cache.loaded() == ["b"]
    cache.close()


def test_a_model_larger_than_the_budget_is_never_loaded(loader):
    """The engine refuses such a model in words first (test_validation); the cache itself never loads one."""
    load, made = loader
    cache = ModelCache(budget_bytes=50)
    with pytest.raises(ValueError, match="cannot fit"):
        with cache.use("a", 100, load):
            pass
    assert made == [], "the loader never ran"


def test_concurrent_first_requests_load_once(loader):
    load, made = loader
    cache = ModelCache(budget_bytes=10**9)
    release = threading.Event()
    seen, errors = [], []

    def held_load():  # the first load stays in flight until every user is waiting
        assert release.wait(30), "the test never let the load finish"
        return load()

    def user():
        try:
            with cache.use("a", 100, held_load) as model:
                seen.append(model)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    users = [threading.Thread(target=user) for _ in range(8)]
    for t in users:
        t.start()
    wait_until_blocked(users)  # one in the load, seven waiting for it (were loads not shared: eight loading)
    release.set()
    for t in users:
        t.join()
    assert not errors, errors
    assert len(made) == 1, f"{len(made)} loads for one model"
    assert len(seen) == 8 and all(m is made[0] for m in seen)
    cache.close()


def test_failed_load_is_not_cached_and_retry_succeeds(loader):
    load, _ = loader
    cache = ModelCache(budget_bytes=10**9)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ModelUnavailable("simulated failure")
        return load()

    with pytest.raises(ModelUnavailable):
        with cache.use("a", 100, flaky):
            pass
    assert cache.loaded() == []
    with cache.use("a", 100, flaky) as model:
        assert model.generator.model_is_loaded
    cache.close()
