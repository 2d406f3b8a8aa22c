"""Server-sent event streams are read line by line where the SSE format ends lines (CRLF, LF, CR) and nowhere else:
a model's text inside a ``data:`` line's JSON may hold U+2028, U+2029 or U+0085 raw, which httpx's ``iter_lines``
(and ``str.splitlines``) take for line ends. The remote engine reads vLLM's streams this way."""

import json

import httpx
import pytest

from model_utils.core.sse import event_lines
from model_utils.engine.vllm_client import VLLMClient

EVENT = {"choices": [{"text": "a\u2028b\u2029c\x85d\x1ce"}]}
STREAM = f"data: {json.dumps(EVENT, ensure_ascii=False)}\n\ndata: [DONE]\n\n"


def test_httpx_would_cut_the_line_this_reader_does_not():
    assert len(list(httpx.Response(200, text=STREAM).iter_lines())) > 4  # why this reader exists
    assert list(event_lines([STREAM])) == [STREAM.split("\n")[0], "", "data: [DONE]", ""]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_every_sse_line_end_and_any_chunking(ending):
    text = ending.join(["data: 1", "", "data: 2", "", ": comment", "data: 3"])
    expected = ["data: 1", "", "data: 2", "", ": comment", "data: 3"]
    for size in (1, 2, 3, 7, len(text)):  # a CRLF split between two chunks included
        assert list(event_lines(text[i:i + size] for i in range(0, len(text), size))) == expected, size


def test_the_remote_engine_reads_a_vllm_stream_whose_text_holds_such_characters():
    def answer(request):
        return httpx.Response(200, text=STREAM, headers={"content-type": "text/event-stream"})

    client = VLLMClient("http://vllm.invalid/v1", "bench", timeout_s=5)
    client._http = httpx.Client(base_url="http://vllm.invalid/v1", transport=httpx.MockTransport(answer))
    assert list(client.stream({"prompt": [1, 2], "max_tokens": 2})) == [EVENT]
