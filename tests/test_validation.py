"""Bad input gets a specific, readable error before CT2 is called."""

import math

import pytest
from pydantic import ValidationError

from model_utils.core.catalog import Catalog, validate_revision
from model_utils.core.errors import InvalidParameter, InvalidRevision, ModelTooLarge, UnknownModel
from model_utils.core.sampling import SamplingParams, bounds
from model_utils.engine.devices import resolve_device

BAD_SAMPLING = [
    ("temperature", math.nan), ("temperature", math.inf), ("temperature", -1.0), ("temperature", -0.01),
    ("temperature", 100.0), ("temperature", "hot"), ("temperature", True),
    ("top_k", -1), ("top_k", 3.7), ("top_k", 10**6), ("top_k", "5"),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", -math.inf), ("top_p", math.nan),
    ("repetition_penalty", 0.5), ("repetition_penalty", math.nan),
    ("no_repeat_ngram_size", -2), ("no_repeat_ngram_size", 2.5),
    ("max_new_tokens", 0), ("max_new_tokens", -5), ("max_new_tokens", 10**9), ("max_new_tokens", 12.5),
    ("greedy", "yes"), ("greedy", 2),
]


@pytest.mark.parametrize("name,value", BAD_SAMPLING)
def test_bad_sampling_values(name, value):
    with pytest.raises(InvalidParameter) as info:
        SamplingParams.parse(**{name: value})
    assert name in str(info.value)


def test_unknown_option():
    with pytest.raises(InvalidParameter, match="unknown option"):
        SamplingParams.parse(temprature=0.5)


def test_defaults_and_integral_floats():
    p = SamplingParams.parse(top_k=40.0, max_new_tokens=None)
    assert p.top_k == 40 and isinstance(p.top_k, int)
    assert p.max_new_tokens == bounds("max_new_tokens").default


def test_params_are_frozen():
    p = SamplingParams()
    with pytest.raises(ValidationError, match="frozen"):
        p.temperature = 2.0


def test_bounds_come_from_the_declaration():
    b = bounds("temperature")
    assert (b.minimum, b.maximum, b.default) == (0.0, 2.0, 0.7)
    assert b.info and "greedy" in b.info
    assert b.range_words == "0-2, default 0.7"


def test_temperature_zero_is_greedy_like_openai():
    assert SamplingParams.parse(temperature=0).is_greedy
    assert SamplingParams.parse(temperature=0).ct2_options()["sampling_topk"] == 1
    assert not SamplingParams.parse(temperature=0.01).is_greedy
    assert SamplingParams.parse(temperature=1).temperature == 1.0  # JSON's 1 is a number, True is not


@pytest.mark.parametrize("name", ["gpt2", "../../etc/passwd", "EleutherAI/gpt2", "", None, 5, "pythia-160M"])
def test_unknown_model(name):
    with pytest.raises(UnknownModel) as info:
        Catalog().get(name)
    assert "pythia-160m" in str(info.value)  # lists what is valid


def test_a_model_may_be_named_by_its_hub_id():
    assert Catalog().get("EleutherAI/pythia-160m").name == "pythia-160m"
    assert Catalog().get("EleutherAI/pythia-70m-deduped").name == "pythia-70m-deduped"


@pytest.mark.parametrize("revision", ["step3", "step143001", "step-1", "step01", "v1", "", None, 1000, "main ",
                                      "step1000/../x", "refs/pr/1"])
def test_malformed_revision(revision):
    with pytest.raises(InvalidRevision) as info:
        validate_revision(revision)
    assert "step143000" in str(info.value)


def test_every_published_revision_is_valid():
    from model_utils.core.catalog import REVISIONS

    assert len(REVISIONS) == 155  # main + 154 checkpoints
    for r in REVISIONS:
        validate_revision(r)


def test_engine_validates_before_loading(engine):
    for bad in [("nope", "main"), ("tiny-pythia", "step1000"), ("pythia-70m", "step7")]:
        with pytest.raises((UnknownModel, InvalidRevision)):
            with engine.open(*bad):
                pass
    assert engine.cache.loaded() == [] and engine.store.list() == []  # nothing loaded, nothing converted


def test_memory_guard_refuses_before_download(engine):
    with pytest.raises(ModelTooLarge, match="pythia-12b"):
        with engine.open("pythia-12b"):
            pass
    assert engine.cache.loaded() == []


@pytest.mark.parametrize("kwargs", [dict(device="tpu"), dict(compute_type="int4"), dict(threads=0),
                                    dict(threads=1.5)])
def test_bad_device_settings(kwargs):
    with pytest.raises(InvalidParameter):
        resolve_device(**kwargs)
