"""What hub.bound_requests relies on in huggingface_hub (pinned in requirements.txt): its shared client,
built by the private ``default_client_factory``, keeps huggingface_hub's own request hook (offline mode),
and the cap reaches requests whose caller asked for no timeout at all. An upgrade that moves either fails
here."""

import httpx2
import pytest

from model_utils.store.hub import bound_requests

from hub_server import BlackHole


@pytest.fixture
def capped():
    bound_requests(0.5)
    yield
    bound_requests()  # as conftest set it up


@pytest.mark.timeout(20)  # the bound: uncapped, this request waits for ever
def test_a_request_that_asks_for_no_timeout_is_capped(capped):
    from huggingface_hub import get_session

    hole = BlackHole()
    try:
        with pytest.raises(httpx2.TimeoutException):
            get_session().get(f"{hole.url}/api/models/EleutherAI/pythia-70m/revision/main", timeout=None)
    finally:
        hole.close()
    assert hole.accepted == 1


def test_offline_mode_still_refuses_every_request(capped, monkeypatch):
    from huggingface_hub import constants, get_session
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hole = BlackHole()
    try:
        with pytest.raises(OfflineModeIsEnabled):
            get_session().get(f"{hole.url}/api/models/EleutherAI/pythia-70m/revision/main")
    finally:
        hole.close()
    assert hole.accepted == 0
