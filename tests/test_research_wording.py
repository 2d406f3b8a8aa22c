"""What the research tabs say when things fail or are small: a reason shared by many checkpoints is said
once, counts agree with their nouns. In-process, over the real engine (a local fake Hub, or none at all)."""

import pytest

from model_utils.core.catalog import Catalog
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.prompts import PreparedPrompt
from model_utils.service import InvalidParameter, MemorizationRequest, PythiaService, ScoreAcrossRequest
from model_utils.store import hub
from model_utils.store.demo_model import demo_model
from model_utils.store.disk import ModelStore
from model_utils.ui.research_handlers import curve_outputs, score_markdown
from model_utils.ui.wording import column_metrics

from hub_server import BlackHole


@pytest.fixture
def demo_service(tmp_path):
    catalog = Catalog()
    catalog.add(demo_model())
    engine = Engine(resolve_device("cpu", "int8", 1), catalog=catalog, store=ModelStore(tmp_path / "store"),
                    memory_budget_bytes=2**30)
    yield PythiaService(engine, catalog, demo_model().name)
    engine.close()


def test_memorization_of_a_text_too_short_is_refused_once_in_words(demo_service):
    request = demo_service.parse(MemorizationRequest, text="and", model=demo_service.default_model)
    with pytest.raises(InvalidParameter) as refused:  # one refusal, not a failed row per checkpoint
        demo_service.memorization(request)
    assert "The text is 1 token long" in str(refused.value) and "memorization needs" in str(refused.value)


@pytest.fixture
def hub_unreachable(fresh_hub, monkeypatch):
    """The Hub answers nothing: the first download waits a second, the next ones are told at once."""
    from huggingface_hub import constants

    server = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    hub.bound_requests(1.0)
    yield
    hub.bound_requests()  # as conftest set it up
    server.close()


@pytest.mark.timeout(60)
def test_a_curve_without_the_hub_says_why_once_not_in_every_row(hub_unreachable, tmp_path):
    catalog = Catalog()
    engine = Engine(resolve_device("cpu", "int8", 1), catalog=catalog, store=ModelStore(tmp_path / "store"),
                    memory_budget_bytes=2**30)
    try:
        service = PythiaService(engine, catalog, "pythia-70m")
        points = service.score_across(service.parse(ScoreAcrossRequest, text="Hello there", model="pythia-70m"))
    finally:
        engine.close()
    assert len(points) == 9 and all(p.status == "failed" for p in points)
    assert all(p.error for p in points), "API callers and the CSV still get every row's reason"
    _, table, _, _ = curve_outputs(points)
    statuses = [row[-1] for row in table]
    assert statuses[0].startswith("failed: ") and "cannot be reached" in statuses[0]
    assert sum("try again in" in s for s in statuses) <= 1, statuses  # no countdown repeated (and going stale)
    assert statuses.count("failed (as above)") >= 7, statuses


def test_counts_agree_with_their_nouns():
    assert PreparedPrompt((1,), dropped_turns=1).notice == \
        "To fit the 2048-token context, the oldest chat message was left out."
    assert "the 3 oldest chat messages were left out" in PreparedPrompt((1,), dropped_turns=3).notice
    assert "the first token of the prompt was cut" in PreparedPrompt((1,), truncated_tokens=1).notice
    assert "the first 1,500 tokens of the prompt were cut" in PreparedPrompt((1,), truncated_tokens=1500).notice
    from model_utils.service import CompareColumn, ScoredToken, TextScore, TokenText

    one = TextScore((ScoredToken(5, TokenText("Hi", b"Hi"), -1.0),), num_bytes=2, windows=1)
    assert score_markdown(one).startswith("**1 token** ·")
    column = CompareColumn("m", "main", text="x", done=True, num_tokens=1, finish_reason="stop")
    assert column_metrics(column).startswith("1 token ·")
